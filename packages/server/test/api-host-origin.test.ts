/**
 * The browser guard on an open server (no keys, loopback): a DNS-rebinding Host or a cross-site
 * Origin is refused before any route — /v1, /mcp, the /v1/ws upgrade and the AgentCore paths —
 * while loopback names, the server's own origin and the configured allow-lists pass.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { describe, test } from 'node:test'
import { testServer, type TestServer } from './fixtures.ts'

interface RawResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
  /** True when the server switched protocols (a WebSocket upgrade was accepted). */
  upgraded: boolean
}

/** One raw HTTP request, with whatever Host and Origin headers a browser page could make it send. */
function raw(server: TestServer, method: string, urlPath: string, headers: Record<string, string>, body?: string): Promise<RawResponse> {
  const { port } = new URL(server.url)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers, setHost: headers.host === undefined, timeout: 10_000 })
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)))
    req.on('error', reject)
    req.on('upgrade', (res, socket) => {
      socket.destroy()
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: '', upgraded: true })
    })
    req.on('response', (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), upgraded: false }))
      res.on('error', reject)
    })
    req.end(body)
  })
}

const wsHeaders = { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' }
const mcpInitialize = JSON.stringify({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'page', version: '1' } },
})
const mcpHeaders = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }

/** Asserts the codebox 403 naming the refused header value. */
function assertRefused(res: RawResponse, named: string): void {
  assert.equal(res.status, 403, `expected 403, got ${res.status} ${res.body}`)
  assert.equal(res.upgraded, false)
  const body = JSON.parse(res.body) as { error: { code: string; message: string; details: Record<string, unknown> } }
  assert.equal(body.error.code, 'Forbidden')
  assert.ok(body.error.message.includes(named), body.error.message)
}

describe('Host and Origin on an open server', () => {
  test('a DNS-rebinding Host is refused on /v1, /mcp, the /v1/ws upgrade and the AgentCore paths, and nothing runs', async (t) => {
    const server = await testServer(t)
    const evil = { host: 'evil.example:8080' }
    assertRefused(await raw(server, 'POST', '/v1/sessions', { ...evil, 'content-type': 'application/json' }, '{}'), 'evil.example:8080')
    assertRefused(await raw(server, 'GET', '/v1/sessions', evil), 'evil.example')
    assertRefused(await raw(server, 'POST', '/mcp', { ...evil, ...mcpHeaders }, mcpInitialize), 'evil.example')
    assertRefused(await raw(server, 'GET', '/v1/ws', { ...evil, ...wsHeaders }), 'evil.example')
    assertRefused(await raw(server, 'GET', '/no/such/route', evil), 'evil.example')
    const aws = await raw(server, 'PUT', '/code-interpreters/aws.codeinterpreter.v1/sessions/start', { ...evil, 'content-type': 'application/json' }, '{}')
    assert.equal(aws.status, 403, aws.body)
    assert.equal(aws.headers['x-amzn-errortype'], 'AccessDeniedException')
    assert.match((JSON.parse(aws.body) as { message: string }).message, /evil\.example/)
    // Refused before any route ran: no session was created.
    assert.equal(server.engine.list().length, 0)
    const listed = await raw(server, 'GET', '/v1/sessions', {})
    assert.equal(listed.status, 200)
    assert.deepEqual((JSON.parse(listed.body) as { items: unknown[] }).items, [])
  })

  test('a cross-site or null Origin is refused for POST, /mcp and the WebSocket; the own origin and no Origin pass', async (t) => {
    const server = await testServer(t)
    const host = new URL(server.url).host
    for (const origin of ['https://evil.example', 'null', `http://evil.example:${new URL(server.url).port}`, 'http://localhost:1']) {
      assertRefused(await raw(server, 'POST', '/v1/sessions', { host, origin, 'content-type': 'application/json' }, '{}'), origin)
      assertRefused(await raw(server, 'GET', '/v1/ws', { host, origin, ...wsHeaders }), origin)
      assertRefused(await raw(server, 'POST', '/mcp', { host, origin, ...mcpHeaders }, mcpInitialize), origin)
    }
    assert.equal(server.engine.list().length, 0)
    // The server's own origin (a page it served) and a client that sends no Origin are accepted.
    const own = await raw(server, 'GET', '/v1/ws', { host, origin: server.url, ...wsHeaders })
    assert.equal(own.upgraded, true, `the own origin's upgrade: ${own.status} ${own.body}`)
    assert.equal((await raw(server, 'GET', '/v1/ws', { host, ...wsHeaders })).upgraded, true)
    for (const name of ['localhost', 'app.localhost', '[::1]', '127.0.0.1']) {
      assert.equal((await raw(server, 'GET', '/ping', { host: `${name}:9999` })).status, 200, name)
    }
    assert.equal((await raw(server, 'GET', '/ping', { host: 'localhost:9999', origin: 'http://localhost:9999' })).status, 200)
  })

  test('hosts and origins from CODEBOX_ALLOWED_HOSTS and CODEBOX_ALLOWED_ORIGINS are accepted, others still refused', async (t) => {
    const server = await testServer(t, {
      env: { CODEBOX_ALLOWED_HOSTS: 'codebox.internal, *.corp.example,proxy.example:8443', CODEBOX_ALLOWED_ORIGINS: 'https://ide.example.com' },
    })
    const created = await raw(
      server,
      'POST',
      '/v1/sessions',
      { host: 'codebox.internal:8080', origin: 'https://ide.example.com', 'content-type': 'application/json' },
      '{}',
    )
    assert.equal(created.status, 201, created.body)
    assert.equal((await raw(server, 'GET', '/ping', { host: 'a.corp.example' })).status, 200)
    assert.equal((await raw(server, 'GET', '/ping', { host: 'proxy.example:8443' })).status, 200)
    assertRefused(await raw(server, 'GET', '/ping', { host: 'proxy.example:8444' }), 'proxy.example:8444')
    assertRefused(await raw(server, 'GET', '/ping', { host: 'corp.example.evil.example' }), 'corp.example.evil.example')
    // Behind a TLS proxy the page's origin is https on the proxy's name: the server's own origin.
    assert.equal((await raw(server, 'GET', '/ping', { host: 'codebox.internal', origin: 'https://codebox.internal' })).status, 200)
    assert.equal((await raw(server, 'GET', '/ping', { host: 'codebox.internal:443', origin: 'https://codebox.internal' })).status, 200)
    // Another port of the same name is another origin.
    assertRefused(await raw(server, 'GET', '/ping', { host: 'codebox.internal:8080', origin: 'https://codebox.internal' }), 'https://codebox.internal')
    const ws = await raw(server, 'GET', '/v1/ws', { host: 'codebox.internal', origin: 'https://ide.example.com', ...wsHeaders })
    assert.equal(ws.upgraded, true)
    assertRefused(await raw(server, 'GET', '/v1/ws', { host: 'codebox.internal', origin: 'https://ide.example.com.evil.example', ...wsHeaders }), 'evil')
  })

  test('malformed allow-list entries are refused at start-up', async () => {
    await assert.rejects(testServer(undefined, { env: { CODEBOX_ALLOWED_ORIGINS: 'ide.example.com' } }), /CODEBOX_ALLOWED_ORIGINS/)
    await assert.rejects(testServer(undefined, { env: { CODEBOX_ALLOWED_HOSTS: 'a/b' } }), /CODEBOX_ALLOWED_HOSTS/)
  })
})
