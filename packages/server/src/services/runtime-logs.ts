/**
 * What hosted agents print, per runtime session, readable while the session runs and after it
 * ended (`codebox runtimes logs <runtime> --session <id>`, GET /v1/runtimes/{id}/logs). Kept in
 * this server's memory, bounded: the last `maxBytesPerSession` of each session (what was dropped
 * before is counted), at most `maxSessionsPerRuntime` sessions per runtime (the oldest ended ones
 * go first), ended sessions for `keepEndedMs`. An agent's output is hostile: it is stored as text,
 * never interpreted.
 */

export interface RuntimeLogMeta {
  tenant: string
  runtimeId: string
  runtimeSessionId: string
  /** The codebox session that ran it. */
  sessionId: string
  version: string
}

export interface RuntimeLogEntry extends Omit<RuntimeLogMeta, 'tenant'> {
  startedAt: string
  endedAt?: string
  /** Why it ended (the process exited with code 1, the runtime session was stopped, ...). */
  ended?: string
  /** Bytes dropped from the start to keep within the bound. */
  droppedBytes: number
  /** stdout and stderr as they came, each line of stderr as it was (interleaved in arrival order). */
  text: string
}

export interface RuntimeLogHandle {
  write(stream: 'stdout' | 'stderr', text: string): void
  end(why: string): void
  tail(): string
}

interface Log extends RuntimeLogEntry {
  tenant: string
}

export interface RuntimeLogsOptions {
  maxBytesPerSession?: number
  maxSessionsPerRuntime?: number
  keepEndedMs?: number
}

export class RuntimeLogs {
  readonly #logs: Log[] = []
  readonly #maxBytes: number
  readonly #maxSessions: number
  readonly #keepMs: number

  constructor(options: RuntimeLogsOptions = {}) {
    this.#maxBytes = options.maxBytesPerSession ?? 1024 * 1024
    this.#maxSessions = options.maxSessionsPerRuntime ?? 200
    this.#keepMs = options.keepEndedMs ?? 24 * 3600_000
  }

  open(meta: RuntimeLogMeta): RuntimeLogHandle {
    this.#prune(meta.tenant, meta.runtimeId)
    const log: Log = { ...meta, startedAt: new Date().toISOString(), droppedBytes: 0, text: '' }
    this.#logs.push(log)
    return {
      write: (_stream, text) => {
        if (log.endedAt) return
        log.text += text
        const over = Buffer.byteLength(log.text) - this.#maxBytes
        if (over > 0) {
          // Cut at a character boundary past the excess (a little more than asked is fine).
          const cut = Math.min(log.text.length, over + 16)
          log.droppedBytes += Buffer.byteLength(log.text.slice(0, cut))
          log.text = log.text.slice(cut)
        }
      },
      end: (why) => {
        if (log.endedAt) return
        log.endedAt = new Date().toISOString()
        log.ended = why
      },
      tail: () => log.text.slice(-4000),
    }
  }

  /** A runtime's logs, newest session first; only `runtimeSessionId`'s when given. */
  read(tenant: string, runtimeId: string, runtimeSessionId?: string): RuntimeLogEntry[] {
    this.#prune(tenant, runtimeId)
    return this.#logs
      .filter((l) => l.tenant === tenant && l.runtimeId === runtimeId && (runtimeSessionId === undefined || l.runtimeSessionId === runtimeSessionId))
      .reverse()
      .map(({ tenant: _t, ...entry }) => ({ ...entry }))
  }

  /** Forgets a deleted runtime's logs. */
  forget(tenant: string, runtimeId: string): void {
    for (let i = this.#logs.length - 1; i >= 0; i--) if (this.#logs[i]!.tenant === tenant && this.#logs[i]!.runtimeId === runtimeId) this.#logs.splice(i, 1)
  }

  #prune(tenant: string, runtimeId: string): void {
    const now = Date.now()
    for (let i = this.#logs.length - 1; i >= 0; i--) {
      const l = this.#logs[i]!
      if (l.endedAt && now - Date.parse(l.endedAt) > this.#keepMs) this.#logs.splice(i, 1)
    }
    const mine = this.#logs.filter((l) => l.tenant === tenant && l.runtimeId === runtimeId)
    let excess = mine.length - (this.#maxSessions - 1)
    for (const l of mine) {
      if (excess <= 0) break
      if (!l.endedAt) continue
      this.#logs.splice(this.#logs.indexOf(l), 1)
      excess--
    }
  }
}
