/**
 * The oldest E2B SDKs that honour E2B_SANDBOX_URL, unmodified, against a real codebox (bwrap):
 * `e2b` 2.7.0 (installed as `e2b-2-7`; it creates at `POST /sandboxes`, connects at
 * `/sandboxes/{id}/connect`, uploads one multipart part per file and uses Connect 2.0.0-rc.3) and
 * `@e2b/code-interpreter` 2.7.0 (as `e2b-code-interpreter-2-7`). The current SDKs are tested in
 * e2b-sdk.test.ts and e2b-code.test.ts; these check that a program written against the old ones
 * moves with the same three variables.
 */
import assert from 'node:assert/strict'
import { createHmac } from 'node:crypto'
import { describe, test } from 'node:test'
import { Sandbox } from 'e2b-2-7'
import { Sandbox as CodeSandbox } from 'e2b-code-interpreter-2-7'
import { e2bServer } from './e2b-fixtures.ts'

describe('the oldest E2B SDKs (2.7.0) against codebox', () => {
  const e2b = e2bServer({ name: 'e2b-old', tenants: ['acme'], env: { CODEBOX_POOL_SIZE: '0' } })

  test('e2b 2.7.0: create, files, commands with stdin, timeout, info, list, connect, kill', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    const sbx = await Sandbox.create({ apiKey: e2b.keys.acme, metadata: { sdk: '2.7' }, envs: { OLD_SDK: 'yes' } })
    try {
      assert.equal(e2b.server.engine.find(sbx.sandboxId)?.status, 'ready', 'a codebox session')
      await sbx.files.write('old.txt', 'from 2.7')
      assert.equal(await sbx.files.read('/home/user/old.txt'), 'from 2.7')
      assert.equal(await sbx.files.exists('old.txt'), true)
      assert.equal(await sbx.files.makeDir('dir'), true)
      await sbx.files.rename('old.txt', 'dir/moved.txt')
      assert.deepEqual(
        (await sbx.files.list('dir')).map((e) => [e.name, e.type, e.path]),
        [['moved.txt', 'file', '/home/user/dir/moved.txt']],
      )
      const run = await sbx.commands.run('cat dir/moved.txt; echo " $OLD_SDK"; echo err >&2')
      assert.deepEqual([run.exitCode, run.stdout, run.stderr], [0, 'from 2.7 yes\n', 'err\n'])
      await assert.rejects(sbx.commands.run('exit 4'), (e: { exitCode?: number }) => e.exitCode === 4)

      const out: string[] = []
      const cat = await sbx.commands.run('cat', { background: true, stdin: true, onStdout: (d) => void out.push(d) })
      await sbx.commands.sendStdin(cat.pid, 'typed in\n')
      for (let i = 0; i < 50 && !out.join('').includes('typed in'); i++) await new Promise((r) => setTimeout(r, 100))
      assert.equal(out.join(''), 'typed in\n')
      assert.ok((await sbx.commands.list()).some((p) => p.pid === cat.pid))
      assert.equal(await sbx.commands.kill(cat.pid), true)

      await sbx.setTimeout(120_000)
      const info = await sbx.getInfo()
      assert.equal(info.sandboxId, sbx.sandboxId)
      assert.deepEqual(info.metadata, { sdk: '2.7' })
      const left = new Date(info.endAt).getTime() - Date.now()
      assert.ok(left > 100_000 && left <= 121_000, `setTimeout moved the end: ${left} ms left`)
      const listed = await Sandbox.list({ apiKey: e2b.keys.acme, query: { metadata: { sdk: '2.7' } } }).nextItems()
      assert.deepEqual(
        listed.map((s) => s.sandboxId),
        [sbx.sandboxId],
      )
      const again = await Sandbox.connect(sbx.sandboxId, { apiKey: e2b.keys.acme })
      assert.equal(await again.files.read('dir/moved.txt'), 'from 2.7')
    } finally {
      await sbx.kill()
    }
    assert.equal(await Sandbox.kill(sbx.sandboxId, { apiKey: e2b.keys.acme }), false, 'a killed sandbox is gone')
  })

  test('envd /files without the sandbox headers (e2b 2.7.0 to 2.14.0) goes by the access token, which names its sandbox; a bare MAC token of an older server still works', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    const sbx = await Sandbox.create({ apiKey: e2b.keys.acme })
    const other = await Sandbox.create({ apiKey: (await e2b.server.store.keys.create({ tenant: 'other' })).secret })
    try {
      await sbx.files.write('mine.txt', 'acme only')
      const token = (sbx as unknown as { envdAccessToken: string }).envdAccessToken
      assert.ok(token.startsWith(`${sbx.sandboxId}.`), 'the token names its sandbox')
      const read = (headers: Record<string, string>): Promise<Response> => fetch(`${e2b.server.url}/files?path=mine.txt`, { headers })
      const own = await read({ 'X-Access-Token': token })
      assert.equal(own.status, 200)
      assert.equal(await own.text(), 'acme only')
      const forged = `${sbx.sandboxId}.${token.split('.')[1]!.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'))}`
      assert.equal((await read({ 'X-Access-Token': forged })).status, 502, 'a token that is not the sandbox’s reaches nothing')
      const otherToken = (other as unknown as { envdAccessToken: string }).envdAccessToken
      const renamed = `${sbx.sandboxId}.${otherToken.split('.')[1]}`
      assert.equal((await read({ 'X-Access-Token': renamed })).status, 502, 'another sandbox’s MAC under this id reaches nothing')
      assert.equal((await read({ 'X-Access-Token': otherToken })).status, 404, 'the other sandbox’s own token reads its own workspace')
      assert.equal((await fetch(`${e2b.server.url}/health`, { headers: { 'X-Access-Token': token } })).status, 204)

      const legacy = createHmac('sha256', e2b.server.store.deriveKey('e2b envd access token v1')).update(`acme\0${sbx.sandboxId}`).digest('base64url')
      const withHeaders = await read({ 'X-Access-Token': legacy, 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49983' })
      assert.equal(withHeaders.status, 200, 'a token from before the id prefix, with the headers')
      assert.equal((await read({ 'X-Access-Token': legacy })).status, 404, 'without the headers a bare MAC names no sandbox: not envd traffic')
    } finally {
      await sbx.kill()
      await other.kill()
    }
  })

  test('@e2b/code-interpreter 2.7.0: runCode with state, contexts, errors, streamed output', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    const sbx = await CodeSandbox.create({ apiKey: e2b.keys.acme })
    try {
      await sbx.runCode('x = 20')
      const printed: string[] = []
      const run = await sbx.runCode('print("hi")\nx * 2 + 2', { onStdout: (m) => void printed.push(m.line) })
      assert.equal(run.text, '42')
      assert.deepEqual(printed, ['hi\n'])
      const js = await sbx.runCode('[1, 2, 3].map((n) => n * 2)', { language: 'js' })
      assert.equal(js.error, undefined)
      assert.deepEqual(js.results[0]?.json, [2, 4, 6], 'a JavaScript value comes back as json')
      const ctx = await sbx.createCodeContext({ language: 'python', cwd: '/home/user' })
      const apart = await sbx.runCode('x', { context: ctx })
      assert.equal(apart.error?.name, 'NameError')
      assert.match(apart.error?.traceback ?? '', /NameError/)
    } finally {
      await sbx.kill()
    }
  })
})
