/**
 * The codebox agent over A2A, driven by the A2A client of `@a2a-js/sdk`: the public agent card
 * (v1.0 and the v0.3 form), v1.0 SendMessage and streaming, v0.3 message/send and message/stream
 * (the SDK's legacy transport and the raw wire form AgentCore and Strands peers send), the context
 * id continuing a conversation, cancel, failures as failed tasks, and API keys.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test, type TestContext } from 'node:test'
import { TaskState, type Message, type StreamResponse, type Task } from '@a2a-js/sdk'
import { ClientFactory, ClientFactoryOptions, DefaultAgentCardResolver, JsonRpcTransportFactory, type Client } from '@a2a-js/sdk/client'
import { LegacyJsonRpcTransport } from '@a2a-js/sdk/compat/v0_3/client'
import { ServerCallContext } from '@a2a-js/sdk/server'
import Fastify from 'fastify'
import { CodeboxError } from '@codebox/core'
import type { RunningServer } from '@codebox/server'
import { modelEnv, startModelServer, type ModelServer } from '../../agent/test/model-servers.ts'
import { a2aRoutes } from '../src/apis/a2a/index.ts'
import { BoundedTaskStore } from '../src/apis/a2a/task-store.ts'
import { Authenticator } from '../src/http/auth.ts'
import { Store } from '../src/store/index.ts'
import { userMessage } from './a2a-fixtures.ts'
import { FakeAgentDoor, fakePng, sandboxModelScript } from './agent-fixtures.ts'
import { realServer } from './fixtures.ts'

interface DoorServer {
  url: string
  store: Store
  door: FakeAgentDoor
}

/** The A2A routes with the server's authenticator in front of a scripted agent. */
async function doorServer(t: TestContext): Promise<DoorServer> {
  const app = Fastify({ logger: false })
  app.decorateRequest('caller', null as never)
  const store = Store.open(':memory:')
  const door = new FakeAgentDoor()
  await a2aRoutes(app, {
    agent: door,
    auth: new Authenticator(store, { loopbackOnly: true }),
    body: { maxBytes: 1 << 20, idleTimeoutMs: 5_000 },
    version: '9.9.9',
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.after(async () => {
    await app.close()
    store.close()
  })
  return { url: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`, store, door }
}

/** fetch that sends a codebox API key, as an A2A client configured with a bearer token does. */
const withKey =
  (key: string | undefined): typeof fetch =>
  (input, init) =>
    fetch(input, key ? { ...init, headers: { ...Object.fromEntries(new Headers(init?.headers).entries()), authorization: `Bearer ${key}` } } : init)

async function v1Client(url: string, key?: string): Promise<Client> {
  const fetchImpl = withKey(key)
  const factory = new ClientFactory(
    ClientFactoryOptions.createFrom(ClientFactoryOptions.default, {
      transports: [new JsonRpcTransportFactory({ fetchImpl })],
      cardResolver: new DefaultAgentCardResolver({ fetchImpl }),
    }),
  )
  return factory.createFromUrl(url)
}

const textOf = (parts: { content?: { $case: string; value?: unknown } }[] | undefined): string =>
  (parts ?? []).map((p) => (p.content?.$case === 'text' ? String(p.content.value) : '')).join('')

function asTask(result: Message | Task): Task {
  assert.ok('status' in result && 'id' in result, `a task, got ${JSON.stringify(result).slice(0, 300)}`)
  return result
}

describe('A2A (scripted agent)', () => {
  test('the agent card is public: v1.0 for a v1.0 client, the v0.3 form otherwise', async (t) => {
    const s = await doorServer(t)
    await s.store.keys.create({ tenant: 'acme' })
    const v1 = await fetch(`${s.url}/.well-known/agent-card.json`, { headers: { 'A2A-Version': '1.0' } })
    assert.equal(v1.status, 200)
    const card = (await v1.json()) as Record<string, any>
    assert.equal(card.name, 'codebox')
    assert.deepEqual(
      card.skills.map((k: { id: string }) => k.id),
      ['answer-by-running-code', 'generate-code'],
    )
    assert.equal(card.capabilities.streaming, true)
    assert.deepEqual(
      card.supportedInterfaces.map((i: Record<string, string>) => [i.url, i.protocolBinding, i.protocolVersion]),
      [
        [`${s.url}/a2a`, 'JSONRPC', '1.0'],
        [`${s.url}/a2a`, 'JSONRPC', '0.3'],
      ],
    )
    assert.equal(card.securitySchemes.bearer.httpAuthSecurityScheme.scheme, 'Bearer', 'keys exist: the card says how to authenticate')
    const legacy = (await (await fetch(`${s.url}/.well-known/agent-card.json`)).json()) as Record<string, any>
    assert.equal(legacy.url, `${s.url}/a2a`)
    assert.equal(legacy.protocolVersion, '0.3')
    assert.equal(legacy.preferredTransport, 'JSONRPC')
    assert.equal(legacy.skills.length, 2)
  })

  test('v1.0 SendMessage: a completed task with the answer as an artifact; the context id continues the conversation', async (t) => {
    const s = await doorServer(t)
    const client = await v1Client(s.url)
    assert.equal(client.protocolVersion, '1.0')
    const task = asTask(await client.sendMessage(userMessage('how many leap years between 2000 and 2024?')))
    assert.equal(task.status?.state, TaskState.TASK_STATE_COMPLETED)
    assert.equal(textOf(task.status?.message?.parts), 'the answer to: how many leap years between 2000 and 2024?')
    const answer = task.artifacts.find((a) => a.artifactId === 'answer')
    assert.equal(textOf(answer?.parts), 'the answer to: how many leap years between 2000 and 2024?', 'streamed chunks replaced by the final answer')
    assert.equal(s.door.requests[0]!.conversationId, task.contextId)
    assert.deepEqual(s.door.requests[0]!.caller, { tenant: 'default' })
    assert.equal(s.door.requests[0]!.role, 'answer')
    // The tool call is part of the task's history, with its code.
    assert.ok(
      task.history.some((m) => textOf(m.parts).includes('print(6*7)')),
      'the tool call is in the history',
    )
    const again = asTask(await client.sendMessage(userMessage('and doubled?', { contextId: task.contextId })))
    assert.equal(again.contextId, task.contextId)
    assert.deepEqual(s.door.conversations.get(`default/${task.contextId}`), ['how many leap years between 2000 and 2024?', 'and doubled?'])
    // The generate skill: message metadata picks the role and language.
    const gen = asTask(await client.sendMessage(userMessage('a csv summer', { metadata: { role: 'generate', language: 'typescript' } })))
    assert.equal(gen.status?.state, TaskState.TASK_STATE_COMPLETED)
    assert.equal(s.door.requests.at(-1)!.role, 'generate')
    assert.equal(s.door.requests.at(-1)!.language, 'typescript')
  })

  test('v1.0 streaming: status updates per step, answer chunks, completed last', async (t) => {
    const s = await doorServer(t)
    const client = await v1Client(s.url)
    const events: StreamResponse[] = []
    for await (const e of client.sendMessageStream(userMessage('count'))) events.push(e)
    const kinds = events.map((e) => e.payload?.$case)
    assert.equal(kinds[0], 'task')
    assert.ok(kinds.includes('artifactUpdate'))
    const last = events.at(-1)!.payload
    assert.equal(last?.$case, 'statusUpdate')
    assert.equal(last.$case === 'statusUpdate' ? last.value.status?.state : undefined, TaskState.TASK_STATE_COMPLETED)
    const working = events.flatMap((e) =>
      e.payload?.$case === 'statusUpdate' && e.payload.value.status?.state === TaskState.TASK_STATE_WORKING ? [e.payload.value] : [],
    )
    assert.ok(
      working.some((w) => textOf(w.status?.message?.parts).includes('execute_code')),
      'the tool call streamed as a working status',
    )
    // The chart the code drew arrives as an image part of the tool result's status.
    const image = working.flatMap((w) => w.status?.message?.parts ?? []).find((p) => p.mediaType === 'image/png')
    assert.ok(image?.content?.$case === 'raw', 'an image/png part')
    assert.equal(Buffer.from(image.content.value).toString('base64'), fakePng)
  })

  test('v0.3 message/send and message/stream: the SDK legacy transport and the raw wire form', async (t) => {
    const s = await doorServer(t)
    const transport = new LegacyJsonRpcTransport({ endpoint: `${s.url}/a2a` })
    assert.equal(transport.protocolVersion, '0.3')
    const task = asTask(await transport.sendMessage(userMessage('legacy question')))
    assert.equal(task.status?.state, TaskState.TASK_STATE_COMPLETED)
    assert.equal(textOf(task.artifacts[0]?.parts), 'the answer to: legacy question')
    const streamed: StreamResponse[] = []
    for await (const e of transport.sendMessageStream(userMessage('legacy stream'))) streamed.push(e)
    assert.equal(streamed.at(-1)?.payload?.$case, 'statusUpdate')

    // What a v0.3 peer (AgentCore, Strands) puts on the wire.
    const raw = await fetch(`${s.url}/a2a`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 7,
        method: 'message/send',
        params: { message: { kind: 'message', role: 'user', messageId: randomUUID(), parts: [{ kind: 'text', text: 'raw question' }] } },
      }),
    })
    assert.equal(raw.status, 200)
    const body = (await raw.json()) as {
      id: number
      result: { kind: string; status: { state: string }; artifacts: { parts: { kind: string; text: string }[] }[] }
    }
    assert.equal(body.id, 7)
    assert.equal(body.result.kind, 'task')
    assert.equal(body.result.status.state, 'completed')
    assert.deepEqual(body.result.artifacts[0]!.parts, [{ kind: 'text', text: 'the answer to: raw question' }])
    const v03 = body.result as unknown as { history: { parts: { kind: string; file?: { bytes?: string; mimeType?: string } }[] }[] }
    const file = v03.history.flatMap((m) => m.parts).find((p) => p.kind === 'file')
    assert.deepEqual(
      file?.file && { bytes: file.file.bytes, mimeType: file.file.mimeType },
      { bytes: fakePng, mimeType: 'image/png' },
      'the chart as a v0.3 file part',
    )
    // Framing errors are JSON-RPC errors, in the version's shape.
    const bad = await fetch(`${s.url}/a2a`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"jsonrpc": "2.0", ' })
    assert.equal(((await bad.json()) as { error: { code: number } }).error.code, -32700)
    const unknown = await fetch(`${s.url}/a2a`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"jsonrpc":"2.0","id":1,"method":"nope","params":{}}',
    })
    assert.equal(((await unknown.json()) as { error: { code: number } }).error.code, -32601)
  })

  test('failures are failed tasks naming the codebox error; cancel aborts the turn', async (t) => {
    const s = await doorServer(t)
    const client = await v1Client(s.url)
    s.door.script = () => ({ throwBefore: new CodeboxError('ModelNotConfigured', 'no model: set CODEBOX_AGENT_MODELS') })
    const unconfigured = asTask(await client.sendMessage(userMessage('hi')))
    assert.equal(unconfigured.status?.state, TaskState.TASK_STATE_FAILED)
    assert.match(textOf(unconfigured.status?.message?.parts), /^ModelNotConfigured: .*CODEBOX_AGENT_MODELS/)
    s.door.script = () => ({ failWith: { code: 'ModelUnavailable', message: 'every model failed' } })
    const down = asTask(await client.sendMessage(userMessage('hi')))
    assert.equal(down.status?.state, TaskState.TASK_STATE_FAILED)
    assert.equal(textOf(down.status?.message?.parts), 'ModelUnavailable: every model failed')

    s.door.script = () => ({ hang: true })
    const stream = client.sendMessageStream(userMessage('loop forever'))
    const first = await stream.next()
    assert.equal(first.value?.payload?.$case, 'task')
    const taskId = first.value.payload.$case === 'task' ? first.value.payload.value.id : ''
    const canceled = await client.cancelTask({ tenant: '', id: taskId, metadata: undefined })
    assert.equal(canceled.status?.state, TaskState.TASK_STATE_CANCELED)
    assert.equal(s.door.canceled.length, 1, 'the turn saw its signal abort')
    await stream.return(undefined)
  })

  test('once keys exist, the JSON-RPC endpoint needs one (the card stays public); tasks are per tenant', async (t) => {
    const s = await doorServer(t)
    const acme = await s.store.keys.create({ tenant: 'acme' })
    const other = await s.store.keys.create({ tenant: 'other' })
    const anonymous = await v1Client(s.url)
    await assert.rejects(anonymous.sendMessage(userMessage('hi')), /401|missing API key/)
    const refused = await fetch(`${s.url}/a2a`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    assert.equal(refused.status, 401)
    assert.equal(s.door.requests.length, 0)
    const task = asTask(await (await v1Client(s.url, acme.secret)).sendMessage(userMessage('mine')))
    assert.deepEqual(s.door.requests[0]!.caller, { tenant: 'acme', keyId: acme.record.keyId })
    const foreign = await v1Client(s.url, other.secret)
    await assert.rejects(foreign.getTask({ tenant: '', id: task.id, historyLength: undefined }), /not found/i)
  })
})

describe('A2A with the real agent and sandbox', () => {
  let parent: string
  let model: ModelServer
  let server: RunningServer
  let key: string

  before(async () => {
    parent = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-agent-a2a-'))
    model = await startModelServer('anthropic', sandboxModelScript)
    fs.mkdirSync(path.join(parent, 'main'))
    server = await realServer(path.join(parent, 'main'), { CODEBOX_AGENT_MODELS: 'anthropic:claude-scripted', ...modelEnv('anthropic', model) })
    key = (await server.store.keys.create({ tenant: 'acme' })).secret
  })
  after(async () => {
    await server?.close()
    await model?.close()
    fs.rmSync(parent, { recursive: true, force: true })
  })

  test('v1.0 SendMessage: the answer computed in the sandbox; without a key the call is refused', async () => {
    await assert.rejects((await v1Client(server.url)).sendMessage(userMessage('How many leap years between 2000 and 2024?')), /401|missing API key/)
    const task = asTask(await (await v1Client(server.url, key)).sendMessage(userMessage('How many leap years between 2000 and 2024?')))
    assert.equal(task.status?.state, TaskState.TASK_STATE_COMPLETED, textOf(task.status?.message?.parts))
    assert.match(textOf(task.artifacts.find((a) => a.artifactId === 'answer')?.parts), /There are 7 leap years/)
    assert.equal(model.requests.at(-1)?.toolResults.at(-1)?.trim(), '7', 'the model answered from the sandbox output')
    const conversations = await server.agent.listConversations({ tenant: 'acme' }, { limit: 10 })
    assert.ok(
      conversations.items.some((c) => c.conversationId === task.contextId),
      'the context id is the conversation',
    )
  })

  test('v0.3 message/stream: the context id keeps the code session; tasks/cancel stops a running cell', async () => {
    const transport = new LegacyJsonRpcTransport({ endpoint: `${server.url}/a2a`, fetchImpl: withKey(key) })
    const first = asTask(await transport.sendMessage(userMessage('[set] x = 41')))
    const events: StreamResponse[] = []
    for await (const e of transport.sendMessageStream(userMessage('[x+1]', { contextId: first.contextId }))) events.push(e)
    const last = events.at(-1)?.payload
    assert.ok(last?.$case === 'statusUpdate' && last.value.status?.state === TaskState.TASK_STATE_COMPLETED)
    assert.match(textOf(last.value.status?.message?.parts), /x \+ 1 gives: 42/)

    const stream = transport.sendMessageStream(userMessage('[slow] sleep', { contextId: first.contextId }))
    let taskId = ''
    for await (const e of stream) {
      if (e.payload?.$case === 'task') taskId = e.payload.value.id
      // The cell is running once its tool call was announced.
      if (e.payload?.$case === 'statusUpdate' && textOf(e.payload.value.status?.message?.parts).includes('time.sleep(120)')) break
    }
    const started = Date.now()
    const canceled = await transport.cancelTask({ tenant: '', id: taskId, metadata: undefined })
    assert.equal(canceled.status?.state, TaskState.TASK_STATE_CANCELED)
    assert.ok(Date.now() - started < 30_000, 'the sleeping cell was interrupted, not waited for')
    // The conversation (and its kernel) is still usable.
    const later = asTask(await transport.sendMessage(userMessage('[x+1] still there?', { contextId: first.contextId })))
    assert.match(textOf(later.status?.message?.parts), /x \+ 1 gives: 42/)
  })
})

describe('the A2A task store', () => {
  test('keeps between maxTasks and twice as many tasks, per tenant', async () => {
    const store = new BoundedTaskStore({ maxTasks: 2 })
    const acme = new ServerCallContext({ user: { isAuthenticated: true, userName: 'acme' } })
    const other = new ServerCallContext({ user: { isAuthenticated: true, userName: 'other' } })
    const task = (id: string): Task => ({ id, contextId: 'c', status: undefined, artifacts: [], history: [], metadata: undefined })
    for (const id of ['t1', 't2', 't3']) await store.save(task(id), acme)
    assert.equal((await store.load('t1', acme))?.id, 't1', 'the previous generation is still found')
    assert.equal(await store.load('t1', other), undefined, 'another tenant does not see it')
    await store.save(task('t1'), acme) // saved again: it moves to the current generation
    for (const id of ['t4', 't5']) await store.save(task(id), acme)
    assert.equal(await store.load('t2', acme), undefined, 'old tasks are dropped')
    assert.equal((await store.load('t5', acme))?.id, 't5')
  })
})
