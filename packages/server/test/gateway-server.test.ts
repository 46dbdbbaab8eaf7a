/**
 * The model gateway as `codebox serve` wires it (serve.ts: the gateway handed to the engine's
 * egress service, its usage in /metrics), across a restart: a session started with the gateway
 * (SessionService.start with `gateway`) reaches a scripted Anthropic upstream on 127.0.0.1 from
 * its bwrap sandbox with the operator key from the server's environment; the server is closed
 * with the sandbox left running, the next server re-adopts the session, and its listener serves
 * the gateway again. Loopback only.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { loadServerConfig, startServer, type RunningServer } from '@codebox/server'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { sh } from '../../sandbox/test/security/probe.ts'
import { builtInInterpreterId } from '../src/store/index.ts'
import { imageStateDir } from './fixtures.ts'

const unavailable = await bwrapUnavailable()
const operatorKey = 'sk-ant-OPERATOR-SERVE-SECRET-42'

const callModel = `python3 - <<'EOF'
import os, urllib.request
req = urllib.request.Request(os.environ['ANTHROPIC_BASE_URL'] + '/v1/messages', data=b'{"model":"m"}', headers={'x-api-key': 'mine'})
print(urllib.request.urlopen(req, timeout=20).read().decode())
EOF`

test('a gateway session of a real server reaches its model, and again after a restart', { skip: unavailable ?? false }, async () => {
  const keysSeen: unknown[] = []
  const upstream = http.createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      keysSeen.push(req.headers['x-api-key'])
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ id: 'msg', content: [{ type: 'text', text: 'pong' }], usage: { input_tokens: 21, output_tokens: 4 } }))
    })
  })
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
  const parent = await mkdtemp(path.join(tmpdir(), 'codebox-gateway-serve-'))
  const stateDir = await imageStateDir(parent)
  const env = {
    ...process.env,
    CODEBOX_STATE_DIR: stateDir,
    CODEBOX_LOG_LEVEL: 'silent',
    CODEBOX_POOL_SIZE: '0',
    CODEBOX_PRELOAD: '',
    CODEBOX_PORT: '0',
    ANTHROPIC_API_KEY: operatorKey,
    CODEBOX_GATEWAY_ANTHROPIC_URL: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`,
  }
  let server: RunningServer | undefined
  try {
    server = await startServer(loadServerConfig(env))
    const { info } = await server.sessions.start({ tenant: 'default' }, { interpreterId: builtInInterpreterId, gateway: { tag: 'rt-serve' } })
    const first = await sh(server.engine.get(info.sessionId), callModel)
    assert.equal(first.exitCode, 0, first.stderr)
    assert.match(first.stdout, /pong/)
    assert.deepEqual(keysSeen, [operatorKey])
    const metrics = await (await fetch(`${server.url}/metrics`)).text()
    assert.match(metrics, /^codebox_gateway_tokens_total\{provider="anthropic",runtime="rt-serve",direction="input"\} 21$/m)
    assert.match(metrics, /^codebox_gateway_requests_total\{provider="anthropic",runtime="rt-serve"\} 1$/m)
    assert.ok(!metrics.includes(operatorKey))

    await server.close({ detach: true })
    server = await startServer(loadServerConfig(env))
    assert.deepEqual(server.adopted, [info.sessionId])
    const again = await sh(server.engine.get(info.sessionId), callModel)
    assert.equal(again.exitCode, 0, again.stderr)
    assert.match(again.stdout, /pong/)
    assert.deepEqual(keysSeen, [operatorKey, operatorKey])
    assert.deepEqual(server.gateway.usage(info.sessionId)?.tag, 'rt-serve')
  } finally {
    await server?.close()
    upstream.closeAllConnections()
    upstream.close()
    await rm(parent, { recursive: true, force: true })
  }
})
