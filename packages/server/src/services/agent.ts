/**
 * The codebox agent as a service: the `AgentDoor` every agent door (runtime contract, IDE routes,
 * AWS InvokeAgentRuntime, A2A) calls. It owns conversations (per tenant), the code session each
 * conversation runs its code in, the short-term memory of every turn, the tenant's agent-turn
 * quota, the audit entry and metrics of each turn. Models and the loop are the agent package's.
 */
import { createHash, randomUUID } from 'node:crypto'
import {
  CodeboxError,
  conversationIdSchema,
  errorCodes,
  isCodeboxError,
  validationError,
  type AgentEvent,
  type AgentStatus,
  type AgentTurn,
  type Conversation,
  type ExecutionEvent,
  type ToolName,
  type ToolResult,
} from '@codebox/core'
import type { Agent, HistoryTurn, TurnResult } from '@codebox/agent'
import type { ToolTarget } from '@codebox/tools'
import type { FastifyBaseLogger } from 'fastify'
import type { Metrics } from '../metrics.ts'
import type { ConversationStore, RateStore, TenantStore } from '../store/index.ts'
import type { AgentDoor, ConversationPage, TurnRequest } from './agent-door.ts'
import { errorEventOf, EventQueue, fallbackReason, statusOf } from './agent-events.ts'
import { historyFrom, StoredEvents, titleOf } from './agent-memory.ts'
import { perMinute, ratesFor, type Rates } from './quotas.ts'
import type { Caller, SessionService } from './sessions.ts'

/** The service's settings (from ServerConfig.agent and the tenant quota defaults). */
export interface AgentServiceSettings {
  /** `CODEBOX_AGENT_IDLE_TIMEOUT_SECONDS`: a conversation's code session without a call for this long is stopped. Default 900. */
  idleTimeoutSeconds: number
  /** `CODEBOX_AGENT_MAX_LIFETIME_SECONDS`: a conversation's code session is stopped this long after it started. Default 28800. */
  maxLifetimeSeconds: number
  /** `CODEBOX_AGENT_MEMORY_DAYS`: a conversation is forgotten this long after its last turn. Default 30. */
  memoryDays: number
  /** `CODEBOX_TENANT_AGENT_TURNS_PER_MINUTE`: agent turns per tenant per minute, unless the tenant has its own. Default 60. */
  turnsPerMinute: number
}

export interface AgentServiceOptions {
  agent: Agent
  sessions: SessionService
  conversations: ConversationStore
  /** Where a tenant's own agent-turn quota is kept (`codebox tenants set --agent-turns-per-minute`). */
  tenants: Pick<TenantStore, 'get'>
  metrics: Metrics
  settings: AgentServiceSettings
  /** The interpreter of conversations' code sessions. Default codebox.v1. */
  interpreterId?: string
  log?: FastifyBaseLogger
  /** How often expired conversations are deleted, ms. Default 10 minutes. */
  sweepIntervalMs?: number
  /** The rate-limit buckets replicas share (the store's, on PostgreSQL); default: in this process. */
  rates?: RateStore
}

/** A turn in progress: how to stop it, and when it has been stored. */
interface Running {
  controller: AbortController
  done: Promise<void>
}

/** Everything a turn needs once its checks passed. */
interface Prepared {
  request: TurnRequest
  key: string
  conversation: Conversation
  /** The code session's id, kept current when a new one replaces an ended one mid-turn; `attached`: the caller's own session (TurnRequest.sessionId), never replaced. */
  code: { sessionId?: string; ended?: boolean; attached?: boolean }
  history: HistoryTurn[]
  /** Told to the model before the prompt: its earlier variables are gone. */
  resetNote?: string
  controller: AbortController
  /** Ends the turn's hold on its conversation (and wakes whoever waits for it). */
  release: () => void
  started: number
}

const maxPromptChars = 100_000

/** A tool call's result when the caller's own session (TurnRequest.sessionId) has ended: it is not replaced, the model tells the user. */
function attachedEnded(sessionId: string, why?: string): ToolResult {
  const text = `[codebox: the session ${sessionId} this turn works in has ended${why ? ` (${why})` : ''}; no more code can run in this turn: tell the user to start a new session.]`
  return { content: [{ type: 'text', text }], structuredContent: { stdout: '', stderr: '', exitCode: -1, executionTime: 0 }, isError: true }
}
const resetMessage =
  'the code session of this conversation ended (idle timeout, max lifetime, a stop or a server restart); a new one was started: variables, imports and files from earlier turns are gone, so recompute what you need'

export class AgentService implements AgentDoor {
  readonly #agent: Agent
  readonly #sessions: SessionService
  readonly #conversations: ConversationStore
  readonly #tenants: Pick<TenantStore, 'get'>
  readonly #metrics: Metrics
  readonly #settings: AgentServiceSettings
  readonly #interpreterId: string
  readonly #log: FastifyBaseLogger | undefined
  readonly #rates: Rates
  readonly #running = new Map<string, Running>()
  /** Code sessions this process started for conversations, by conversation key. */
  readonly #owned = new Map<string, { caller: Caller; sessionId: string }>()
  readonly #sweep: NodeJS.Timeout
  #closed = false

  constructor(options: AgentServiceOptions) {
    this.#agent = options.agent
    this.#sessions = options.sessions
    this.#conversations = options.conversations
    this.#metrics = options.metrics
    this.#settings = options.settings
    this.#tenants = options.tenants
    this.#interpreterId = options.interpreterId ?? 'codebox.v1'
    this.#log = options.log
    this.#rates = ratesFor({ ...(options.rates ? { rates: options.rates } : {}) })
    void this.sweepExpired()
    this.#sweep = setInterval(() => void this.sweepExpired(), options.sweepIntervalMs ?? 10 * 60_000)
    this.#sweep.unref()
  }

  get configured(): boolean {
    return this.#agent.status().configured
  }

  get busy(): boolean {
    return this.#running.size > 0
  }

  status(): AgentStatus {
    return this.#agent.status()
  }

  /**
   * Runs one turn (see AgentDoor.turn). The turn runs on even if the caller stops reading: its
   * events queue up, and a caller that returns early cancels it; either way it is stored.
   */
  async *turn(request: TurnRequest): AsyncGenerator<AgentEvent, AgentTurn, undefined> {
    const prepared = await this.#prepare(request)
    const queue = new EventQueue()
    const task = this.#run(prepared, queue)
    let finished = false
    try {
      yield* queue.drain()
      finished = true
      return await task
    } finally {
      if (!finished) {
        prepared.controller.abort(new Error('the caller stopped reading the turn'))
        await task
      }
    }
  }

  async stopConversation(caller: Caller, conversationId: string): Promise<void> {
    const conversation = await this.#find(caller, conversationId)
    const key = keyOf(caller.tenant, conversation.conversationId)
    await this.#cancel(key, 'the conversation was stopped')
    // The ended session's id stays on record: the next turn sees it gone and tells the model so.
    await this.#stopCode(caller, key, conversation.sessionId)
  }

  async deleteConversation(caller: Caller, conversationId: string): Promise<void> {
    const conversation = await this.#find(caller, conversationId)
    const key = keyOf(caller.tenant, conversation.conversationId)
    await this.#cancel(key, 'the conversation was deleted')
    await this.#stopCode(caller, key, conversation.sessionId)
    await this.#conversations.delete(caller.tenant, conversation.conversationId)
  }

  async listConversations(caller: Caller, options: { limit: number; nextToken?: string }): Promise<ConversationPage> {
    const page = await this.#conversations.list({ tenant: caller.tenant, limit: options.limit, ...(options.nextToken ? { nextToken: options.nextToken } : {}) })
    return { items: page.items.map((c) => this.#withLiveSession(c)), ...(page.nextToken ? { nextToken: page.nextToken } : {}) }
  }

  async history(caller: Caller, conversationId: string): Promise<{ conversation: Conversation; turns: AgentTurn[] }> {
    const conversation = await this.#find(caller, conversationId)
    return { conversation: this.#withLiveSession(conversation), turns: await this.#conversations.turns(caller.tenant, conversation.conversationId) }
  }

  /** Deletes every expired conversation (start-up, then every sweep interval); returns how many. */
  async sweepExpired(): Promise<number> {
    for (const [key, o] of this.#owned) if (!this.#alive(o.sessionId)) this.#owned.delete(key)
    try {
      const n = await this.#conversations.deleteExpired(new Date())
      if (n > 0) this.#log?.info({ conversations: n }, 'expired agent conversations deleted')
      return n
    } catch (e) {
      this.#log?.warn({ err: e }, 'could not delete expired agent conversations')
      return 0
    }
  }

  /** For shutdown: cancels every running turn (each is stored as canceled) and stops the code sessions this service started. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    clearInterval(this.#sweep)
    await Promise.all([...this.#running.keys()].map((key) => this.#cancel(key, 'the server is shutting down')))
    await Promise.all([...this.#owned.entries()].map(([key, o]) => this.#stopCode(o.caller, key, o.sessionId)))
  }

  /** The checks of a turn, in order, then its conversation, history and code session. Throws before any event. */
  async #prepare(request: TurnRequest): Promise<Prepared> {
    const { caller, role } = request
    if (this.#closed) throw new CodeboxError('Unavailable', 'the server is shutting down; send the turn again once it is back')
    const status = this.#agent.status()
    if (!status.configured) throw new CodeboxError('ModelNotConfigured', status.hint ?? errorCodes.ModelNotConfigured.hint)
    if (role !== 'answer' && role !== 'generate') throw validationError('role', 'must be answer or generate')
    if (typeof request.prompt !== 'string' || request.prompt.trim() === '') throw validationError('prompt', 'must be a non-empty string')
    if (request.prompt.length > maxPromptChars) throw validationError('prompt', `must be at most ${maxPromptChars} characters, got ${request.prompt.length}`)
    if (request.language !== undefined && !['python', 'javascript', 'typescript'].includes(request.language)) {
      throw validationError('language', 'must be python, javascript or typescript')
    }
    if (request.model !== undefined && !status.models.some((m) => m.model === request.model)) {
      const ids = status.models.map((m) => m.model).join(', ')
      throw validationError('model', `must be one of the configured models (${ids}), got ${JSON.stringify(String(request.model).slice(0, 100))}`)
    }
    let conversationId = request.conversationId
    if (conversationId !== undefined && !conversationIdSchema.safeParse(conversationId).success) {
      throw validationError('conversationId', 'must be 1-256 letters, digits, _ . : or -')
    }
    conversationId ??= randomUUID()
    const key = keyOf(caller.tenant, conversationId)
    const quota = (await this.#tenants.get(caller.tenant))?.agentTurnsPerMinute ?? this.#settings.turnsPerMinute
    if (this.#running.has(key)) throw new CodeboxError('Conflict', `a turn of conversation ${conversationId} is running; wait for it to end, or stop it`)
    try {
      await this.#rates.take(`agentTurn:${caller.tenant}`, perMinute(quota), 'agent turns')
    } catch (e) {
      this.#metrics.agentTurns.inc({ role, outcome: 'rejected' })
      await this.#audit(request, { outcome: 'rejected', durationMs: 0, detail: `role=${role} error=RateLimited` })
      throw e
    }
    // Taken before the first await: a second turn of the same conversation is a Conflict from here on.
    const controller = new AbortController()
    const onAbort = (): void => controller.abort(request.signal?.reason)
    let settle = (): void => {}
    const done = new Promise<void>((resolve) => (settle = resolve))
    const release = (): void => {
      request.signal?.removeEventListener('abort', onAbort)
      this.#running.delete(key)
      settle()
    }
    this.#running.set(key, { controller, done })
    request.signal?.addEventListener('abort', onAbort, { once: true })
    if (request.signal?.aborted) onAbort()
    let created = false
    try {
      const now = new Date()
      let conversation = await this.#conversations.get(caller.tenant, conversationId, now)
      if (!conversation) {
        conversation = await this.#conversations.create({
          tenant: caller.tenant,
          conversationId,
          actor: (request.actor ?? caller.keyId ?? 'default').slice(0, 256),
          title: titleOf(request.prompt),
          createdAt: now,
          expiresAt: this.#expiry(now),
        })
        created = true
      }
      const history = historyFrom(await this.#conversations.turns(caller.tenant, conversationId, 200))
      const prepared: Prepared = { request, key, conversation, code: {}, history, controller, release, started: performance.now() }
      if (role === 'answer' && request.sessionId !== undefined) {
        const info = await this.#sessions.get(caller, request.sessionId)
        if (info.status !== 'READY' || !this.#alive(info.sessionId)) {
          throw new CodeboxError(
            'SessionTerminated',
            `session ${info.sessionId} has ended; start a new session, or leave sessionId out to use the conversation's own`,
          )
        }
        prepared.code = { sessionId: info.sessionId, attached: true }
      } else if (role === 'answer') {
        const previous = conversation.sessionId
        if (previous !== undefined && this.#alive(previous)) prepared.code.sessionId = previous
        else {
          prepared.code.sessionId = await this.#startCode(prepared)
          if (previous !== undefined) prepared.resetNote = `[codebox: ${resetMessage}.]`
        }
      }
      return prepared
    } catch (e) {
      // A conversation this turn created, without a turn stored, is not left behind.
      if (created) await this.#conversations.delete(caller.tenant, conversationId).catch(() => false)
      release()
      this.#metrics.agentTurns.inc({ role, outcome: 'rejected' })
      const code = isCodeboxError(e) ? e.code : 'Internal'
      await this.#audit(request, { outcome: statusOf(code) >= 500 ? 'failed' : 'rejected', durationMs: 0, detail: `role=${role} error=${code}` })
      throw e
    }
  }

  /** Runs a prepared turn to its stored end, then lets the conversation take its next turn. */
  async #run(p: Prepared, queue: EventQueue): Promise<AgentTurn> {
    try {
      return await this.#execute(p, queue)
    } finally {
      p.release()
      queue.end()
    }
  }

  /** The turn itself: the agent's events streamed and kept, then the turn stored, audited and counted. */
  async #execute(p: Prepared, queue: EventQueue): Promise<AgentTurn> {
    const { request, controller } = p
    const stored = new StoredEvents()
    const counted = new Set<string>()
    let lastModel: { model: string; skipped: AgentTurn['skipped'] } | undefined
    let errorEvent: Extract<AgentEvent, { type: 'error' }> | undefined
    const emit = (e: AgentEvent): void => {
      stored.add(e)
      queue.push(e)
      if (e.type === 'model') {
        lastModel = { model: e.model, skipped: e.skipped }
        for (const s of e.skipped) {
          if (counted.has(`${s.model}\0${s.reason}`)) continue
          counted.add(`${s.model}\0${s.reason}`)
          this.#metrics.agentFallbacks.inc({ model: s.model, reason: fallbackReason(s.reason) })
        }
      } else if (e.type === 'error') errorEvent = e
    }
    emit({
      type: 'turn_start',
      conversationId: p.conversation.conversationId,
      ...(p.code.sessionId ? { sessionId: p.code.sessionId } : {}),
      role: request.role,
    })
    let result: TurnResult | undefined
    try {
      const prompt = p.resetNote ? `${p.resetNote}\n\n${request.prompt}` : request.prompt
      const model = request.model !== undefined ? { model: request.model } : {}
      const events =
        request.role === 'answer'
          ? this.#agent.answer({ prompt, history: p.history, tools: this.#target(p), ...model, signal: controller.signal })
          : this.#agent.generate({ prompt, language: request.language ?? 'python', history: p.history, ...model, signal: controller.signal })
      for (;;) {
        const next = await events.next()
        if (next.done) {
          result = next.value
          break
        }
        if (next.value.type !== 'turn_start') emit(next.value)
      }
    } catch (e) {
      if (!errorEvent) emit(this.#errorEvent(e, controller.signal))
    }
    const canceled = result === undefined && controller.signal.aborted
    if (result === undefined && !errorEvent) emit(this.#errorEvent(undefined, controller.signal))
    const turn = await this.#store(p, stored, {
      outcome: result ? 'ok' : canceled ? 'canceled' : 'error',
      text: result?.text ?? errorEvent?.message ?? '',
      model: result?.model ?? lastModel?.model,
      skipped: result?.skipped ?? lastModel?.skipped ?? [],
      usage: result?.usage ?? { inputTokens: 0, outputTokens: 0 },
    })
    const durationMs = performance.now() - p.started
    this.#metrics.agentTurns.inc({ role: request.role, outcome: turn.outcome })
    this.#metrics.agentTurnDuration.observe({ role: request.role }, durationMs / 1000)
    if (result) {
      this.#metrics.agentTokens.inc({ model: result.model, direction: 'input' }, result.usage.inputTokens)
      this.#metrics.agentTokens.inc({ model: result.model, direction: 'output' }, result.usage.outputTokens)
    }
    const code = errorEvent?.code
    await this.#audit(request, {
      outcome: turn.outcome === 'ok' ? 'ok' : turn.outcome === 'canceled' || (code !== undefined && statusOf(code) >= 500) ? 'failed' : 'error',
      durationMs,
      sessionId: p.code.sessionId,
      detail: [
        `role=${request.role}`,
        `conversation=${p.conversation.conversationId}`,
        turn.model && `model=${turn.model}`,
        canceled ? 'cancelled' : code && `error=${code}`,
      ]
        .filter(Boolean)
        .join(' '),
    })
    return turn
  }

  /** Stores the turn (extending the conversation's memory); a turn whose conversation went meanwhile comes back with turnId 0. */
  async #store(
    p: Prepared,
    stored: StoredEvents,
    end: Pick<AgentTurn, 'outcome' | 'text' | 'skipped' | 'usage'> & { model: string | undefined },
  ): Promise<AgentTurn> {
    const now = new Date()
    const turn: Omit<AgentTurn, 'turnId'> = {
      conversationId: p.conversation.conversationId,
      role: p.request.role,
      prompt: p.request.prompt,
      text: end.text,
      outcome: end.outcome,
      ...(end.model ? { model: end.model } : {}),
      skipped: end.skipped,
      usage: end.usage,
      events: stored.list(),
      createdAt: now.toISOString(),
    }
    try {
      return (await this.#conversations.appendTurn({ ...turn, tenant: p.request.caller.tenant }, this.#expiry(now))) ?? { turnId: 0, ...turn }
    } catch (e) {
      this.#log?.error({ err: e, conversationId: p.conversation.conversationId }, 'could not store an agent turn')
      return { turnId: 0, ...turn }
    }
  }

  /** The tools' target: the conversation's code session. */
  #target(p: Prepared): ToolTarget {
    return {
      invokeStream: (name, args, o) => this.#invokeIn(p, name, args, o?.signal),
      invoke: async (name, args, o) => {
        const events = this.#invokeIn(p, name, args, o?.signal)
        for (;;) {
          const n = await events.next()
          if (n.done) return n.value
        }
      },
    }
  }

  /** Runs one tool call in the conversation's code session; one that ended mid-turn is replaced, and the result tells the model so. */
  async *#invokeIn(p: Prepared, name: ToolName, args: unknown, signal: AbortSignal | undefined): AsyncGenerator<ExecutionEvent, ToolResult, undefined> {
    let note: string | undefined
    let sessionId = p.code.sessionId
    if (p.code.attached && (p.code.ended || !this.#alive(sessionId!))) return attachedEnded(sessionId!)
    if (sessionId === undefined || p.code.ended || !this.#alive(sessionId)) {
      sessionId = await this.#startCode(p)
      p.code.ended = false
      if (p.code.sessionId !== undefined) note = `[codebox: ${resetMessage}.]`
      p.code.sessionId = sessionId
    }
    const ctx = { ...(signal ? { signal } : {}), ...(p.request.requestId ? { requestId: p.request.requestId } : {}) }
    let result: ToolResult
    try {
      result = yield* this.#sessions.invoke(p.request.caller, sessionId, { name, arguments: args }, ctx)
    } catch (e) {
      // The sandbox ended under this call (the code killed it, or a limit did): the model can go on in a new one.
      if (!isCodeboxError(e) || e.code !== 'SessionTerminated' || signal?.aborted) throw e
      p.code.ended = true
      if (p.code.attached) return attachedEnded(sessionId, e.message)
      const text = `[codebox: the code session ended during this call (${e.message}); the next call starts a new one, without the variables, imports and files of this one.]`
      result = { content: [{ type: 'text', text }], structuredContent: { stdout: '', stderr: '', exitCode: -1, executionTime: 0 }, isError: true }
    }
    return note ? { ...result, content: [{ type: 'text', text: note }, ...result.content] } : result
  }

  /** Starts a code session for the conversation, owned by it, with the runtime session's idle timeout and lifetime. */
  async #startCode(p: Prepared): Promise<string> {
    const { caller } = p.request
    const { info } = await this.#sessions.start(
      caller,
      {
        interpreterId: this.#interpreterId,
        name: `agent ${p.conversation.conversationId}`.slice(0, 100),
        timeoutSeconds: this.#settings.idleTimeoutSeconds,
        limits: { maxLifetimeMs: this.#settings.maxLifetimeSeconds * 1000 },
      },
      { signal: p.controller.signal, ...(p.request.requestId ? { requestId: p.request.requestId } : {}) },
    )
    this.#owned.set(p.key, { caller, sessionId: info.sessionId })
    await this.#conversations.setSession(caller.tenant, p.conversation.conversationId, info.sessionId)
    return info.sessionId
  }

  async #stopCode(caller: Caller, key: string, sessionId: string | undefined): Promise<void> {
    const owned = this.#owned.get(key)
    this.#owned.delete(key)
    for (const id of new Set([sessionId, owned?.sessionId])) {
      if (id === undefined || !this.#alive(id)) continue
      await this.#sessions.stop(caller, id).catch((e: unknown) => this.#log?.warn({ err: e, sessionId: id }, 'could not stop a conversation’s code session'))
    }
  }

  /** Aborts the conversation's running turn, if any, and waits until it is stored. */
  async #cancel(key: string, why: string): Promise<void> {
    const running = this.#running.get(key)
    if (!running) return
    running.controller.abort(new Error(why))
    await running.done
  }

  async #find(caller: Caller, conversationId: string): Promise<Conversation> {
    const found = conversationIdSchema.safeParse(conversationId).success ? await this.#conversations.get(caller.tenant, conversationId) : undefined
    if (!found) throw new CodeboxError('NotFound', `no conversation ${JSON.stringify(conversationId.slice(0, 64))}`)
    return found
  }

  #alive(sessionId: string): boolean {
    return this.#sessions.isLive(sessionId)
  }

  #withLiveSession(c: Conversation): Conversation {
    if (c.sessionId === undefined || this.#alive(c.sessionId)) return c
    const { sessionId: _ended, ...rest } = c
    return rest
  }

  #expiry(from: Date): Date {
    return new Date(from.getTime() + this.#settings.memoryDays * 86_400_000)
  }

  #errorEvent(e: unknown, signal: AbortSignal): Extract<AgentEvent, { type: 'error' }> {
    return errorEventOf(e, signal, (message) => this.#log?.error({ err: { message } }, 'agent turn failed'))
  }

  /** One audit entry per turn: never the prompt text or a model key; the prompt's size and hash are fine. */
  async #audit(
    request: TurnRequest,
    entry: { outcome: 'ok' | 'error' | 'rejected' | 'failed'; durationMs: number; sessionId?: string; detail: string },
  ): Promise<void> {
    try {
      await this.#sessions.audit(request.caller, {
        action: 'agentTurn',
        ...entry,
        ...(request.role === 'generate' ? { language: request.language ?? 'python' } : {}),
        codeBytes: Buffer.byteLength(String(request.prompt)),
        codeSha256: createHash('sha256').update(String(request.prompt)).digest('hex'),
        requestId: request.requestId,
      })
    } catch (e) {
      this.#log?.error({ err: e }, 'could not write the audit entry of an agent turn')
    }
  }
}

const keyOf = (tenant: string, conversationId: string): string => `${tenant}\0${conversationId}`
