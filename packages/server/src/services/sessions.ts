/**
 * Sessions as a service: tenancy (a tenant sees only its own sessions; a foreign id is the same
 * 404 as an unknown one), quotas and rate limits, the session records in the store (kept after
 * the end, with the reason), the audit log of every invocation, and metrics. Routes of every API
 * call this; it reaches sandboxes only through the SessionManager.
 */
import { createHash } from 'node:crypto'
import {
  CodeboxError,
  resolveLimits,
  validationError,
  type EgressPolicy,
  type ExecutionEvent,
  type SessionEndReason,
  type SessionInfo,
  type SessionLimits,
  type StartSessionRequest,
  type ToolResult,
} from '@codebox/core'
import { drivers, type AdoptRecord, type EgressCounters, type ExecuteCodeOptions, type Session, type SessionManager } from '@codebox/sandbox'
import type { QuotaDefaults } from '../config.ts'
import type { Metrics } from '../metrics.ts'
import {
  builtInInterpreterId,
  hostedTaken,
  isStoreFailure,
  sessionQuotaExceeded,
  type E2bSessionRecord,
  type HostedSessionRecord,
  type InterpreterRecord,
  type SessionRecord,
  type StoreApi,
} from '../store/index.ts'
import { ratesFor, type Rates } from './quotas.ts'
import { checkCallOnSession, checkToolCall, isToolName, runTool, type ToolInputSummary } from './tools.ts'

/** Who is calling: the tenant of the API key (or `default` on an open loopback server). */
export interface Caller {
  tenant: string
  keyId?: string
  /**
   * A hosted agent calling codebox's API through its gateway (keyId `agent:<its session id>`): it
   * sees only the sessions it started itself, never its tenant's others.
   */
  ownSessionsOnly?: boolean
}

export interface CallContext {
  signal?: AbortSignal
  requestId?: string
}

export interface SessionServiceOptions {
  engine: SessionManager
  store: StoreApi
  quotas: QuotaDefaults
  metrics: Metrics
  /** Where bookkeeping the store could not take is reported (the server's log). */
  log?: { error: (obj: object, msg: string) => void; info?: (obj: object, msg: string) => void }
  /** This server's identity among replicas (CODEBOX_REPLICA_ID), recorded on every session it starts. Default none. */
  replicaId?: string
  /**
   * Whether other servers share the store (PostgreSQL): start-up then re-adopts or ends only this
   * replica's sessions. Default false: one server per store (SQLite), every session is its own.
   */
  sharedStore?: boolean
}

export class SessionService {
  private readonly engine: SessionManager
  private readonly store: StoreApi
  private readonly quotas: QuotaDefaults
  private readonly metrics: Metrics
  private readonly log: SessionServiceOptions['log']
  private readonly replicaId: string | undefined
  private readonly sharedStore: boolean
  private readonly rates: Rates
  /** Starts in flight, by tenant and client token, so a retry joins the first attempt. */
  private readonly pending = new Map<string, Promise<SessionInfo>>()
  private readonly startingByTenant = new Map<string, number>()

  constructor(options: SessionServiceOptions) {
    this.engine = options.engine
    this.store = options.store
    this.quotas = options.quotas
    this.metrics = options.metrics
    this.log = options.log
    this.replicaId = options.replicaId
    this.rates = ratesFor(options.store)
    this.sharedStore = options.sharedStore === true
  }

  /**
   * Whether a READY record is this server's to re-adopt or end at start-up: every one with one
   * server per store; with replicas, those this replica started (a record without a replica,
   * written before replicas had one, is left to whoever serves it).
   */
  private own(r: SessionRecord): boolean {
    return !this.sharedStore || (r.replicaId !== undefined && r.replicaId === this.replicaId)
  }

  /** The limits a session gets for what it leaves out (an interpreter's view shows them). */
  get defaultLimits(): Readonly<SessionLimits> {
    return this.engine.defaults
  }

  /** The modules a session's kernel has imported at hand-over when its interpreter names none (CODEBOX_PRELOAD). */
  get defaultPreload(): readonly string[] {
    return this.engine.preload
  }

  /** The sandbox driver of sessions whose interpreter names none (CODEBOX_DRIVER). */
  get defaultDriver(): string {
    return this.engine.driver.name
  }

  /** Checks that a driver is registered and can run on this host: ValidationError naming `field`, or Unavailable with what is missing. */
  async checkDriver(name: string, field = 'driver'): Promise<void> {
    if (!drivers.has(name)) throw validationError(field, `must be one of ${drivers.names().join(', ')}, got ${JSON.stringify(name)}`)
    await this.engine.driverNamed(name)
  }

  /** Resolves limits against the defaults and checks them against the most a session may ask for: a ValidationError naming the first wrong one. */
  checkLimits(limits: Partial<SessionLimits>): SessionLimits {
    return resolveLimits(limits, this.engine.defaults, this.engine.maxLimits)
  }

  /** The largest file a session may write (uploads are cut there). */
  get maxFileBytes(): number {
    return this.engine.maxLimits.fileBytes
  }

  /** Whether any session of this server is running a call now (`/ping` says HealthyBusy). */
  get busy(): boolean {
    return this.engine.list().some((s) => s.active > 0)
  }

  /** Whether this server holds the session and it can take calls. */
  isLive(sessionId: string): boolean {
    return this.engine.find(sessionId)?.status === 'ready'
  }

  /**
   * Serves again the sessions the store says are READY, a previous run's: each sandbox is
   * re-adopted (with its interpreter's egress policy, so its listener opens again); what cannot be
   * is marked TERMINATED (`server-restart`), and the reasons are returned for the log.
   */
  async adoptPrevious(): Promise<{
    adopted: string[]
    failed: { sessionId: string; reason: string }[]
    removed: number
    /** Hosted agents' sessions re-adopted: the server's RuntimeSessions serves their runtime sessions again. */
    hosted: { record: SessionRecord & { runtimeId: string; hosted: HostedSessionRecord & { taskId: string } }; session: Session }[]
  }> {
    // Another replica's sessions are its own business: it serves them (and, on a shared driver,
    // so may any replica, on their first call here).
    const active = (await this.store.sessions.listAllActive()).filter((r) => this.own(r))
    // A hosted agent's session is re-adopted once its agent's process was recorded (a start the
    // previous run did not finish is not); its network is the runtime's, not its interpreter's.
    const hosted = (r: SessionRecord): boolean => r.runtimeId !== undefined
    const resumable = (r: SessionRecord): boolean => !hosted(r) || r.hosted?.taskId !== undefined
    const records = await Promise.all(active.filter((r) => r.sandboxId !== undefined && resumable(r)).map((r) => this.adoptRecord(r)))
    const outcome = await this.engine.adopt(records)
    const failed = new Map(outcome.failed.map((f) => [f.sessionId, f.reason]))
    for (const r of active) if (r.sandboxId === undefined) failed.set(r.sessionId, 'it was started by a codebox that did not record its sandbox')
    for (const r of active)
      if (!resumable(r))
        failed.set(r.sessionId, 'a hosted agent’s session whose agent had not started yet; the next invocation of its runtime session starts it again')
    for (const sessionId of failed.keys()) await this.store.sessions.markTerminated(sessionId, 'server-restart')
    const byId = new Map(active.map((r) => [r.sessionId, r]))
    return {
      adopted: outcome.adopted.map((s) => s.id),
      failed: [...failed].map(([sessionId, reason]) => ({ sessionId, reason })),
      removed: outcome.removed,
      hosted: outcome.adopted.flatMap((session) => {
        const record = byId.get(session.id)
        return record?.runtimeId !== undefined && record.hosted?.taskId !== undefined
          ? [{ record: record as SessionRecord & { runtimeId: string; hosted: HostedSessionRecord & { taskId: string } }, session }]
          : []
      }),
    }
  }

  /** What the engine needs to attach a recorded session's sandbox: its limits, and its interpreter's (or runtime's) network and driver. */
  private async adoptRecord(r: SessionRecord): Promise<AdoptRecord> {
    const interpreter = r.hosted ? { network: r.hosted.network } : await this.store.interpreters.get(r.interpreterId, r.tenant).catch(() => undefined)
    return {
      sessionId: r.sessionId,
      sandboxId: r.sandboxId!,
      limits: r.limits,
      createdAt: new Date(r.createdAt),
      ...(interpreter ? egressOf(interpreter) : {}),
      ...(interpreter && 'driver' in interpreter && interpreter.driver ? { driver: interpreter.driver } : {}),
      ...(r.gateway ? { gateway: r.gateway } : {}),
    }
  }

  /** Whether hosted agents' sessions are shared by replicas: a shared store and a shared sandbox driver (any replica attaches any of them). */
  async hostedShared(): Promise<boolean> {
    return this.sharedStore && (await this.engine.sharesSandboxes().catch(() => false))
  }

  /**
   * Attaches here a hosted agent's session another replica started (on a shared driver). A sandbox
   * that is gone ends the record (`sandbox-exited`) and is SessionTerminated; one that cannot be
   * reached now is Unavailable, the record left as it is.
   */
  async attachHosted(record: SessionRecord): Promise<Session> {
    if (record.runtimeId === undefined || record.sandboxId === undefined) throw new CodeboxError('NotFound', `session ${record.sessionId} runs no hosted agent`)
    try {
      return await this.engine.attach(await this.adoptRecord(record))
    } catch (e) {
      const gone = e instanceof CodeboxError && (e.code === 'SessionTerminated' || e.code === 'SandboxFailure')
      if (!gone) throw e
      await this.store.sessions.markTerminated(record.sessionId, 'sandbox-exited')
      throw new CodeboxError('SessionTerminated', `the agent's session ${record.sessionId} has ended: its sandbox is gone (${e.message})`, { cause: e })
    }
  }

  /** Lets go here of a hosted agent's session held on a shared driver, without ending it (another replica ended it or serves it on). */
  async releaseHosted(session: Session): Promise<void> {
    await this.engine.release(session.id)
  }

  /**
   * Ends a hosted agent's session on a shared driver whoever holds it: its record first (with the
   * reason stopHosted would record), then its sandbox, attached here if it is not held here. A
   * sandbox that cannot be reached ends itself at its lifetime (logged).
   */
  async endHostedAnywhere(record: SessionRecord, reason: Parameters<SessionService['stopHosted']>[1]): Promise<void> {
    await this.store.sessions.markTerminated(record.sessionId, hostedEndReason(reason))
    try {
      const held = this.engine.find(record.sessionId)
      await (held ?? (await this.engine.attach(await this.adoptRecord(record)))).stop(hostedEndReason(reason))
    } catch (e) {
      if (e instanceof CodeboxError && e.code === 'SessionTerminated') return
      this.log?.error(
        { sessionId: record.sessionId, err: e },
        'an ended hosted agent’s sandbox could not be reached to remove it; it ends itself at its lifetime',
      )
    }
  }

  /** Records the process of a hosted agent's session, so a restarted server finds it. */
  async recordHostedTask(session: Session, taskId: string): Promise<void> {
    await this.store.sessions.setHostedTask(session.id, taskId)
  }

  /** What the engine holds now, for metrics. */
  engineStats(): { live: number; warm: number; egress: Readonly<EgressCounters> } {
    return { live: this.engine.list().filter((s) => s.status === 'ready').length, warm: this.engine.warmCount, egress: this.engine.egress.counters }
  }

  /** Sessions being started right now (for metrics). */
  get starting(): number {
    let n = 0
    for (const v of this.startingByTenant.values()) n += v
    return n
  }

  /**
   * Starts a session; with a clientToken seen before, returns that session instead (`created: false`).
   * `gateway` (for the host's own callers, such as hosted runtimes; no API takes it from a client):
   * the session reaches the model gateway (StartOptions.gateway), and keeps it across a restart.
   */
  async start(
    caller: Caller,
    req: StartSessionRequest & { interpreterId: string; gateway?: { tag?: string }; e2b?: E2bSessionRecord },
    ctx: CallContext = {},
  ): Promise<{ info: SessionInfo; created: boolean }> {
    if (req.clientToken) {
      const key = `${caller.tenant}\0${caller.ownSessionsOnly ? (caller.keyId ?? '') : ''}\0${req.clientToken}`
      // In flight is checked before and after the store read: a start may begin or finish during it.
      const before = this.pending.get(key)
      if (before) return { info: await before, created: false }
      const existing = await this.store.sessions.findByClientToken(caller.tenant, req.clientToken)
      if (existing && caller.ownSessionsOnly && existing.keyId !== caller.keyId) {
        throw new CodeboxError('Conflict', 'this clientToken was used by another session of the tenant: use another one')
      }
      if (existing) return { info: toInfo(existing), created: false }
      const inFlight = this.pending.get(key)
      if (inFlight) return { info: await inFlight, created: false }
      const p = this.doStart(caller, req, ctx)
      this.pending.set(key, p)
      try {
        return { info: await p, created: true }
      } catch (e) {
        // Another server sharing the store (a replica) stored a session with this token first: the
        // store's unique index refused ours (its sandbox is gone already), and theirs is the answer.
        const winner =
          e instanceof CodeboxError && e.code === 'Conflict' ? await this.store.sessions.findByClientToken(caller.tenant, req.clientToken) : undefined
        if (!winner || (caller.ownSessionsOnly && winner.keyId !== caller.keyId)) throw e
        return { info: toInfo(winner), created: false }
      } finally {
        this.pending.delete(key)
      }
    }
    return { info: await this.doStart(caller, req, ctx), created: true }
  }

  /**
   * Starts the session of a hosted agent's runtime session (services/runtime-launcher.ts): the
   * tenant's quotas and records as any session, the runtime's code mounted read-only, its network
   * and limits, the model gateway; recorded with its runtimeId.
   */
  async startHosted(caller: Caller, hosted: HostedStart & { name: string; gateway?: { tag?: string } }, ctx: CallContext = {}): Promise<Session> {
    const { name, gateway, ...spec } = hosted
    const info = await this.doStart(caller, { interpreterId: builtInInterpreterId, name, hosted: spec, ...(gateway ? { gateway } : {}) }, ctx)
    const session = this.engine.find(info.sessionId)
    if (!session || session.status !== 'ready') throw new CodeboxError('SessionTerminated', `the agent's session ${info.sessionId} ended as it started`)
    return session
  }

  /** Ends a hosted agent's session; the store records it through onSessionEnd. */
  async stopHosted(
    session: Session,
    reason: 'stopped' | 'idle-timeout' | 'max-lifetime' | 'agent-exited' | 'unhealthy' | 'server-shutdown' | 'runtime-deleted',
  ): Promise<void> {
    await session.stop(hostedEndReason(reason))
  }

  private async doStart(
    caller: Caller,
    req: StartSessionRequest & { interpreterId: string; gateway?: { tag?: string }; hosted?: HostedStart; e2b?: E2bSessionRecord },
    ctx: CallContext,
  ): Promise<SessionInfo> {
    const started = performance.now()
    const audit = (outcome: 'ok' | 'rejected' | 'failed', sessionId?: string, detail?: string): Promise<void> =>
      this.audit(caller, { action: 'startSession', sessionId, outcome, detail, durationMs: performance.now() - started, requestId: ctx.requestId })
    const tenant = await this.store.tenants.ensure(caller.tenant)
    // The slot is taken before the count is read, and given back only once the record is stored, so
    // concurrent starts of one tenant always see each other (in the store or here) at the check.
    const starting = this.startingByTenant.get(caller.tenant) ?? 0
    this.startingByTenant.set(caller.tenant, starting + 1)
    let reserved = true
    const release = (): void => {
      if (!reserved) return
      reserved = false
      const n = (this.startingByTenant.get(caller.tenant) ?? 1) - 1
      if (n > 0) this.startingByTenant.set(caller.tenant, n)
      else this.startingByTenant.delete(caller.tenant)
    }
    try {
      const max = tenant.maxSessions ?? this.quotas.maxSessions
      // A first look, before a sandbox is made; the store has the last word as it records the session
      // (other replicas' starts in flight are not counted here).
      if ((await this.store.sessions.countActive(caller.tenant)) + starting >= max) {
        // A runtime session another replica's launch won is attached, not refused for the quota its session takes.
        const h = req.hosted
        const there = h && (await this.hostedShared()) ? await this.store.sessions.activeHosted(caller.tenant, h.runtimeId, h.runtimeSessionId) : undefined
        if (there) throw hostedTaken({ runtimeId: h!.runtimeId, hosted: { runtimeSessionId: h!.runtimeSessionId } }, there.sessionId)
        throw sessionQuotaExceeded(caller.tenant, max)
      }
      const perMinute = tenant.startsPerMinute ?? this.quotas.startsPerMinute
      await this.rates.take(`start:${caller.tenant}`, { perSecond: perMinute / 60, burst: perMinute }, 'session starts')
      const interpreter = req.hosted ? hostedInterpreter(req.hosted) : await this.store.interpreters.get(req.interpreterId, caller.tenant)
      if (!interpreter) throw new CodeboxError('NotFound', `no interpreter ${JSON.stringify(req.interpreterId)}; list them with GET /v1/interpreters`)
      const limits: Partial<SessionLimits> = { ...interpreter.limits, ...req.limits }
      if (req.timeoutSeconds !== undefined) limits.idleTimeoutMs = req.timeoutSeconds * 1000
      const session = await this.engine.start({
        limits,
        signal: ctx.signal,
        ...egressOf(interpreter),
        ...(interpreter.preload ? { preload: interpreter.preload } : {}),
        ...(interpreter.driver ? { driver: interpreter.driver } : {}),
        ...(req.gateway ? { gateway: req.gateway } : {}),
        ...(req.hosted ? { code: req.hosted.code } : {}),
      })
      const now = new Date().toISOString()
      const record: SessionRecord = {
        sessionId: session.id,
        tenant: caller.tenant,
        interpreterId: interpreter.interpreterId,
        name: req.name ?? '',
        status: 'READY',
        createdAt: session.createdAt.toISOString(),
        lastUpdatedAt: now,
        timeoutSeconds: Math.round(session.limits.idleTimeoutMs / 1000),
        limits: { ...session.limits },
        ...(req.clientToken ? { clientToken: req.clientToken } : {}),
        ...(caller.keyId ? { keyId: caller.keyId } : {}),
        sandboxId: session.sandboxId,
        ...(req.gateway ? { gateway: req.gateway.tag === undefined ? {} : { tag: req.gateway.tag } } : {}),
        ...(req.hosted
          ? {
              runtimeId: req.hosted.runtimeId,
              hosted: { runtimeSessionId: req.hosted.runtimeSessionId, version: req.hosted.version, network: req.hosted.network },
            }
          : {}),
        ...(req.e2b ? { e2b: req.e2b } : {}),
        ...(this.replicaId !== undefined ? { replicaId: this.replicaId } : {}),
      }
      try {
        // Replicas sharing hosted agents' sessions: the store lets one session serve a runtime session.
        await this.store.sessions.insert(record, { maxActive: max, ...(req.hosted && (await this.hostedShared()) ? { exclusiveHosted: true } : {}) })
      } catch (e) {
        // Not recorded, so not usable: the sandbox goes too, and nothing is left half-made.
        await session.stop('stopped')
        throw e
      }
      release()
      this.metrics.sessionStarts.inc({ outcome: 'ok' })
      this.metrics.startDuration.observe((performance.now() - started) / 1000)
      // A preload that failed does not fail the start; the audit entry says what the kernel lacks.
      await audit('ok', session.id, preloadNote(session))
      return toInfo(record)
    } catch (e) {
      const failed = !(e instanceof CodeboxError) || e.status >= 500
      this.metrics.sessionStarts.inc({ outcome: failed ? 'failed' : 'rejected' })
      await audit(failed ? 'failed' : 'rejected', undefined, e instanceof CodeboxError ? e.code : 'Internal').catch((lost: unknown) =>
        this.lost(lost, 'startSession'),
      )
      throw e
    } finally {
      release()
    }
  }

  /** A session's record (also after it ended); NotFound for unknown and foreign ids alike. */
  async get(caller: Caller, sessionId: string): Promise<SessionInfo> {
    return toInfo(await this.record(caller, sessionId))
  }

  /** A page of the caller's sessions, newest first. */
  async list(
    caller: Caller,
    query: { status?: 'READY' | 'TERMINATED'; interpreterId?: string; limit: number; nextToken?: string },
  ): Promise<{ items: SessionInfo[]; nextToken?: string }> {
    const page = await this.store.sessions.list({ tenant: caller.tenant, ...query, ...(caller.ownSessionsOnly ? { keyId: caller.keyId ?? '' } : {}) })
    return { items: page.items.map(toInfo), ...(page.nextToken ? { nextToken: page.nextToken } : {}) }
  }

  /** Stops a session; stopping one that already ended returns its record. */
  async stop(caller: Caller, sessionId: string, ctx: CallContext = {}): Promise<SessionInfo> {
    const started = performance.now()
    const record = await this.record(caller, sessionId)
    if (record.status === 'READY') {
      const held = this.engine.find(sessionId)
      if (held) await held.stop('stopped')
      else if (record.sandboxId !== undefined && (await this.sharedSandbox(record))) await this.stopElsewhere(record)
      await this.store.sessions.markTerminated(sessionId, 'stopped')
      await this.audit(caller, { action: 'stopSession', sessionId, outcome: 'ok', durationMs: performance.now() - started, requestId: ctx.requestId })
    }
    return toInfo(await this.record(caller, sessionId))
  }

  /**
   * Moves the end of a live session's lifetime to `endsAt`: clamped to the session's interpreter's
   * maximum (its `limits.maxLifetimeMs`, else the server's), counted from the session's start; a
   * time already past ends the session now. The idle timeout still applies. Recorded, so a
   * restarted server keeps the new end; audited. NotFound, SessionTerminated or Conflict as `live`.
   */
  async setDeadline(caller: Caller, sessionId: string, endsAt: Date, ctx: CallContext = {}): Promise<SessionInfo> {
    const started = performance.now()
    const session = await this.live(caller, sessionId)
    const record = await this.record(caller, sessionId)
    const interpreter = await this.store.interpreters.get(record.interpreterId, caller.tenant)
    const lifetime = await this.engine.setDeadline(sessionId, endsAt.getTime(), {
      ...(interpreter?.limits.maxLifetimeMs !== undefined ? { maxLifetimeMs: interpreter.limits.maxLifetimeMs } : {}),
    })
    await this.store.sessions.setLifetime(sessionId, lifetime)
    await this.audit(caller, {
      action: 'setDeadline',
      sessionId,
      outcome: 'ok',
      detail: new Date(session.createdAt.getTime() + lifetime).toISOString(),
      durationMs: performance.now() - started,
      requestId: ctx.requestId,
    })
    return toInfo(await this.record(caller, sessionId))
  }

  /**
   * The running session behind an id the caller owns: NotFound, or SessionTerminated once it ended.
   * On a shared driver (SandboxDriver.shared) a session another replica started is attached here
   * on its first call; one another replica ended is let go of here.
   */
  async live(caller: Caller, sessionId: string): Promise<Session> {
    const record = await this.record(caller, sessionId)
    if (record.status === 'TERMINATED') {
      // Ended by another replica while this one holds it: on a shared driver the handle here goes
      // (the sandbox was the ender's to remove); on any other, this replica alone reaches the sandbox.
      const held = this.engine.find(sessionId)
      if (held?.status === 'ready') await ((await this.sharedSandbox(record)) ? this.engine.release(sessionId) : held.stop('stopped'))
      throw new CodeboxError('SessionTerminated', `session ${sessionId} has ended (${record.endReason ?? 'stopped'}); start a new session`)
    }
    // A hosted agent's sandbox belongs to its runtime session alone: no call reaches into it from outside.
    if (record.runtimeId !== undefined) {
      throw new CodeboxError(
        'Conflict',
        `session ${sessionId} runs the hosted agent of runtime ${record.runtimeId}: it is reached through its runtime (InvokeAgentRuntime), not the session API`,
      )
    }
    const session = this.engine.find(sessionId)
    if (session?.status === 'ready') return session
    if (!session && record.sandboxId !== undefined && (await this.sharedSandbox(record))) return this.attachHere(record)
    if (!session && !this.own(record)) {
      // Another replica's session on a driver whose sandboxes only their own server reaches.
      throw new CodeboxError(
        'Unavailable',
        `session ${sessionId} is served by another codebox replica (${record.replicaId ?? 'unknown'}), and this one cannot reach its sandbox: route its calls to that replica (docs/operations.md, "Replicas: what a load balancer needs")`,
        { details: { replicaId: record.replicaId ?? null, retryAfterSeconds: 1 } },
      )
    }
    // Not held here: it is ending (its end is being recorded) or its sandbox went with an earlier
    // server and start-up could not re-adopt it (recorded then). Either way the record is not
    // this call's to write.
    throw new CodeboxError('SessionTerminated', `session ${sessionId} has ended (its sandbox is gone); start a new session`)
  }

  /** Whether the session's sandbox is on a shared driver, so any replica may attach it. */
  private async sharedSandbox(record: SessionRecord): Promise<boolean> {
    if (record.runtimeId !== undefined) return false
    const interpreter = await this.store.interpreters.get(record.interpreterId, record.tenant).catch(() => undefined)
    return this.engine.sharesSandboxes(interpreter?.driver).catch(() => false)
  }

  /**
   * Attaches here a session on a shared driver that another replica started (or that outlived
   * the one holding it). A sandbox that is gone ends the record (`sandbox-exited`); one that
   * cannot be reached now is a 503 to retry, the record left as it is.
   */
  private async attachHere(record: SessionRecord): Promise<Session> {
    try {
      return await this.engine.attach(await this.adoptRecord(record))
    } catch (e) {
      const gone = e instanceof CodeboxError && (e.code === 'SessionTerminated' || e.code === 'SandboxFailure')
      if (!gone) throw e
      await this.store.sessions.markTerminated(record.sessionId, 'sandbox-exited')
      this.log?.info?.(
        { sessionId: record.sessionId, reason: e.message },
        'a session on a shared driver could not be attached: its sandbox is gone; marked TERMINATED',
      )
      throw new CodeboxError('SessionTerminated', `session ${record.sessionId} has ended: its sandbox is gone (${e.message}); start a new session`, {
        cause: e,
      })
    }
  }

  /**
   * Stops a session on a shared driver that this replica does not hold: its record ends first (so
   * a replica holding it lets go on its next call), then its sandbox is attached here and destroyed.
   * A sandbox that cannot be reached now ends itself at its idle timeout (logged).
   */
  private async stopElsewhere(record: SessionRecord): Promise<void> {
    await this.store.sessions.markTerminated(record.sessionId, 'stopped')
    try {
      await (await this.engine.attach(await this.adoptRecord(record))).stop('stopped')
    } catch (e) {
      if (e instanceof CodeboxError && e.code === 'SessionTerminated') return
      this.log?.error(
        { sessionId: record.sessionId, err: e },
        'a stopped session’s sandbox could not be reached to remove it; it ends itself at its idle timeout',
      )
    }
  }

  /** Runs a tool in a session the caller owns, streaming its events; audited and counted. */
  async *invoke(
    caller: Caller,
    sessionId: string,
    req: { name: unknown; arguments?: unknown; timeoutMs?: number },
    ctx: CallContext = {},
  ): AsyncGenerator<ExecutionEvent, ToolResult> {
    return yield* this.#audited(caller, sessionId, ctx, isToolName(req.name) ? req.name : 'invalid', async function* (self, note) {
      const call = checkToolCall(req.name, req.arguments)
      note(call.name, call.summary)
      const session = await self.live(caller, sessionId)
      checkCallOnSession(session, call)
      return yield* runTool(session, call, { timeoutMs: req.timeoutMs, signal: ctx.signal })
    })
  }

  /**
   * Runs a cell with what only the engine's executeCode offers (a context, per-cell env, charts,
   * onCellEnd): E2B's code interpreter. Rate-limited, audited and counted as `executeCode`, like
   * `invoke`; `options.signal` is `ctx.signal`.
   */
  async *executeCell(
    caller: Caller,
    sessionId: string,
    options: Omit<ExecuteCodeOptions, 'signal'>,
    ctx: CallContext = {},
  ): AsyncGenerator<ExecutionEvent, ToolResult> {
    return yield* this.#audited(caller, sessionId, ctx, 'executeCode', async function* (self, note) {
      note('executeCode', { language: options.language ?? 'python', code: options.code })
      const session = await self.live(caller, sessionId)
      return yield* session.executeCode({ ...options, ...(ctx.signal ? { signal: ctx.signal } : {}) })
    })
  }

  /**
   * What every invocation goes through: the tenant's rate, then `run`, then the audit entry and
   * metrics (outcome, exit code, limits), also for a call that failed or whose consumer left.
   */
  async *#audited(
    caller: Caller,
    sessionId: string,
    ctx: CallContext,
    initialTool: string,
    run: (self: this, note: (tool: string, summary: ToolInputSummary) => void) => AsyncGenerator<ExecutionEvent, ToolResult>,
  ): AsyncGenerator<ExecutionEvent, ToolResult> {
    const started = performance.now()
    let summary: ToolInputSummary = {}
    // Only known tool names become metric labels and audit actions: a label per garbage name would grow without bound.
    let tool = initialTool
    let finished = false
    const record = (outcome: 'ok' | 'error' | 'limit' | 'rejected' | 'failed', extra: { exitCode?: number; detail?: string } = {}): Promise<void> => {
      finished = true
      const durationMs = performance.now() - started
      this.metrics.invocations.inc({ tool, language: summary.language ?? '', outcome })
      this.metrics.invokeDuration.observe({ tool }, durationMs / 1000)
      return this.audit(caller, {
        action: tool,
        sessionId,
        language: summary.language,
        ...(summary.code !== undefined
          ? { codeBytes: Buffer.byteLength(summary.code), codeSha256: createHash('sha256').update(summary.code).digest('hex') }
          : {}),
        ...extra,
        durationMs,
        outcome,
        requestId: ctx.requestId,
      })
    }
    try {
      const tenant = await this.store.tenants.get(caller.tenant)
      const perSecond = tenant?.invokesPerSecond ?? this.quotas.invokesPerSecond
      await this.rates.take(`invoke:${caller.tenant}`, { perSecond, burst: perSecond * 2 }, 'invocations')
      const result = yield* run(this, (name, s) => {
        tool = name
        summary = s
      })
      const limits = result.structuredContent.limitsExceeded ?? []
      for (const l of limits) this.metrics.limitKills.inc({ limit: l })
      // The code has run: a store that cannot take the bookkeeping now does not turn its result into an error (a retry would run it twice).
      try {
        await this.store.sessions.touch(sessionId)
        if (ctx.signal?.aborted) await record('failed', { exitCode: result.structuredContent.exitCode, detail: 'cancelled' })
        else
          await record(limits.length ? 'limit' : result.isError ? 'error' : 'ok', {
            exitCode: result.structuredContent.exitCode,
            ...(limits.length ? { detail: limits.join(',') } : {}),
          })
      } catch (e) {
        if (!isStoreFailure(e)) throw e
        this.lost(e, tool, sessionId)
      }
      return result
    } catch (e) {
      const failed = !(e instanceof CodeboxError) || e.status >= 500
      if (!finished)
        await record(failed ? 'failed' : 'rejected', { detail: e instanceof CodeboxError ? e.code : 'Internal' }).catch((lost: unknown) =>
          this.lost(lost, tool, sessionId),
        )
      throw e
    } finally {
      // The consumer went away (a client disconnect) before the call finished.
      if (!finished) await record('failed', { detail: 'cancelled' }).catch((lost: unknown) => this.lost(lost, tool, sessionId))
    }
  }

  /** Like `invoke`, for callers that want only the result. */
  async invokeResult(
    caller: Caller,
    sessionId: string,
    req: { name: unknown; arguments?: unknown; timeoutMs?: number },
    ctx: CallContext = {},
  ): Promise<ToolResult> {
    const events = this.invoke(caller, sessionId, req, ctx)
    for (;;) {
      const n = await events.next()
      if (n.done) return n.value
    }
  }

  /** Records a file transfer or other session action in the audit log. */
  async audit(
    caller: Caller,
    entry: { action: string; sessionId?: string; outcome: 'ok' | 'error' | 'limit' | 'rejected' | 'failed'; durationMs: number } & Record<string, unknown>,
  ): Promise<void> {
    await this.store.audit.record({
      at: new Date().toISOString(),
      tenant: caller.tenant,
      ...(caller.keyId ? { keyId: caller.keyId } : {}),
      ...(Object.fromEntries(Object.entries(entry).filter(([, v]) => v !== undefined)) as typeof entry),
      durationMs: Math.round(entry.durationMs * 1000) / 1000,
    })
  }

  /** Reports an audit record the store could not take (locked or full); anything else is rethrown. */
  private lost(e: unknown, action: string, sessionId?: string): void {
    if (!isStoreFailure(e)) throw e
    this.log?.error({ action, sessionId, reason: e.details.reason, err: e }, 'audit record lost: the store could not be written')
  }

  /** The SessionManager calls this when a session ends, whatever the reason; the record is marked TERMINATED. */
  async onSessionEnd(session: Session): Promise<void> {
    const reason: SessionEndReason = session.endReason ?? 'stopped'
    this.metrics.sessionEnds.inc({ reason })
    await this.store.sessions.markTerminated(session.id, reason)
  }

  /** A session's whole record (the E2B API's view needs its `e2b` part); NotFound for unknown and foreign ids alike. */
  async recordOf(caller: Caller, sessionId: string): Promise<SessionRecord> {
    return this.record(caller, sessionId)
  }

  /**
   * The caller's READY sessions that a client may reach (not hosted agents'), newest first: at most
   * `max` (the E2B API lists and filters them itself; a tenant has at most its session quota).
   */
  async activeRecords(caller: Caller, max = 1000): Promise<SessionRecord[]> {
    const out: SessionRecord[] = []
    let nextToken: string | undefined
    do {
      const page = await this.store.sessions.list({
        tenant: caller.tenant,
        status: 'READY',
        limit: 100,
        ...(nextToken ? { nextToken } : {}),
        ...(caller.ownSessionsOnly ? { keyId: caller.keyId ?? '' } : {}),
      })
      out.push(...page.items.filter((r) => r.runtimeId === undefined))
      nextToken = page.nextToken
    } while (nextToken && out.length < max)
    return out.slice(0, max)
  }

  /** The tenant and key of a READY session a client may reach, whoever asks: for checking a credential bound to it (E2B access tokens). */
  async reachableOwner(sessionId: string): Promise<{ tenant: string; keyId?: string } | undefined> {
    if (!/^[0-9a-zA-Z]{1,40}$/.test(sessionId)) return undefined
    const r = await this.store.sessions.owner(sessionId)
    return r?.status === 'READY' && r.runtimeId === undefined ? { tenant: r.tenant, ...(r.keyId ? { keyId: r.keyId } : {}) } : undefined
  }

  /** The tenant and runtime of a READY hosted agent's session (who a gateway call comes from); undefined for any other session. */
  async hostedOwner(sessionId: string): Promise<{ tenant: string; runtimeId: string } | undefined> {
    const r = await this.store.sessions.owner(sessionId)
    return r?.status === 'READY' && r.runtimeId !== undefined ? { tenant: r.tenant, runtimeId: r.runtimeId } : undefined
  }

  private async record(caller: Caller, sessionId: string): Promise<SessionRecord> {
    let r = /^[0-9a-zA-Z]{1,40}$/.test(sessionId) ? await this.store.sessions.get(sessionId, caller.tenant) : undefined
    if (r && caller.ownSessionsOnly && r.keyId !== caller.keyId) r = undefined
    if (!r) throw new CodeboxError('NotFound', `no session ${JSON.stringify(sessionId.slice(0, 64))}`)
    return r
  }
}

/** What a session's preload could not import, for the audit log; undefined when it all worked. */
function preloadNote(session: Session): string | undefined {
  const failed = session.preload?.failed ?? []
  if (!failed.length) return undefined
  return `preload failed: ${failed.map((f) => `${f.module} (${f.error})`).join('; ')}`.slice(0, 1000)
}

/** What a hosted agent's session is started with (SessionService.startHosted). */
export interface HostedStart {
  /** The runtime it runs (recorded as the session's runtimeId; its interpreterId is the built-in one's). */
  runtimeId: string
  /** The runtime session it serves and the version it runs (recorded, for a restarted server to serve it again). */
  runtimeSessionId: string
  version: number
  limits: Partial<SessionLimits>
  network: InterpreterRecord['network']
  /** The runtime version's code, unpacked on the host; read-only at /app in the sandbox. */
  code: { hostPath: string }
}

/** The session end reason a hosted agent's session ends with, for its runtime session's. */
export function hostedEndReason(
  reason: 'stopped' | 'idle-timeout' | 'max-lifetime' | 'agent-exited' | 'unhealthy' | 'server-shutdown' | 'runtime-deleted',
): 'idle-timeout' | 'max-lifetime' | 'shutdown' | 'sandbox-exited' | 'stopped' {
  return reason === 'idle-timeout' || reason === 'max-lifetime'
    ? reason
    : reason === 'server-shutdown'
      ? 'shutdown'
      : reason === 'agent-exited'
        ? 'sandbox-exited'
        : 'stopped'
}

/** A hosted start as the interpreter it stands for: its network and limits, no preload (its kernel is never used). */
function hostedInterpreter(h: HostedStart): Pick<InterpreterRecord, 'interpreterId' | 'network' | 'limits' | 'preload' | 'driver'> {
  return { interpreterId: builtInInterpreterId, network: h.network, limits: h.limits, preload: [] }
}

/** The egress policy of an interpreter's sessions: none in SANDBOX mode. */
function egressOf(interpreter: Pick<InterpreterRecord, 'network'>): { egress?: EgressPolicy } {
  switch (interpreter.network.mode) {
    case 'SANDBOX':
      return {}
    case 'PUBLIC':
      return { egress: { mode: 'public', allow: [] } }
    case 'VPC':
      return { egress: { mode: 'allowlist', allow: interpreter.network.allow ?? [] } }
  }
}

export function toInfo(r: SessionRecord): SessionInfo {
  return {
    sessionId: r.sessionId,
    interpreterId: r.interpreterId,
    name: r.name,
    status: r.status,
    createdAt: r.createdAt,
    lastUpdatedAt: r.lastUpdatedAt,
    timeoutSeconds: r.timeoutSeconds,
    limits: r.limits,
    ...(r.endedAt ? { endedAt: r.endedAt } : {}),
    ...(r.endReason ? { endReason: r.endReason } : {}),
    ...(r.status === 'READY' ? { expiresAt: expiresAt(r), endsAt: new Date(Date.parse(r.createdAt) + r.limits.maxLifetimeMs).toISOString() } : {}),
  }
}

/** When a READY session ends unless used again: its idle deadline from the last recorded activity, or its lifetime end if sooner. */
function expiresAt(r: SessionRecord): string {
  const idleEnd = Date.parse(r.lastUpdatedAt) + r.limits.idleTimeoutMs
  const lifetimeEnd = Date.parse(r.createdAt) + r.limits.maxLifetimeMs
  return new Date(Math.min(idleEnd, lifetimeEnd)).toISOString()
}
