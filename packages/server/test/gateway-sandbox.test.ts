/**
 * The model gateway from inside real bwrap sandboxes: a session started with `gateway` (no other
 * egress) reaches a scripted Anthropic upstream on 127.0.0.1 with Python's urllib and Node's
 * fetch at `$ANTHROPIC_BASE_URL` (the gateway's loopback port), with Node's HTTP/2 client (prior
 * knowledge, as the AWS SDK for JavaScript speaks), and through the proxy by the name
 * `codebox-gateway`, through the executor's relay and its egress listener; the
 * upstream gets the operator's key, never the one the agent sent; no process in the sandbox has
 * the key in its environment; usage is counted for the session and its tag. CONNECT to the
 * gateway is refused, and a session without the gateway cannot use it. Loopback only.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { EgressService, SessionManager, type Session } from '@codebox/sandbox'
import { ModelGateway } from '../src/services/gateway.ts'
import { bwrapDriver, bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { sh } from '../../sandbox/test/security/probe.ts'

const unavailable = await bwrapUnavailable()
const operatorKey = 'sk-ant-OPERATOR-SANDBOX-SECRET-9f8e7d'

describe('model gateway from a bwrap sandbox', { skip: unavailable ?? false }, () => {
  const seen: { url: string; key: unknown; auth: unknown }[] = []
  let upstream: http.Server
  let gateway: ModelGateway
  let egress: EgressService
  let m: SessionManager
  let withGateway: Session
  let without: Session

  before(async () => {
    upstream = http.createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        seen.push({ url: req.url ?? '', key: req.headers['x-api-key'], auth: req.headers.authorization })
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write(`event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { usage: { input_tokens: 21, output_tokens: 1 } } })}\n\n`)
        res.write(`event: message_delta\ndata: ${JSON.stringify({ type: 'message_delta', usage: { output_tokens: 8 } })}\n\n`)
        res.end('event: message_stop\ndata: {"type":"message_stop"}\n\n')
      })
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
    gateway = new ModelGateway({
      config: { anthropic: { url, apiKey: operatorKey }, openai: { url }, bedrock: {}, maxBodyBytes: 1024 * 1024, timeoutMs: 30_000 },
    })
    egress = new EgressService({ gateway: gateway.handler })
    m = new SessionManager({ driver: await bwrapDriver(), poolSize: 0, egress })
    withGateway = await m.start({ gateway: { tag: 'rt-sandbox' }, preload: [] })
    without = await m.start({ egress: { mode: 'public', allow: [] }, preload: [] })
  })

  after(async () => {
    await m?.close()
    gateway?.close()
    upstream?.closeAllConnections()
    upstream?.close()
  })

  test('Python urllib and Node fetch reach the model through the gateway with the operator key, sent keys replaced', async () => {
    const r = await sh(
      withGateway,
      `python3 - <<'EOF'
import json, os, urllib.request
req = urllib.request.Request(os.environ['ANTHROPIC_BASE_URL'] + '/v1/messages', data=b'{"model":"m","max_tokens":5,"stream":true,"messages":[]}',
    headers={'x-api-key': 'agent-own-key', 'anthropic-version': '2023-06-01', 'content-type': 'application/json'})
print(urllib.request.urlopen(req, timeout=20).read().decode().count('event:'))
EOF
/usr/local/bin/node -e "
fetch(process.env.ANTHROPIC_BASE_URL + '/v1/messages', { method: 'POST', headers: { 'x-api-key': 'node-own-key', 'content-type': 'application/json' }, body: '{}' })
  .then(async (r) => console.log(r.status, (await r.text()).includes('message_stop')))
  .catch((e) => { console.error(e); process.exit(3) })"`,
    )
    assert.equal(r.exitCode, 0, r.stderr)
    assert.deepEqual(r.stdout.trim().split('\n'), ['3', '200 true'])
    assert.deepEqual(
      seen.slice(-2).map((s) => [s.url, s.key, s.auth]),
      [
        ['/v1/messages', operatorKey, undefined],
        ['/v1/messages', operatorKey, undefined],
      ],
    )
    const usage = gateway.usage(withGateway.id)
    assert.equal(usage?.tag, 'rt-sandbox')
    assert.deepEqual([usage?.total.requests, usage?.total.errors, usage?.total.inputTokens, usage?.total.outputTokens], [2, 0, 42, 16])
  })

  test('HTTP/2 with prior knowledge on the loopback port, and HTTP/1.1 by the name codebox-gateway through the proxy, reach it too', async () => {
    const before = seen.length
    const r = await sh(
      withGateway,
      `/usr/local/bin/node -e "
const http2 = require('node:http2')
const c = http2.connect('http://127.0.0.1:3129')
c.on('error', (e) => { console.error(e); process.exit(3) })
const q = c.request({ ':method': 'POST', ':path': '/anthropic/v1/messages', 'x-api-key': 'h2-own-key', 'content-type': 'application/json' })
let body = ''
q.on('response', (h) => console.log(h[':status'], h['content-type']))
q.on('data', (d) => (body += d))
q.on('end', () => { console.log(body.includes('message_stop')); c.close() })
q.end('{}')"
python3 - <<'EOF'
import urllib.request
req = urllib.request.Request('http://codebox-gateway/anthropic/v1/messages', data=b'{}', headers={'x-api-key': 'proxied-own-key'})
print(urllib.request.urlopen(req, timeout=20).status)
EOF`,
    )
    assert.equal(r.exitCode, 0, r.stderr)
    assert.deepEqual(r.stdout.trim().split('\n'), ['200 text/event-stream', 'true', '200'])
    assert.deepEqual(
      seen.slice(before).map((s) => [s.url, s.key]),
      [
        ['/v1/messages', operatorKey],
        ['/v1/messages', operatorKey],
      ],
    )
  })

  test('the sandbox has the gateway variables and placeholders, and no process holds the key', async () => {
    const r = await sh(
      withGateway,
      `for v in ANTHROPIC_BASE_URL OPENAI_BASE_URL AWS_ENDPOINT_URL_BEDROCK_RUNTIME AWS_ENDPOINT_URL_BEDROCK_AGENTCORE CODEBOX_URL AWS_ACCESS_KEY_ID ANTHROPIC_API_KEY NO_PROXY; do echo "$v=$(printenv $v)"; done
S=OPERATOR-SANDBOX; S="$S-SECRET"
cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c -F "$S" || true
grep -r -l -F "$S" /workspace /tmp /run 2>/dev/null | head -1
echo end`,
    )
    assert.equal(r.exitCode, 0, r.stderr)
    assert.deepEqual(r.stdout.trim().split('\n'), [
      'ANTHROPIC_BASE_URL=http://127.0.0.1:3129/anthropic',
      'OPENAI_BASE_URL=http://127.0.0.1:3129/openai/v1',
      'AWS_ENDPOINT_URL_BEDROCK_RUNTIME=http://127.0.0.1:3129/bedrock',
      'AWS_ENDPOINT_URL_BEDROCK_AGENTCORE=http://127.0.0.1:3129/agentcore',
      'CODEBOX_URL=http://127.0.0.1:3129/codebox',
      'AWS_ACCESS_KEY_ID=codebox-gateway',
      'ANTHROPIC_API_KEY=codebox-gateway',
      'NO_PROXY=localhost,127.0.0.1',
      '0',
      'end',
    ])
  })

  test('CONNECT to the gateway is refused; other destinations are refused too (no egress but the gateway)', async () => {
    const r = await sh(
      withGateway,
      `curl -sS -o /dev/null https://codebox-gateway/anthropic/v1/messages 2>&1 | head -1
curl -sS http://example.com/ | head -1`,
    )
    assert.match(r.stdout, /CONNECT tunnel failed, response 400/)
    assert.match(r.stdout, /codebox egress: this session has no network egress; only the model gateway/)
  })

  test('a session without the gateway cannot use it', async () => {
    const before = seen.length
    const r = await sh(
      without,
      `python3 - <<'EOF'
import urllib.request, urllib.error
try:
    urllib.request.urlopen(urllib.request.Request('http://codebox-gateway/anthropic/v1/messages', data=b'{}'), timeout=20)
    print('reached')
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode().strip())
EOF
printenv ANTHROPIC_BASE_URL || echo unset
curl -sS -m 5 http://127.0.0.1:3129/anthropic/v1/messages 2>&1 | grep -c -i 'connect' || true`,
    )
    assert.equal(r.exitCode, 0, r.stderr)
    assert.deepEqual(r.stdout.trim().split('\n'), ['403 codebox egress: the model gateway (codebox-gateway) is not enabled for this session', 'unset', '1'])
    assert.equal(seen.length, before)
  })
})
