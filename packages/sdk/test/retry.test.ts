import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CodeboxClient, CodeInterpreter, QuotaExceededError, RateLimitedError, UnavailableError } from '../src/index.ts'
import { sendError, sendJson, sessionInfo, startServer, toolResult } from './fake-server.ts'

type Res = Parameters<typeof sendJson>[0]

/** Answers the first `failures` requests with `fail`, then with `ok`. */
function failThen(failures: number, fail: (res: Res) => void, ok: (res: Res) => void): (req: unknown, res: Res) => void {
  let seen = 0
  return (_req, res) => (seen++ < failures ? fail(res) : ok(res))
}

test('a GET answered 503 is retried, then succeeds', async () => {
  await using server = await startServer(
    failThen(
      2,
      (res) => sendError(res, 503, 'Unavailable', 'warming up'),
      (res) => sendJson(res, 200, sessionInfo('s1')),
    ),
  )
  const info = await new CodeboxClient({ baseUrl: server.url }).sessions.get('s1')
  assert.equal(info.sessionId, 's1')
  assert.equal(server.requests.length, 3)
  assert.ok(server.requests.every((r) => r.method === 'GET' && r.url === '/v1/sessions/s1'))
})

test('retries stop after maxRetries and throw the last error', async () => {
  await using server = await startServer((_req, res) => sendError(res, 502, 'Unavailable', 'down'))
  await assert.rejects(new CodeboxClient({ baseUrl: server.url, maxRetries: 1 }).ping(), UnavailableError)
  assert.equal(server.requests.length, 2)
})

test('maxRetries 0 sends once', async () => {
  await using server = await startServer((_req, res) => sendError(res, 503, 'Unavailable', 'down'))
  await assert.rejects(new CodeboxClient({ baseUrl: server.url, maxRetries: 0 }).ping(), UnavailableError)
  assert.equal(server.requests.length, 1)
})

test('POST /v1/sessions is retried with the same clientToken', async () => {
  await using server = await startServer(
    failThen(
      2,
      (res) => sendError(res, 504, 'Timeout', 'slow'),
      (res) => sendJson(res, 201, sessionInfo('s2')),
    ),
  )
  const ci = new CodeInterpreter({ baseUrl: server.url })
  const info = await ci.start({ name: 'n' })
  assert.equal(info.sessionId, 's2')
  assert.equal(ci.sessionId, 's2')
  const bodies = server.requests.map((r) => JSON.parse(r.body.toString()) as { clientToken: string; name: string })
  assert.equal(bodies.length, 3)
  assert.match(bodies[0]!.clientToken, /^[0-9a-f-]{36}$/)
  assert.ok(bodies.every((b) => b.clientToken === bodies[0]!.clientToken && b.name === 'n'))
})

test('a caller-given clientToken is sent as is', async () => {
  await using server = await startServer((_req, res) => sendJson(res, 200, sessionInfo('s3')))
  await new CodeboxClient({ baseUrl: server.url }).sessions.start({ clientToken: 'mine' })
  assert.equal((JSON.parse(server.requests[0]!.body.toString()) as { clientToken: string }).clientToken, 'mine')
})

test('invoke is never retried', async () => {
  await using server = await startServer((_req, res) => sendError(res, 503, 'Unavailable', 'busy'))
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's4' })
  await assert.rejects(ci.executeCode({ code: 'print(1)' }), UnavailableError)
  await assert.rejects(async () => {
    for await (const _ of ci.executeCodeStream({ code: 'print(1)' })) break
  }, UnavailableError)
  assert.equal(server.requests.length, 2)
})

test('POST /v1/interpreters is not retried (no idempotency token)', async () => {
  await using server = await startServer((_req, res) => sendError(res, 503, 'Unavailable', 'busy'))
  await assert.rejects(new CodeboxClient({ baseUrl: server.url }).interpreters.create({ name: 'x' }), UnavailableError)
  assert.equal(server.requests.length, 1)
})

test('429 waits Retry-After seconds before the retry', async () => {
  await using server = await startServer(
    failThen(
      1,
      (res) => sendError(res, 429, 'RateLimited', 'slow down', { 'retry-after': '1' }),
      (res) => sendJson(res, 200, toolResult('x')),
    ),
  )
  const started = Date.now()
  await new CodeboxClient({ baseUrl: server.url }).interpreters.list()
  assert.equal(server.requests.length, 2)
  const gap = server.requests[1]!.at - server.requests[0]!.at
  assert.ok(gap >= 950, `retried after ${gap} ms, expected about 1000`)
  assert.ok(Date.now() - started < 5000)
})

test('a Retry-After longer than the cap is not waited out: RateLimitedError at once', async () => {
  await using server = await startServer((_req, res) => sendError(res, 429, 'RateLimited', 'slow down', { 'retry-after': '3600' }))
  const e = await new CodeboxClient({ baseUrl: server.url }).ping().catch((err: unknown) => err)
  assert.ok(e instanceof RateLimitedError)
  assert.equal(e.retryAfterSeconds, 3600)
  assert.equal(server.requests.length, 1)
})

test('QuotaExceeded (also 429) is not retried', async () => {
  await using server = await startServer((_req, res) => sendError(res, 429, 'QuotaExceeded', 'at 10 sessions'))
  await assert.rejects(new CodeboxClient({ baseUrl: server.url }).sessions.start(), QuotaExceededError)
  assert.equal(server.requests.length, 1)
})

test('a 4xx is not retried', async () => {
  await using server = await startServer((_req, res) => sendError(res, 404, 'NotFound', 'no'))
  await assert.rejects(new CodeboxClient({ baseUrl: server.url }).sessions.stop('x'))
  assert.equal(server.requests.length, 1)
})

test('a connection refused is retried for a safe call, then reported', async () => {
  const server = await startServer(() => undefined)
  const baseUrl = server.url
  await server.close()
  const started = Date.now()
  await assert.rejects(new CodeboxClient({ baseUrl, maxRetries: 2 }).ping(), /could not reach codebox/)
  // Two backoffs (125-250 ms, then 250-500 ms) happened before giving up.
  assert.ok(Date.now() - started >= 375)
})
