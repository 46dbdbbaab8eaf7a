/**
 * SessionManager: starts sessions on a driver, hands over warm sandboxes from a pool, and ends
 * sessions on stop, idle timeout and max lifetime. A sandbox serves one session only: a used one
 * is destroyed, never returned to the pool. A session with an egress policy gets a sandbox whose
 * network is that policy (the driver wires it, through the host's egress proxy that this manager
 * hands it); the pool's sandboxes have no network at all, so such a session always starts a
 * sandbox of its own; so does a session that uses the model gateway, whose listener serves it, and
 * one with `code` (a host directory it sees read-only at CODE_DIR). A session's Python kernel has
 * imported its preload (preload.ts) before the session is handed over.
 */
import { randomBytes } from 'node:crypto'
import { stat } from 'node:fs/promises'
import path from 'node:path'
import {
  CodeboxError,
  checkPreload,
  defaultLimits,
  defaultMaxLimits,
  resolveLimits,
  validationError,
  type CodeMount,
  type EgressPolicy,
  type Sandbox,
  type SandboxDriver,
  type SandboxGateway,
  type SandboxNetwork,
  type SessionLimits,
} from '@codebox/core'
import { HostBudget, defaultHostBudgetConfig, procHostProbe, type HostBudgetConfig, type HostProbe, type Reservation } from './budget.ts'
import { checkGatewayTag } from './egress/gateway.ts'
import { parseEgressPolicy } from './egress/policy.ts'
import { EgressService, type EgressCounters } from './egress/service.ts'
import { ExecutorClient } from './executor-client.ts'
import { WarmPool, type PoolConfig } from './pool.ts'
import { runPreload, type PreloadReport } from './preload.ts'
import { Session, type EndReason } from './session.ts'

export interface SessionManagerOptions {
  driver: SandboxDriver
  /** Limits a session gets when it asks for none. Default: DESIGN.md's defaults. */
  defaults?: SessionLimits
  /** The most a session may ask for. */
  maxLimits?: SessionLimits
  /**
   * Warm sandboxes kept ready per pooled configuration (limits and preload): the default one
   * (`defaults` and `preload`), and each other one a session has used, up to `maxPoolConfigs`.
   * Default 2; 0 disables the pool.
   */
  poolSize?: number
  /** Most configurations the pool keeps sandboxes for, the default one included. Default 4. */
  maxPoolConfigs?: number
  /**
   * How long after a hand-over the pool starts the replacement, ms: on a small machine a
   * preloading boot (seconds of CPU) competes with the new session's first cell. Default 0 (at once).
   */
  poolRefillDelayMs?: number
  /** Python modules a session's kernel imports before hand-over when it asks for no list. Default none. */
  preload?: readonly string[]
  /**
   * Most sessions alive at once. Default none when the host budget is on (it admits each start by
   * what the machine has left), else 200.
   */
  maxSessions?: number
  /** How long a sandbox may take to become ready, ms. Default 30 s. */
  startTimeoutMs?: number
  /** Called once when a session has ended, for whatever reason, after its sandbox is gone. */
  onSessionEnd?: (session: Session) => void
  /** The proxy for sessions started with `egress`. Default: one trusting nothing, made on first use. */
  egress?: EgressService
  /** What every sandbox (sessions and pool) is admitted against; `false` admits all. Default: budget.ts's defaults. */
  hostBudget?: Readonly<HostBudgetConfig> | false
  /** Where the host budget reads the machine's facts. Default: /proc. */
  hostProbe?: HostProbe
  /** Makes (and checks) another registered driver, for sessions that name one (an interpreter's). Without it, only `driver` runs. */
  driverFor?: (name: string) => Promise<SandboxDriver>
  /**
   * For a session on a shared driver (SandboxDriver.shared), which other servers may be serving
   * too: what the store says of it, asked before its idle timeout ends it here. Another server may
   * have served it since (`lastActivityAt`, epoch ms: the idle clock goes on from there) or ended it
   * (`ended`: this manager lets go of its handle, the sandbox is not its to destroy), or moved its
   * deadline (`maxLifetimeMs`, from its start), asked again before its lifetime ends it here.
   * Without it, only this manager's own calls and deadline count.
   */
  recordedActivity?: (sessionId: string) => Promise<RecordedActivity | undefined>
}

export interface StartOptions {
  limits?: Partial<SessionLimits>
  /** Network egress through the host's filtering proxy. Default: none, an empty network namespace. */
  egress?: EgressPolicy
  /**
   * The model gateway (docs/security.md, "Model gateway"): the sandbox's listener serves
   * `http://codebox-gateway/...` with the operator's credentials added on the host, and its
   * environment points model clients there (ANTHROPIC_BASE_URL, OPENAI_BASE_URL,
   * AWS_ENDPOINT_URL_BEDROCK_RUNTIME, placeholder keys). Without `egress` the listener reaches
   * nothing else. `tag`: an opaque label (a runtime id) the gateway gets with each request.
   * Default: no gateway.
   */
  gateway?: boolean | SandboxGateway
  /** Python modules imported before the session is handed over (module names). Default: the manager's `preload`. */
  preload?: readonly string[]
  /** A registered driver other than the manager's own (an interpreter's `--driver gvisor`): its sandboxes are not pooled. */
  driver?: string
  /**
   * A host directory (an extracted bundle) the session sees read-only at CODE_DIR (`/app`); its
   * files must be readable by any uid. Such a session always gets a sandbox of its own. Default none.
   */
  code?: CodeMount
  signal?: AbortSignal
}

/** What the store says of a session other servers may serve too (SessionManagerOptions.recordedActivity). */
export interface RecordedActivity {
  /** Ended (by another server, or here). */
  ended: boolean
  /** Its last call on any server, epoch ms. */
  lastActivityAt?: number
  /** Its lifetime from its start, ms, as last set on any server. */
  maxLifetimeMs?: number
}

/** A session as the store remembers it, for adopt(). */
export interface AdoptRecord {
  sessionId: string
  sandboxId: string
  limits: SessionLimits
  createdAt: Date
  /** Its egress policy (its interpreter's), when it has network egress: the driver opens its listener again. */
  egress?: EgressPolicy
  /** Its model gateway, when it was started with one (StartOptions.gateway): the listener opened again serves it too. */
  gateway?: SandboxGateway
  /** Its driver, when not the manager's own (its interpreter's `driver`). */
  driver?: string
}

/** What adopt() did: the sessions served again, and those that could not be (ended, with why). */
export interface AdoptOutcome {
  adopted: Session[]
  failed: { sessionId: string; reason: string }[]
  /** Sandboxes no session claimed (a killed server's pool) that were removed. */
  removed: number
}

interface Warm {
  sandbox: Sandbox
  client: ExecutorClient
  /** Its room in the host budget, given back when the sandbox is gone. */
  reservation?: Reservation
  /** What its Python kernel preloaded; absent when it preloads nothing. */
  preload?: PreloadReport
}

/** The listener policy of a session that uses the model gateway without egress: nothing else. */
const noEgress = (): EgressPolicy => ({ mode: 'none', allow: [] })

/** StartOptions.gateway checked: undefined for none, `{}` or `{tag}` for the gateway. Throws a ValidationError. */
function checkGateway(gateway: boolean | SandboxGateway | undefined): SandboxGateway | undefined {
  if (gateway === undefined || gateway === false) return undefined
  if (gateway === true) return {}
  if (typeof gateway !== 'object' || gateway === null) throw validationError('gateway', 'must be true, false or {tag}')
  return gateway.tag === undefined ? {} : { tag: checkGatewayTag(gateway.tag) }
}

/** Sessions alive at once when no cap is set and there is no host budget to admit by. */
const fallbackMaxSessions = 200

/** How often the host budget samples what the machine uses, ms. */
const budgetSampleMs = 1000

const newSessionId = (): string => {
  // 26 characters of [0-9a-z], like the ULID-sized ids AgentCore issues.
  const alphabet = '0123456789abcdefghijklmnopqrstuvwxyz'
  return Array.from(randomBytes(26), (b) => alphabet[b % 36]).join('')
}

export class SessionManager {
  readonly driver: SandboxDriver
  readonly defaults: Readonly<SessionLimits>
  readonly maxLimits: Readonly<SessionLimits>
  /** What a session preloads when it names nothing. */
  readonly preload: readonly string[]
  /** The fixed cap on sessions alive at once; undefined when the host budget alone admits. */
  readonly maxSessions: number | undefined
  private readonly poolRefillDelayMs: number
  private readonly startTimeoutMs: number
  private readonly onSessionEnd: ((session: Session) => void) | undefined
  private readonly sessions = new Map<string, Session>()
  private readonly pool: WarmPool<Warm>
  private readonly timers = new Map<string, NodeJS.Timeout>()
  /** Sessions whose sandbox ends itself at its deadline while no server is connected (told by op `session`). */
  private readonly selfEnding = new Set<string>()
  private egressService: EgressService | undefined
  /** The host budget; undefined when admission is off. */
  readonly budget: HostBudget | undefined
  /** Budget reservations of live sessions, by session id. */
  private readonly reservations = new Map<string, Reservation>()
  /** Sandboxes this manager started (adopt() never removes them as unclaimed). */
  private readonly started = new Set<string>()
  private readonly driverFor: ((name: string) => Promise<SandboxDriver>) | undefined
  private readonly recordedActivity: SessionManagerOptions['recordedActivity']
  /** Sessions on a shared driver: other servers may serve them too. */
  private readonly sharedSessions = new Set<string>()
  /** Attaches in flight (attach()), by session id: concurrent calls for one session share one. */
  private readonly attaching = new Map<string, Promise<Session>>()
  /** Drivers other than the manager's own, made on first use. */
  private readonly otherDrivers = new Map<string, Promise<SandboxDriver>>()
  private closed = false

  constructor(options: SessionManagerOptions) {
    this.driver = options.driver
    this.driverFor = options.driverFor
    this.recordedActivity = options.recordedActivity
    this.defaults = Object.freeze({ ...(options.defaults ?? defaultLimits) })
    this.maxLimits = Object.freeze({ ...(options.maxLimits ?? defaultMaxLimits) })
    this.preload = Object.freeze(checkPreload(options.preload ?? []))
    this.poolRefillDelayMs = options.poolRefillDelayMs ?? 0
    this.startTimeoutMs = options.startTimeoutMs ?? 30_000
    this.onSessionEnd = options.onSessionEnd
    this.egressService = options.egress
    this.budget = makeBudget(options)
    this.maxSessions = options.maxSessions ?? (this.budget ? undefined : fallbackMaxSessions)
    if (this.budget) {
      const budget = this.budget
      void budget.refresh()
      const t = setInterval(() => void budget.refresh(), budgetSampleMs)
      t.unref()
      this.timers.set('budget', t)
    }
    this.pool = new WarmPool<Warm>(
      { limits: this.defaults, preload: this.preload },
      {
        size: options.poolSize ?? 2,
        maxConfigs: options.maxPoolConfigs ?? 4,
        boot: (config) => this.boot(config.limits, { preload: config.preload }),
        discard: (w) => this.discard(w),
        usable: (w) => !w.client.closed,
      },
    )
  }

  /**
   * The driver of that name: the manager's own, or another one made (and checked) on first use and
   * kept. ValidationError for a name nobody registered, Unavailable when it cannot run on this host.
   */
  async driverNamed(name: string): Promise<SandboxDriver> {
    if (name === this.driver.name) return this.driver
    if (!this.driverFor) throw new CodeboxError('Unavailable', `this engine runs the ${this.driver.name} driver only, not ${name}`)
    let made = this.otherDrivers.get(name)
    if (!made) {
      made = this.driverFor(name)
      this.otherDrivers.set(name, made)
      made.catch(() => this.otherDrivers.delete(name))
    }
    return made
  }

  /** The egress proxy service (its counters are every session's decisions). */
  get egress(): EgressService {
    return (this.egressService ??= new EgressService())
  }

  /** Starts a session: a warm sandbox when the pool has one for these limits, else a new one. */
  async start(options: StartOptions = {}): Promise<Session> {
    if (this.closed) throw new CodeboxError('Unavailable', 'the session manager is shut down')
    const limits = resolveLimits(options.limits ?? {}, this.defaults, this.maxLimits)
    if (this.maxSessions !== undefined && this.sessions.size >= this.maxSessions) {
      // The server's own cap, like the host budget's: a 503 to retry later, not the caller's request being too large.
      throw new CodeboxError(
        'HostCapacity',
        `${this.maxSessions} sessions are running, the most this server allows (CODEBOX_MAX_SESSIONS); stop one or try later`,
        {
          details: { limit: this.maxSessions },
        },
      )
    }
    const gateway = checkGateway(options.gateway)
    // The gateway is reached through the egress listener: a session without egress gets one that reaches nothing else.
    const egress = options.egress === undefined ? (gateway ? noEgress() : undefined) : parseEgressPolicy(options.egress)
    const preload = options.preload === undefined ? this.preload : checkPreload(options.preload)
    const code = options.code === undefined ? undefined : await checkCodeMount(options.code)
    const driver = options.driver === undefined ? this.driver : await this.driverNamed(options.driver)
    const id = newSessionId()
    const pooled = egress || code || driver !== this.driver ? undefined : await this.pool.take({ limits, preload })
    const network: SandboxNetwork = egress ? { mode: 'egress', policy: egress, sessionId: id, ...(gateway ? { gateway } : {}) } : { mode: 'none' }
    const warm = pooled ?? (await this.boot(limits, { signal: options.signal, preload, driver, network, ...(code ? { code } : {}) }))
    if (warm.reservation) this.reservations.set(id, warm.reservation)
    const session = new Session({
      id,
      sandbox: warm.sandbox,
      client: warm.client,
      limits,
      ...(warm.preload ? { preload: warm.preload } : {}),
      maxCallTimeoutMs: this.maxLimits.callTimeoutMs,
      onActivity: (s) => this.armIdle(s),
      onEnd: (s) => this.forget(s),
    })
    this.sessions.set(id, session)
    if (driver.shared === true && driver.attach) this.sharedSessions.add(id)
    this.armIdle(session)
    this.armLifetime(session)
    this.refillPool()
    // A sandbox that outlives its server ends itself, from here, at the session's deadline and idle
    // timeout while no server is connected (a driver whose sandboxes end with their server needs not).
    if (driver.attach) {
      this.selfEnding.add(id)
      try {
        await warm.client.configureSession(limits.idleTimeoutMs, session.createdAt.getTime() + limits.maxLifetimeMs)
      } catch (e) {
        await session.stop('sandbox-exited')
        throw e
      }
    }
    return session
  }

  /**
   * Serves again the sessions an earlier server left running (their records from the store):
   * each sandbox is attached, its executor says ready, and the session's timers go on from where
   * they were (lifetime from its start, idle from its last call). What cannot be re-adopted is
   * ended and reported with the reason; sandboxes no record claims are removed.
   */
  async adopt(records: AdoptRecord[]): Promise<AdoptOutcome> {
    const outcome: AdoptOutcome = { adopted: [], failed: [], removed: 0 }
    await Promise.all(
      records.map(async (r) => {
        try {
          outcome.adopted.push(await this.adoptOne(r))
        } catch (e) {
          outcome.failed.push({ sessionId: r.sessionId, reason: e instanceof Error ? e.message : String(e) })
        }
      }),
    )
    const { attach, list } = this.driver
    // A shared driver lists every server's sandboxes: another server's pool and its starts in
    // flight are claimed by no record here, and are not this server's to remove.
    if (!attach || !list || this.driver.shared === true) return outcome
    const claimed = new Set(records.map((r) => r.sandboxId))
    for (const id of await list.call(this.driver)) {
      if (claimed.has(id) || this.started.has(id)) continue
      try {
        await (await attach.call(this.driver, id, { egress: this.egress })).destroy()
      } catch {
        // attach removes what has ended, and ends what it cannot take
      }
      outcome.removed++
    }
    return outcome
  }

  /**
   * Serves here a session another server started on a shared driver (SandboxDriver.shared), or one
   * whose sandbox outlived its server: attached as adopt() does, its timers going on from its
   * record. Concurrent calls for one session share one attach; a session held here already is
   * returned as it is. SessionTerminated when its sandbox has ended, Unavailable (or
   * SandboxFailure) when it cannot be reached.
   */
  async attach(r: AdoptRecord): Promise<Session> {
    if (this.closed) throw new CodeboxError('Unavailable', 'the session manager is shut down')
    const held = this.sessions.get(r.sessionId)
    if (held) return held
    let pending = this.attaching.get(r.sessionId)
    if (!pending) {
      pending = this.adoptOne(r).finally(() => this.attaching.delete(r.sessionId))
      this.attaching.set(r.sessionId, pending)
    }
    return pending
  }

  /** Whether sessions on the named driver (default the manager's own) may be served by other servers too (SandboxDriver.shared). */
  async sharesSandboxes(driverName?: string): Promise<boolean> {
    const driver = driverName === undefined ? this.driver : await this.driverNamed(driverName)
    return driver.shared === true && driver.attach !== undefined
  }

  /**
   * Lets go of a session held here without ending it: another server ended it, or serves it (a
   * shared driver's sandbox). Calls in flight here end with Unavailable; the sandbox is left as it
   * is and onSessionEnd is not called. Nothing happens for a session not held here, or ending.
   */
  async release(id: string): Promise<void> {
    const session = this.sessions.get(id)
    // One that is ending already is left to end (and be recorded) as it does.
    if (session?.status !== 'ready') return
    await session.detach('another server ended this session or serves it now; send the call again')
    this.forget(session, { notify: false })
  }

  private async adoptOne(r: AdoptRecord): Promise<Session> {
    if (this.sessions.has(r.sessionId)) throw new CodeboxError('Conflict', `session ${r.sessionId} is already served here`)
    const driver = r.driver === undefined ? this.driver : await this.driverNamed(r.driver)
    if (!driver.attach) throw new CodeboxError('Unavailable', `the ${driver.name} driver's sandboxes end with the server that started them`)
    const gateway = checkGateway(r.gateway)
    const policy = r.egress ?? (gateway ? noEgress() : undefined)
    const sandbox = await driver.attach(r.sandboxId, {
      egress: this.egress,
      network: policy ? { mode: 'egress', policy, sessionId: r.sessionId, ...(gateway ? { gateway } : {}) } : { mode: 'none' },
    })
    const client = new ExecutorClient(sandbox)
    try {
      const timeout = AbortSignal.timeout(5_000)
      await Promise.race([
        client.ready,
        new Promise((_, reject) =>
          timeout.addEventListener('abort', () => reject(new CodeboxError('SandboxFailure', 'its executor did not say ready within 5 s'))),
        ),
      ])
      if (!client.hello?.session) throw new CodeboxError('SandboxFailure', 'its sandbox was never handed to a session')
      if (Date.now() >= r.createdAt.getTime() + r.limits.maxLifetimeMs)
        throw new CodeboxError('SessionTerminated', 'its lifetime ended while no server was running')
    } catch (e) {
      await sandbox.destroy()
      throw e
    }
    let reservation: Reservation | undefined
    try {
      reservation = this.budget?.admit(r.limits)
    } catch {
      // It runs already: the budget counts it from its next sample.
    }
    if (reservation) this.reservations.set(r.sessionId, reservation)
    const session = new Session({
      id: r.sessionId,
      sandbox,
      client,
      limits: r.limits,
      maxCallTimeoutMs: this.maxLimits.callTimeoutMs,
      onActivity: (s) => this.armIdle(s),
      onEnd: (s) => this.forget(s),
      createdAt: r.createdAt,
      lastActivityAt: Date.now() - (client.hello?.idleMs ?? 0),
    })
    this.sessions.set(r.sessionId, session)
    this.selfEnding.add(r.sessionId)
    if (driver.shared === true) this.sharedSessions.add(r.sessionId)
    this.armIdle(session)
    this.armLifetime(session)
    return session
  }

  /**
   * Moves the end of a live session's lifetime to `endsAt` (epoch ms), at most `maxLifetimeMs` after
   * its start (default the most any session may live, `maxLimits.maxLifetimeMs`): the session's
   * `limits.maxLifetimeMs` becomes the new lifetime, its timer is re-armed, and a sandbox that
   * outlives its server is told the new deadline, so it ends there also while no server runs. An
   * `endsAt` already past ends the session now (`max-lifetime`). Returns the lifetime set, ms.
   * NotFound for a session this manager does not hold.
   */
  async setDeadline(id: string, endsAt: number, options: { maxLifetimeMs?: number } = {}): Promise<number> {
    const session = this.get(id)
    if (!Number.isFinite(endsAt)) throw validationError('endsAt', `must be a time, got ${String(endsAt)}`)
    const cap = Math.min(options.maxLifetimeMs ?? this.maxLimits.maxLifetimeMs, this.maxLimits.maxLifetimeMs)
    const lifetime = Math.max(0, Math.min(Math.round(endsAt - session.createdAt.getTime()), cap))
    // The sandbox first: if it cannot be told, nothing has changed.
    if (this.selfEnding.has(id)) await session.client.configureSession(session.limits.idleTimeoutMs, session.createdAt.getTime() + lifetime)
    if (session.status !== 'ready') throw new CodeboxError('NotFound', `no session ${JSON.stringify(id)}; it has ended`)
    session.setLifetime(lifetime)
    clearTimeout(this.timers.get(`${id}:life`))
    this.armLifetime(session)
    return lifetime
  }

  private armLifetime(session: Session): void {
    const left = Math.max(0, session.createdAt.getTime() + session.limits.maxLifetimeMs - Date.now())
    const end = (): void => {
      if (this.sharedSessions.has(session.id) && this.recordedActivity) void this.checkSharedLifetime(session)
      else void session.stop('max-lifetime')
    }
    const lifetime = setTimeout(end, left)
    lifetime.unref()
    this.timers.set(`${session.id}:life`, lifetime)
  }

  /** The live session with this id, or NotFound. */
  get(id: string): Session {
    const s = this.sessions.get(id)
    // A session that is ending is already gone for callers, even while its sandbox is torn down.
    if (!s || s.status !== 'ready') throw new CodeboxError('NotFound', `no session ${JSON.stringify(id)}; it never existed or has ended`)
    return s
  }

  /** The session with this id while the manager holds it (also while it is ending), else undefined. */
  find(id: string): Session | undefined {
    return this.sessions.get(id)
  }

  /** A session's egress decisions so far; undefined for a session without egress. */
  egressCounters(sessionId: string): Readonly<EgressCounters> | undefined {
    return this.sessions.get(sessionId)?.egressCounters()
  }

  list(): Session[] {
    return [...this.sessions.values()]
  }

  /** Warm sandboxes ready now, over every pooled configuration. */
  get warmCount(): number {
    return this.pool.readyCount
  }

  /** The configurations (limits and preload) the pool keeps sandboxes for now. */
  get pooledConfigs(): PoolConfig[] {
    return this.pool.configs
  }

  async stop(id: string, reason: EndReason = 'stopped'): Promise<void> {
    await this.get(id).stop(reason)
  }

  /**
   * Stops every session and empties the pool. With `detach`, sessions whose sandboxes outlive the
   * server (the driver can attach) are let go instead, for the next server to re-adopt. Sessions on
   * a shared driver are always let go: other servers serve them on.
   */
  async close(options: { detach?: boolean } = {}): Promise<void> {
    this.closed = true
    const detachAll = options.detach === true && this.driver.attach !== undefined
    const keep = (s: Session): boolean => detachAll || this.sharedSessions.has(s.id)
    await Promise.all([...[...this.sessions.values()].map((s) => (keep(s) ? s.detach() : s.stop('shutdown'))), this.pool.close()])
    for (const t of this.timers.values()) clearTimeout(t)
    this.timers.clear()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /**
   * A new sandbox, ready, its preload imported; with network `egress`, its proxy listener first.
   * Nothing is left behind on failure.
   */
  private async boot(
    limits: SessionLimits,
    options: { signal?: AbortSignal; preload: readonly string[]; driver?: SandboxDriver; network?: SandboxNetwork; code?: CodeMount },
  ): Promise<Warm> {
    const { signal, code } = options
    const network = options.network ?? { mode: 'none' }
    const driver = options.driver ?? this.driver
    const id = randomBytes(8).toString('hex')
    // Admitted first: a start the machine cannot hold is refused before anything is made.
    const reservation = this.budget?.admit(limits)
    let sandbox: Sandbox
    try {
      this.started.add(id)
      sandbox = await driver.create({ id, limits, network, ...(code ? { code } : {}) }, { ...(signal ? { signal } : {}), egress: this.egress })
    } catch (e) {
      if (reservation) this.budget?.release(reservation)
      throw e
    }
    const client = new ExecutorClient(sandbox)
    const bootStarted = performance.now()
    const timeout = AbortSignal.timeout(this.startTimeoutMs)
    try {
      await Promise.race([
        client.ready,
        new Promise((_, reject) =>
          timeout.addEventListener('abort', () =>
            // Most often a machine too busy to boot it in time: a 503 to retry, not a server fault.
            reject(
              new CodeboxError(
                'Unavailable',
                `the sandbox was not ready within ${this.startTimeoutMs} ms; the machine may be overloaded${diagnosticsSuffix(sandbox.diagnostics())}`,
                { details: { retryAfterSeconds: 5 } },
              ),
            ),
          ),
        ),
      ])
    } catch (e) {
      await sandbox.destroy()
      if (reservation) this.budget?.release(reservation)
      throw e
    }
    // The rest of the start timeout; a preload cut short leaves a lean kernel, not a failed start.
    const left = Math.max(1000, this.startTimeoutMs - (performance.now() - bootStarted))
    const preload = options.preload.length ? await runPreload(client, options.preload, Math.round(left)) : undefined
    // A lean sandbox, pooled or not, has no Python kernel until its first Python cell: an idle lean
    // session is the executor alone. (Warming the kernel in the pool made every session handed over
    // from it carry an idle kernel for its whole life: bench/RESULTS.md, "Density".)
    return { sandbox, client, ...(reservation ? { reservation } : {}), ...(preload ? { preload } : {}) }
  }

  /** Destroys a sandbox that serves no session and gives its room back. */
  private async discard(w: Warm | undefined): Promise<void> {
    if (!w) return
    try {
      await w.sandbox.destroy()
    } finally {
      if (w.reservation) this.budget?.release(w.reservation)
    }
  }

  private refillPool(): void {
    if (this.poolRefillDelayMs <= 0) return this.pool.fill()
    if (this.timers.has('refill')) return
    this.setTimer('refill', () => (this.timers.delete('refill'), this.pool.fill()), this.poolRefillDelayMs)
  }

  private armIdle(session: Session): void {
    const key = `${session.id}:idle`
    clearTimeout(this.timers.get(key))
    const check = (): void => {
      if (session.status !== 'ready') return
      const idleFor = Date.now() - session.lastActivityAt
      if (session.active === 0 && idleFor >= session.limits.idleTimeoutMs) {
        if (this.sharedSessions.has(session.id) && this.recordedActivity) void this.checkSharedIdle(session, check)
        else void session.stop('idle-timeout')
      } else this.setTimer(key, check, Math.max(session.limits.idleTimeoutMs - idleFor, 50))
    }
    this.setTimer(key, check, session.limits.idleTimeoutMs)
  }

  /**
   * The idle timeout of a session other servers may serve: what the store says decides. Ended
   * elsewhere: let go here. Used elsewhere since: the clock goes on from there. Else it ends (a
   * store that cannot be asked does not keep it alive: its own idle timeout holds).
   */
  private async checkSharedIdle(session: Session, check: () => void): Promise<void> {
    let recorded: RecordedActivity | undefined
    try {
      recorded = await this.recordedActivity!(session.id)
    } catch {
      recorded = undefined
    }
    if (session.status !== 'ready') return
    if (recorded?.ended) return this.release(session.id)
    if (recorded?.lastActivityAt !== undefined && recorded.lastActivityAt > session.lastActivityAt) session.lastActivityAt = recorded.lastActivityAt
    const idleFor = Date.now() - session.lastActivityAt
    if (session.active === 0 && idleFor >= session.limits.idleTimeoutMs) await session.stop('idle-timeout')
    else this.setTimer(`${session.id}:idle`, check, Math.max(session.limits.idleTimeoutMs - idleFor, 50))
  }

  /** The end of the lifetime of a session other servers may serve: ended elsewhere, let go; moved later elsewhere, re-armed; else it ends. */
  private async checkSharedLifetime(session: Session): Promise<void> {
    const recorded = await this.recordedActivity!(session.id).catch(() => undefined)
    if (session.status !== 'ready') return
    if (recorded?.ended) return this.release(session.id)
    const later = recorded?.maxLifetimeMs !== undefined && recorded.maxLifetimeMs > session.limits.maxLifetimeMs
    if (later && session.createdAt.getTime() + recorded.maxLifetimeMs! > Date.now()) {
      session.setLifetime(recorded.maxLifetimeMs!)
      this.armLifetime(session)
    } else await session.stop('max-lifetime')
  }

  private setTimer(key: string, fn: () => void, ms: number): void {
    const t = setTimeout(fn, ms)
    t.unref()
    this.timers.set(key, t)
  }

  private forget(session: Session, options: { notify?: boolean } = {}): void {
    // A session released already (its id possibly attached again since) is not forgotten twice.
    if (this.sessions.get(session.id) !== session) return
    this.sessions.delete(session.id)
    this.selfEnding.delete(session.id)
    this.sharedSessions.delete(session.id)
    const reservation = this.reservations.get(session.id)
    if (reservation) this.budget?.release(reservation)
    this.reservations.delete(session.id)
    for (const k of [`${session.id}:idle`, `${session.id}:life`]) {
      clearTimeout(this.timers.get(k))
      this.timers.delete(k)
    }
    if (options.notify !== false) this.onSessionEnd?.(session)
  }
}

/**
 * A code mount as the caller gave it, checked: an object with `hostPath`, an absolute path of an
 * existing directory that any uid may enter and list (the sandbox's user owns none of it).
 */
async function checkCodeMount(code: unknown): Promise<CodeMount> {
  const hostPath = (code as { hostPath?: unknown } | null)?.hostPath
  if (typeof code !== 'object' || code === null || typeof hostPath !== 'string')
    throw validationError('code.hostPath', `must be the path of a directory on the host, got ${JSON.stringify(hostPath ?? code)}`)
  if (!path.isAbsolute(hostPath) || hostPath.includes('\0')) throw validationError('code.hostPath', `must be an absolute path, got ${JSON.stringify(hostPath)}`)
  let st
  try {
    st = await stat(hostPath)
  } catch (e) {
    throw validationError('code.hostPath', `${hostPath} cannot be used: ${(e as Error).message}`)
  }
  if (!st.isDirectory()) throw validationError('code.hostPath', `${hostPath} is not a directory`)
  if ((st.mode & 0o005) !== 0o005)
    throw validationError('code.hostPath', `${hostPath} must be readable by any uid (mode o+rx), is ${(st.mode & 0o777).toString(8)}`)
  return { hostPath: path.resolve(hostPath) }
}

function makeBudget(options: SessionManagerOptions): HostBudget | undefined {
  if (options.hostBudget === false) return undefined
  const config = options.hostBudget ?? defaultHostBudgetConfig
  if (options.hostProbe) return new HostBudget(config, options.hostProbe)
  try {
    return new HostBudget(config, procHostProbe())
  } catch {
    // No /proc to read the machine from: nothing to admit against.
    return undefined
  }
}

/** What a sandbox printed outside the protocol, for an error message: its last 500 characters, or nothing. */
function diagnosticsSuffix(text: string): string {
  const t = text.trim()
  return t ? `: ${t.slice(-500)}` : ''
}
