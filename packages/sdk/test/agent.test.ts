/**
 * AgentClient against a scripted HTTP server: SSE turns split anywhere, the JSON forms, typed
 * errors from error events and error responses, abort, and the runtime contract's headers.
 */
import assert from 'node:assert/strict'
import type { ServerResponse } from 'node:http'
import { test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import {
  AgentClient,
  InternalError,
  ModelNotConfiguredError,
  ModelUnavailableError,
  NotFoundError,
  UnavailableError,
  type AgentEvent,
  type InvocationResponse,
} from '../src/index.ts'
import { sendError, sendJson, startServer } from './fake-server.ts'

const conversationId = 'conv-0123456789abcdef0123456789abcdef'
const usage = { inputTokens: 10, outputTokens: 5 }
const turn: AgentEvent[] = [
  { type: 'turn_start', conversationId, sessionId: 'sess1', role: 'answer' },
  { type: 'model', model: 'anthropic:claude-x', skipped: [{ model: 'bedrock:nova', reason: '429 throttled' }] },
  { type: 'text', delta: 'Let me ' },
  { type: 'text', delta: 'count. ✓' },
  { type: 'tool_use', toolUseId: 't1', name: 'execute_code', input: { code: 'print(6)' }, code: 'print(6)', language: 'python' },
  { type: 'tool_output', toolUseId: 't1', stream: 'stdout', text: '6\n' },
  { type: 'tool_result', toolUseId: 't1', isError: false, text: '6\n', exitCode: 0, images: [] },
  {
    type: 'final',
    text: 'There are 6 leap years.',
    model: 'anthropic:claude-x',
    skipped: [{ model: 'bedrock:nova', reason: '429 throttled' }],
    stopReason: 'end_turn',
    usage,
  },
]

const sse = (events: unknown[]): string => ': keep-alive\n\n' + events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('')

/** Writes `text` in pieces of `size` bytes with a pause between them, so the client reads split chunks. */
async function drip(res: ServerResponse, text: string, size: number, headers: Record<string, string> = {}): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream', ...headers })
  const bytes = Buffer.from(text)
  for (let i = 0; i < bytes.length; i += size) {
    res.write(bytes.subarray(i, i + size))
    await sleep(1)
  }
  res.end()
}

async function collect<T, R>(gen: AsyncGenerator<T, R>): Promise<{ events: T[]; result: R }> {
  const events: T[] = []
  for (;;) {
    const n = await gen.next()
    if (n.done) return { events, result: n.value }
    events.push(n.value)
  }
}

test('ask streams the turn: events split into 7-byte chunks (inside UTF-8 too) arrive whole, the result merges text', async () => {
  await using server = await startServer((_req, res) => drip(res, sse(turn), 7))
  const agent = new AgentClient({ baseUrl: server.url, apiKey: 'k1' })
  const { events, result } = await collect(agent.ask('how many?', { conversationId }))
  assert.deepEqual(events, turn)
  const req = server.requests[0]!
  assert.equal(`${req.method} ${req.url}`, 'POST /v1/agent/ask')
  assert.equal(req.headers.accept, 'text/event-stream')
  assert.equal(req.headers.authorization, 'Bearer k1')
  assert.deepEqual(JSON.parse(req.body.toString()), { prompt: 'how many?', conversationId })
  assert.equal(result.result, 'There are 6 leap years.')
  assert.deepEqual(result.output.message.content, [{ text: 'There are 6 leap years.' }])
  assert.equal(result.conversationId, conversationId)
  assert.equal(result.sessionId, 'sess1')
  assert.equal(result.model, 'anthropic:claude-x')
  assert.deepEqual(result.usage, usage)
  const texts = result.events.filter((e) => e.type === 'text')
  assert.deepEqual(texts, [{ type: 'text', delta: 'Let me count. ✓' }])
})

test('an unknown event type (a newer server) is skipped; a known one with a bad shape is an InternalError', async () => {
  await using server = await startServer((req, res) => {
    const body = req.url.includes('bad') ? [turn[0], { type: 'text', delta: 42 }] : [turn[0], { type: 'thinking', text: 'hm' }, ...turn.slice(1)]
    return drip(res, sse(body), 64)
  })
  const agent = new AgentClient({ baseUrl: server.url })
  const { events } = await collect(agent.ask('q'))
  assert.deepEqual(
    events.map((e) => e.type),
    turn.map((e) => e.type),
  )
  const bad = new AgentClient({ baseUrl: `${server.url}/bad` })
  await assert.rejects(collect(bad.ask('q')), (e: unknown) => e instanceof InternalError && /delta/.test(e.message))
})

test('an error event ends the stream as the typed error of its code', async () => {
  const events = [turn[0], { type: 'error', code: 'ModelUnavailable', message: 'anthropic:claude-x: 529 overloaded; bedrock:nova: 429' }]
  await using server = await startServer((_req, res) => drip(res, sse(events), 5))
  const agent = new AgentClient({ baseUrl: server.url })
  const seen: AgentEvent[] = []
  await assert.rejects(
    (async () => {
      for await (const e of agent.ask('q')) seen.push(e)
    })(),
    (e: unknown) => e instanceof ModelUnavailableError && e.code === 'ModelUnavailable' && /529 overloaded/.test(e.message),
  )
  assert.deepEqual(seen, [turn[0]])
})

test('a codebox error body as an `event: error` is thrown typed; an unknown code becomes InternalError naming it', async () => {
  await using server = await startServer((req, res) => {
    if (req.url.includes('wire'))
      return drip(res, `event: error\ndata: ${JSON.stringify({ error: { code: 'NotFound', message: 'no such conversation', details: {} } })}\n\n`, 9)
    return drip(res, sse([{ type: 'error', code: 'Frobnicated', message: 'odd' }]), 9)
  })
  await assert.rejects(collect(new AgentClient({ baseUrl: `${server.url}/wire` }).ask('q')), NotFoundError)
  await assert.rejects(
    collect(new AgentClient({ baseUrl: server.url }).ask('q')),
    (e: unknown) => e instanceof InternalError && /Frobnicated: odd/.test(e.message),
  )
})

test('no model configured: the 503 before the stream is ModelNotConfiguredError with the server message, not retried', async () => {
  const hint = 'no model is configured: set CODEBOX_AGENT_MODELS (e.g. anthropic:claude-sonnet-4-5) and ANTHROPIC_API_KEY'
  await using server = await startServer((_req, res) => sendError(res, 503, 'ModelNotConfigured', hint))
  const agent = new AgentClient({ baseUrl: server.url })
  await assert.rejects(collect(agent.ask('q')), (e: unknown) => e instanceof ModelNotConfiguredError && e.message === hint)
  await assert.rejects(agent.askJson('q'), ModelNotConfiguredError)
  assert.equal(server.requests.length, 2, 'a turn is never sent twice')
})

test('a stream cut before `final` is an UnavailableError', async () => {
  await using server = await startServer((_req, res) => drip(res, sse(turn.slice(0, 4)), 50))
  await assert.rejects(
    collect(new AgentClient({ baseUrl: server.url }).ask('q')),
    (e: unknown) => e instanceof UnavailableError && /before the turn's final/.test(e.message),
  )
})

test('aborting the signal mid-turn stops the generator with the abort reason and closes the connection', async () => {
  let closed = false
  await using server = await startServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.write(sse(turn.slice(0, 3)))
    res.on('close', () => (closed = true))
  })
  const controller = new AbortController()
  const agent = new AgentClient({ baseUrl: server.url })
  const seen: string[] = []
  await assert.rejects(
    (async () => {
      for await (const e of agent.ask('q', { signal: controller.signal })) {
        seen.push(e.type)
        if (e.type === 'text') controller.abort()
      }
    })(),
    { name: 'AbortError' },
  )
  assert.deepEqual(seen, ['turn_start', 'model', 'text'])
  for (let i = 0; i < 100 && !closed; i++) await sleep(10)
  assert.ok(closed, 'the server saw the connection close')
})

function invocation(): InvocationResponse {
  const final = turn[turn.length - 1] as Extract<AgentEvent, { type: 'final' }>
  return {
    result: final.text,
    output: { message: { role: 'assistant', content: [{ text: final.text }] } },
    conversationId,
    sessionId: 'sess1',
    model: final.model,
    skipped: final.skipped,
    usage,
    events: turn,
  }
}

test('askJson, generate, conversations, history, stop, delete and status parse the server’s JSON', async () => {
  const now = new Date().toISOString()
  const conversation = { conversationId, actor: 'default', title: 'how many?', turns: 1, createdAt: now, lastUpdatedAt: now, expiresAt: now }
  const stored = {
    turnId: 1,
    conversationId,
    role: 'answer',
    prompt: 'how many?',
    text: 'six',
    outcome: 'ok',
    model: 'm',
    skipped: [],
    usage,
    events: [],
    createdAt: now,
  }
  await using server = await startServer((req, res) => {
    const route = `${req.method} ${req.url.split('?')[0]}`
    if (route === 'POST /v1/agent/ask') return sendJson(res, 200, invocation())
    if (route === 'POST /v1/agent/generate')
      return sendJson(res, 200, { conversationId, code: 'print(1)', language: 'python', text: '```python\nprint(1)\n```', model: 'm', skipped: [] })
    if (route === 'GET /v1/agent/conversations')
      return sendJson(res, 200, req.url.includes('nextToken') ? { items: [] } : { items: [conversation], nextToken: 'n1' })
    if (route === `GET /v1/agent/conversations/${conversationId}`) return sendJson(res, 200, { conversation, turns: [stored] })
    if (route === `POST /v1/agent/conversations/${conversationId}/stop`) return void res.writeHead(204).end()
    if (route === `DELETE /v1/agent/conversations/${conversationId}`) return void res.writeHead(204).end()
    if (route === 'GET /v1/agent/status') return sendJson(res, 200, { configured: false, hint: 'set CODEBOX_AGENT_MODELS', models: [] })
    sendError(res, 404, 'NotFound', `no route ${route}`)
  })
  const agent = new AgentClient({ baseUrl: server.url })
  assert.deepEqual(await agent.askJson('how many?'), invocation())
  const gen = await agent.generate('print one', { language: 'python', conversationId })
  assert.equal(gen.code, 'print(1)')
  assert.deepEqual(JSON.parse(server.requests[1]!.body.toString()), { prompt: 'print one', language: 'python', conversationId })
  const page = await agent.conversations({ limit: 5 })
  assert.equal(page.items[0]!.conversationId, conversationId)
  assert.match(server.requests[2]!.url, /limit=5/)
  const all = []
  for await (const c of agent.allConversations()) all.push(c.conversationId)
  assert.deepEqual(all, [conversationId])
  const history = await agent.history(conversationId)
  assert.equal(history.turns[0]!.text, 'six')
  await agent.stopConversation(conversationId)
  await agent.deleteConversation(conversationId)
  assert.deepEqual(await agent.status(), { configured: false, hint: 'set CODEBOX_AGENT_MODELS', models: [] })
  await assert.rejects(agent.history('nope'), NotFoundError)
  // A chosen model and the caller's own code session go in the body; generate takes the model only.
  await agent.askJson('again', { model: 'openai:llama3.2', sessionId: 'abc123', conversationId })
  assert.deepEqual(JSON.parse(server.requests.at(-1)!.body.toString()), { prompt: 'again', conversationId, model: 'openai:llama3.2', sessionId: 'abc123' })
  await agent.generate('g', { model: 'openai:llama3.2' })
  assert.deepEqual(JSON.parse(server.requests.at(-1)!.body.toString()), { prompt: 'g', model: 'openai:llama3.2' })
})

test('generateStream yields the events and returns the code of `final`', async () => {
  const events: AgentEvent[] = [
    { type: 'turn_start', conversationId, role: 'generate' },
    { type: 'model', model: 'm', skipped: [] },
    { type: 'text', delta: '```ts\nconst x = 1\n```' },
    { type: 'final', text: '```ts\nconst x = 1\n```', model: 'm', skipped: [], stopReason: 'end_turn', usage, code: 'const x = 1', language: 'typescript' },
  ]
  await using server = await startServer((_req, res) => drip(res, sse(events), 11))
  const { events: seen, result } = await collect(new AgentClient({ baseUrl: server.url }).generateStream('x', { language: 'typescript' }))
  assert.equal(seen.length, 4)
  assert.deepEqual(result, { conversationId, code: 'const x = 1', language: 'typescript', text: '```ts\nconst x = 1\n```', model: 'm', skipped: [] })
})

test('invoke posts the raw payload to /invocations with the runtime headers; JSON and streamed', async () => {
  await using server = await startServer((req, res) => {
    const id = String(req.headers['x-amzn-bedrock-agentcore-runtime-session-id'] ?? conversationId)
    if (req.headers.accept === 'text/event-stream') return drip(res, sse(turn.slice(1)), 13, { 'x-amzn-bedrock-agentcore-runtime-session-id': id })
    return sendJson(res, 200, invocation(), { 'x-amzn-bedrock-agentcore-runtime-session-id': id })
  })
  const agent = new AgentClient({ baseUrl: server.url })
  const json = await agent.invoke({ prompt: 'hi', extra: 1 }, { sessionId: conversationId, userId: 'alice' })
  assert.equal(json.result, 'There are 6 leap years.')
  const req = server.requests[0]!
  assert.equal(`${req.method} ${req.url}`, 'POST /invocations')
  assert.deepEqual(JSON.parse(req.body.toString()), { prompt: 'hi', extra: 1 })
  assert.equal(req.headers['x-amzn-bedrock-agentcore-runtime-session-id'], conversationId)
  assert.equal(req.headers['x-amzn-bedrock-agentcore-runtime-user-id'], 'alice')
  // Without turn_start in the stream, the conversation id comes from the response header.
  const { events, result } = await collect(agent.invokeStream({ prompt: 'hi' }, { sessionId: 'other-conversation' }))
  assert.equal(events.length, turn.length - 1)
  assert.equal(result.conversationId, 'other-conversation')
  assert.equal(server.requests[1]!.headers.accept, 'text/event-stream')
})

test('a server that answers a streamed ask with JSON still yields the events and the turn', async () => {
  await using server = await startServer((_req, res) => sendJson(res, 200, invocation()))
  const { events, result } = await collect(new AgentClient({ baseUrl: server.url }).ask('q'))
  assert.deepEqual(events, turn)
  assert.deepEqual(result, invocation())
})
