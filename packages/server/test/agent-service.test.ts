/**
 * The agent service (services/agent.ts) end to end: the real agent (createAgent) against a scripted
 * Anthropic server, tools running real code in a real bwrap sandbox, conversations in the store.
 * A whole loop that answers from its code's output, memory across a server restart, history and
 * listing, tenancy, one turn at a time, cancellation mid-cell, the code session's idle timeout,
 * no model configured, the turn quota, and what the audit log keeps (never the prompt or a key).
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { CodeboxError, type AgentEvent, type AgentTurn } from '@codebox/core'
import { loadServerConfig, startServer, type App, type RunningServer } from '@codebox/server'
import { fakeKeys, modelEnv, startModelServer, type ModelRequestView, type ModelServer, type ScriptedReply } from '../../agent/test/model-servers.ts'
import { historyFrom, StoredEvents } from '../src/services/agent-memory.ts'
import type { TurnRequest } from '../src/services/agent-door.ts'
import { imageStateDir, realServer, testServer, waitUntil } from './fixtures.ts'

const leapCode = 'print(sum(1 for y in range(2000, 2025) if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)))'

/**
 * The scripted model: the marker in the newest user text picks the scenario; it calls a tool
 * first, then answers from the tool result it was sent.
 */
function script(req: ModelRequestView): ScriptedReply {
  const prompt = req.userTexts.at(-1) ?? ''
  const results = req.toolResults
  const code = (source: string): ScriptedReply => ({ toolUse: { name: 'execute_code', input: { language: 'python', code: source } } })
  if (prompt.includes('leap years')) {
    if (results.length === 0) return code(leapCode)
    const found = /\b(\d+)\b/.exec(results.at(-1) ?? '')?.[1] ?? 'no number'
    return { text: `There are ${found} leap years between 2000 and 2024 (counted by running code).` }
  }
  if (prompt.includes('[set]')) return results.length === 0 ? code("x = 41\nprint('x is set')") : { text: 'I stored x = 41 in the session.' }
  if (prompt.includes('[x+1]')) return results.length === 0 ? code('print(x + 1)') : { text: `x + 1 gives: ${results.at(-1)}` }
  if (prompt.includes('[y+1]')) return results.length === 0 ? code('print(y + 1)') : { text: `y + 1 gives: ${results.at(-1)}` }
  if (prompt.includes('[slow]')) {
    return results.length === 0 ? code("import time\ny = 5\nprint('started', flush=True)\ntime.sleep(120)\nprint('finished')") : { text: 'slept' }
  }
  if (prompt.includes('[hang]')) return { hang: true }
  if (prompt.includes('[die]')) {
    if (results.length === 0) return { toolUse: { name: 'execute_command', input: { command: 'kill -KILL -1; sleep 5' } } }
    return results.length === 1 ? code("print('alive again')") : { text: `after: ${results.at(-1)}` }
  }
  return { text: `Noted: ${prompt.slice(-60)}` }
}

async function runTurn(app: App, request: TurnRequest, onEvent?: (e: AgentEvent) => void): Promise<{ events: AgentEvent[]; turn: AgentTurn }> {
  const events: AgentEvent[] = []
  const gen = app.agent.turn(request)
  for (;;) {
    const next = await gen.next()
    if (next.done) return { events, turn: next.value }
    events.push(next.value)
    onEvent?.(next.value)
  }
}

async function rejects(p: Promise<unknown>, code: string): Promise<CodeboxError> {
  try {
    await p
  } catch (e) {
    assert.ok(e instanceof CodeboxError, `expected a CodeboxError ${code}, got ${String(e)}`)
    assert.equal(e.code, code, e.message)
    return e
  }
  throw new Error(`expected ${code}, but the call succeeded`)
}

const alice = { tenant: 'alpha', keyId: 'key_alpha' }
const bob = { tenant: 'beta' }

describe('agent service with the real sandbox', () => {
  let parent: string
  let model: ModelServer
  let server: RunningServer
  let agentEnv: Record<string, string>

  before(async () => {
    parent = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-agent-service-'))
    model = await startModelServer('anthropic', script)
    agentEnv = { CODEBOX_AGENT_MODELS: 'anthropic:claude-scripted', ...modelEnv('anthropic', model) }
    fs.mkdirSync(path.join(parent, 'main'))
    server = await realServer(path.join(parent, 'main'), agentEnv)
  })
  after(async () => {
    await server?.close()
    await model?.close()
    fs.rmSync(parent, { recursive: true, force: true })
  })

  test('the whole loop runs real code and answers with the number its output gave', async () => {
    const requestsBefore = model.requests.length
    const { events, turn } = await runTurn(server, { caller: alice, role: 'answer', prompt: 'How many leap years between 2000 and 2024?' })
    const start = events[0]
    assert.equal(start?.type, 'turn_start')
    assert.ok(start.type === 'turn_start' && start.sessionId, 'turn_start names the code session')
    assert.ok(start.conversationId.length >= 33, 'a new conversation id is long enough for AWS')
    const use = events.find((e) => e.type === 'tool_use')
    assert.ok(use && use.type === 'tool_use' && use.code === leapCode && use.name === 'execute_code')
    const result = events.find((e) => e.type === 'tool_result')
    assert.ok(result && result.type === 'tool_result' && !result.isError && result.text.includes('7'), JSON.stringify(result))
    const final = events.at(-1)
    assert.ok(final?.type === 'final' && /\b7 leap years\b/.test(final.text), JSON.stringify(final))
    // The model saw the sandbox's output, not a guess of its own.
    assert.equal(model.requests.at(-1)?.toolResults.at(-1)?.trim(), '7')
    assert.equal(model.requests.length - requestsBefore, 2)
    assert.equal(turn.outcome, 'ok')
    assert.match(turn.text, /\b7 leap years\b/)
    assert.equal(turn.model, 'anthropic:claude-scripted')
    assert.ok(turn.turnId > 0)
    assert.ok(turn.usage.inputTokens > 0 && turn.usage.outputTokens > 0)
    // Stored events: text deltas merged into one text event per run.
    const texts = turn.events.filter((e) => e.type === 'text')
    assert.equal(texts.length, 1)
    // The code session ran the code: it belongs to the caller's tenant.
    const sessionId = start.sessionId
    const info = await server.sessions.get(alice, sessionId)
    assert.equal(info.status, 'READY')
    await rejects(
      Promise.resolve().then(() => server.sessions.get(bob, sessionId)),
      'NotFound',
    )

    const metrics = await server.metrics.text()
    assert.match(metrics, /codebox_agent_turns_total\{role="answer",outcome="ok"\} [1-9]/)
    assert.match(metrics, /codebox_agent_tokens_total\{model="anthropic:claude-scripted",direction="input"\} [1-9]/)
    assert.match(metrics, /codebox_agent_turn_duration_seconds_count\{role="answer"\} [1-9]/)
  })

  test('history and listing: turns in order, the title, paging, the code session while it lives', async () => {
    const first = await runTurn(server, { caller: alice, role: 'answer', prompt: '[set] put 41 into x\nplease' })
    const id = first.turn.conversationId
    const second = await runTurn(server, { caller: alice, role: 'answer', prompt: '[x+1] what is x + 1?', conversationId: id })
    assert.equal(second.turn.outcome, 'ok')
    // The same code session across turns: the variable of the first turn is still there.
    assert.match(second.turn.text, /42/)
    const s1 = first.events[0]
    const s2 = second.events[0]
    assert.ok(s1?.type === 'turn_start' && s2?.type === 'turn_start' && s1.sessionId === s2.sessionId)
    // The earlier turn went back to the model as history.
    const raw = JSON.stringify(model.requests.at(-2)?.raw)
    assert.ok(raw.includes('put 41 into x') && raw.includes('I stored x = 41 in the session.'), 'history restored into the model context')

    const { conversation, turns } = await server.agent.history(alice, id)
    assert.equal(conversation.title, '[set] put 41 into x')
    assert.equal(conversation.turns, 2)
    assert.equal(conversation.actor, 'key_alpha')
    assert.equal(conversation.sessionId, s1.sessionId)
    assert.deepEqual(
      turns.map((t) => [t.prompt, t.outcome]),
      [
        ['[set] put 41 into x\nplease', 'ok'],
        ['[x+1] what is x + 1?', 'ok'],
      ],
    )
    assert.ok(Date.parse(conversation.expiresAt) - Date.now() > 29 * 86_400_000, 'memory kept for 30 days by default')

    const seen: string[] = []
    let nextToken: string | undefined
    do {
      const page = await server.agent.listConversations(alice, { limit: 1, ...(nextToken ? { nextToken } : {}) })
      assert.ok(page.items.length <= 1)
      seen.push(...page.items.map((c) => c.conversationId))
      nextToken = page.nextToken
    } while (nextToken)
    assert.equal(seen[0], id, 'most recently updated first')
    assert.equal(new Set(seen).size, seen.length)
    assert.ok(seen.length >= 2)
    assert.deepEqual((await server.agent.listConversations(bob, { limit: 10 })).items, [])

    // Stop: the code session ends, the memory stays.
    await rejects(server.agent.stopConversation(bob, id), 'NotFound')
    await server.agent.stopConversation(alice, id)
    assert.notEqual(server.engine.find(s1.sessionId ?? '')?.status, 'ready')
    const after = await server.agent.history(alice, id)
    assert.equal(after.turns.length, 2)
    assert.equal(after.conversation.sessionId, undefined)
    // The next turn gets a new code session and the model is told its variables are gone.
    const third = await runTurn(server, { caller: alice, role: 'answer', prompt: '[x+1] again', conversationId: id })
    const s3 = third.events[0]
    assert.ok(s3?.type === 'turn_start' && s3.sessionId && s3.sessionId !== s1.sessionId)
    assert.match(model.requests.at(-2)?.userTexts.at(-1) ?? '', /variables, imports and files from earlier turns are gone/)
    assert.match(third.turn.text, /NameError/)
    // The stored prompt is the user's, without the note.
    assert.equal(third.turn.prompt, '[x+1] again')

    await server.agent.deleteConversation(alice, id)
    await rejects(server.agent.history(alice, id), 'NotFound')
    assert.notEqual(server.engine.find(s3.sessionId)?.status, 'ready')
  })

  test('two tenants with the same conversation id have separate conversations', async () => {
    const id = 'shared-conversation-0123456789abcdef-xyz'
    const a = await runTurn(server, { caller: alice, role: 'generate', prompt: 'alpha secret plan', conversationId: id })
    const b = await runTurn(server, { caller: bob, role: 'generate', prompt: 'beta other plan', conversationId: id, actor: 'user-7' })
    assert.equal(a.turn.conversationId, id)
    assert.equal(b.turn.conversationId, id)
    // Bob's model context held none of Alice's turn.
    assert.ok(!JSON.stringify(model.requests.at(-1)?.raw).includes('alpha secret plan'))
    const ha = await server.agent.history(alice, id)
    const hb = await server.agent.history(bob, id)
    assert.deepEqual(
      ha.turns.map((t) => t.prompt),
      ['alpha secret plan'],
    )
    assert.deepEqual(
      hb.turns.map((t) => t.prompt),
      ['beta other plan'],
    )
    assert.equal(hb.conversation.actor, 'user-7')
    await server.agent.deleteConversation(bob, id)
    assert.equal((await server.agent.history(alice, id)).turns.length, 1)
    await rejects(server.agent.history(bob, id), 'NotFound')
    await rejects(server.agent.deleteConversation({ tenant: 'gamma' }, id), 'NotFound')
    await rejects(server.agent.history(alice, 'not a valid id!'), 'NotFound')
  })

  test('one turn at a time per conversation: a second one is a Conflict; a canceled turn is stored as canceled', async () => {
    const controller = new AbortController()
    const gen = server.agent.turn({ caller: alice, role: 'answer', prompt: '[hang] think hard', signal: controller.signal })
    const start = await gen.next()
    assert.ok(!start.done && start.value.type === 'turn_start')
    const id = start.value.conversationId
    assert.equal(server.agent.busy, true)
    await rejects(runTurn(server, { caller: alice, role: 'answer', prompt: 'me too', conversationId: id }), 'Conflict')
    // Another tenant's conversation of the same id is not blocked.
    const other = await runTurn(server, { caller: bob, role: 'generate', prompt: 'parallel', conversationId: id })
    assert.equal(other.turn.outcome, 'ok')
    controller.abort()
    const rest: AgentEvent[] = []
    let turn: AgentTurn | undefined
    for (;;) {
      const n = await gen.next()
      if (n.done) {
        turn = n.value
        break
      }
      rest.push(n.value)
    }
    assert.equal(turn.outcome, 'canceled')
    assert.equal(rest.at(-1)?.type, 'error')
    assert.equal(server.agent.busy, false)
    const next = await runTurn(server, { caller: alice, role: 'answer', prompt: 'hello again', conversationId: id })
    assert.equal(next.turn.outcome, 'ok')
    const h = await server.agent.history(alice, id)
    assert.deepEqual(
      h.turns.map((t) => t.outcome),
      ['canceled', 'ok'],
    )
  })

  test('cancellation mid-cell stops the cell quickly and leaves the conversation and its variables usable', async () => {
    const controller = new AbortController()
    const began = Date.now()
    const { turn, events } = await runTurn(server, { caller: alice, role: 'answer', prompt: '[slow] sleep a while', signal: controller.signal }, (e) => {
      if (e.type === 'tool_output' && e.text.includes('started')) controller.abort()
    })
    assert.equal(turn.outcome, 'canceled')
    assert.ok(Date.now() - began < 60_000, `the cell was stopped (took ${Date.now() - began} ms)`)
    assert.ok(!events.some((e) => e.type === 'tool_output' && e.text.includes('finished')))
    const start = events[0]
    assert.ok(start?.type === 'turn_start' && start.sessionId)
    const next = await runTurn(server, { caller: alice, role: 'answer', prompt: '[y+1] after the cancel', conversationId: turn.conversationId })
    assert.equal(next.turn.outcome, 'ok')
    const s2 = next.events[0]
    assert.ok(s2?.type === 'turn_start' && s2.sessionId === start.sessionId, 'the same code session')
    // `y` was set by the interrupted cell before it slept: the kernel kept it.
    assert.match(next.turn.text, /y \+ 1 gives: 6\b/)
  })

  test('a turn can work in the caller’s own session (the IDE’s): its variables, not owned by the conversation', async () => {
    const { info } = await server.sessions.start(alice, { interpreterId: 'codebox.v1', name: 'the IDE' })
    const set = server.sessions.invoke(alice, info.sessionId, { name: 'executeCode', arguments: { language: 'python', code: 'x = 99' } })
    for (let n = await set.next(); !n.done; n = await set.next());
    const { turn, events } = await runTurn(server, { caller: alice, role: 'answer', prompt: '[x+1] in my session', sessionId: info.sessionId })
    const start = events[0]
    assert.ok(start?.type === 'turn_start' && start.sessionId === info.sessionId, JSON.stringify(start))
    assert.match(turn.text, /x \+ 1 gives: 100\b/)
    // The conversation does not own it: stopping the conversation leaves the session running.
    await server.agent.stopConversation(alice, turn.conversationId)
    assert.equal((await server.sessions.get(alice, info.sessionId)).status, 'READY')
    // Another tenant cannot borrow it; an ended one is refused before any event.
    await rejects(server.agent.turn({ caller: bob, role: 'answer', prompt: '[x+1]', sessionId: info.sessionId }).next(), 'NotFound')
    await server.sessions.stop(alice, info.sessionId)
    const ended = await rejects(server.agent.turn({ caller: alice, role: 'answer', prompt: '[x+1]', sessionId: info.sessionId }).next(), 'SessionTerminated')
    assert.match(ended.message, /has ended/)
  })

  test('a code session that dies mid-turn is replaced, and the model is told its variables are gone', async () => {
    const { turn, events } = await runTurn(server, { caller: alice, role: 'answer', prompt: '[die] end the sandbox' })
    const results = events.filter((e) => e.type === 'tool_result')
    assert.equal(turn.outcome, 'ok', JSON.stringify(events))
    assert.equal(results.length, 2)
    assert.ok(results[0]?.isError && results[0].text.includes('the code session ended during this call'), JSON.stringify(results[0]))
    assert.ok(results[1] && !results[1].isError)
    assert.match(results[1].text, /new one was started: variables, imports and files from earlier turns are gone/)
    assert.match(results[1].text, /alive again/)
    const start = events[0]
    assert.ok(start?.type === 'turn_start' && start.sessionId)
    const { conversation } = await server.agent.history(alice, turn.conversationId)
    assert.ok(conversation.sessionId && conversation.sessionId !== start.sessionId, 'the conversation owns the new code session')
    assert.equal(server.engine.find(conversation.sessionId)?.status, 'ready')
  })

  test('the audit log has one entry per turn, without the prompt text or any model key', async () => {
    const prompt = 'How many leap years between 2000 and 2024? audit-marker-93c1'
    await runTurn(server, { caller: alice, role: 'answer', prompt, requestId: 'req_agent_audit' })
    const page = await server.store.audit.list({ tenant: alice.tenant, limit: 200 })
    const turns = page.items.filter((e) => e.action === 'agentTurn')
    assert.ok(turns.length >= 1)
    assert.equal(turns.filter((e) => e.requestId === 'req_agent_audit').length, 1, 'one entry per turn')
    const mine = turns.find((e) => e.requestId === 'req_agent_audit')
    assert.ok(mine, 'the turn has its audit entry')
    assert.equal(mine.outcome, 'ok')
    assert.equal(mine.codeBytes, Buffer.byteLength(prompt))
    assert.match(mine.codeSha256 ?? '', /^[0-9a-f]{64}$/)
    assert.ok(mine.sessionId)
    const all = JSON.stringify(page.items)
    assert.ok(!all.includes('audit-marker-93c1'), 'no prompt text in the audit log')
    for (const secret of Object.values(fakeKeys)) assert.ok(!all.includes(secret), 'no model key in the audit log')
    const history = JSON.stringify(await server.agent.listConversations(alice, { limit: 100 }))
    for (const secret of Object.values(fakeKeys)) assert.ok(!history.includes(secret), 'no model key in conversations')
  })

  test('the idle timeout stops the code session and keeps the memory', async () => {
    fs.mkdirSync(path.join(parent, 'idle'))
    const idle = await realServer(path.join(parent, 'idle'), { ...agentEnv, CODEBOX_AGENT_IDLE_TIMEOUT_SECONDS: '1' })
    try {
      const { turn, events } = await runTurn(idle, { caller: alice, role: 'answer', prompt: '[set] x please' })
      const start = events[0]
      assert.ok(start?.type === 'turn_start' && start.sessionId)
      const sessionId = start.sessionId
      await waitUntil(async () => (await idle.sessions.get(alice, sessionId)).status === 'TERMINATED', 'the idle code session to be stopped', 15_000)
      const info = await idle.sessions.get(alice, sessionId)
      assert.equal(info.endReason, 'idle-timeout')
      assert.equal(info.timeoutSeconds, 1)
      assert.equal(info.limits.maxLifetimeMs, 28_800_000, 'the runtime session’s max lifetime')
      const h = await idle.agent.history(alice, turn.conversationId)
      assert.equal(h.turns.length, 1)
      assert.equal(h.conversation.sessionId, undefined)
    } finally {
      await idle.close()
    }
  })

  test('memory survives a server restart: the next turn’s model request holds the earlier prompt and answer', async () => {
    const dir = path.join(parent, 'restart')
    fs.mkdirSync(dir)
    const stateDir = await imageStateDir(dir)
    const config = loadServerConfig({
      ...process.env,
      ...agentEnv,
      CODEBOX_STATE_DIR: stateDir,
      CODEBOX_LOG_LEVEL: 'silent',
      CODEBOX_POOL_SIZE: '1',
      CODEBOX_PORT: '0',
    })
    const first = await startServer(config)
    let id: string
    let hungId: string
    try {
      const t = await runTurn(first, { caller: alice, role: 'answer', prompt: '[set] remember the magic word is pumpkin' })
      assert.equal(t.turn.outcome, 'ok')
      id = t.turn.conversationId
      // A turn still running at shutdown is canceled and stored.
      const hung = first.agent.turn({ caller: alice, role: 'answer', prompt: '[hang] at shutdown' })
      const start = await hung.next()
      assert.ok(!start.done && start.value.type === 'turn_start')
      hungId = start.value.conversationId
      const rest = (async () => {
        for (;;) {
          const n = await hung.next()
          if (n.done) return n.value
        }
      })()
      await first.close()
      assert.equal((await rest).outcome, 'canceled')
    } finally {
      await first.close()
    }
    const second = await startServer(config)
    try {
      const before = model.requests.length
      const t = await runTurn(second, { caller: alice, role: 'answer', prompt: 'what was the magic word?', conversationId: id })
      assert.equal(t.turn.outcome, 'ok')
      const request = model.requests[before]
      assert.ok(request)
      const raw = JSON.stringify(request.raw)
      assert.ok(raw.includes('remember the magic word is pumpkin'), 'the earlier prompt is in the context')
      assert.ok(raw.includes('I stored x = 41 in the session.'), 'the earlier answer is in the context')
      // The old code session died with the first server: the model is told so.
      assert.match(request.userTexts.at(-1) ?? '', /new one was started/)
      const h = await second.agent.history(alice, id)
      assert.equal(h.turns.length, 2)
      assert.deepEqual(
        (await second.agent.history(alice, hungId)).turns.map((t) => [t.prompt, t.outcome]),
        [['[hang] at shutdown', 'canceled']],
      )
    } finally {
      await second.close()
    }
  })
})

describe('agent service without the sandbox', () => {
  let model: ModelServer
  before(async () => {
    model = await startModelServer('anthropic', script)
  })
  after(async () => {
    await model?.close()
  })

  test('without a model: configured false, and a turn throws ModelNotConfigured naming what to set, before any event', async (t) => {
    const s = await testServer(t, { env: { CODEBOX_AGENT_MODELS: '' } })
    assert.equal(s.agent.configured, false)
    assert.equal(s.agent.status().configured, false)
    const e = await rejects(s.agent.turn({ caller: alice, role: 'answer', prompt: 'hi' }).next(), 'ModelNotConfigured')
    assert.equal(e.status, 503)
    assert.match(e.message, /CODEBOX_AGENT_MODELS/)
    assert.match(e.message, /ANTHROPIC_API_KEY/)
    assert.deepEqual((await s.agent.listConversations(alice, { limit: 10 })).items, [])
  })

  test('the tenant agent-turn quota: RateLimited with retry-after, per tenant', async (t) => {
    const s = await testServer(t, {
      env: { CODEBOX_AGENT_MODELS: 'anthropic:claude-scripted', ...modelEnv('anthropic', model), CODEBOX_TENANT_AGENT_TURNS_PER_MINUTE: '2' },
    })
    for (let i = 0; i < 2; i++) assert.equal((await runTurn(s, { caller: alice, role: 'generate', prompt: `turn ${i}` })).turn.outcome, 'ok')
    const e = await rejects(s.agent.turn({ caller: alice, role: 'generate', prompt: 'one too many' }).next(), 'RateLimited')
    assert.ok(Number(e.details.retryAfterSeconds) >= 1)
    assert.equal((await runTurn(s, { caller: bob, role: 'generate', prompt: 'another tenant' })).turn.outcome, 'ok')
    const audit = await s.store.audit.list({ tenant: alice.tenant, limit: 50 })
    assert.ok(audit.items.some((a) => a.action === 'agentTurn' && a.outcome === 'rejected' && a.detail?.includes('RateLimited')))
    // A tenant's own quota (codebox tenants set --agent-turns-per-minute) wins over the server default.
    const carol = { tenant: 'carol' }
    await s.store.tenants.ensure(carol.tenant)
    await s.store.tenants.setQuotas(carol.tenant, { agentTurnsPerMinute: 4 })
    for (let i = 0; i < 4; i++) assert.equal((await runTurn(s, { caller: carol, role: 'generate', prompt: `carol ${i}` })).turn.outcome, 'ok')
    await rejects(s.agent.turn({ caller: carol, role: 'generate', prompt: 'over her own quota' }).next(), 'RateLimited')
  })

  test('a model that is down hands over to the next: the turn and the metrics say which and why', async (t) => {
    const chain = await startModelServer('anthropic', (req) => (req.model.includes('down') ? { status: 529 } : { text: `answered by ${req.model}` }))
    t.after(() => chain.close())
    const s = await testServer(t, { env: { CODEBOX_AGENT_MODELS: 'anthropic:claude-down,anthropic:claude-up', ...modelEnv('anthropic', chain) } })
    const { turn, events } = await runTurn(s, { caller: alice, role: 'generate', prompt: 'hello' })
    assert.equal(turn.outcome, 'ok')
    assert.equal(turn.model, 'anthropic:claude-up')
    assert.equal(turn.skipped[0]?.model, 'anthropic:claude-down')
    assert.ok(events.some((e) => e.type === 'model' && e.skipped.some((k) => k.model === 'anthropic:claude-down')))
    const metrics = await s.metrics.text()
    assert.match(metrics, /codebox_agent_model_fallbacks_total\{model="anthropic:claude-down",reason="overloaded"\} 1/)
    assert.match(metrics, /codebox_agent_tokens_total\{model="anthropic:claude-up",direction="output"\} [1-9]/)
    assert.ok(!metrics.includes(fakeKeys.anthropic))
  })

  test('a code session that cannot start fails the turn before any event and leaves no conversation behind', async (t) => {
    const s = await testServer(t, {
      env: { CODEBOX_AGENT_MODELS: 'anthropic:claude-scripted', ...modelEnv('anthropic', model), CODEBOX_TENANT_MAX_SESSIONS: '1' },
    })
    const first = await runTurn(s, { caller: alice, role: 'answer', prompt: 'first conversation' })
    assert.equal(first.turn.outcome, 'ok')
    await rejects(s.agent.turn({ caller: alice, role: 'answer', prompt: 'second conversation' }).next(), 'QuotaExceeded')
    const page = await s.agent.listConversations(alice, { limit: 10 })
    assert.deepEqual(
      page.items.map((c) => c.conversationId),
      [first.turn.conversationId],
    )
    // Deleting the first conversation stops its code session, so a new one can start.
    await s.agent.deleteConversation(alice, first.turn.conversationId)
    assert.equal((await runTurn(s, { caller: alice, role: 'answer', prompt: 'third conversation' })).turn.outcome, 'ok')
  })

  test('stopping a conversation ends its running turn (stored as canceled) and keeps its memory', async (t) => {
    const s = await testServer(t, { env: { CODEBOX_AGENT_MODELS: 'anthropic:claude-scripted', ...modelEnv('anthropic', model) } })
    const gen = s.agent.turn({ caller: alice, role: 'generate', prompt: '[hang] forever' })
    const start = await gen.next()
    assert.ok(!start.done && start.value.type === 'turn_start')
    const id = start.value.conversationId
    const rest = (async () => {
      for (;;) {
        const n = await gen.next()
        if (n.done) return n.value
      }
    })()
    await rejects(s.agent.stopConversation(bob, id), 'NotFound')
    assert.equal(s.agent.busy, true)
    await s.agent.stopConversation(alice, id)
    assert.equal(s.agent.busy, false, 'the turn is over once stop returns')
    const turn = await rest
    assert.equal(turn.outcome, 'canceled')
    assert.equal(turn.events.at(-1)?.type, 'error')
    assert.deepEqual(
      (await s.agent.history(alice, id)).turns.map((x) => x.outcome),
      ['canceled'],
    )
  })

  test('a reader that stops reading cancels the turn, which is still stored', async (t) => {
    const s = await testServer(t, { env: { CODEBOX_AGENT_MODELS: 'anthropic:claude-scripted', ...modelEnv('anthropic', model) } })
    const gen = s.agent.turn({ caller: alice, role: 'generate', prompt: '[hang] until the reader leaves' })
    const start = await gen.next()
    assert.ok(!start.done && start.value.type === 'turn_start')
    await gen.return(undefined as never)
    assert.equal(s.agent.busy, false)
    const { turns } = await s.agent.history(alice, start.value.conversationId)
    assert.deepEqual(
      turns.map((x) => [x.outcome, x.events.at(-1)?.type]),
      [['canceled', 'error']],
    )
  })

  test('bad input is refused before any event', async (t) => {
    const s = await testServer(t, { env: { CODEBOX_AGENT_MODELS: 'anthropic:claude-scripted', ...modelEnv('anthropic', model) } })
    await rejects(s.agent.turn({ caller: alice, role: 'answer', prompt: '  ' }).next(), 'ValidationError')
    await rejects(s.agent.turn({ caller: alice, role: 'answer', prompt: 'x', conversationId: 'bad id!' }).next(), 'ValidationError')
    await rejects(s.agent.turn({ caller: alice, role: 'answer', prompt: 'x'.repeat(100_001) }).next(), 'ValidationError')
    const unknown = await rejects(s.agent.turn({ caller: alice, role: 'answer', prompt: 'x', model: 'openai:gpt-9' }).next(), 'ValidationError')
    assert.match(unknown.message, /model: must be one of the configured models \(anthropic:claude-scripted\), got "openai:gpt-9"/)
    await rejects(s.agent.stopConversation(alice, 'no-such-conversation'), 'NotFound')
    await rejects(s.agent.listConversations(alice, { limit: 10, nextToken: 'bm90IGEgdG9rZW4' }), 'ValidationError')
    await rejects(s.agent.listConversations(alice, { limit: 0 }), 'ValidationError')
  })

  test('expired conversations are invisible at once and swept', async (t) => {
    const s = await testServer(t, { env: { CODEBOX_AGENT_MODELS: 'anthropic:claude-scripted', ...modelEnv('anthropic', model) } })
    const { turn } = await runTurn(s, { caller: alice, role: 'generate', prompt: 'soon forgotten' })
    const later = new Date(Date.now() + 31 * 86_400_000)
    assert.ok(await s.store.conversations.get(alice.tenant, turn.conversationId))
    assert.equal(await s.store.conversations.get(alice.tenant, turn.conversationId, later), undefined)
    assert.equal((await s.store.conversations.list({ tenant: alice.tenant, limit: 10, now: later })).items.length, 0)
    assert.equal(await s.store.conversations.deleteExpired(later), 1)
    await rejects(s.agent.history(alice, turn.conversationId), 'NotFound')
    // The id can start a new conversation.
    const again = await runTurn(s, { caller: alice, role: 'generate', prompt: 'new start', conversationId: turn.conversationId })
    assert.equal((await s.agent.history(alice, again.turn.conversationId)).turns.length, 1)
  })
})

describe('stored events and history', () => {
  test('text deltas and outputs are merged, big ones cut with a note, images past the cap left out with a note', () => {
    const stored = new StoredEvents({ maxTextChars: 10, maxImageChars: 8, maxTurnImageChars: 8, maxEvents: 6 })
    stored.add({ type: 'turn_start', conversationId: 'c', role: 'answer' })
    stored.add({ type: 'text', delta: 'Hello ' })
    stored.add({ type: 'text', delta: 'world, and more' })
    stored.add({ type: 'tool_output', toolUseId: 't', stream: 'stdout', text: '12345' })
    stored.add({ type: 'tool_output', toolUseId: 't', stream: 'stdout', text: '6789012' })
    stored.add({
      type: 'tool_result',
      toolUseId: 't',
      isError: false,
      text: 'ok',
      images: [
        { mimeType: 'image/png', data: 'AAAA' },
        { mimeType: 'image/png', data: 'BBBBBBBBBBBB' },
      ],
    })
    stored.add({ type: 'text', delta: 'after' })
    stored.add({ type: 'tool_use', toolUseId: 'u', name: 'execute_code', input: { code: 'x' } })
    stored.add({ type: 'tool_use', toolUseId: 'v', name: 'execute_code', input: { code: 'y' } })
    stored.add({ type: 'final', text: 'done', model: 'm', skipped: [], stopReason: 'end_turn', usage: { inputTokens: 1, outputTokens: 1 } })
    const events = stored.list()
    assert.deepEqual(
      events.map((e) => e.type),
      ['turn_start', 'text', 'tool_output', 'tool_result', 'text', 'tool_use', 'text', 'final'],
    )
    assert.deepEqual(events[1], { type: 'text', delta: 'Hello worl\n[codebox: 11 more characters not stored]' })
    assert.deepEqual(events[2], { type: 'tool_output', toolUseId: 't', stream: 'stdout', text: '1234567890\n[codebox: 2 more characters not stored]' })
    const result = events[3]
    assert.ok(result?.type === 'tool_result')
    assert.equal(result.images.length, 1)
    assert.match(result.text, /1 image\(s\) not stored \(image\/png, 9 bytes\)/)
    assert.deepEqual(events[6], { type: 'text', delta: '[codebox: 1 more events of this turn not stored]' })
  })

  test('history: failed and canceled turns say so; the newest turns are kept under the limits', () => {
    const turn = (prompt: string, text: string, outcome: AgentTurn['outcome']): AgentTurn => ({
      turnId: 1,
      conversationId: 'c',
      role: 'answer',
      prompt,
      text,
      outcome,
      skipped: [],
      usage: { inputTokens: 0, outputTokens: 0 },
      events: [],
      createdAt: new Date().toISOString(),
    })
    const h = historyFrom([turn('a', 'A', 'ok'), turn('b', 'boom', 'error'), turn('c', '', 'canceled')])
    assert.deepEqual(h, [
      { prompt: 'a', answer: 'A' },
      { prompt: 'b', answer: '(this turn failed: boom)' },
      { prompt: 'c', answer: '(this turn was canceled before it finished)' },
    ])
    const long = historyFrom([turn('old', 'x'.repeat(50), 'ok'), turn('new', 'y', 'ok')], { maxTurns: 10, maxChars: 20 })
    assert.deepEqual(long, [{ prompt: 'new', answer: 'y' }])
    assert.deepEqual(historyFrom([turn('1', '1', 'ok'), turn('2', '2', 'ok'), turn('3', '3', 'ok')], { maxTurns: 2, maxChars: 100 }), [
      { prompt: '2', answer: '2' },
      { prompt: '3', answer: '3' },
    ])
  })
})
