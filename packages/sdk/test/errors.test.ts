import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { test } from 'node:test'
import { CodeboxError, errorCodes, type ErrorCode } from '@codebox/core'
import {
  CodeboxClient,
  CodeInterpreter,
  ConflictError,
  InternalError,
  LimitExceededError,
  NotFoundError,
  QuotaExceededError,
  RateLimitedError,
  RequestTimeoutError,
  SandboxFailureError,
  SessionTerminatedError,
  TimeoutError,
  UnauthorizedError,
  UnavailableError,
  HostCapacityError,
  ModelNotConfiguredError,
  ModelUnavailableError,
  CanceledError,
  ForbiddenError,
  ValidationError,
} from '../src/index.ts'
import { errorFromEvent, errorFromResponse } from '../src/errors.ts'
import { sendError, sendJson, startServer } from './fake-server.ts'

const classes: Record<ErrorCode, new (message: string) => CodeboxError> = {
  ValidationError,
  Unauthorized: UnauthorizedError,
  NotFound: NotFoundError,
  Conflict: ConflictError,
  RequestTimeout: RequestTimeoutError,
  SessionTerminated: SessionTerminatedError,
  LimitExceeded: LimitExceededError,
  RateLimited: RateLimitedError,
  QuotaExceeded: QuotaExceededError,
  Timeout: TimeoutError,
  SandboxFailure: SandboxFailureError,
  Unavailable: UnavailableError,
  HostCapacity: HostCapacityError,
  ModelNotConfigured: ModelNotConfiguredError,
  ModelUnavailable: ModelUnavailableError,
  Canceled: CanceledError,
  Forbidden: ForbiddenError,
  Internal: InternalError,
}

const wire = (code: string, message = 'boom'): string => JSON.stringify({ error: { code, message, details: { field: 'x' }, requestId: 'req-1' } })

test('every registry code becomes its class, with status, message, details and requestId', async () => {
  for (const [code, { status }] of Object.entries(errorCodes) as [ErrorCode, { status: number }][]) {
    const e = await errorFromResponse(new Response(wire(code, `${code} happened`), { status }))
    assert.ok(e instanceof classes[code], code)
    assert.ok(e instanceof CodeboxError)
    assert.equal(e.code, code)
    assert.equal(e.status, status)
    assert.equal(e.message, `${code} happened`)
    assert.deepEqual(e.details, { field: 'x', requestId: 'req-1' })
  }
})

test('a non-JSON 502 from a proxy is UnavailableError with the body kept', async () => {
  const res = new Response('<html>Bad Gateway</html>', { status: 502, headers: { 'x-request-id': 'proxy-1' } })
  const e = await errorFromResponse(res)
  assert.ok(e instanceof UnavailableError)
  assert.equal(e.status, 503)
  assert.match(e.message, /HTTP 502 without a codebox error body/)
  assert.equal(e.details.body, '<html>Bad Gateway</html>')
  assert.equal(e.details.requestId, 'proxy-1')
})

test('a non-JSON 500 is InternalError; an unknown 4xx code falls back to the status', async () => {
  assert.ok((await errorFromResponse(new Response('oops', { status: 500 }))) instanceof InternalError)
  const e = await errorFromResponse(new Response(wire('SomethingNew'), { status: 404 }))
  assert.ok(e instanceof NotFoundError)
  assert.equal(e.message, 'boom')
})

test('429 carries Retry-After as retryAfterSeconds', async () => {
  const e = await errorFromResponse(new Response(wire('RateLimited'), { status: 429, headers: { 'retry-after': '7' } }))
  assert.ok(e instanceof RateLimitedError)
  assert.equal(e.retryAfterSeconds, 7)
})

test('an SSE error event becomes its typed error', () => {
  const e = errorFromEvent(wire('SessionTerminated', 'gone'))
  assert.ok(e instanceof SessionTerminatedError)
  assert.equal(e.status, 410)
  assert.equal(e.details.requestId, 'req-1')
})

test('a 404 over the wire is NotFoundError; the requestId comes from the header when the body has none', async () => {
  await using server = await startServer((_req, res) => sendJson(res, 404, { error: { code: 'NotFound', message: 'no session abc', details: {} } }))
  const client = new CodeboxClient({ baseUrl: server.url })
  const e = await client.sessions.get('abc').catch((err: unknown) => err)
  assert.ok(e instanceof NotFoundError)
  assert.equal(e.message, 'no session abc')
  assert.equal(e.details.requestId, 'req-test')
})

test('401 is UnauthorizedError, and the API key is sent as a Bearer token', async () => {
  await using server = await startServer((_req, res) => sendError(res, 401, 'Unauthorized', 'bad key'))
  const e = await new CodeboxClient({ baseUrl: server.url, apiKey: 'k1' }).ping().catch((err: unknown) => err)
  assert.ok(e instanceof UnauthorizedError)
  assert.equal(server.requests[0]?.headers.authorization, 'Bearer k1')
})

test('a server that is not running is UnavailableError naming the URL and how to start it', async () => {
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const { port } = closed.address() as AddressInfo
  await new Promise<void>((resolve) => closed.close(() => resolve()))
  const baseUrl = `http://127.0.0.1:${port}`
  const e = await new CodeboxClient({ baseUrl, maxRetries: 0 }).ping().catch((err: unknown) => err)
  assert.ok(e instanceof UnavailableError)
  assert.equal(e.message, `could not reach codebox at ${baseUrl}: ECONNREFUSED; is it running? (npm start / codebox serve)`)
})

test('a session method before start() is a local ConflictError, and no request is sent', async () => {
  await using server = await startServer((_req, res) => sendJson(res, 200, {}))
  const ci = new CodeInterpreter({ baseUrl: server.url })
  await assert.rejects(ci.executeCode({ code: '1' }), (e: unknown) => e instanceof ConflictError && /call start\(\) first/.test(e.message))
  await assert.rejects(async () => {
    for await (const _ of ci.executeCommandStream('ls')) break
  }, ConflictError)
  await assert.rejects(ci.uploadFile('a', 'x'), ConflictError)
  assert.equal(server.requests.length, 0)
})

test('a bad baseUrl or timeoutMs is a ValidationError at construction', () => {
  assert.throws(() => new CodeboxClient({ baseUrl: 'not a url' }), ValidationError)
  assert.throws(() => new CodeboxClient({ timeoutMs: -1 }), ValidationError)
})
