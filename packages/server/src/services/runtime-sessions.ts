/**
 * Runtime sessions of hosted agents (AgentCore Runtime, seed 002): the first invocation with a new
 * runtime session id launches the agent (a sandbox of its own with the runtime's code, the
 * entrypoint started in it) and waits until its `GET /ping` is healthy; later invocations with the
 * same id reach the same process. A session ends at its idle timeout (unless its `/ping` says
 * `HealthyBusy`, which keeps it alive), at its maximum lifetime regardless, on StopRuntimeSession,
 * or when the agent's process or sandbox ends. Different ids never share anything.
 *
 * How an agent is launched is the Launcher's business (services/runtime-launcher.ts over the
 * engine); this file owns the lifecycle, the timers and the forwarding, so it is tested with
 * agents on loopback. With replicas sharing a store and a sandbox driver (a RuntimeSessionStore,
 * services/runtime-replicas.ts), a runtime session is one agent whichever replica an invocation
 * reaches: found in the store and attached, launched only when the store has none.
 */
import type { IncomingMessage } from 'node:http'
import type { Duplex, Readable } from 'node:stream'
import { CodeboxError, type RuntimeProtocol } from '@codebox/core'
import { exchange, ping, upgrade, type PingStatus, type PortConnector } from './runtime-http.ts'

/** What identifies a runtime session: AWS keys it by runtime and runtime session id, within a tenant. */
export interface RuntimeSessionKey {
  tenant: string
  runtimeId: string
  runtimeSessionId: string
}

export interface RuntimeSessionSettings {
  /** Idle time after which a session whose /ping does not say HealthyBusy ends. */
  idleTimeoutMs: number
  /** Time after its start at which a session ends regardless. */
  maxLifetimeMs: number
  /** How long a new agent may take to answer /ping as healthy. */
  startTimeoutMs: number
  /** How long an invocation may wait for the agent's response head. */
  invokeTimeoutMs: number
}

/** A launched agent: its HTTP port inside its sandbox, its end, its logs. */
export interface LaunchedAgent {
  /** A port of the agent through the sandbox's inbound relay: by default the one its protocol serves on (8080, 8000 or 9000). */
  connect: PortConnector
  /** The protocol it serves (default HTTP): HTTP agents are health-checked with the runtime contract's `GET /ping`, MCP and A2A ones by their server answering at all. */
  protocol?: RuntimeProtocol
  /** Resolves with why, when the agent's process or its sandbox ended by itself. */
  ended: Promise<string>
  /** The last of what the agent printed (stdout and stderr), for errors. */
  logTail(): Promise<string>
  /** Ends the agent and its sandbox; idempotent. */
  stop(reason: RuntimeSessionEndReason): Promise<void>
  /** Lets go of the agent here without ending it (another replica ended it, or serves it on); for agents of a store shared by replicas. */
  release?(): Promise<void>
  /** Whether this server collects the agent's output now (with replicas, one at a time does); default yes. */
  collecting?(): boolean
  /** The codebox session that serves it (for logs and the operator). */
  sessionId: string
  /** The runtime version it runs. */
  version: string
}

export type RuntimeSessionEndReason = 'stopped' | 'idle-timeout' | 'max-lifetime' | 'agent-exited' | 'unhealthy' | 'server-shutdown' | 'runtime-deleted'

export interface Launcher {
  /** Starts the agent of this runtime session (its sandbox and its entrypoint) from the version `qualifier` names (default DEFAULT); the settings come with it. */
  launch(key: RuntimeSessionKey, signal: AbortSignal, qualifier?: string): Promise<{ agent: LaunchedAgent; settings: RuntimeSessionSettings }>
}

export interface RuntimeSessionInfo extends RuntimeSessionKey {
  sessionId: string
  version: string
  protocol: RuntimeProtocol
  startedAt: Date
  lastInvocationAt: Date
  active: number
}

interface Entry {
  key: RuntimeSessionKey
  agent: LaunchedAgent
  settings: RuntimeSessionSettings
  startedAt: Date
  lastActivity: number
  active: number
  ending?: Promise<void>
  idleTimer?: NodeJS.Timeout
  lifeTimer?: NodeJS.Timeout
}

/**
 * A runtime session as the store shared by replicas has it (RuntimeSessionsOptions.store): started
 * by another replica, or by one that went away.
 */
export interface StoredRuntimeSession {
  sessionId: string
  version: string
  startedAt: Date
  /** Its last invocation on any replica. */
  lastActivity: Date
  /** Whether its agent's process was started and recorded; until then, the replica that launches it is still at it. */
  launched: boolean
  /** Attaches its sandbox here and reaches its agent again (as a restarted server does). */
  attach(): Promise<{ agent: LaunchedAgent; settings: RuntimeSessionSettings }>
  /** Ends it from here: its record first, then its sandbox (a replica holding it sees its agent end). */
  end(reason: RuntimeSessionEndReason): Promise<void>
}

/** Where replicas sharing one store and a shared sandbox driver find each other's runtime sessions. */
export interface RuntimeSessionStore {
  /** The active runtime session of this key, whichever replica started it; undefined when there is none. */
  find(key: RuntimeSessionKey): Promise<StoredRuntimeSession | undefined>
  /** The active runtime sessions of a tenant (of one runtime, given one). */
  list(filter: { tenant: string; runtimeId?: string }): Promise<(RuntimeSessionKey & { stored: StoredRuntimeSession; protocol?: RuntimeProtocol })[]>
  /** Records an invocation now (the session's last activity, which every replica's idle timeout counts from). */
  touch(sessionId: string): Promise<void>
  /** What the store says now: ended (by any replica), and the last invocation on any replica (epoch ms). */
  recorded(sessionId: string): Promise<{ ended: boolean; lastActivityAt: number } | undefined>
  /** Records the end (the first reason recorded wins), before the agent is stopped. */
  ended(sessionId: string, reason: RuntimeSessionEndReason): Promise<void>
}

/** The error of a launch that another replica's launch of the same runtime session beat (SessionStore.insert, exclusiveHosted). */
export function isHostedTaken(e: unknown): boolean {
  return e instanceof CodeboxError && e.code === 'Conflict' && e.details?.hostedTaken === true
}

export interface RuntimeSessionsOptions {
  launcher: Launcher
  /**
   * With replicas sharing the store and a shared sandbox driver: any replica answers for any
   * runtime session (one it does not hold is found here and attached, never launched twice), the
   * idle timeout counts invocations on every replica, an end anywhere is an end everywhere, and a
   * replica that shuts down lets go of its runtime sessions instead of ending them. Default none:
   * this server's runtime sessions are its own.
   */
  store?: RuntimeSessionStore
  /** With `store`: how long a runtime session another replica is launching may stay without its agent before it counts as abandoned. Default 60 s. */
  launchGraceMs?: number
  /** Told when a session ends, with why (metrics, the audit log, the store). */
  onEnd?: (info: RuntimeSessionInfo, reason: RuntimeSessionEndReason) => void
  /** How often a starting agent's /ping is polled. Default 100 ms. */
  pollMs?: number
}

/** AWS reports an agent's own failure as RuntimeClientError (424): its message says what the agent did. */
export function agentFailure(message: string, code: 'SandboxFailure' | 'Timeout' = 'SandboxFailure'): CodeboxError {
  return new CodeboxError(code, message, { details: { aws: 'RuntimeClientError' } })
}

const keyOf = (k: RuntimeSessionKey): string => JSON.stringify([k.tenant, k.runtimeId, k.runtimeSessionId])

export class RuntimeSessions {
  readonly #launcher: Launcher
  readonly #onEnd: RuntimeSessionsOptions['onEnd']
  readonly #pollMs: number
  readonly #store: RuntimeSessionStore | undefined
  readonly #launchGraceMs: number
  readonly #live = new Map<string, Entry>()
  readonly #starting = new Map<string, Promise<Entry>>()
  /** Aborted on close(): launches still in flight give up. */
  readonly #closing = new AbortController()
  #closed = false

  constructor(options: RuntimeSessionsOptions) {
    this.#launcher = options.launcher
    this.#onEnd = options.onEnd
    this.#pollMs = options.pollMs ?? 100
    this.#store = options.store
    this.#launchGraceMs = options.launchGraceMs ?? 60_000
  }

  /**
   * Runtime sessions alive now on any replica (with a shared store; else this server's): what the
   * listing of a runtime's sessions shows.
   */
  async listAll(filter: Pick<RuntimeSessionKey, 'tenant'> & Partial<Pick<RuntimeSessionKey, 'runtimeId'>>): Promise<RuntimeSessionInfo[]> {
    if (!this.#store) return this.list(filter)
    const here = new Map(this.list(filter).map((i) => [keyOf(i), i]))
    return (await this.#store.list(filter)).map(
      (r) =>
        here.get(keyOf(r)) ?? {
          tenant: r.tenant,
          runtimeId: r.runtimeId,
          runtimeSessionId: r.runtimeSessionId,
          sessionId: r.stored.sessionId,
          version: r.stored.version,
          protocol: r.protocol ?? 'HTTP',
          startedAt: r.stored.startedAt,
          lastInvocationAt: r.stored.lastActivity,
          active: 0,
        },
    )
  }

  /** Runtime sessions this server holds now (with a shared store, listAll has every replica's). */
  list(filter: Partial<Pick<RuntimeSessionKey, 'tenant' | 'runtimeId'>> = {}): RuntimeSessionInfo[] {
    return [...this.#live.values()]
      .filter(
        (e) =>
          !e.ending &&
          (filter.tenant === undefined || e.key.tenant === filter.tenant) &&
          (filter.runtimeId === undefined || e.key.runtimeId === filter.runtimeId),
      )
      .map((e) => this.#info(e))
  }

  /**
   * The runtime sessions this server counts in its metrics (`codebox_runtime_sessions`): those it
   * holds whose agent's output it collects. With one server that is every one it holds; with
   * replicas sharing runtime sessions one replica at a time collects each, so the sum over
   * replicas counts each runtime session once (one held by two replicas counts on its collector).
   */
  counted(): RuntimeSessionInfo[] {
    return [...this.#live.values()].filter((e) => !e.ending && (e.agent.collecting?.() ?? true)).map((e) => this.#info(e))
  }

  /** The live runtime session of this key held here, if any. */
  find(key: RuntimeSessionKey): RuntimeSessionInfo | undefined {
    const e = this.#live.get(keyOf(key))
    return e && !e.ending ? this.#info(e) : undefined
  }

  /**
   * One invocation: reaches the session's agent (launching it first when the key is new) and
   * resolves with the agent's response once its head arrived; the caller streams the body on.
   * The agent's own failures (it never became healthy, it crashed, it did not answer) are
   * RuntimeClientError-flavoured CodeboxErrors with its log tail in the message.
   */
  async invoke(
    key: RuntimeSessionKey,
    request: {
      path: string
      headers: Record<string, string>
      body?: Buffer | Readable
      signal?: AbortSignal
      qualifier?: string
      /** Default POST (InvokeAgentRuntime); GET and DELETE reach MCP's and A2A's other routes (the agent card). */
      method?: string
      /** Default: the port the agent's protocol serves on. */
      port?: number
    },
  ): Promise<{ response: IncomingMessage; info: RuntimeSessionInfo; done: () => void }> {
    return this.#use(key, request, async (entry, done) => {
      const response = await exchange(this.#connector(entry, request.port), {
        method: request.method ?? 'POST',
        path: request.path,
        headers: request.headers,
        ...(request.body !== undefined ? { body: request.body } : {}),
        headTimeoutMs: entry.settings.invokeTimeoutMs,
        ...(request.signal ? { signal: request.signal } : {}),
      })
      response.once('close', done)
      return { response, info: this.#info(entry), done }
    })
  }

  /**
   * An upgrade (a WebSocket handshake, `headers` carrying it) to the session's agent, launching it
   * first when the key is new. On the agent's 101, `socket` is the upgraded stream to pipe and the
   * session counts as busy (its idle timeout does not run) until `done()` is called or the stream
   * closes; any other answer comes back as `response` (and the session is released when it closes).
   */
  async upgrade(
    key: RuntimeSessionKey,
    request: { path: string; headers: Record<string, string>; signal?: AbortSignal; qualifier?: string; port?: number },
  ): Promise<{ response: IncomingMessage; socket?: Duplex; head?: Buffer; info: RuntimeSessionInfo; done: () => void }> {
    return this.#use(key, request, async (entry, done) => {
      const answer = await upgrade(this.#connector(entry, request.port), {
        path: request.path,
        headers: request.headers,
        headTimeoutMs: Math.min(entry.settings.invokeTimeoutMs, 60_000),
        ...(request.signal ? { signal: request.signal } : {}),
      })
      if (answer.socket) {
        answer.socket.once('close', done)
        return { response: answer.response, socket: answer.socket, head: answer.head, info: this.#info(entry), done }
      }
      answer.response.once('close', done)
      return { response: answer.response, info: this.#info(entry), done }
    })
  }

  /** Marks the session busy while `use` runs and until it calls `done`; the agent's failures become RuntimeClientError with its log tail. */
  async #use<T>(
    key: RuntimeSessionKey,
    request: { signal?: AbortSignal; qualifier?: string },
    use: (entry: Entry, done: () => void) => Promise<T>,
  ): Promise<T> {
    const entry = await this.#session(key, request.signal, request.qualifier)
    entry.active++
    entry.lastActivity = Date.now()
    // Other replicas' idle timeouts count this invocation: recorded now, and again while it lasts.
    this.#touch(entry)
    const beat = this.#store ? setInterval(() => this.#touch(entry), Math.max(1_000, Math.floor(entry.settings.idleTimeoutMs / 3))) : undefined
    beat?.unref()
    let finished = false
    const done = (): void => {
      if (finished) return
      finished = true
      clearInterval(beat)
      entry.active--
      entry.lastActivity = Date.now()
      this.#touch(entry)
      this.#armIdle(entry)
    }
    try {
      return await use(entry, done)
    } catch (e) {
      done()
      if (request.signal?.aborted) throw new CodeboxError('Canceled', 'the invocation was canceled by its caller')
      // An agent that died mid-request is seen ending within a poll of its output: its last words make the error.
      const gone = await Promise.race([entry.agent.ended, new Promise<undefined>((r) => setTimeout(() => r(undefined), 2_000))])
      const why = gone ?? (e as Error).message
      throw agentFailure(
        `the agent failed to answer: ${why}${await this.#tail(entry.agent)}`,
        e instanceof CodeboxError && e.code === 'Timeout' ? 'Timeout' : 'SandboxFailure',
      )
    }
  }

  /** The agent's port `port` (default: the one it serves). */
  #connector(entry: Entry, port: number | undefined): PortConnector {
    return port === undefined ? entry.agent.connect : (signal) => entry.agent.connect(signal, port)
  }

  /** The end of what the live runtime session's agent printed up to now (undefined when it is not running). */
  async logTail(key: RuntimeSessionKey): Promise<string | undefined> {
    const e = this.#live.get(keyOf(key))
    return e ? e.agent.logTail().catch(() => undefined) : undefined
  }

  /** StopRuntimeSession: ends the session now. NotFound when there is none with this key. */
  async stop(key: RuntimeSessionKey, reason: RuntimeSessionEndReason = 'stopped'): Promise<void> {
    const starting = this.#starting.get(keyOf(key))
    if (starting) await starting.catch(() => undefined)
    const e = this.#live.get(keyOf(key))
    if (e && !e.ending) return this.#end(e, reason)
    // Another replica's (or one that went away): ended from here; a replica holding it sees its agent end.
    const stored = await this.#store?.find(key)
    if (!stored) throw new CodeboxError('NotFound', `no runtime session ${JSON.stringify(key.runtimeSessionId)} of runtime ${key.runtimeId} is running`)
    await stored.end(reason)
    this.#onEnd?.(
      {
        ...key,
        sessionId: stored.sessionId,
        version: stored.version,
        protocol: 'HTTP',
        startedAt: stored.startedAt,
        lastInvocationAt: stored.lastActivity,
        active: 0,
      },
      reason,
    )
  }

  /**
   * Serves again runtime sessions a previous server started, whose sandboxes this one re-adopted:
   * `reattach` reaches each agent again; its lifetime counts from its start and its idle timeout
   * from its last invocation, as before the restart. One that cannot be served (its runtime was
   * deleted meanwhile, its agent is gone or unhealthy) is ended with `abandon`, and its reason returned.
   */
  async restore(
    items: {
      key: RuntimeSessionKey
      startedAt: Date
      lastActivity: Date
      reattach: () => Promise<{ agent: LaunchedAgent; settings: RuntimeSessionSettings }>
      abandon: (reason: string) => Promise<void>
    }[],
  ): Promise<{ restored: RuntimeSessionInfo[]; failed: { key: RuntimeSessionKey; reason: string }[] }> {
    const restored: RuntimeSessionInfo[] = []
    const failed: { key: RuntimeSessionKey; reason: string }[] = []
    await Promise.all(
      items.map(async (item) => {
        let agent: LaunchedAgent | undefined
        try {
          if (this.#closed) throw new CodeboxError('Unavailable', 'the server is shutting down')
          if (this.#live.has(keyOf(item.key))) throw new CodeboxError('Conflict', 'this runtime session is already served here')
          const got = await item.reattach()
          agent = got.agent
          const r = await ping(agent.connect, 5_000, undefined, (agent.protocol ?? 'HTTP') === 'HTTP')
          if (r.status === 'unhealthy') throw new CodeboxError('SandboxFailure', `its agent does not answer GET /ping: ${r.reason}`)
          restored.push(this.#info(this.#hold(item.key, agent, got.settings, item.startedAt, item.lastActivity.getTime())))
        } catch (e) {
          const reason = (e as Error).message
          failed.push({ key: item.key, reason })
          await (agent ? agent.stop('unhealthy') : item.abandon(reason)).catch(() => {})
        }
      }),
    )
    return { restored, failed }
  }

  /** Ends every session of a runtime (it is being deleted). */
  async stopRuntime(tenant: string, runtimeId: string): Promise<void> {
    await Promise.all(
      [...this.#live.values()].filter((e) => e.key.tenant === tenant && e.key.runtimeId === runtimeId).map((e) => this.#end(e, 'runtime-deleted')),
    )
    // Those other replicas hold (or none does): ended from here.
    for (const r of (await this.#store?.list({ tenant, runtimeId })) ?? []) await r.stored.end('runtime-deleted').catch(() => {})
  }

  /** Ends every session (server shutdown); later invocations are refused. */
  async close(): Promise<void> {
    this.#closed = true
    this.#closing.abort(new CodeboxError('Unavailable', 'the server is shutting down'))
    await Promise.allSettled([...this.#starting.values()])
    // With a shared store, the other replicas serve them on: let go of, not ended.
    await Promise.all([...this.#live.values()].map((e) => (this.#store ? this.#letGo(e) : this.#end(e, 'server-shutdown'))))
  }

  #info(e: Entry): RuntimeSessionInfo {
    return {
      ...e.key,
      sessionId: e.agent.sessionId,
      version: e.agent.version,
      protocol: e.agent.protocol ?? 'HTTP',
      startedAt: e.startedAt,
      lastInvocationAt: new Date(e.lastActivity),
      active: e.active,
    }
  }

  async #session(key: RuntimeSessionKey, signal?: AbortSignal, qualifier?: string): Promise<Entry> {
    const k = keyOf(key)
    const live = this.#live.get(k)
    if (live && !live.ending) {
      if (!this.#store) return live
      // Held here, but maybe ended on another replica a moment ago (before this one's watch saw
      // its agent go): the store says, as it does for every call of a session on a shared driver.
      const recorded = await this.#store.recorded(live.agent.sessionId).catch(() => undefined)
      if (!recorded?.ended && !live.ending) return live
      if (!live.ending) await this.#letGo(live)
    }
    if (live?.ending) await live.ending
    const pending = this.#starting.get(k)
    if (pending) return pending
    if (this.#closed) throw new CodeboxError('Unavailable', 'the server is shutting down')
    // The launch is not the caller's: a caller that goes away does not cancel a start another may join.
    const started = this.#store ? this.#obtain(key, qualifier, this.#store) : this.#launch(key, qualifier)
    this.#starting.set(k, started)
    try {
      const entry = await (signal ? abortable(started, signal) : started)
      return entry
    } finally {
      void started.finally(() => this.#starting.delete(k)).catch(() => {})
    }
  }

  async #launch(key: RuntimeSessionKey, qualifier: string | undefined): Promise<Entry> {
    const { agent, settings } = await this.#launcher.launch(key, this.#closing.signal, qualifier)
    try {
      await this.#waitHealthy(agent, settings)
    } catch (e) {
      await agent.stop('unhealthy').catch(() => {})
      throw e
    }
    if (this.#closed) {
      await agent.stop('server-shutdown')
      throw new CodeboxError('Unavailable', 'the server is shutting down')
    }
    return this.#hold(key, agent, settings, new Date(), Date.now())
  }

  /**
   * With a shared store: the runtime session of `key` wherever it is. One the store has is attached
   * here and its agent reached again; one another replica is launching is waited for (and taken
   * over when that replica left it unlaunched past the grace); none is launched here, the store
   * refusing a second launch of the key (the loser then attaches the winner's).
   */
  async #obtain(key: RuntimeSessionKey, qualifier: string | undefined, store: RuntimeSessionStore): Promise<Entry> {
    const deadline = Date.now() + this.#launchGraceMs + 60_000
    for (let round = 0; ; round++) {
      if (this.#closed) throw new CodeboxError('Unavailable', 'the server is shutting down')
      if (Date.now() > deadline)
        throw new CodeboxError('Unavailable', `runtime session ${JSON.stringify(key.runtimeSessionId)} could be neither reached nor launched; try again`, {
          details: { retryAfterSeconds: 5 },
        })
      if (round > 0) await new Promise((r) => setTimeout(r, Math.min(this.#pollMs * 2 ** Math.min(round, 4), 1_000)))
      const stored = await store.find(key)
      if (stored && !stored.launched) {
        // Being launched by another replica: waited for, unless that replica left it.
        if (Date.now() - stored.startedAt.getTime() > this.#launchGraceMs) await stored.end('unhealthy').catch(() => {})
        continue
      }
      if (stored) {
        const adopted = await this.#adopt(key, stored).catch((e: unknown) => e as Error)
        if (!(adopted instanceof Error)) return adopted
        if (adopted instanceof CodeboxError && adopted.code === 'Unavailable') throw adopted
        continue
      }
      try {
        return await this.#launch(key, qualifier)
      } catch (e) {
        if (!isHostedTaken(e)) throw e
      }
    }
  }

  /** Attaches a stored runtime session here; one whose agent is gone or does not become healthy is ended (the next round launches anew). */
  async #adopt(key: RuntimeSessionKey, stored: StoredRuntimeSession): Promise<Entry> {
    let got: { agent: LaunchedAgent; settings: RuntimeSessionSettings }
    try {
      got = await stored.attach()
    } catch (e) {
      if (!(e instanceof CodeboxError && e.code === 'Unavailable')) await stored.end('unhealthy').catch(() => {})
      throw e
    }
    try {
      await this.#waitHealthy(got.agent, got.settings)
    } catch (e) {
      // Attached, not launched: an agent another replica invoked within its idle timeout (the
      // store says when) is not ended for what this replica sees of its /ping; this invocation
      // fails, and its idle timeout or that replica ends it if it is really gone.
      const recorded = await this.#store?.recorded(stored.sessionId).catch(() => undefined)
      const sinceMs = recorded ? Date.now() - recorded.lastActivityAt : Infinity
      if (recorded && !recorded.ended && sinceMs < got.settings.idleTimeoutMs) {
        await got.agent.release?.().catch(() => {})
        throw new CodeboxError(
          'Unavailable',
          `runtime session ${JSON.stringify(key.runtimeSessionId)} is served by another codebox replica (invoked there ${Math.round(sinceMs / 1000)} s ago), but its agent did not answer this replica: ${(e as Error).message.split(/; (?:its output ends with|it printed nothing)/)[0]}; it was not ended, try again`,
          { details: { retryAfterSeconds: 5, servedElsewhere: true } },
        )
      }
      await stored.end('unhealthy').catch(() => {})
      await got.agent.release?.().catch(() => {})
      throw e
    }
    const held = this.#live.get(keyOf(key))
    if (held && !held.ending) {
      await got.agent.release?.().catch(() => {})
      return held
    }
    if (this.#closed) {
      await got.agent.release?.().catch(() => {})
      throw new CodeboxError('Unavailable', 'the server is shutting down')
    }
    return this.#hold(key, got.agent, got.settings, stored.startedAt, stored.lastActivity.getTime())
  }

  /** Serves an agent here from now on: its idle and lifetime timers, its end watched. */
  #hold(key: RuntimeSessionKey, agent: LaunchedAgent, settings: RuntimeSessionSettings, startedAt: Date, lastActivity: number): Entry {
    const entry: Entry = { key, agent, settings, startedAt, lastActivity, active: 0 }
    this.#live.set(keyOf(key), entry)
    this.#armIdle(entry)
    entry.lifeTimer = setTimeout(() => void this.#lifetimeOver(entry), Math.max(0, startedAt.getTime() + settings.maxLifetimeMs - Date.now()))
    entry.lifeTimer.unref()
    void agent.ended.then(() => this.#agentEnded(entry))
    return entry
  }

  /** The agent's process or sandbox ended: ended by another replica (the store says so), it is let go of quietly; else it exited. */
  async #agentEnded(e: Entry): Promise<void> {
    if (e.ending) return
    const recorded = await this.#store?.recorded(e.agent.sessionId).catch(() => undefined)
    if (recorded?.ended) return this.#letGo(e)
    return this.#end(e, 'agent-exited')
  }

  async #lifetimeOver(e: Entry): Promise<void> {
    if (e.ending) return
    const recorded = await this.#store?.recorded(e.agent.sessionId).catch(() => undefined)
    if (recorded?.ended) return this.#letGo(e)
    return this.#end(e, 'max-lifetime')
  }

  /** Records an invocation in the shared store, if any (a store that cannot take it leaves the other replicas' clocks as they are). */
  #touch(e: Entry): void {
    this.#store?.touch(e.agent.sessionId).catch(() => {})
  }

  /** Drops the session here without ending it: another replica ended it, or serves it on. */
  #letGo(e: Entry): Promise<void> {
    return (e.ending ??= (async () => {
      clearTimeout(e.idleTimer)
      clearTimeout(e.lifeTimer)
      if (this.#live.get(keyOf(e.key)) === e) this.#live.delete(keyOf(e.key))
      await e.agent.release?.().catch(() => {})
    })())
  }

  /** Polls /ping until Healthy or HealthyBusy; the agent's exit or the start timeout is its failure, with its logs. */
  async #waitHealthy(agent: LaunchedAgent, settings: RuntimeSessionSettings): Promise<void> {
    const deadline = Date.now() + settings.startTimeoutMs
    let exited: string | undefined
    void agent.ended.then((why) => (exited = why))
    let last = 'no answer yet'
    for (;;) {
      if (exited !== undefined) throw agentFailure(`the agent exited before it became healthy (${exited})${await this.#tail(agent)}`)
      const left = deadline - Date.now()
      if (left <= 0) {
        throw agentFailure(
          `${(agent.protocol ?? 'HTTP') === 'HTTP' ? 'the agent did not answer GET /ping as healthy' : `the agent's ${agent.protocol} server did not answer on its port`} within ${settings.startTimeoutMs / 1000} s (last: ${last})${await this.#tail(agent)}`,
          'Timeout',
        )
      }
      const r = await ping(agent.connect, Math.min(2_000, left), undefined, (agent.protocol ?? 'HTTP') === 'HTTP')
      if (r.status !== 'unhealthy') return
      last = r.reason
      await new Promise((res) => setTimeout(res, this.#pollMs))
    }
  }

  async #tail(agent: LaunchedAgent): Promise<string> {
    const text = (await agent.logTail().catch(() => '')).trim()
    return text ? `; its output ends with:\n${text.slice(-2000)}` : '; it printed nothing'
  }

  /** Arms the idle check for the session's idle timeout after its last activity. */
  #armIdle(e: Entry): void {
    if (e.ending) return
    clearTimeout(e.idleTimer)
    const due = e.lastActivity + e.settings.idleTimeoutMs - Date.now()
    e.idleTimer = setTimeout(() => void this.#idleCheck(e), Math.max(0, due))
    e.idleTimer.unref()
  }

  async #idleCheck(e: Entry): Promise<void> {
    if (e.ending) return
    if (e.active > 0 || Date.now() < e.lastActivity + e.settings.idleTimeoutMs) return this.#armIdle(e)
    if (this.#store) {
      // Invocations on other replicas count: the store has the last one; an end there is an end here.
      const recorded = await this.#store.recorded(e.agent.sessionId).catch(() => undefined)
      if (e.ending) return
      if (recorded?.ended) return this.#letGo(e)
      if (recorded && recorded.lastActivityAt > e.lastActivity) e.lastActivity = recorded.lastActivityAt
      if (e.active > 0 || Date.now() < e.lastActivity + e.settings.idleTimeoutMs) return this.#armIdle(e)
    }
    // HealthyBusy (background work of the agent's own) keeps the session past its idle timeout.
    const r = await ping(e.agent.connect, 5_000, undefined, (e.agent.protocol ?? 'HTTP') === 'HTTP')
    const status: PingStatus | 'unhealthy' = r.status
    if (status === 'HealthyBusy') {
      e.lastActivity = Date.now()
      this.#touch(e)
      return this.#armIdle(e)
    }
    if (e.active > 0) return this.#armIdle(e)
    await this.#end(e, 'idle-timeout')
  }

  #end(e: Entry, reason: RuntimeSessionEndReason): Promise<void> {
    return (e.ending ??= (async () => {
      clearTimeout(e.idleTimer)
      clearTimeout(e.lifeTimer)
      try {
        // Recorded first: the other replicas holding it see it ended when its agent goes, not an exit.
        if (this.#store && reason !== 'agent-exited') await this.#store.ended(e.agent.sessionId, reason).catch(() => {})
        await e.agent.stop(reason)
      } finally {
        if (this.#live.get(keyOf(e.key)) === e) this.#live.delete(keyOf(e.key))
        this.#onEnd?.(this.#info(e), reason)
      }
    })())
  }
}

/** Waits for `p`, or rejects with Canceled when `signal` aborts first (p goes on). */
function abortable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new CodeboxError('Canceled', 'the invocation was canceled by its caller'))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new CodeboxError('Canceled', 'the invocation was canceled by its caller'))
    signal.addEventListener('abort', onAbort, { once: true })
    p.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e: unknown) => (signal.removeEventListener('abort', onAbort), reject(e)),
    )
  })
}

/** What the doors of hosted agents (AWS InvokeAgentRuntime, the native runtime routes) call. */
export interface HostedRuntimes {
  runtimes: import('./runtimes.ts').RuntimeService
  sessions: RuntimeSessions
  logs: import('./runtime-logs.ts').RuntimeLogs
  metrics: import('../metrics.ts').Metrics
  /** Records an audit entry (the session service's). */
  audit: import('./sessions.ts').SessionService['audit']
}
