/**
 * The codebox agent through AWS's AgentCore Runtime API: InvokeAgentRuntimeCommand and
 * StopRuntimeSessionCommand of the real AWS SDK, SigV4-signed with a codebox AWS key, pointed at
 * codebox with only `endpoint` changed. JSON and SSE answers read from the SDK's response stream,
 * a conversation continued with the same runtimeSessionId, a wrong runtime or endpoint, the
 * agent's own failures as RuntimeClientError, tenancy.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Readable } from 'node:stream'
import { after, before, describe, test, type TestContext } from 'node:test'
import {
  BedrockAgentCoreClient,
  InvokeAgentRuntimeCommand,
  StopRuntimeSessionCommand,
  type InvokeAgentRuntimeCommandInput,
} from '@aws-sdk/client-bedrock-agentcore'
import Fastify from 'fastify'
import { CodeboxError, type AgentEvent, type InvocationResponse } from '@codebox/core'
import type { RunningServer } from '@codebox/server'
import { modelEnv, startModelServer, type ModelServer } from '../../agent/test/model-servers.ts'
import { agentCoreRoutes } from '../src/agentcore/index.ts'
import { Store, type StoreApi } from '../src/store/index.ts'
import { FakeAgentDoor, sandboxModelScript } from './agent-fixtures.ts'
import { realServer, testServer } from './fixtures.ts'

const region = 'eu-west-1'
const arn = `arn:aws:bedrock-agentcore:${region}:123456789012:runtime/codebox-agent`
type Credentials = { accessKeyId: string; secretAccessKey: string }

interface DoorServer {
  url: string
  store: Store
  door: FakeAgentDoor
}

/** The AgentCore scopes of the server (SigV4, tenancy, AWS errors) in front of a scripted agent. */
async function doorServer(t: TestContext): Promise<DoorServer> {
  const app = Fastify({ logger: false, routerOptions: { maxParamLength: 5000 } })
  app.decorateRequest('caller', null as never)
  const store = Store.open(':memory:')
  const door = new FakeAgentDoor()
  await agentCoreRoutes(app, {
    store,
    // The runtime routes never reach the code-interpreter sessions.
    sessions: undefined as never,
    body: { maxBytes: 1 << 20, idleTimeoutMs: 5_000 },
    holdMs: 1_000,
    loopbackOnly: true,
    agent: door,
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.after(async () => {
    await app.close()
    store.close()
  })
  return { url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`, store, door }
}

const client = (url: string, credentials: Credentials): BedrockAgentCoreClient =>
  new BedrockAgentCoreClient({ endpoint: url, region, credentials, maxAttempts: 1 })

/** A new AWS key of `tenant`, as `codebox keys create --aws` makes it. */
async function awsKey(store: Pick<StoreApi, 'awsKeys'>, tenant: string): Promise<Credentials> {
  const key = await store.awsKeys.create({ tenant })
  return { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey }
}

async function invokeJson(c: BedrockAgentCoreClient, input: Partial<InvokeAgentRuntimeCommandInput> & { prompt?: string }) {
  const { prompt, ...rest } = input
  const res = await c.send(
    new InvokeAgentRuntimeCommand({
      agentRuntimeArn: arn,
      qualifier: 'DEFAULT',
      contentType: 'application/json',
      payload: JSON.stringify({ prompt }),
      ...rest,
    }),
  )
  assert.ok(res.response, 'the SDK exposes the answer as a stream')
  const body = JSON.parse(await res.response.transformToString()) as InvocationResponse
  return { res, body }
}

/** Reads SSE `data:` lines off the SDK's response stream as they arrive. */
async function* sseEvents(stream: Readable): AsyncGenerator<AgentEvent> {
  let buffer = ''
  for await (const chunk of stream) {
    buffer += Buffer.from(chunk as Uint8Array).toString('utf8')
    let end: number
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      const data = block
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n')
      if (data) yield JSON.parse(data) as AgentEvent
    }
  }
}

async function rejects(p: Promise<unknown>, name: string, message?: RegExp): Promise<{ message: string; $metadata: { httpStatusCode?: number } }> {
  const e = (await p.then(
    () => assert.fail(`expected ${name}`),
    (e: unknown) => e,
  )) as { name: string; message: string; $metadata: { httpStatusCode?: number } }
  assert.equal(e.name, name, e.message)
  if (message) assert.match(e.message, message)
  return e
}

describe('InvokeAgentRuntime (scripted agent)', () => {
  test('JSON answer through the AWS SDK; the same runtimeSessionId continues the conversation', async (t) => {
    const s = await doorServer(t)
    const key = await awsKey(s.store, 'acme')
    const c = client(s.url, key)
    const first = await invokeJson(c, { prompt: 'what is 6*7?', runtimeUserId: 'alice' })
    assert.match(first.res.contentType ?? '', /^application\/json/)
    assert.equal(first.res.statusCode, 200)
    assert.equal(first.body.result, 'the answer to: what is 6*7?')
    assert.deepEqual(first.body.output.message.content, [{ text: 'the answer to: what is 6*7?' }])
    // The SDK made up a session id (36 characters); it is the conversation's id, returned as AWS does.
    const sessionId = first.res.runtimeSessionId!
    assert.equal(sessionId.length, 36)
    assert.equal(first.body.conversationId, sessionId)
    assert.deepEqual(
      first.body.events.map((e) => e.type),
      ['turn_start', 'model', 'tool_use', 'tool_result', 'text', 'final'],
      'text deltas are merged',
    )
    assert.deepEqual(s.door.requests[0], {
      caller: { tenant: 'acme', keyId: key.accessKeyId },
      role: 'answer',
      prompt: 'what is 6*7?',
      conversationId: sessionId,
      actor: 'alice',
      signal: s.door.requests[0]!.signal,
      requestId: s.door.requests[0]!.requestId,
    })
    const second = await invokeJson(c, { prompt: 'and times two?', runtimeSessionId: sessionId })
    assert.equal(second.res.runtimeSessionId, sessionId)
    assert.equal(second.body.conversationId, sessionId)
    assert.deepEqual(s.door.conversations.get(`acme/${sessionId}`), ['what is 6*7?', 'and times two?'])
    // {"input": {"prompt"}} (seed 002's FastAPI form) is accepted too.
    const res = await c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, payload: JSON.stringify({ input: { prompt: 'hello' } }) }))
    assert.equal(JSON.parse(await res.response!.transformToString()).result, 'the answer to: hello')
  })

  test('SSE when the caller accepts text/event-stream: AgentEvents read off the response stream', async (t) => {
    const s = await doorServer(t)
    const c = client(s.url, await awsKey(s.store, 'acme'))
    const res = await c.send(
      new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, qualifier: 'DEFAULT', accept: 'text/event-stream', payload: JSON.stringify({ prompt: 'count' }) }),
    )
    assert.match(res.contentType ?? '', /^text\/event-stream/)
    const events: AgentEvent[] = []
    for await (const e of sseEvents(res.response as unknown as Readable)) events.push(e)
    assert.deepEqual(
      events.map((e) => e.type),
      ['turn_start', 'model', 'tool_use', 'tool_result', 'text', 'text', 'text', 'final'],
    )
    const start = events[0] as Extract<AgentEvent, { type: 'turn_start' }>
    assert.equal(start.conversationId, res.runtimeSessionId)
    assert.equal((events.at(-1) as Extract<AgentEvent, { type: 'final' }>).text, 'the answer to: count')
  })

  test('a wrong runtime, endpoint, ARN, session id or payload is refused with the AWS exception naming it', async (t) => {
    const s = await doorServer(t)
    const c = client(s.url, await awsKey(s.store, 'acme'))
    const payload = JSON.stringify({ prompt: 'hi' })
    const other = `arn:aws:bedrock-agentcore:${region}:123456789012:runtime/my_agent-AbCdEf1234`
    const e = await rejects(
      c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: other, payload })),
      'ResourceNotFoundException',
      /my_agent-AbCdEf1234.*codebox-agent/,
    )
    assert.equal(e.$metadata.httpStatusCode, 404)
    await rejects(c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, qualifier: 'canary', payload })), 'ResourceNotFoundException', /canary.*DEFAULT/)
    await rejects(c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: 'codebox', payload })), 'ValidationException', /not a runtime ARN/)
    await rejects(c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, runtimeSessionId: 'short', payload })), 'ValidationException', /33-256/)
    await rejects(c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, payload: 'not json' })), 'ValidationException', /not valid JSON/)
    await rejects(c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, payload: '{"question": "hi"}' })), 'ValidationException', /no prompt/)
    await rejects(c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, payload: '{"prompt": 7}' })), 'ValidationException', /payload\.prompt/)
    assert.equal(s.door.requests.length, 0, 'nothing reached the agent')
  })

  test("the agent's failures: RuntimeClientError (424) with the codebox code; the service's own checks keep theirs", async (t) => {
    const s = await doorServer(t)
    const c = client(s.url, await awsKey(s.store, 'acme'))
    const payload = JSON.stringify({ prompt: 'hi' })
    const hint = 'no model is configured: set CODEBOX_AGENT_MODELS'
    s.door.script = () => ({ throwBefore: new CodeboxError('ModelNotConfigured', hint) })
    const e = await rejects(c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, payload })), 'RuntimeClientError', /CODEBOX_AGENT_MODELS/)
    assert.equal(e.$metadata.httpStatusCode, 424)
    s.door.script = () => ({ failWith: { code: 'ModelUnavailable', message: 'openai:x: 529 overloaded' } })
    await rejects(c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, payload })), 'RuntimeClientError', /ModelUnavailable.*529 overloaded/)
    s.door.script = () => ({ throwBefore: new CodeboxError('Conflict', 'a turn of this conversation is already running') })
    await rejects(c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, payload })), 'ConflictException', /already running/)
    s.door.script = () => ({ throwBefore: new CodeboxError('RateLimited', 'too many agent turns', { details: { retryAfterSeconds: 3 } }) })
    await rejects(c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, payload })), 'ThrottlingException')
    // In a stream, the failure is the stream's last event.
    s.door.script = () => ({ failWith: { code: 'LimitExceeded', message: 'the turn used more than 20 steps' } })
    const res = await c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, accept: 'text/event-stream', payload }))
    const events: AgentEvent[] = []
    for await (const ev of sseEvents(res.response as unknown as Readable)) events.push(ev)
    assert.deepEqual(events.at(-1), { type: 'error', code: 'LimitExceeded', message: 'the turn used more than 20 steps' })
  })

  test('unsigned or foreign-key calls are refused; a tenant cannot stop another tenant’s runtime session', async (t) => {
    const s = await doorServer(t)
    const acme = client(s.url, await awsKey(s.store, 'acme'))
    const other = client(s.url, await awsKey(s.store, 'other'))
    const unsigned = await fetch(`${s.url}/runtimes/${encodeURIComponent(arn)}/invocations`, { method: 'POST', body: '{"prompt":"hi"}' })
    assert.equal(unsigned.status, 403)
    assert.equal(unsigned.headers.get('x-amzn-errortype'), 'AccessDeniedException')
    await rejects(
      client(s.url, { accessKeyId: 'CBXAAAAAAAAAAAAAAAAA', secretAccessKey: 'x' }).send(
        new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, payload: '{"prompt":"hi"}' }),
      ),
      'AccessDeniedException',
    )
    const { res } = await invokeJson(acme, { prompt: 'mine' })
    const sessionId = res.runtimeSessionId!
    await rejects(other.send(new StopRuntimeSessionCommand({ agentRuntimeArn: arn, runtimeSessionId: sessionId })), 'ResourceNotFoundException')
    const stopped = await acme.send(new StopRuntimeSessionCommand({ agentRuntimeArn: arn, runtimeSessionId: sessionId, qualifier: 'DEFAULT' }))
    assert.equal(stopped.runtimeSessionId, sessionId)
    assert.equal(stopped.statusCode, 200)
    assert.deepEqual(s.door.stopped, [{ tenant: 'acme', conversationId: sessionId }])
    await rejects(acme.send(new StopRuntimeSessionCommand({ agentRuntimeArn: arn, runtimeSessionId: 'x'.repeat(40) })), 'ResourceNotFoundException')
  })

  test('without a session id header (raw HTTP; the SDK always sends one) the answer names the new one', async (t) => {
    const s = await doorServer(t)
    // No key was ever created: the loopback server is open, unsigned calls are the default tenant.
    const res = await fetch(`${s.url}/runtimes/${encodeURIComponent(arn)}/invocations`, { method: 'POST', body: '{"prompt":"hi"}' })
    assert.equal(res.status, 200, await res.clone().text())
    const sessionId = res.headers.get('x-amzn-bedrock-agentcore-runtime-session-id')
    assert.ok(sessionId && sessionId.length >= 33, `a new session id: ${sessionId}`)
    assert.equal(((await res.json()) as InvocationResponse).conversationId, sessionId)
    assert.equal(s.door.requests[0]!.conversationId, undefined)
    assert.deepEqual(s.door.requests[0]!.caller, { tenant: 'default' })
  })

  test('a caller that goes away cancels the turn', async (t) => {
    const s = await doorServer(t)
    const c = client(s.url, await awsKey(s.store, 'acme'))
    s.door.script = () => ({ hang: true })
    const controller = new AbortController()
    const sent = c.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, accept: 'text/event-stream', payload: '{"prompt":"loop forever"}' }), {
      abortSignal: controller.signal,
    })
    const res = await sent
    const reader = sseEvents(res.response as unknown as Readable)
    assert.equal((await reader.next()).value?.type, 'turn_start')
    controller.abort()
    ;(res.response as unknown as Readable).destroy()
    const deadline = Date.now() + 5_000
    while (s.door.canceled.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    assert.equal(s.door.canceled.length, 1, 'the turn saw its signal abort')
    assert.equal(s.door.busy, false)
  })
})

describe('InvokeAgentRuntime with the real agent and sandbox', () => {
  let parent: string
  let model: ModelServer
  let server: RunningServer
  let c: BedrockAgentCoreClient

  before(async () => {
    parent = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-agent-aws-'))
    model = await startModelServer('openai', sandboxModelScript)
    fs.mkdirSync(path.join(parent, 'main'))
    server = await realServer(path.join(parent, 'main'), { CODEBOX_AGENT_MODELS: 'openai:gpt-scripted', ...modelEnv('openai', model) })
    c = client(server.url, await awsKey(server.store, 'acme'))
  })
  after(async () => {
    await server?.close()
    await model?.close()
    fs.rmSync(parent, { recursive: true, force: true })
  })

  test('the answer is computed in the sandbox, as JSON and as SSE', async () => {
    const { body } = await invokeJson(c, { prompt: 'How many leap years between 2000 and 2024?' })
    assert.match(body.result, /There are 7 leap years/)
    assert.equal(body.model, 'openai:gpt-scripted')
    const use = body.events.find((e) => e.type === 'tool_use')
    assert.ok(use?.type === 'tool_use' && use.code?.includes('range(2000, 2025)'))
    assert.equal(model.requests.at(-1)?.toolResults.at(-1)?.trim(), '7', 'the model answered from the sandbox output')

    const res = await c.send(
      new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, accept: 'text/event-stream', payload: JSON.stringify({ prompt: 'How many leap years, again?' }) }),
    )
    const events: AgentEvent[] = []
    for await (const e of sseEvents(res.response as unknown as Readable)) events.push(e)
    const result = events.find((e) => e.type === 'tool_result')
    assert.ok(result?.type === 'tool_result' && result.text.trim() === '7', JSON.stringify(result))
    const final = events.at(-1)
    assert.ok(final?.type === 'final' && /7 leap years/.test(final.text), JSON.stringify(final))
  })

  test('the runtime session keeps the code session across invokes; StopRuntimeSession ends it, memory stays', async () => {
    const first = await invokeJson(c, { prompt: '[set] x = 41' })
    const sessionId = first.res.runtimeSessionId!
    const second = await invokeJson(c, { prompt: '[x+1]', runtimeSessionId: sessionId })
    assert.match(second.body.result, /x \+ 1 gives: 42/)
    const stopped = await c.send(new StopRuntimeSessionCommand({ agentRuntimeArn: arn, runtimeSessionId: sessionId }))
    assert.equal(stopped.runtimeSessionId, sessionId)
    // The conversation continues (its memory is sent to the model) in a fresh code session: x is gone.
    const third = await invokeJson(c, { prompt: '[x+1] again', runtimeSessionId: sessionId })
    assert.equal(third.body.conversationId, sessionId)
    assert.notEqual(third.body.sessionId, second.body.sessionId)
    assert.match(third.body.result, /NameError/)
    assert.ok(JSON.stringify(model.requests.at(-1)?.raw).includes('x + 1 gives: 42'), 'the earlier turns went back to the model')
  })

  test('without a model: RuntimeClientError saying what to set', async (t) => {
    const s = await testServer(t, { env: { CODEBOX_AGENT_MODELS: '' } })
    const e = await rejects(
      client(s.url, await awsKey(s.store, 'acme')).send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: arn, payload: '{"prompt":"hi"}' })),
      'RuntimeClientError',
      /CODEBOX_AGENT_MODELS/,
    )
    assert.equal(e.$metadata.httpStatusCode, 424)
  })
})
