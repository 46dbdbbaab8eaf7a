import assert from 'node:assert/strict'
import type { ServerResponse } from 'node:http'
import { test } from 'node:test'
import {
  CodeboxClient,
  codeSession,
  CodeInterpreter,
  ConflictError,
  SessionTerminatedError,
  UnavailableError,
  type ExecutionEvent,
  type ToolResult,
} from '../src/index.ts'
import { sendError, sendJson, sessionInfo, startServer, toolResult, type Recorded } from './fake-server.ts'

/** A tiny codebox: start, get and stop sessions; invoke answers with SSE or JSON. */
function miniCodebox(sse: string): (req: Recorded, res: ServerResponse) => void {
  const stopped = new Set<string>()
  return (req, res) => {
    const id = /^\/v1\/sessions\/([^/?]+)/.exec(req.url)?.[1]
    if (req.method === 'POST' && req.url === '/v1/sessions') return sendJson(res, 201, sessionInfo('sess1'))
    if (req.method === 'DELETE' && id) {
      stopped.add(id)
      return sendJson(res, 200, sessionInfo(id, 'TERMINATED'))
    }
    if (req.method === 'GET' && id && !req.url.includes('/files')) return sendJson(res, 200, sessionInfo(id, stopped.has(id) ? 'TERMINATED' : 'READY'))
    if (req.method === 'POST' && req.url.endsWith('/invoke')) {
      if (req.headers.accept !== 'text/event-stream') return sendJson(res, 200, toolResult('json'))
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      return void res.end(sse)
    }
    sendError(res, 404, 'NotFound', `no route ${req.method} ${req.url}`)
  }
}

const result = toolResult('hi\n') as unknown as ToolResult
const goodStream =
  ': keep-alive\n\n' +
  'event: stdout\ndata: {"type":"stdout","text":"hi\\n"}\n\n' +
  'event: stderr\r\ndata: {"type":"stderr","text":"warn"}\r\n\r\n' +
  'event: display\ndata: {"type":"display","data":{"text/plain":"1"}}\n\n' +
  'event: future\ndata: {"type":"future"}\n\n' +
  `event: result\ndata: ${JSON.stringify({ type: 'result', result })}\n\n`

test('codeSession starts a session; await using stops it', async () => {
  await using server = await startServer(miniCodebox(goodStream))
  {
    await using ci = await codeSession({ baseUrl: server.url, name: 'demo', timeoutSeconds: 60 })
    assert.equal(ci.sessionId, 'sess1')
    const body = JSON.parse(server.requests[0]!.body.toString()) as Record<string, unknown>
    assert.equal(body.name, 'demo')
    assert.equal(body.timeoutSeconds, 60)
    assert.equal(typeof body.clientToken, 'string')
    assert.equal('baseUrl' in body, false)
  }
  assert.deepEqual(
    server.requests.map((r) => `${r.method} ${r.url}`),
    ['POST /v1/sessions', 'DELETE /v1/sessions/sess1'],
  )
})

test('stop is idempotent and a no-op before start', async () => {
  await using server = await startServer(miniCodebox(goodStream))
  const ci = new CodeInterpreter({ baseUrl: server.url })
  assert.equal(await ci.stop(), undefined)
  assert.equal(server.requests.length, 0)
  await ci.start()
  assert.equal((await ci.stop())?.status, 'TERMINATED')
  assert.equal((await ci.stop())?.status, 'TERMINATED')
  await ci[Symbol.asyncDispose]()
  assert.equal(server.requests.filter((r) => r.method === 'DELETE').length, 1)
  assert.equal((await ci.info()).status, 'TERMINATED')
})

test('stop treats a session the server no longer knows as stopped', async () => {
  await using server = await startServer((_req, res) => sendError(res, 404, 'NotFound', 'no such session'))
  assert.equal(await new CodeInterpreter({ baseUrl: server.url, sessionId: 'gone' }).stop(), undefined)
})

test('start twice without stop is a ConflictError', async () => {
  await using server = await startServer(miniCodebox(goodStream))
  const ci = new CodeInterpreter({ baseUrl: server.url })
  await ci.start()
  await assert.rejects(ci.start(), ConflictError)
})

test('executeCodeStream yields stdout, stderr and display as produced, then the result; unknown events are skipped', async () => {
  await using server = await startServer(miniCodebox(goodStream))
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 'sess1' })
  const events: ExecutionEvent[] = []
  for await (const e of ci.executeCodeStream({ code: 'print("hi")', language: 'python' })) events.push(e)
  assert.deepEqual(
    events.map((e) => e.type),
    ['stdout', 'stderr', 'display', 'result'],
  )
  assert.deepEqual(events[3], { type: 'result', result })
  const sent = JSON.parse(server.requests[0]!.body.toString()) as unknown
  assert.deepEqual(sent, { name: 'executeCode', arguments: { code: 'print("hi")', language: 'python' } })
  assert.equal(server.requests[0]!.headers.accept, 'text/event-stream')
})

test('invokeStream returns the ToolResult as the generator value', async () => {
  await using server = await startServer(miniCodebox(goodStream))
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 'sess1' })
  const gen = ci.invokeStream('executeCommand', { command: 'echo hi' })
  let step = await gen.next()
  while (!step.done) step = await gen.next()
  assert.deepEqual(step.value, result)
})

test('an error event after the stream began throws its typed error', async () => {
  const sse =
    'event: stdout\ndata: {"type":"stdout","text":"a"}\n\nevent: error\ndata: {"error":{"code":"SessionTerminated","message":"ended","details":{},"requestId":"r9"}}\n\n'
  await using server = await startServer(miniCodebox(sse))
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 'sess1' })
  const seen: string[] = []
  const e = await (async () => {
    for await (const ev of ci.executeCommandStream('x')) seen.push(ev.type)
  })().catch((err: unknown) => err)
  assert.deepEqual(seen, ['stdout'])
  assert.ok(e instanceof SessionTerminatedError)
  assert.equal(e.details.requestId, 'r9')
})

test('a stream that ends without a result is UnavailableError', async () => {
  await using server = await startServer(miniCodebox('event: stdout\ndata: {"type":"stdout","text":"a"}\n\n'))
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 'sess1' })
  await assert.rejects(async () => {
    for await (const _ of ci.executeCodeStream({ code: 'x' })) continue
  }, UnavailableError)
})

test('the tool helpers send the AgentCore tool names and arguments', async () => {
  await using server = await startServer(miniCodebox(goodStream))
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 'sess1' })
  assert.equal((await ci.executeCommand('ls')).structuredContent.stdout, 'json')
  await ci.startCommand('sleep 5')
  await ci.getTask('t1')
  await ci.stopTask('t1')
  await ci.writeFiles([
    { path: 'a.txt', text: 'A' },
    { path: 'b.bin', blob: 'AAE=' },
    { path: 'c.bin', data: Uint8Array.of(0, 1, 255) },
  ])
  await ci.readFiles(['a.txt'])
  await ci.listFiles()
  await ci.listFiles('sub')
  await ci.removeFiles(['a.txt'])
  const sent = server.requests.map((r) => JSON.parse(r.body.toString()) as unknown)
  assert.deepEqual(sent, [
    { name: 'executeCommand', arguments: { command: 'ls' } },
    { name: 'startCommandExecution', arguments: { command: 'sleep 5' } },
    { name: 'getTask', arguments: { taskId: 't1' } },
    { name: 'stopTask', arguments: { taskId: 't1' } },
    {
      name: 'writeFiles',
      arguments: {
        content: [
          { path: 'a.txt', text: 'A' },
          { path: 'b.bin', blob: 'AAE=' },
          { path: 'c.bin', blob: 'AAH/' },
        ],
      },
    },
    { name: 'readFiles', arguments: { paths: ['a.txt'] } },
    { name: 'listFiles', arguments: {} },
    { name: 'listFiles', arguments: { directoryPath: 'sub' } },
    { name: 'removeFiles', arguments: { paths: ['a.txt'] } },
  ])
})

test('sessions.listAll walks every page; audit.listAll too', async () => {
  await using server = await startServer((req, res) => {
    const url = new URL(req.url, 'http://x')
    const token = url.searchParams.get('nextToken')
    const prefix = url.pathname === '/v1/audit' ? 'a' : 's'
    const items = token === null ? [1, 2] : [3]
    const page = { items: items.map((i) => (prefix === 's' ? sessionInfo(`s${i}`) : { id: i })), ...(token === null ? { nextToken: 'p2' } : {}) }
    sendJson(res, 200, page)
  })
  const client = new CodeboxClient({ baseUrl: server.url })
  const ids: string[] = []
  for await (const s of client.sessions.listAll({ status: 'READY', limit: 2 })) ids.push(s.sessionId)
  assert.deepEqual(ids, ['s1', 's2', 's3'])
  assert.deepEqual(
    server.requests.map((r) => r.url),
    ['/v1/sessions?status=READY&limit=2', '/v1/sessions?status=READY&limit=2&nextToken=p2'],
  )
  const audit: number[] = []
  for await (const a of client.audit.listAll({ sessionId: 'abc' })) audit.push(a.id)
  assert.deepEqual(audit, [1, 2, 3])
})

test('client.session attaches to an existing session with the same server and key', async () => {
  await using server = await startServer(miniCodebox(goodStream))
  const ci = new CodeboxClient({ baseUrl: server.url + '/', apiKey: 'k', headers: { 'x-extra': '1' } }).session('abc')
  assert.equal(ci.sessionId, 'abc')
  await ci.info()
  assert.equal(server.requests[0]!.url, '/v1/sessions/abc')
  assert.equal(server.requests[0]!.headers.authorization, 'Bearer k')
  assert.equal(server.requests[0]!.headers['x-extra'], '1')
})

test('CODEBOX_URL and CODEBOX_API_KEY are read at construction', async () => {
  await using server = await startServer((_req, res) => sendJson(res, 200, { status: 'Healthy', time_of_last_update: 1 }))
  const saved = { url: process.env.CODEBOX_URL, key: process.env.CODEBOX_API_KEY }
  process.env.CODEBOX_URL = server.url
  process.env.CODEBOX_API_KEY = 'env-key'
  try {
    const client = new CodeboxClient()
    assert.equal(client.baseUrl, server.url)
    assert.deepEqual(await client.ping(), { status: 'Healthy', time_of_last_update: 1 })
    assert.equal(server.requests[0]!.headers.authorization, 'Bearer env-key')
    assert.equal(new CodeboxClient({ baseUrl: 'http://other:1' }).baseUrl, 'http://other:1')
  } finally {
    if (saved.url === undefined) delete process.env.CODEBOX_URL
    else process.env.CODEBOX_URL = saved.url
    if (saved.key === undefined) delete process.env.CODEBOX_API_KEY
    else process.env.CODEBOX_API_KEY = saved.key
  }
})

test('events arrive while the call is still running', async () => {
  let release: () => void = () => undefined
  const released = new Promise<void>((resolve) => (release = resolve))
  await using server = await startServer(async (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write('event: stdout\ndata: {"type":"stdout","text":"first"}\n\n')
    // The rest is sent only after the client has seen the first event.
    await released
    res.end(`event: result\ndata: ${JSON.stringify({ type: 'result', result })}\n\n`)
  })
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1', timeoutMs: 5000 })
  const types: string[] = []
  for await (const e of ci.executeCodeStream({ code: 'x' })) {
    types.push(e.type)
    release()
  }
  assert.deepEqual(types, ['stdout', 'result'])
})
