/**
 * The whole E2B front door on a real server (bwrap), reached the way an E2B user reaches it: the
 * unmodified `@e2b/code-interpreter` SDK (and `e2b` under it) with `E2B_API_URL` and
 * `E2B_SANDBOX_URL` set to codebox's URL and a codebox API key. One sandbox runs code with state
 * across calls and in a context of its own, streams stdout, runs a command, reads back a file that
 * code wrote, watches a directory, finds `/home/user` named literally by code and commands, and is killed; another tenant cannot reach it.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Sandbox } from '@e2b/code-interpreter'
import { e2bServer } from './e2b-fixtures.ts'

describe('E2B through the whole server', () => {
  const e2b = e2bServer({ name: 'e2b-whole', tenants: ['acme', 'other'], env: { CODEBOX_POOL_SIZE: '0' } })

  test('code, contexts, commands, files and a watch in one sandbox; another tenant cannot reach it', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    const sbx = await Sandbox.create({ apiKey: e2b.keys.acme!, envs: { E2B_FLAVOUR: 'sandbox-wide' } })
    try {
      const flavour = await sbx.runCode('import os\nos.environ["E2B_FLAVOUR"]')
      assert.equal(flavour.text, "'sandbox-wide'", 'the sandbox’s own envs reach code')
      const shadowed = await sbx.runCode('process.env.E2B_FLAVOUR', { language: 'javascript', envs: { E2B_FLAVOUR: 'this cell' } })
      assert.equal(shadowed.text, "'this cell'")
      const printed: string[] = []
      await sbx.runCode('x = 41', { onStdout: (m) => void printed.push(m.line) })
      const run = await sbx.runCode('print("computing")\nx + 1', { onStdout: (m) => void printed.push(m.line) })
      assert.equal(run.text, '42')
      assert.deepEqual(printed, ['computing\n'])
      const ctx = await sbx.createCodeContext({ language: 'python' })
      const apart = await sbx.runCode('x', { context: ctx })
      assert.equal(apart.error?.name, 'NameError', 'a context of its own has its own variables')

      const watch: string[] = []
      const handle = await sbx.files.watchDir('/home/user', (e) => void watch.push(`${e.type} ${e.name}`))
      const wrote = await sbx.runCode('open("made.txt", "w").write("from python")')
      assert.equal(wrote.error, undefined, wrote.error?.traceback)
      assert.equal(await sbx.files.read('/home/user/made.txt'), 'from python')
      const cmd = await sbx.commands.run('wc -c < made.txt && exit 3').catch((e: { exitCode?: number; stdout?: string }) => e)
      assert.equal((cmd as { exitCode?: number }).exitCode, 3)
      assert.equal((cmd as { stdout?: string }).stdout?.trim(), '11')
      for (let i = 0; i < 50 && !watch.some((w) => w.endsWith('made.txt')); i++) await new Promise((r) => setTimeout(r, 100))
      await handle.stop()
      assert.ok(
        watch.some((w) => w.endsWith(' made.txt')),
        `the watch saw the file code wrote: ${JSON.stringify(watch)}`,
      )

      // Code written for E2B names its home literally: /home/user is the workspace inside the sandbox too.
      const literal = await sbx.runCode('open("/home/user/literal.txt", "w").write("by name")\nimport os\nos.path.realpath("/home/user")')
      assert.equal(literal.error, undefined, literal.error?.traceback)
      assert.equal(literal.text, "'/workspace'")
      assert.equal(await sbx.files.read('literal.txt'), 'by name')
      const listed = await sbx.commands.run('cat /home/user/made.txt && cd /home/user && cat literal.txt')
      assert.equal(listed.stdout, 'from pythonby name')

      await assert.rejects(Sandbox.connect(sbx.sandboxId, { apiKey: e2b.keys.other! }), 'another tenant’s key does not reach it')
    } finally {
      await sbx.kill()
    }
    assert.equal(e2b.server.engine.find(sbx.sandboxId)?.status ?? 'gone', 'gone')
  })
})
