/**
 * The model gateway's internal route (`/internal/gateway/...`), which the cluster's egress proxy
 * relays sandbox pods' requests to: a request signed for a pod's identity is served by the same
 * gateway as on one host (the operator's key added, the sandbox's dropped, the answer streamed,
 * usage kept for the session and its tag; a hosted agent's own API reached through this server's
 * router as its tenant); a request without a signature, with a forged, expired
 * or re-targeted one, or with only an API key, is 403 and reaches no upstream; a server without a
 * shared sealing key refuses the route altogether.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { gatewayRelayKey, signGatewayRelay, type GatewayIdentity } from '@codebox/sandbox'
import { agentApiHandler } from '../src/http/agent-api.ts'
import { testServer, type TestServer } from './fixtures.ts'

const operatorKey = 'sk-ant-OPERATOR-RELAY-SECRET-7'
const key = gatewayRelayKey(Buffer.alloc(32, 5))
const identity: GatewayIdentity = { sandboxId: 'sbx1', sessionId: 'sess1', tag: 'rt-relay' }
const path = '/internal/gateway/anthropic/v1/messages'
const body = '{"model":"m","stream":true}'

describe('the gateway relay route', () => {
  let upstream: http.Server
  let server: TestServer
  const keysSeen: unknown[] = []

  before(async () => {
    upstream = http.createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        keysSeen.push(req.headers['x-api-key'])
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write(`event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { usage: { input_tokens: 7, output_tokens: 1 } } })}\n\n`)
        setTimeout(() => res.end(`event: message_delta\ndata: ${JSON.stringify({ type: 'message_delta', usage: { output_tokens: 3 } })}\n\n`), 50)
      })
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    server = await testServer(undefined, {
      loopbackOnly: false,
      gatewayRelayKey: key,
      env: { ANTHROPIC_API_KEY: operatorKey, CODEBOX_GATEWAY_ANTHROPIC_URL: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}` },
    })
  })

  after(async () => {
    await server?.close()
    upstream?.closeAllConnections()
    upstream?.close()
  })

  const post = (headers: Record<string, string>, at = path, host?: string, json = body): Promise<{ status: number; text: string }> =>
    new Promise((resolve, reject) => {
      const url = new URL(server.url)
      const req = http.request(
        {
          host: url.hostname,
          port: url.port,
          method: 'POST',
          path: at,
          headers: { 'content-type': 'application/json', ...(host ? { host } : {}), ...headers },
        },
        (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (d: string) => (text += d))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }))
        },
      )
      req.on('error', reject)
      req.end(json)
    })

  test("a signed request is the gateway's: the operator's key upstream, the answer streamed, usage for the session and tag", async () => {
    // As the proxy sends it: on the API's Service name (no Host check applies), with the sandbox's own key (dropped).
    const r = await post({ ...signGatewayRelay(key, { method: 'POST', path, identity }), 'x-api-key': 'sandbox-made-up' }, path, 'codebox-api.codebox.svc:8080')
    assert.equal(r.status, 200, r.text)
    assert.match(r.text, /message_start[\s\S]*message_delta/)
    assert.deepEqual(keysSeen, [operatorKey])
    const usage = server.gateway.usage('sess1')
    assert.equal(usage?.tag, 'rt-relay')
    assert.equal(usage?.total.inputTokens, 7)
    assert.equal(usage?.total.outputTokens, 3)
  })

  test("a hosted agent's own API through the relay is this server's router, as its tenant", async () => {
    // The session of `identity` stands for a hosted agent's (its record would name the runtime).
    server.gateway.useLocalApis(
      agentApiHandler(server.app, { hostedOwner: async (sessionId) => (sessionId === 'sess1' ? { tenant: 'acme', runtimeId: 'rt-relay' } : undefined) }),
    )
    const at = '/internal/gateway/codebox/v1/sessions'
    const started = await post(signGatewayRelay(key, { method: 'POST', path: at, identity }), at, undefined, '{"name":"agent-work"}')
    assert.equal(started.status, 201, started.text)
    const sessionId = (JSON.parse(started.text) as { sessionId: string }).sessionId
    const listed = await server.sessions.list({ tenant: 'acme' }, { limit: 100 })
    assert.ok(
      listed.items.some((s) => s.sessionId === sessionId),
      'started as the runtime tenant',
    )
    const other = await post(signGatewayRelay(key, { method: 'POST', path: at, identity: { sandboxId: 'sbx2', sessionId: 'sess2' } }), at, undefined, '{}')
    assert.equal(other.status, 403, 'not a hosted agent: no own API')
    await server.sessions.stop({ tenant: 'acme' }, sessionId)
  })

  test('unsigned, forged, expired, re-targeted and API-key-only requests are 403 and reach no upstream', async () => {
    const apiKey = await server.store.keys.create({ tenant: 'acme' })
    const before = keysSeen.length
    const signed = (o: { nowMs?: number; method?: string; path?: string; id?: GatewayIdentity; k?: Buffer } = {}): Record<string, string> =>
      signGatewayRelay(o.k ?? key, { method: o.method ?? 'POST', path: o.path ?? path, identity: o.id ?? identity, ...(o.nowMs ? { nowMs: o.nowMs } : {}) })
    const tampered = { ...signed(), 'x-codebox-gateway-identity': Buffer.from(JSON.stringify({ ...identity, sessionId: 'other' })).toString('base64url') }
    const cases: [string, Record<string, string>, RegExp][] = [
      ['no signature', {}, /carries no relay signature/],
      ['an API key only', { authorization: `Bearer ${apiKey.secret}` }, /carries no relay signature/],
      ['another key', signed({ k: gatewayRelayKey(Buffer.alloc(32, 6)) }), /does not match/],
      ['expired', signed({ nowMs: Date.now() - 120_000 }), /not within 60 s/],
      ['from the future', signed({ nowMs: Date.now() + 120_000 }), /not within 60 s/],
      ['another path', signed({ path: '/internal/gateway/openai/v1/chat/completions' }), /does not match/],
      ['another method', signed({ method: 'GET' }), /does not match/],
      ['a changed identity', tampered, /does not match/],
    ]
    for (const [what, headers, reason] of cases) {
      const r = await post(headers)
      assert.equal(r.status, 403, what)
      const error = (JSON.parse(r.text) as { error: { code: string; message: string } }).error
      assert.equal(error.code, 'Forbidden', what)
      assert.match(error.message, reason, what)
      assert.ok(!r.text.includes(operatorKey), what)
    }
    assert.equal(keysSeen.length, before, 'no refused request went upstream')
  })
})

test('without a shared sealing key (a SQLite store) the route refuses everything', async (t) => {
  const server = await testServer(t)
  const r = await server.call('POST', path, { headers: signGatewayRelay(key, { method: 'POST', path, identity }), json: {} })
  assert.equal(r.status, 403)
  assert.match(((await r.json()) as { error: { message: string } }).error.message, /no shared sealing key/)
})
