/**
 * The agent's runtime contract and IDE routes on the codebox server: `POST /invocations` (JSON and
 * SSE), `GET /ping`, the `/ws` WebSocket and `/v1/agent/*`, read by real clients (fetch with the
 * SDK's SSE parser, the `ws` package). First in front of a scripted AgentDoor, which checks the
 * mapping exactly and fast; then with the real agent service, the real agent and a scripted
 * OpenAI-compatible model server, running real code in sessions of the fake driver.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { describe, test, type TestContext } from 'node:test'
import WebSocket from 'ws'
import { agentEventSchema, CodeboxError, invocationResponseSchema, parseWire, type AgentEvent } from '@codebox/core'
import { FakeDriver, SessionManager } from '@codebox/sandbox'
import { parseSse } from '@codebox/sdk'
import { buildApp, loadServerConfig, Store } from '@codebox/server'
import { modelEnv, startModelServer, type ModelRequestView, type ScriptedReply } from '../../agent/test/model-servers.ts'
import { FakeAgentDoor } from './agent-fixtures.ts'
import { expectError, expectJson, testServer, waitUntil } from './fixtures.ts'

const SESSION = 'X-Amzn-Bedrock-AgentCore-Runtime-Session-Id'
const USER = 'X-Amzn-Bedrock-AgentCore-Runtime-User-Id'

interface DoorServer {
  url: string
  store: Store
  door: FakeAgentDoor
  call: (
    method: string,
    urlPath: string,
    options?: { json?: unknown; body?: string; headers?: Record<string, string>; signal?: AbortSignal },
  ) => Promise<Response>
}

/** The real app (auth, hooks, error shape, every route) with the scripted door behind the agent routes. */
async function doorServer(t: TestContext): Promise<DoorServer> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-agent-runtime-'))
  const config = loadServerConfig({ CODEBOX_DRIVER: 'fake', CODEBOX_STATE_DIR: stateDir, CODEBOX_LOG_LEVEL: 'silent' })
  const store = Store.open(':memory:')
  const engine = new SessionManager({ driver: new FakeDriver(), poolSize: 0 })
  const door = new FakeAgentDoor()
  const app = await buildApp({ config, engine, store, agentDoor: door })
  await app.app.listen({ host: '127.0.0.1', port: 0 })
  t.after(async () => {
    await app.app.close()
    await engine.close()
    store.close()
    fs.rmSync(stateDir, { recursive: true, force: true })
  })
  const url = `http://127.0.0.1:${(app.app.server.address() as { port: number }).port}`
  const call: DoorServer['call'] = (method, urlPath, o = {}) =>
    fetch(url + urlPath, {
      method,
      headers: { ...(o.json !== undefined ? { 'content-type': 'application/json' } : {}), ...o.headers },
      body: o.json !== undefined ? JSON.stringify(o.json) : o.body,
      signal: o.signal,
    })
  return { url, store, door, call }
}

/** Reads an SSE response with the SDK's parser; every `data:` must be one AgentEvent. */
async function sseEvents(res: Response): Promise<AgentEvent[]> {
  assert.equal(res.status, 200, await res.clone().text())
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/)
  const out: AgentEvent[] = []
  for await (const e of parseSse(res.body!)) out.push(parseWire(agentEventSchema, JSON.parse(e.data)))
  return out
}

const sse = { accept: 'text/event-stream' }

/** A `ws` client on /ws that collects every frame. */
async function openWs(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ ws: WebSocket; frames: AgentEvent[]; closed: Promise<{ code: number; reason: string }> }> {
  const ws = new WebSocket(`${url.replace('http', 'ws')}/ws`, { headers })
  const frames: AgentEvent[] = []
  ws.on('message', (data: Buffer) => frames.push(parseWire(agentEventSchema, JSON.parse(data.toString('utf8')))))
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })))
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  return { ws, frames, closed }
}

describe('the doors’ mapping, in front of a scripted AgentDoor', () => {
  test('POST /invocations answers as JSON: the answer, text deltas merged, and the conversation in the session header', async (t) => {
    const s = await doorServer(t)
    const res = await s.call('POST', '/invocations', { json: { prompt: 'how many leap years since 2000?' }, headers: { [USER]: 'alice' } })
    const body = parseWire(invocationResponseSchema, await expectJson(res, 200))
    assert.equal(body.result, 'the answer to: how many leap years since 2000?')
    assert.deepEqual(body.output, { message: { role: 'assistant', content: [{ text: body.result }] } })
    assert.equal(res.headers.get(SESSION), body.conversationId)
    assert.equal(body.sessionId, 'sess0')
    assert.equal(body.model, 'openai:scripted')
    assert.deepEqual(body.usage, { inputTokens: 10, outputTokens: 5 })
    assert.deepEqual(
      body.events.map((e) => e.type),
      ['turn_start', 'model', 'tool_use', 'tool_result', 'text', 'final'],
    )
    assert.deepEqual(body.events[4], { type: 'text', delta: body.result })
    const request = s.door.requests[0]!
    assert.deepEqual(
      { caller: request.caller, role: request.role, actor: request.actor, conversationId: request.conversationId },
      {
        caller: { tenant: 'default' },
        role: 'answer',
        actor: 'alice',
        conversationId: undefined,
      },
    )

    // The session header continues the conversation; {input: {prompt}} (seed 002's FastAPI form) is accepted too.
    const again = await s.call('POST', '/invocations', { json: { input: { prompt: 'and since 1900?' } }, headers: { [SESSION]: body.conversationId } })
    const second = parseWire(invocationResponseSchema, await expectJson(again, 200))
    assert.equal(second.conversationId, body.conversationId)
    assert.equal(again.headers.get(SESSION), body.conversationId)
    assert.equal(second.sessionId, 'sess1', 'the second turn of the same conversation')
    assert.deepEqual(s.door.conversations.get(`default/${body.conversationId}`), ['how many leap years since 2000?', 'and since 1900?'])
  })

  test('POST /invocations streams SSE `data: <AgentEvent>` when the client accepts text/event-stream', async (t) => {
    const s = await doorServer(t)
    const res = await s.call('POST', '/invocations', {
      json: { prompt: 'six times seven?' },
      headers: { ...sse, [SESSION]: 'conversation-for-the-sse-test-0001' },
    })
    assert.equal(res.headers.get(SESSION), 'conversation-for-the-sse-test-0001')
    const raw = await res.clone().text()
    assert.match(raw, /^data: \{"type":"turn_start"/, 'AgentCore form: data lines only')
    const events = await sseEvents(res)
    assert.deepEqual(
      events.map((e) => e.type),
      ['turn_start', 'model', 'tool_use', 'tool_result', 'text', 'text', 'text', 'final'],
      'deltas as they stream',
    )
    assert.equal(
      events
        .filter((e) => e.type === 'text')
        .map((e) => (e as { delta: string }).delta)
        .join(''),
      'the answer to: six times seven?',
    )
    // Accept that prefers JSON gets JSON.
    const json = await s.call('POST', '/invocations', { json: { prompt: 'x' }, headers: { accept: 'application/json, text/event-stream;q=0.5' } })
    assert.match(json.headers.get('content-type') ?? '', /application\/json/)
  })

  test('POST /invocations: a bad body is a 400 naming prompt; a bad session header names the header', async (t) => {
    const s = await doorServer(t)
    for (const json of [{}, { input: {} }, { prompt: '' }, { input: { text: 'hi' } }]) {
      const e = await expectError(s.call('POST', '/invocations', { json }), 400, 'ValidationError')
      assert.match(e.message, /prompt/, JSON.stringify(json))
    }
    const notJson = await expectError(
      s.call('POST', '/invocations', { body: '{"prompt":', headers: { 'content-type': 'application/json' } }),
      400,
      'ValidationError',
    )
    assert.match(notJson.message, /body|JSON/i)
    const header = await expectError(
      s.call('POST', '/invocations', { json: { prompt: 'x' }, headers: { [SESSION]: 'no spaces allowed' } }),
      400,
      'ValidationError',
    )
    assert.match(header.message, /x-amzn-bedrock-agentcore-runtime-session-id/)
    assert.equal(s.door.requests.length, 0, 'nothing reached the agent')
  })

  test('the JSON form of /invocations is canceled too when its client goes away', async (t) => {
    const s = await doorServer(t)
    s.door.script = () => ({ hang: true })
    const abort = new AbortController()
    const pending = s.call('POST', '/invocations', { json: { prompt: 'a long cell' }, signal: abort.signal }).catch((e: unknown) => e)
    await waitUntil(() => s.door.busy, 'the turn to start')
    abort.abort()
    assert.equal(((await pending) as Error).name, 'AbortError')
    await waitUntil(() => s.door.canceled.length === 1 && !s.door.busy, 'the turn to be canceled')
  })

  test('/ws: prompts in, AgentEvents out, one turn at a time, interrupt, bad JSON leaves the socket usable', async (t) => {
    const s = await doorServer(t)
    const { ws, frames } = await openWs(s.url, { [SESSION]: 'conversation-of-the-websocket-0001', [USER]: 'bob' })
    t.after(() => ws.terminate())
    const finals = (): number => frames.filter((f) => f.type === 'final' || f.type === 'error').length

    ws.send(JSON.stringify({ prompt: 'first' }))
    await waitUntil(() => finals() === 1, 'the first turn to end')
    assert.deepEqual(
      frames.map((f) => f.type),
      ['turn_start', 'model', 'tool_use', 'tool_result', 'text', 'text', 'text', 'final'],
    )
    assert.deepEqual(frames[0], { type: 'turn_start', conversationId: 'conversation-of-the-websocket-0001', sessionId: 'sess0', role: 'answer' })
    assert.equal(s.door.requests[0]!.actor, 'bob')

    // Bad JSON and unknown messages: an error event each; the socket goes on.
    frames.length = 0
    ws.send('{"prompt": ')
    ws.send(JSON.stringify({ type: 'dance' }))
    ws.send(JSON.stringify({ text: 'no prompt' }))
    await waitUntil(() => frames.length === 3, 'three error events')
    assert.deepEqual(
      frames.map((f) => f.type === 'error' && f.code),
      ['ValidationError', 'ValidationError', 'ValidationError'],
    )
    assert.match((frames[2] as { message: string }).message, /prompt/)

    // A second prompt while one runs is refused; interrupt cancels the running one.
    frames.length = 0
    s.door.script = () => ({ hang: true })
    ws.send(JSON.stringify({ prompt: 'a long cell' }))
    await waitUntil(() => frames.some((f) => f.type === 'tool_use'), 'the long turn to run')
    ws.send(JSON.stringify({ prompt: 'meanwhile' }))
    await waitUntil(() => frames.some((f) => f.type === 'error' && f.code === 'Conflict'), 'the second prompt refused')
    assert.equal(s.door.requests.length, 2, 'the refused prompt never reached the agent')
    ws.send(JSON.stringify({ type: 'interrupt' }))
    await waitUntil(() => s.door.canceled.length === 1, 'the turn to be canceled')
    await waitUntil(() => frames.filter((f) => f.type === 'error').length === 2, 'the canceled turn to end with an error event')

    // The socket keeps its conversation: the next prompt continues it.
    frames.length = 0
    s.door.script = () => ({})
    ws.send(JSON.stringify({ prompt: 'after the interrupt' }))
    await waitUntil(() => frames.some((f) => f.type === 'final'), 'the next turn')
    assert.equal(s.door.requests.at(-1)!.conversationId, 'conversation-of-the-websocket-0001')
    assert.deepEqual(s.door.conversations.get('default/conversation-of-the-websocket-0001'), ['first', 'a long cell', 'after the interrupt'])
  })

  test('/ws: a bad session header on the upgrade gets an error event and close code 1008', async (t) => {
    const s = await doorServer(t)
    const { frames, closed } = await openWs(s.url, { [SESSION]: 'not a valid id' })
    assert.equal((await closed).code, 1008)
    assert.equal(frames[0]?.type === 'error' && frames[0].code, 'ValidationError')
    assert.equal(s.door.requests.length, 0)
  })

  test('/ws: closing the socket cancels the running turn', async (t) => {
    const s = await doorServer(t)
    s.door.script = () => ({ hang: true })
    const { ws, frames } = await openWs(s.url)
    ws.send(JSON.stringify({ prompt: 'a long cell' }))
    await waitUntil(() => frames.some((f) => f.type === 'tool_use'), 'the turn to run')
    ws.close()
    await waitUntil(() => s.door.canceled.length === 1 && !s.door.busy, 'the turn to be canceled')
  })

  test('auth: once a key exists, /invocations, /v1/agent and /ws need it; /ping does not', async (t) => {
    const s = await doorServer(t)
    const { secret } = await s.store.keys.create({ tenant: 'acme' })
    const bearer = { authorization: `Bearer ${secret}` }
    await expectError(s.call('POST', '/invocations', { json: { prompt: 'x' } }), 401, 'Unauthorized')
    await expectError(s.call('GET', '/v1/agent/status'), 401, 'Unauthorized')
    await expectJson(s.call('GET', '/ping'), 200)
    const body = await expectJson<{ conversationId: string }>(s.call('POST', '/invocations', { json: { prompt: 'x' }, headers: bearer }), 200)
    assert.equal(s.door.requests[0]!.caller.tenant, 'acme')

    // Another tenant's conversation is the same 404 as an unknown one.
    const other = (await s.store.keys.create({ tenant: 'other' })).secret
    await expectError(s.call('POST', `/v1/agent/conversations/${body.conversationId}/stop`, { headers: { authorization: `Bearer ${other}` } }), 404, 'NotFound')
    const res = await s.call('POST', `/v1/agent/conversations/${body.conversationId}/stop`, { headers: bearer })
    assert.equal(res.status, 204)
    assert.deepEqual(s.door.stopped, [{ tenant: 'acme', conversationId: body.conversationId }])

    // /ws: a wrong key in the upgrade closes with 4401; no key, then an auth message, works.
    const wrong = await openWs(s.url, { authorization: 'Bearer cbx_wrong' })
    assert.equal((await wrong.closed).code, 4401)
    assert.equal(wrong.frames[0]?.type === 'error' && wrong.frames[0].code, 'Unauthorized')
    const late = await openWs(s.url)
    t.after(() => late.ws.terminate())
    late.ws.send(JSON.stringify({ prompt: 'before auth' }))
    await waitUntil(() => late.frames.length === 1, 'the refusal')
    assert.equal(late.frames[0]?.type === 'error' && late.frames[0].code, 'Unauthorized')
    late.ws.send(JSON.stringify({ type: 'auth', apiKey: secret }))
    late.ws.send(JSON.stringify({ prompt: 'after auth' }))
    await waitUntil(() => late.frames.some((f) => f.type === 'final'), 'the turn after auth')
    assert.equal(s.door.requests.at(-1)!.caller.tenant, 'acme')
  })

  test('/v1/agent: ask (JSON and SSE), generate, stop, delete, status', async (t) => {
    const s = await doorServer(t)
    const asked = parseWire(invocationResponseSchema, await expectJson(s.call('POST', '/v1/agent/ask', { json: { prompt: 'what is 6*7?' } }), 200))
    assert.equal(asked.result, 'the answer to: what is 6*7?')
    const streamed = await sseEvents(await s.call('POST', '/v1/agent/ask', { json: { prompt: 'again', conversationId: asked.conversationId }, headers: sse }))
    assert.equal(streamed[0]?.type === 'turn_start' && streamed[0].conversationId, asked.conversationId)
    assert.equal(streamed.at(-1)?.type, 'final')
    await expectError(s.call('POST', '/v1/agent/ask', { json: { prompt: 'x', extra: 1 } }), 400, 'ValidationError')

    s.door.script = () => ({ answer: 'print(6 * 7)' })
    const generated = await expectJson<Record<string, unknown>>(
      s.call('POST', '/v1/agent/generate', { json: { prompt: 'code for 6*7', language: 'python' } }),
      200,
    )
    assert.deepEqual(Object.keys(generated).sort(), ['code', 'conversationId', 'language', 'model', 'skipped', 'text'])
    assert.equal(generated.code, 'print(6 * 7)')
    assert.equal(generated.language, 'python')
    assert.equal(s.door.requests.at(-1)!.role, 'generate')
    const bad = await expectError(s.call('POST', '/v1/agent/generate', { json: { prompt: 'x', language: 'cobol' } }), 400, 'ValidationError')
    assert.match(bad.message, /language/)

    assert.equal((await s.call('DELETE', `/v1/agent/conversations/${asked.conversationId}`)).status, 204)
    await expectError(s.call('DELETE', `/v1/agent/conversations/${asked.conversationId}`), 404, 'NotFound')
    await expectError(s.call('GET', '/v1/agent/conversations/bad id'), 400, 'ValidationError')
    await expectError(s.call('GET', '/v1/agent/conversations?limit=0'), 400, 'ValidationError')
    assert.deepEqual(await expectJson(s.call('GET', '/v1/agent/status'), 200), { configured: true, models: [] })
  })

  test('the agent routes are in the OpenAPI document', async (t) => {
    const s = await doorServer(t)
    const doc = await expectJson<{ paths: Record<string, Record<string, { operationId: string }>> }>(s.call('GET', '/openapi.json'), 200)
    for (const [p, method, op] of [
      ['/invocations', 'post', 'invokeAgent'],
      ['/v1/agent/ask', 'post', 'askAgent'],
      ['/v1/agent/generate', 'post', 'generateCode'],
      ['/v1/agent/conversations', 'get', 'listConversations'],
      ['/v1/agent/conversations/{conversationId}', 'get', 'getConversation'],
      ['/v1/agent/conversations/{conversationId}', 'delete', 'deleteConversation'],
      ['/v1/agent/conversations/{conversationId}/stop', 'post', 'stopConversation'],
      ['/v1/agent/status', 'get', 'agentStatus'],
    ] as const) {
      assert.equal(doc.paths[p]?.[method]?.operationId, op, `${method} ${p}`)
    }
  })
})

// ---------------------------------------------------------------------------------------------
// The same doors with the real agent service, the real agent (Strands and the OpenAI client) and
// a scripted OpenAI-compatible model server; code runs in real sessions (fake driver).

const MODEL = 'openai:gpt-scripted'
const LEAP_CODE = 'print(sum(1 for y in range(2000, 2025) if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)))'

/**
 * A model that runs code before it answers: with no tool result yet it calls execute_code (a
 * prompt containing "sleep" gets a long cell), then it answers from what the code printed.
 */
function verifyingModel(req: ModelRequestView): ScriptedReply {
  if (req.toolResults.length === 0) {
    const last = req.userTexts.at(-1) ?? ''
    const code = /sleep/.test(last) ? 'import time\ntime.sleep(60)' : LEAP_CODE
    return { toolUse: { name: 'execute_code', input: { code, language: 'python' } }, text: 'Let me count. ' }
  }
  return { text: `There are ${req.toolResults.at(-1)!.trim()} leap years.` }
}

/** A real server whose agent talks to a scripted model server; `models: false` leaves the agent without a model. */
async function agentServer(t: TestContext, script: (req: ModelRequestView, index: number) => ScriptedReply = verifyingModel, models = true) {
  const modelServer = await startModelServer('openai', script)
  t.after(() => modelServer.close())
  const env = models ? { CODEBOX_AGENT_MODELS: MODEL, ...modelEnv('openai', modelServer) } : {}
  const s = await testServer(t, { env })
  return { s, modelServer }
}

describe('with the real agent', () => {
  test('POST /invocations runs the code and answers from its output; the session header continues the conversation', async (t) => {
    const { s, modelServer } = await agentServer(t)
    const res = await s.call('POST', '/invocations', { json: { prompt: 'how many leap years between 2000 and 2024?' }, headers: { [USER]: 'alice' } })
    const body = parseWire(invocationResponseSchema, await expectJson(res, 200))
    assert.equal(body.result, 'There are 7 leap years.')
    assert.equal(modelServer.requests[1]?.toolResults.at(-1)?.trim(), '7', 'the answer came from the sandbox')
    assert.equal(res.headers.get(SESSION), body.conversationId)
    assert.ok(body.conversationId.length >= 33, 'an id AWS would take too')
    assert.equal(body.model, MODEL)
    const types = body.events.map((e) => e.type)
    assert.deepEqual([types[0], types[1], types.at(-1)], ['turn_start', 'model', 'final'])
    const toolUse = body.events.find((e) => e.type === 'tool_use')
    assert.equal(toolUse?.type === 'tool_use' && toolUse.code, LEAP_CODE)
    const texts = body.events.filter((e) => e.type === 'text')
    assert.ok(texts.length <= 2, `text deltas merged per run: ${JSON.stringify(texts)}`)
    assert.ok(body.sessionId, 'the conversation owns a code session')

    const again = await s.call('POST', '/invocations', {
      json: { input: { prompt: 'and how many is that per decade?' } },
      headers: { [SESSION]: body.conversationId },
    })
    const second = parseWire(invocationResponseSchema, await expectJson(again, 200))
    assert.equal(second.conversationId, body.conversationId)
    assert.equal(again.headers.get(SESSION), body.conversationId)
    assert.equal(second.sessionId, body.sessionId, 'the same code session across turns')
    const resumed = modelServer.requests[2]!
    assert.ok(
      resumed.userTexts.some((u) => u.includes('how many leap years between 2000 and 2024?')),
      'the earlier prompt is in the model’s context',
    )
    assert.ok(JSON.stringify(resumed.raw).includes('There are 7 leap years.'), 'and the earlier answer')

    const history = await expectJson<{ conversation: { actor: string; turns: number }; turns: { prompt: string; outcome: string }[] }>(
      s.call('GET', `/v1/agent/conversations/${body.conversationId}`),
      200,
    )
    assert.equal(history.conversation.actor, 'alice')
    assert.deepEqual(
      history.turns.map((x) => [x.prompt, x.outcome]),
      [
        ['how many leap years between 2000 and 2024?', 'ok'],
        ['and how many is that per decade?', 'ok'],
      ],
    )
  })

  test('POST /invocations streams the turn as SSE, read with the SDK’s parser', async (t) => {
    const { s } = await agentServer(t)
    const res = await s.call('POST', '/invocations', { json: { prompt: 'how many leap years between 2000 and 2024?' }, headers: sse })
    const conversationId = res.headers.get(SESSION)
    const events = await sseEvents(res)
    assert.equal(events[0]?.type === 'turn_start' && events[0].conversationId, conversationId)
    const result = events.find((e) => e.type === 'tool_result')
    assert.equal(result?.type === 'tool_result' && result.text.trim(), '7')
    assert.deepEqual(events.at(-1), {
      ...(events.at(-1) as object),
      type: 'final',
      text: 'There are 7 leap years.',
      model: MODEL,
    })
  })

  test('no model configured: /invocations and /v1/agent/ask are a 503 ModelNotConfigured naming what to set; status says so too', async (t) => {
    const { s } = await agentServer(t, verifyingModel, false)
    for (const [p, headers] of [
      ['/invocations', {}],
      ['/invocations', sse],
      ['/v1/agent/ask', {}],
    ] as const) {
      const e = await expectError(s.call('POST', p, { json: { prompt: 'hi' }, headers }), 503, 'ModelNotConfigured')
      assert.match(e.message, /CODEBOX_AGENT_MODELS/)
      assert.doesNotMatch(e.message, /\n\s+at /, 'no stack trace')
    }
    const status = await expectJson<{ configured: boolean; hint?: string }>(s.call('GET', '/v1/agent/status'), 200)
    assert.equal(status.configured, false)
    assert.match(status.hint ?? '', /CODEBOX_AGENT_MODELS/)
    const e = await expectError(s.call('POST', '/invocations', { json: { question: 'hi' } }), 400, 'ValidationError')
    assert.match(e.message, /prompt/)
  })

  test('every model failing after the turn started: an error event on SSE, 502 ModelUnavailable as JSON', async (t) => {
    const { s } = await agentServer(t, () => ({ status: 400, message: 'scripted refusal' }))
    const events = await sseEvents(await s.call('POST', '/invocations', { json: { prompt: 'hi' }, headers: sse }))
    assert.equal(events[0]?.type, 'turn_start')
    const last = events.at(-1)
    assert.equal(last?.type === 'error' && last.code, 'ModelUnavailable', JSON.stringify(last))
    const res = await s.call('POST', '/invocations', { json: { prompt: 'hi' } })
    const conversationId = res.headers.get(SESSION)
    const e = await expectError(res, 502, 'ModelUnavailable')
    assert.match(e.message, /openai:gpt-scripted/)
    assert.equal(e.details.conversationId, conversationId, 'the error names the conversation it happened in')
  })

  test('/ping is HealthyBusy while a turn runs (model or cell); a client leaving the SSE stream cancels the turn and its cell', async (t) => {
    const { s } = await agentServer(t, (req) => (/think/.test(req.userTexts.at(-1) ?? '') ? { hang: true } : verifyingModel(req)))
    const ping = async (): Promise<{ status: string; time_of_last_update: number }> => expectJson(s.call('GET', '/ping'), 200)
    assert.equal((await ping()).status, 'Healthy')
    /** Starts a streamed turn and reads it until `until`; returns the conversation and the way to hang up. */
    const startTurn = async (prompt: string, until: AgentEvent['type'], conversationId?: string) => {
      const abort = new AbortController()
      const res = await fetch(`${s.url}/invocations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...sse, ...(conversationId ? { [SESSION]: conversationId } : {}) },
        body: JSON.stringify({ prompt }),
        signal: abort.signal,
      })
      for await (const e of parseSse(res.body!)) if ((JSON.parse(e.data) as AgentEvent).type === until) break
      return { conversationId: res.headers.get(SESSION)!, hangUp: () => abort.abort() }
    }

    // The model is thinking (no code runs): the turn alone makes the server busy.
    const thinking = await startTurn('think hard', 'turn_start')
    assert.ok(!s.engine.list().some((x) => x.active > 0), 'no cell runs')
    const busy = await ping()
    assert.equal(busy.status, 'HealthyBusy')
    assert.ok(Math.abs(busy.time_of_last_update - Date.now() / 1000) < 5, 'the time the status changed')
    thinking.hangUp()
    await waitUntil(async () => (await ping()).status === 'Healthy', '/ping to say Healthy again', 20_000)

    // A long cell: leaving stops the turn and interrupts the cell.
    const cell = await startTurn('sleep a minute, then count', 'tool_use', thinking.conversationId)
    await waitUntil(async () => s.engine.list().some((x) => x.active > 0), 'the cell to run')
    assert.equal((await ping()).status, 'HealthyBusy')
    cell.hangUp()
    await waitUntil(async () => (await ping()).status === 'Healthy', '/ping to say Healthy again', 20_000)
    const history = await expectJson<{ turns: { outcome: string }[] }>(s.call('GET', `/v1/agent/conversations/${thinking.conversationId}`), 200)
    assert.deepEqual(
      history.turns.map((x) => x.outcome),
      ['canceled', 'canceled'],
    )
  })

  test('/ws with the real agent: a turn, a prompt refused while one runs, interrupt, bad JSON', async (t) => {
    const { s } = await agentServer(t)
    const { ws, frames } = await openWs(s.url)
    t.after(() => ws.terminate())
    ws.send(JSON.stringify({ prompt: 'how many leap years between 2000 and 2024?' }))
    await waitUntil(() => frames.some((f) => f.type === 'final' || f.type === 'error'), 'the turn to end', 20_000)
    const done = frames.at(-1)
    assert.equal(done?.type === 'final' && done.text, 'There are 7 leap years.')
    const conversationId = frames[0]?.type === 'turn_start' ? frames[0].conversationId : assert.fail('turn_start first')

    frames.length = 0
    ws.send('not json')
    await waitUntil(() => frames.length === 1, 'the error event')
    assert.equal(frames[0]?.type === 'error' && frames[0].code, 'ValidationError')

    frames.length = 0
    ws.send(JSON.stringify({ prompt: 'sleep a minute, then count' }))
    await waitUntil(() => frames.some((f) => f.type === 'tool_use'), 'the long cell to start', 20_000)
    ws.send(JSON.stringify({ prompt: 'meanwhile?' }))
    await waitUntil(() => frames.some((f) => f.type === 'error' && f.code === 'Conflict'), 'the second prompt refused')
    await waitUntil(() => s.engine.list().some((x) => x.active > 0), 'the cell to run')
    ws.send(JSON.stringify({ type: 'interrupt' }))
    await waitUntil(() => frames.some((f) => f.type === 'error' && f.code === 'Canceled'), 'the turn to end as canceled', 20_000)
    assert.equal(frames.filter((f) => f.type === 'turn_start').length, 1)
    assert.equal(frames[0]?.type === 'turn_start' && frames[0].conversationId, conversationId, 'the socket keeps its conversation')

    frames.length = 0
    ws.send(JSON.stringify({ prompt: 'how many leap years between 2000 and 2024?' }))
    await waitUntil(() => frames.some((f) => f.type === 'final'), 'a turn after the interrupt', 20_000)
    const history = await expectJson<{ turns: { outcome: string }[] }>(s.call('GET', `/v1/agent/conversations/${conversationId}`), 200)
    assert.deepEqual(
      history.turns.map((x) => x.outcome),
      ['ok', 'canceled', 'ok'],
    )
  })

  test('/v1/agent: ask, generate, list, history, stop, delete, status; another tenant gets 404', async (t) => {
    const { s } = await agentServer(t, (req) =>
      /plot/.test(req.userTexts.at(-1) ?? '') ? { text: 'Here it is:\n```python\nprint(6 * 7)\n```\nIt prints 42.' } : verifyingModel(req),
    )
    const { secret } = await s.store.keys.create({ tenant: 'acme' })
    const other = (await s.store.keys.create({ tenant: 'other' })).secret
    const key = { authorization: `Bearer ${secret}` }
    await expectError(s.call('POST', '/v1/agent/ask', { json: { prompt: 'x' } }), 401, 'Unauthorized')
    await expectError(s.call('POST', '/invocations', { json: { prompt: 'x' } }), 401, 'Unauthorized')

    const asked = parseWire(
      invocationResponseSchema,
      await expectJson(s.call('POST', '/v1/agent/ask', { json: { prompt: 'how many leap years between 2000 and 2024?' }, headers: key }), 200),
    )
    assert.equal(asked.result, 'There are 7 leap years.')
    const generated = await expectJson<Record<string, unknown>>(s.call('POST', '/v1/agent/generate', { json: { prompt: 'plot 6*7' }, headers: key }), 200)
    assert.equal(String(generated.code).trim(), 'print(6 * 7)')
    assert.equal(generated.language, 'python')
    assert.equal(generated.model, MODEL)
    const streamed = await sseEvents(
      await s.call('POST', '/v1/agent/generate', {
        json: { prompt: 'plot it again', language: 'python', conversationId: generated.conversationId as string },
        headers: { ...key, ...sse },
      }),
    )
    const done = streamed.at(-1)
    assert.equal(done?.type === 'final' && done.code?.trim(), 'print(6 * 7)')

    const list = await expectJson<{ items: { conversationId: string }[]; nextToken?: string }>(
      s.call('GET', '/v1/agent/conversations?limit=1', { headers: key }),
      200,
    )
    assert.equal(list.items.length, 1)
    assert.ok(list.nextToken, 'a second page')
    const rest = await expectJson<{ items: { conversationId: string }[] }>(
      s.call('GET', `/v1/agent/conversations?limit=1&nextToken=${encodeURIComponent(list.nextToken)}`, { headers: key }),
      200,
    )
    assert.deepEqual([...list.items, ...rest.items].map((c) => c.conversationId).sort(), [asked.conversationId, generated.conversationId as string].sort())
    assert.deepEqual(
      (await expectJson<{ items: unknown[] }>(s.call('GET', '/v1/agent/conversations', { headers: { authorization: `Bearer ${other}` } }), 200)).items,
      [],
    )

    // Another tenant: the same 404 as an unknown id, on every conversation route.
    for (const [method, p] of [
      ['GET', `/v1/agent/conversations/${asked.conversationId}`],
      ['POST', `/v1/agent/conversations/${asked.conversationId}/stop`],
      ['DELETE', `/v1/agent/conversations/${asked.conversationId}`],
      ['GET', '/v1/agent/conversations/no-such-conversation'],
    ] as const) {
      const e = await expectError(
        s.call(method, p, { headers: method === 'GET' && p.endsWith('no-such-conversation') ? key : { authorization: `Bearer ${other}` } }),
        404,
        'NotFound',
      )
      assert.doesNotMatch(e.message, /acme/)
    }

    // Stop ends the code session and keeps the memory; delete removes it.
    const sessionId = asked.sessionId!
    assert.equal((await s.call('POST', `/v1/agent/conversations/${asked.conversationId}/stop`, { headers: key })).status, 204)
    await waitUntil(
      async () => (await expectJson<{ status: string }>(s.call('GET', `/v1/sessions/${sessionId}`, { headers: key }), 200)).status !== 'READY',
      'the code session to end',
    )
    const kept = await expectJson<{ turns: unknown[] }>(s.call('GET', `/v1/agent/conversations/${asked.conversationId}`, { headers: key }), 200)
    assert.equal(kept.turns.length, 1)
    assert.equal((await s.call('DELETE', `/v1/agent/conversations/${asked.conversationId}`, { headers: key })).status, 204)
    await expectError(s.call('GET', `/v1/agent/conversations/${asked.conversationId}`, { headers: key }), 404, 'NotFound')

    const status = await expectJson<{ configured: boolean; models: { model: string; provider: string }[]; lastAnswered?: { model: string } }>(
      s.call('GET', '/v1/agent/status', { headers: key }),
      200,
    )
    assert.equal(status.configured, true)
    assert.deepEqual(
      status.models.map((m) => [m.model, m.provider]),
      [[MODEL, 'openai']],
    )
    assert.equal(status.lastAnswered?.model, MODEL)
  })
})
