/**
 * What hosted agents print, per runtime session, readable while the session runs and after it
 * ended, also after a restart and from any replica (`codebox runtimes logs <runtime> --session
 * <id>`, GET /v1/runtimes/{id}/logs). Kept in the store (RuntimeLogStore), bounded: the last
 * `maxBytesPerSession` of each session (what was dropped before is counted), at most
 * `maxSessionsPerRuntime` sessions per runtime (the oldest ended ones go first), ended sessions for
 * `retentionMs`. A running agent's output is buffered here (at most `maxBytesPerSession`) and
 * written every `flushMs` and at its end, never per chunk. An agent's output is hostile: it is
 * stored as text, never interpreted.
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
}

/** The characters `tail()` keeps. */
const tailChars = 4000

export class RuntimeLogs {
  readonly #store: RuntimeLogStore
  readonly #maxBytes: number
  readonly #maxSessions: number
  readonly #retentionMs: number
  readonly #flushMs: number
  readonly #onError: (err: unknown) => void
  /** Logs of agents running on this server, by codebox session id. */
  readonly #open = new Map<string, { writer: LogWriter; tenant: string; runtimeId: string }>()

  constructor(options: RuntimeLogsOptions) {
    this.#store = options.store
    this.#maxBytes = options.maxBytesPerSession ?? 1024 * 1024
    this.#maxSessions = options.maxSessionsPerRuntime ?? 200
    this.#retentionMs = options.retentionMs ?? 24 * 3600_000
    this.#flushMs = options.flushMs ?? 1000
    this.#onError = options.onError ?? (() => {})
  }

  /** Starts a runtime session's log (making room in its runtime's bound first). */
  async open(meta: RuntimeLogMeta): Promise<RuntimeLogHandle> {
    await this.#prune(meta.tenant, meta.runtimeId, this.#maxSessions - 1)
    await this.#store.openLog(meta)
    const writer = new LogWriter(this.#store, meta.sessionId, { maxBytes: this.#maxBytes, flushMs: this.#flushMs, onError: this.#onError })
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

/** One running agent's log: output buffered (bounded) and written in batches, one write at a time. */
class LogWriter implements RuntimeLogHandle {
  readonly #store: RuntimeLogStore
  readonly #sessionId: string
  readonly #o: { maxBytes: number; flushMs: number; onError: (err: unknown) => void }
  #pending = ''
  #pendingBytes = 0
  #pendingDropped = 0
  #tail = ''
  #timer: NodeJS.Timeout | undefined
  /** Writes to the store, chained so they happen in order. */
  #chain: Promise<void> = Promise.resolve()
  #ending: Promise<void> | undefined
  #resolveEnded!: () => void
  /** Resolves once the log is ended in the store (or that failed). */
  readonly ended = new Promise<void>((r) => (this.#resolveEnded = r))

  constructor(store: RuntimeLogStore, sessionId: string, o: { maxBytes: number; flushMs: number; onError: (err: unknown) => void }) {
    this.#store = store
    this.#sessionId = sessionId
    this.#o = o
  }

  write(_stream: 'stdout' | 'stderr', text: string): void {
    if (this.#ending || text === '') return
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

  end(why: string): Promise<void> {
    this.#ending ??= (async () => {
      clearTimeout(this.#timer)
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
    if (this.#pending === '' && this.#pendingDropped === 0) return
    const text = this.#pending
    const dropped = this.#pendingDropped
    this.#pending = ''
    this.#pendingBytes = 0
    this.#pendingDropped = 0
    try {
      await this.#store.appendLog(this.#sessionId, text, { maxBytes: this.#o.maxBytes, droppedBefore: dropped })
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
