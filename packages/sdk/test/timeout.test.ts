import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CodeboxClient, CodeboxError, CodeInterpreter, invokeGraceMs, TimeoutError } from '../src/index.ts'
import { sendJson, startServer } from './fake-server.ts'

const isAbortError = (e: unknown): boolean => e instanceof Error && e.name === 'AbortError' && !(e instanceof CodeboxError)

test('a hung server is a TimeoutError naming the call and its limit', async () => {
  await using server = await startServer(() => undefined)
  const client = new CodeboxClient({ baseUrl: server.url, timeoutMs: 5000 })
  const started = Date.now()
  const e = await client.sessions.get('s1', { timeoutMs: 200 }).catch((err: unknown) => err)
  assert.ok(e instanceof TimeoutError)
  assert.equal(e.message, 'GET /v1/sessions/s1 timed out after 200 ms (timeoutMs)')
  assert.equal(e.code, 'Timeout')
  assert.ok(Date.now() - started < 2000)
  // A timed-out call is not retried: its time is used up.
  assert.equal(server.requests.length, 1)
})

test('the client timeoutMs is the default of each call', async () => {
  await using server = await startServer(() => undefined)
  const e = await new CodeboxClient({ baseUrl: server.url, timeoutMs: 150 }).ping().catch((err: unknown) => err)
  assert.ok(e instanceof TimeoutError)
  assert.match(e.message, /^GET \/ping timed out after 150 ms/)
})

test('invoke sends timeoutMs to the server and waits a grace period longer for the result', async () => {
  await using server = await startServer((_req, res) => {
    setTimeout(() => sendJson(res, 200, { content: [], structuredContent: { stdout: '', stderr: '', exitCode: 0, executionTime: 1 }, isError: false }), 300)
  })
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1' })
  // The server answers after the call's own 100 ms limit, as a server does with a TIMEOUT result.
  const r = await ci.executeCommand('sleep 1', { timeoutMs: 100 })
  assert.equal(r.isError, false)
  assert.deepEqual(JSON.parse(server.requests[0]!.body.toString()), { name: 'executeCommand', arguments: { command: 'sleep 1' }, timeoutMs: 100 })
})

test('an invoke that outlives its grace is a TimeoutError naming the tool and both limits', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] })
  await using server = await startServer(() => undefined)
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1' })
  const pending = ci.executeCode({ code: 'while True: pass', timeoutMs: 1000 }).catch((err: unknown) => err)
  while (server.requests.length === 0) await new Promise((resolve) => setImmediate(resolve))
  t.mock.timers.tick(1000 + invokeGraceMs)
  const e = await pending
  assert.ok(e instanceof TimeoutError)
  assert.equal(
    e.message,
    `POST /v1/sessions/s1/invoke (executeCode, timeoutMs 1000 + ${invokeGraceMs} ms grace) timed out after ${1000 + invokeGraceMs} ms (timeoutMs)`,
  )
})

test("the caller's abort rethrows the AbortError unwrapped", async () => {
  await using server = await startServer(() => undefined)
  const controller = new AbortController()
  setTimeout(() => controller.abort(), 100)
  const e = await new CodeboxClient({ baseUrl: server.url }).sessions.list({ signal: controller.signal }).catch((err: unknown) => err)
  assert.ok(isAbortError(e), String(e))
})

test('an abort with a reason rethrows that reason', async () => {
  await using server = await startServer(() => undefined)
  const reason = new Error('user left')
  const controller = new AbortController()
  setTimeout(() => controller.abort(reason), 50)
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1' })
  await assert.rejects(ci.executeCode({ code: 'x', signal: controller.signal }), (e) => e === reason)
})

test('an already-aborted signal sends nothing', async () => {
  await using server = await startServer(() => undefined)
  const e = await new CodeboxClient({ baseUrl: server.url }).ping({ signal: AbortSignal.abort() }).catch((err: unknown) => err)
  assert.ok(isAbortError(e))
  assert.equal(server.requests.length, 0)
})

test('abort during an event stream ends the loop with the AbortError', async () => {
  await using server = await startServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('event: stdout\ndata: {"type":"stdout","text":"tick"}\n\n')
  })
  const controller = new AbortController()
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1' })
  const seen: string[] = []
  const e = await (async () => {
    for await (const ev of ci.executeCodeStream({ code: 'x', signal: controller.signal })) {
      if (ev.type === 'stdout') seen.push(ev.text)
      controller.abort()
    }
  })().catch((err: unknown) => err)
  assert.deepEqual(seen, ['tick'])
  assert.ok(isAbortError(e), String(e))
})

test('the timeout covers reading a streamed download, not only the headers', async () => {
  await using server = await startServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '10' })
    res.write('12345')
  })
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1' })
  const download = await ci.downloadFileStream('a.txt', { timeoutMs: 200 })
  assert.equal(download.size, 10)
  const reader = download.stream.getReader()
  assert.equal(new TextDecoder().decode((await reader.read()).value), '12345')
  const e = await reader.read().catch((err: unknown) => err)
  assert.ok(e instanceof TimeoutError, String(e))
  assert.match(e.message, /GET \/v1\/sessions\/s1\/files\/a.txt timed out after 200 ms/)
})
