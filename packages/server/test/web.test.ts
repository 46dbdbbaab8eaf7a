/**
 * The web IDE's routes: the page at `/` (no-cache, CSP), hashed assets under `/app/` (immutable),
 * nothing outside the build served, the front page of API links at `/about`, every other root
 * path left to its own route, and the session's `expiresAt` the IDE counts down.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { expectJson, startSession, testServer } from './fixtures.ts'

const indexHtml = '<!doctype html><html><head><script type="module" src="/app/index-AbCd1234.js"></script></head><body><div id="root"></div></body></html>'

/** A directory shaped like Vite's output. */
function fakeBuild(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-web-dist-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  fs.mkdirSync(path.join(dir, 'app'))
  fs.writeFileSync(path.join(dir, 'index.html'), indexHtml)
  fs.writeFileSync(path.join(dir, 'app', 'index-AbCd1234.js'), 'console.log(1)')
  fs.writeFileSync(path.join(dir, 'app', 'editor.worker-Zz9_yY8x.js'), 'self.onmessage = () => {}')
  fs.writeFileSync(path.join(dir, 'app', 'robots.txt'), 'not an asset type')
  fs.writeFileSync(path.join(dir, 'secret.json'), '{"not":"served"}')
  return dir
}

test('the IDE page is served at / with no-cache and a CSP that keeps everything on this origin', async (t) => {
  const s = await testServer(t, { env: { CODEBOX_WEB_DIR: fakeBuild(t) } })
  const res = await s.call('GET', '/')
  assert.equal(res.status, 200)
  assert.equal(await res.text(), indexHtml)
  assert.equal(res.headers.get('cache-control'), 'no-cache')
  const csp = res.headers.get('content-security-policy') ?? ''
  for (const directive of [
    "default-src 'self'",
    "script-src 'self'",
    "worker-src 'self'",
    "connect-src 'self'",
    "object-src 'none'",
    "frame-ancestors 'none'",
  ]) {
    assert.ok(csp.includes(directive), `CSP has ${directive}: ${csp}`)
  }
  assert.ok(!/unsafe-eval|https?:|\*/.test(csp), `CSP allows nothing from elsewhere: ${csp}`)
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff')
})

test('hashed assets are immutable; only files of the build under /app/ are served', async (t) => {
  const s = await testServer(t, { env: { CODEBOX_WEB_DIR: fakeBuild(t) } })
  const js = await s.call('GET', '/app/index-AbCd1234.js')
  assert.equal(js.status, 200)
  assert.equal(await js.text(), 'console.log(1)')
  assert.equal(js.headers.get('cache-control'), 'public, max-age=31536000, immutable')
  assert.match(js.headers.get('content-type') ?? '', /^text\/javascript/)
  const worker = await s.call('GET', '/app/editor.worker-Zz9_yY8x.js')
  assert.equal(worker.status, 200)
  for (const p of [
    '/app/missing-12345678.js',
    '/app/robots.txt',
    '/app/../secret.json',
    '/app/%2e%2e/secret.json',
    '/app/..%2fsecret.json',
    '/secret.json',
    '/index.html',
  ]) {
    const res = await s.call('GET', p)
    assert.equal(res.status, 404, `${p} is not served`)
    assert.ok(!(await res.text()).includes('"not":"served"'), p)
  }
})

test("the server's other root paths are never swallowed by the page", async (t) => {
  const s = await testServer(t, { env: { CODEBOX_WEB_DIR: fakeBuild(t) } })
  const ping = await expectJson<{ status: string }>(s.call('GET', '/ping'), 200)
  assert.equal(ping.status, 'Healthy')
  assert.equal((await expectJson<{ openapi: string }>(s.call('GET', '/openapi.json'), 200)).openapi.slice(0, 2), '3.')
  for (const p of [
    '/docs',
    '/metrics',
    '/v1/sessions',
    '/mcp',
    '/invocations',
    '/ws',
    '/.well-known/agent-card.json',
    '/code-interpreters',
    '/runtimes',
    '/a2a',
    '/v1/agent/status',
    '/nope',
  ]) {
    const res = await s.call('GET', p)
    const body = await res.text()
    assert.ok(!body.includes('<div id="root">'), `${p} answered by its own route (${res.status}), not the IDE page`)
  }
})

test('the front page of API links is at /about, and at / when the IDE is not built', async (t) => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-web-none-'))
  t.after(() => fs.rmSync(empty, { recursive: true, force: true }))
  const s = await testServer(t, { env: { CODEBOX_WEB_DIR: empty } })
  const root = await s.call('GET', '/')
  assert.equal(root.status, 200)
  const text = await root.text()
  assert.match(text, /href="\/docs"/)
  assert.match(text, /not built here/)
  const about = await (await s.call('GET', '/about')).text()
  assert.match(about, /AgentCore Code Interpreter API/)
  assert.match(about, /The codebox agent: <code>POST \/invocations<\/code>/)
  assert.match(about, /<code>\/v1\/agent<\/code> routes/)
})

test('a READY session says when it expires; an ended one does not', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s, { timeoutSeconds: 120 })
  const info = await expectJson<{ expiresAt?: string; lastUpdatedAt: string; status: string }>(s.call('GET', `/v1/sessions/${id}`), 200)
  assert.ok(info.expiresAt, 'READY has expiresAt')
  assert.equal(Date.parse(info.expiresAt) - Date.parse(info.lastUpdatedAt), 120_000)
  const stopped = await expectJson<{ expiresAt?: string; status: string }>(s.call('DELETE', `/v1/sessions/${id}`), 200)
  assert.equal(stopped.status, 'TERMINATED')
  assert.equal(stopped.expiresAt, undefined)
})
