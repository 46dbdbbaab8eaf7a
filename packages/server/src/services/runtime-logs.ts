/**
 * What hosted agents print, per runtime session, readable while the session runs and after it
 * ended, also after a restart and from any replica (`codebox runtimes logs <runtime> --session
 * <id>`, GET /v1/runtimes/{id}/logs). Kept in the store (RuntimeLogStore), bounded: the last
 * `maxBytesPerSession` of each session (what was dropped before is counted), at most
 * `maxSessionsPerRuntime` sessions per runtime (the oldest ended ones go first), ended sessions for
 * `retentionMs`. A running agent's output is buffered here (at most `maxBytesPerSession`) and
 * written every `flushMs` and at its end, never per chunk. An agent's output is hostile: it is
 * stored as text, never interpreted. With replicas sharing runtime sessions, one replica at a time
 * collects an agent's output (a lease on its log, with the offsets it reached, in the store).
 */
import type { ListRuntimeLogsOptions, RuntimeLogMeta, RuntimeLogRecord, RuntimeLogStore } from '../store/index.ts'
import { dropLeadingBytes } from '../store/index.ts'

export type { RuntimeLogMeta } from '../store/index.ts'

/** One runtime session's log as the API shows it. */
export type RuntimeLogEntry = Omit<RuntimeLogRecord, 'tenant'>

export interface RuntimeLogHandle {
  /** Buffers output; it reaches the store within `flushMs`. */
  write(stream: 'stdout' | 'stderr', text: string): void
  /** Writes what is buffered and marks the log ended; idempotent. */
  end(why: string): Promise<void>
  /** The last few thousand characters printed (from memory, for error messages). */
  tail(): string
  /**
   * Whether this server collects the agent's output into the log now. Always, with one server per
   * store; with replicas (RuntimeLogsOptions.collector), only the one holding the log's collection
   * does (the others only forward invocations), until its lease is lost.
   */
  readonly collecting: boolean
  /** Where in the agent's output collection goes on from, when this server took it over (undefined: from the agent's output as it is now). */
  readonly from: { stdout: number; stderr: number } | undefined
  /** Records where in the agent's output the collected text (written before) reaches; stored with it. */
  collected(offsets: { stdout: number; stderr: number }): void
  /**
   * Tries to take over the collection (its collector gone: its lease not renewed for `leaseMs`);
   * resolves with the offsets to collect on from, or undefined. Tries the store at most every
   * third of the lease unless `now`.
   */
  claim(now?: boolean): Promise<{ stdout: number; stderr: number } | undefined>
  /** Lets go of the log here without ending it (its agent is let go of, or no longer watched): what is buffered is written, the lease no longer renewed. */
  release(): Promise<void>
}

export interface RuntimeLogsOptions {
  store: RuntimeLogStore
  /** The last bytes kept of each runtime session's output. Default 1 MiB. */
  maxBytesPerSession?: number
  /** Logs kept per runtime; the oldest ended ones go first. Default 200. */
  maxSessionsPerRuntime?: number
  /** How long an ended session's log is kept. Default 24 h. */
  retentionMs?: number
  /** How often buffered output is written. Default 1 s. */
  flushMs?: number
  /** Told when the store refused a write (the output stays buffered, within its bound, for the next try). */
  onError?: (err: unknown) => void
  /**
   * With replicas sharing hosted agents' runtime sessions: this server's identity among them. One
   * replica at a time collects a running agent's output (it holds the log's collection, renewing
   * its lease every third of `leaseMs` with its writes); another takes it over, from where the
   * stored log ended, once that lease went unrenewed for `leaseMs`. Default none: one server per
   * store collects every log it opens.
   */
  collector?: string
  /** With `collector`: how long a collector's lease lasts unrenewed. Default 15 s. */
  leaseMs?: number
}

/** How a log is opened: `launch` for a new agent's, `force` after a restart (this server's again), `share` for one another replica may be collecting. */
export type LogOpening = 'launch' | 'force' | 'share'

/** The characters `tail()` keeps. */
const tailChars = 4000

export class RuntimeLogs {
  readonly #store: RuntimeLogStore
  readonly #maxBytes: number
  readonly #maxSessions: number
  readonly #retentionMs: number
  readonly #flushMs: number
  readonly #onError: (err: unknown) => void
  readonly #collector: string | undefined
  readonly #leaseMs: number
  /** Logs of agents running on this server, by codebox session id. */
  readonly #open = new Map<string, { writer: LogWriter; tenant: string; runtimeId: string }>()

  constructor(options: RuntimeLogsOptions) {
    this.#store = options.store
    this.#maxBytes = options.maxBytesPerSession ?? 1024 * 1024
    this.#maxSessions = options.maxSessionsPerRuntime ?? 200
    this.#retentionMs = options.retentionMs ?? 24 * 3600_000
    this.#flushMs = options.flushMs ?? 1000
    this.#onError = options.onError ?? (() => {})
    this.#collector = options.collector
    this.#leaseMs = options.leaseMs ?? 15_000
  }

  /**
   * Starts a runtime session's log (making room in its runtime's bound first), or opens it again
   * (an existing one is kept). With replicas (`collector`), `opening` says whether to take its
   * collection: a launch and a restart take it; `share` takes it only when no live replica holds it.
   */
  async open(meta: RuntimeLogMeta, opening: LogOpening = 'launch'): Promise<RuntimeLogHandle> {
    await this.#prune(meta.tenant, meta.runtimeId, this.#maxSessions - 1)
    await this.#store.openLog(meta)
    const lease =
      this.#collector === undefined
        ? undefined
        : {
            collector: this.#collector,
            leaseMs: this.#leaseMs,
            from: await this.#store.claimLog(meta.sessionId, this.#collector, { staleMs: this.#leaseMs, force: opening !== 'share' }),
          }
    const writer = new LogWriter(this.#store, meta.sessionId, { maxBytes: this.#maxBytes, flushMs: this.#flushMs, onError: this.#onError, lease })
    this.#open.set(meta.sessionId, { writer, tenant: meta.tenant, runtimeId: meta.runtimeId })
    void writer.ended.then(() => this.#open.delete(meta.sessionId))
    return writer
  }

  /** A runtime's logs, newest first: at most `limit` (default 20), only `runtimeSessionId`'s when given. */
  async read(tenant: string, runtimeId: string, options: Partial<Pick<ListRuntimeLogsOptions, 'runtimeSessionId' | 'limit'>> = {}): Promise<RuntimeLogEntry[]> {
    // What this server's agents of the runtime printed in the last second is part of the answer.
    await Promise.all([...this.#open.values()].filter((o) => o.tenant === tenant && o.runtimeId === runtimeId).map((o) => o.writer.flush()))
    await this.#prune(tenant, runtimeId, this.#maxSessions)
    const logs = await this.#store.listLogs({
      tenant,
      runtimeId,
      limit: options.limit ?? 20,
      ...(options.runtimeSessionId !== undefined ? { runtimeSessionId: options.runtimeSessionId } : {}),
    })
    return logs.map(({ tenant: _t, ...entry }) => entry)
  }

  /** Forgets a deleted runtime's logs. */
  async forget(tenant: string, runtimeId: string): Promise<void> {
    await this.#store.forgetLogs(tenant, runtimeId)
  }

  /** Writes what every open log has buffered (server shutdown; their agents end them). */
  async flush(): Promise<void> {
    await Promise.all([...this.#open.values()].map((o) => o.writer.flush()))
  }

  #prune(tenant: string, runtimeId: string, keep: number): Promise<number> {
    return this.#store.pruneLogs({ endedBefore: new Date(Date.now() - this.#retentionMs), runtime: { tenant, runtimeId, keep: Math.max(0, keep) } })
  }
}

interface WriterOptions {
  maxBytes: number
  flushMs: number
  onError: (err: unknown) => void
  /** With replicas: this server's collector identity, the lease, and the offsets granted when it opened the log (undefined: another replica collects). */
  lease: { collector: string; leaseMs: number; from: { stdout: number; stderr: number } | undefined } | undefined
}

/** One running agent's log: output buffered (bounded) and written in batches, one write at a time. */
class LogWriter implements RuntimeLogHandle {
  readonly #store: RuntimeLogStore
  readonly #sessionId: string
  readonly #o: WriterOptions
  #pending = ''
  #pendingBytes = 0
  #pendingDropped = 0
  #tail = ''
  #timer: NodeJS.Timeout | undefined
  /** Writes to the store, chained so they happen in order. */
  #chain: Promise<void> = Promise.resolve()
  #ending: Promise<void> | undefined
  #resolveEnded!: () => void
  /** Resolves once the log is ended in the store (or that failed), or let go of here. */
  readonly ended = new Promise<void>((r) => (this.#resolveEnded = r))

  /** With a lease (replicas): whether this server holds the log's collection now. */
  #collecting: boolean
  readonly from: { stdout: number; stderr: number } | undefined
  #offsets: { stdout: number; stderr: number } | undefined
  #renew: NodeJS.Timeout | undefined
  #lastClaim = 0

  constructor(store: RuntimeLogStore, sessionId: string, o: WriterOptions) {
    this.#store = store
    this.#sessionId = sessionId
    this.#o = o
    this.from = o.lease?.from
    this.#offsets = o.lease?.from
    this.#collecting = !o.lease || o.lease.from !== undefined
    this.#lastClaim = Date.now()
    if (this.#collecting) this.#renewing()
  }

  get collecting(): boolean {
    return this.#collecting
  }

  collected(offsets: { stdout: number; stderr: number }): void {
    this.#offsets = offsets
  }

  async claim(now = false): Promise<{ stdout: number; stderr: number } | undefined> {
    const lease = this.#o.lease
    if (!lease || this.#ending) return undefined
    if (this.#collecting) return this.#offsets ?? { stdout: 0, stderr: 0 }
    if (!now && Date.now() - this.#lastClaim < lease.leaseMs / 3) return undefined
    this.#lastClaim = Date.now()
    const from = await this.#store.claimLog(this.#sessionId, lease.collector, { staleMs: lease.leaseMs })
    if (!from || this.#ending) return undefined
    this.#collecting = true
    this.#offsets = from
    this.#renewing()
    return from
  }

  /** While collecting with a lease: written (renewing it) every third of the lease, also with nothing new. */
  #renewing(): void {
    const lease = this.#o.lease
    if (!lease) return
    clearInterval(this.#renew)
    this.#renew = setInterval(() => void this.flush(), Math.max(100, Math.floor(lease.leaseMs / 3)))
    this.#renew.unref()
  }

  write(_stream: 'stdout' | 'stderr', text: string): void {
    if (this.#ending || text === '' || !this.#collecting) return
    this.#tail = (this.#tail + text).slice(-tailChars)
    this.#buffer(text, 0)
    this.#arm()
  }

  tail(): string {
    return this.#tail
  }

  flush(): Promise<void> {
    this.#chain = this.#chain.then(() => this.#write())
    return this.#chain
  }

  async release(): Promise<void> {
    if (this.#ending) return this.#ending
    clearInterval(this.#renew)
    await this.flush()
    clearInterval(this.#renew)
    this.#collecting = this.#collecting && !this.#o.lease
    this.#resolveEnded()
  }

  end(why: string): Promise<void> {
    this.#ending ??= (async () => {
      clearTimeout(this.#timer)
      clearInterval(this.#renew)
      await this.flush()
      await this.#store.endLog(this.#sessionId, why).catch(this.#o.onError)
      this.#resolveEnded()
    })()
    return this.#ending
  }

  /** Adds text to the buffer, keeping its last `maxBytes`. */
  #buffer(text: string, dropped: number): void {
    this.#pending += text
    this.#pendingBytes += Buffer.byteLength(text)
    this.#pendingDropped += dropped
    if (this.#pendingBytes > this.#o.maxBytes) {
      const cut = dropLeadingBytes(this.#pending, this.#pendingBytes - this.#o.maxBytes)
      this.#pendingDropped += this.#pendingBytes - cut.bytes
      this.#pending = cut.text
      this.#pendingBytes = cut.bytes
    }
  }

  #arm(): void {
    if (this.#timer || this.#ending) return
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      void this.flush()
    }, this.#o.flushMs)
    this.#timer.unref()
  }

  async #write(): Promise<void> {
    const lease = this.#o.lease
    if (lease && !this.#collecting) return
    // With a lease, a write with nothing new still renews it (and records the offsets reached).
    if (this.#pending === '' && this.#pendingDropped === 0 && !lease) return
    const text = this.#pending
    const dropped = this.#pendingDropped
    this.#pending = ''
    this.#pendingBytes = 0
    this.#pendingDropped = 0
    try {
      const taken = await this.#store.appendLog(this.#sessionId, text, {
        maxBytes: this.#o.maxBytes,
        droppedBefore: dropped,
        ...(lease ? { collector: lease.collector, ...(this.#offsets ? { offsets: this.#offsets } : {}) } : {}),
      })
      if (lease && !taken) {
        // Another replica took the collection over (this one's lease had lapsed): it collects from the offsets stored last.
        this.#collecting = false
        clearInterval(this.#renew)
      }
    } catch (e) {
      // Kept for the next try, ahead of what came since, within the bound.
      const since = this.#pending
      const sinceDropped = this.#pendingDropped
      this.#pending = ''
      this.#pendingBytes = 0
      this.#pendingDropped = 0
      this.#buffer(text, dropped)
      this.#buffer(since, sinceDropped)
      this.#o.onError(e)
      this.#arm()
    }
  }
}
