/**
 * HTTP into a hosted agent over a byte stream (services/runtime-http.ts), against loopback
 * stand-ins for an agent: the runtime contract's /ping in each shape an agent may answer, an
 * exchange whose streamed answer arrives as it is written, and the bounds (a silent agent, a
 * huge /ping, a port where nothing listens).
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { test } from 'node:test'
import { exchange, ping, readBody, type PortConnector } from '../src/services/runtime-http.ts'

async function agent(t: { after(fn: () => unknown): void }, handler: http.RequestListener): Promise<PortConnector> {
  const server = http.createServer(handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.after(() => {
    server.closeAllConnections()
    server.close()
  })
  const port = (server.address() as AddressInfo).port
  return async () => net.connect(port, '127.0.0.1')
}

test('/ping: Healthy and HealthyBusy are read; anything else is unhealthy with why', async (t) => {
  const answers: [number, string][] = [
    [200, '{"status": "Healthy", "time_of_last_update": 1700000000}'],
    [200, '{"status": "HealthyBusy"}'],
    [200, 'not json'],
    [200, '{"status": "Sleeping"}'],
    [503, '{"status": "Healthy"}'],
    [200, 'x'.repeat(10_000)],
  ]
  let i = 0
  const connect = await agent(t, (_req, res) => {
    const [code, body] = answers[i++]!
    res.writeHead(code, { 'content-type': 'application/json' }).end(body)
  })
  assert.deepEqual(await ping(connect, 2000), { status: 'Healthy', timeOfLastUpdate: 1700000000 })
  assert.deepEqual(await ping(connect, 2000), { status: 'HealthyBusy' })
  assert.deepEqual(await ping(connect, 2000), { status: 'unhealthy', reason: 'GET /ping answered something that is not JSON' })
  assert.deepEqual(await ping(connect, 2000), { status: 'unhealthy', reason: 'GET /ping answered status "Sleeping", not Healthy or HealthyBusy' })
  assert.deepEqual(await ping(connect, 2000), { status: 'unhealthy', reason: 'GET /ping answered 503' })
  assert.deepEqual(await ping(connect, 2000), { status: 'unhealthy', reason: "the agent's answer is over 4096 bytes" })
})

test('/ping where nothing listens, or an agent that never answers: unhealthy, within the timeout', async (t) => {
  const closed = net.createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const port = (closed.address() as AddressInfo).port
  await new Promise<void>((resolve) => closed.close(() => resolve()))
  const refused = await ping(async () => net.connect(port, '127.0.0.1'), 2000)
  assert.equal(refused.status, 'unhealthy')
  assert.match((refused as { reason: string }).reason, /ECONNREFUSED/)

  const silent = await agent(t, () => {})
  const started = Date.now()
  const r = await ping(silent, 300)
  assert.deepEqual(r, { status: 'unhealthy', reason: 'the agent did not answer GET /ping within 300 ms' })
  assert.ok(Date.now() - started < 2000)

  const failing = await ping(async () => Promise.reject(new Error('no relay')), 300)
  assert.equal(failing.status, 'unhealthy')
  assert.match((failing as { reason: string }).reason, /no relay/)
})

test('an exchange sends the body and headers, and the streamed answer arrives as the agent writes it', async (t) => {
  let release: () => void = () => {}
  const connect = await agent(t, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'x-seen': `${req.headers['x-amzn-bedrock-agentcore-runtime-session-id']}` })
      res.write(`data: ${Buffer.concat(chunks).length}\n\n`)
      release = () => res.end('data: done\n\n')
    })
  })
  const body = Buffer.alloc(3 * 1024 * 1024, 7)
  const res = await exchange(connect, {
    method: 'POST',
    path: '/invocations',
    headers: { 'content-type': 'application/json', 'x-amzn-bedrock-agentcore-runtime-session-id': 's-1' },
    body,
    headTimeoutMs: 5000,
  })
  assert.equal(res.statusCode, 200)
  assert.equal(res.headers['x-seen'], 's-1')
  const first = await new Promise<string>((resolve) => res.once('data', (c: Buffer) => resolve(c.toString())))
  assert.equal(first, `data: ${body.length}\n\n`, 'the first event arrived before the agent ended its answer')
  release()
  assert.equal((await readBody(res, 1000)).toString(), 'data: done\n\n')
})
