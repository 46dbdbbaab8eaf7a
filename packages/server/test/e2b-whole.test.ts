/**
 * The whole E2B front door on a real server (bwrap), reached the way an E2B user reaches it: the
 * unmodified `@e2b/code-interpreter` SDK (and `e2b` under it) with `E2B_API_URL` and
 * `E2B_SANDBOX_URL` set to codebox's URL and a codebox API key. One sandbox runs code with state
 * across calls and in a context of its own, streams stdout, runs a command, reads back a file that
 * code wrote, watches a directory, finds `/home/user` named literally by code and commands, and is killed; another tenant cannot reach it.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFile, unlink, writeFile } from 'node:fs/promises'
import path from 'node:path'
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

  test('every TypeScript example of docs/e2b.md runs unchanged with only the three variables set', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    const repo = path.resolve(import.meta.dirname, '../../..')
    const doc = await readFile(path.join(repo, 'docs/e2b.md'), 'utf8')
    const examples = [...doc.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!)
    const printed = [/^hi\nhello\n/m, /^the terminal printed 42$/m, /^adding\n\n42$/m]
    assert.equal(examples.length, printed.length)
    for (const [i, example] of examples.entries()) {
      // Beside the tests, so that `e2b` and `@e2b/code-interpreter` resolve as they do for a user.
      const file = path.join(repo, 'packages/server/test', `e2b-doc-example-${process.pid}-${i}.ts`)
      await writeFile(file, example)
      try {
        const env = { ...process.env, E2B_API_URL: e2b.server.url, E2B_SANDBOX_URL: e2b.server.url, E2B_API_KEY: e2b.keys.acme! }
        const child = spawn(process.execPath, [file], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'], env })
        const stuck = setTimeout(() => child.kill('SIGKILL'), 60_000)
        let out = ''
        child.stdout.on('data', (c: Buffer) => (out += c.toString()))
        child.stderr.on('data', (c: Buffer) => (out += c.toString()))
        const [code] = (await once(child, 'exit')) as [number | null]
        clearTimeout(stuck)
        assert.equal(code, 0, `example ${i + 1}:\n${out}`)
        assert.match(out, printed[i]!, `example ${i + 1} printed ${out}`)
      } finally {
        await unlink(file)
      }
    }
    assert.deepEqual(await e2b.server.sessions.activeRecords({ tenant: 'acme' }), [], 'each example killed its sandbox')
  })
})
