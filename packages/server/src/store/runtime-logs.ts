/**
 * What hosted agents printed, per runtime session, in the store: one row per runtime session's
 * agent (keyed by the codebox session that ran it) and its text in chunks. The repository keeps
 * each log within the byte bound it is given (the oldest text goes, counted in `droppedBytes`),
 * appends to the last chunk while it is small so a chatty agent makes few rows, and removes what
 * retention and the per-runtime bound say. The text is the agent's (hostile) output: stored and
 * returned as text, never interpreted.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import { isoNow, opt, transaction } from './sql.ts'
import type { LogAppendOptions, RuntimeLogStore } from './types.ts'

/** A chunk grows by appends up to this size; the next flush starts a new one. */
export const logChunkBytes = 64 * 1024

/** What a runtime session's log is about. */
export interface RuntimeLogMeta {
  tenant: string
  runtimeId: string
  runtimeSessionId: string
  /** The codebox session that ran the agent (the log's key). */
  sessionId: string
  version: string
}

/** One runtime session's log as read back. */
export interface RuntimeLogRecord extends RuntimeLogMeta {
  startedAt: string
  endedAt?: string
  /** Why it ended. */
  ended?: string
  /** Bytes dropped from the start to keep within the bound. */
  droppedBytes: number
  text: string
}

export interface ListRuntimeLogsOptions {
  tenant: string
  runtimeId: string
  /** Only this runtime session's logs (one per time its agent was started). */
  runtimeSessionId?: string
  /** At most this many, newest first. */
  limit: number
}

export interface PruneRuntimeLogsOptions {
  /** Logs that ended before this go, whatever their runtime. */
  endedBefore: Date
  /** And within this runtime, the oldest ended logs go until at most `keep` remain (running ones stay). */
  runtime?: { tenant: string; runtimeId: string; keep: number }
}

export interface LogRow {
  session_id: string
  tenant: string
  runtime_id: string
  runtime_session_id: string
  version: string
  started_at: string
  ended_at: string | null
  end_reason: string | null
  bytes: number
  dropped_bytes: number
}

/** A log's row and its text as the store returns it. */
export const toLog = (r: LogRow, text: string): RuntimeLogRecord => ({
  tenant: r.tenant,
  runtimeId: r.runtime_id,
  runtimeSessionId: r.runtime_session_id,
  sessionId: r.session_id,
  version: r.version,
  startedAt: r.started_at,
  ...opt('endedAt', r.ended_at),
  ...opt('ended', r.end_reason),
  droppedBytes: r.dropped_bytes,
  text,
})

type Query =
  | 'insert'
  | 'row'
  | 'lastChunk'
  | 'firstChunk'
  | 'chunkAppend'
  | 'chunkInsert'
  | 'chunkDelete'
  | 'chunkReplace'
  | 'sizes'
  | 'end'
  | 'list'
  | 'listSession'
  | 'chunks'
  | 'expire'
  | 'orphans'
  | 'count'
  | 'dropOldest'
  | 'forget'
  | 'collectorRow'
  | 'collected'
  | 'claim'

/** Hosted agents' logs of all tenants, in SQLite. */
/** What an append of `text` keeps in a log of at most `maxBytes`: its last bytes, and how many went. */
export function keptTail(text: string, maxBytes: number): { text: string; bytes: number; dropped: number } {
  const bytes = Buffer.byteLength(text)
  if (bytes <= maxBytes) return { text, bytes, dropped: 0 }
  const cut = dropLeadingBytes(text, bytes - maxBytes)
  return { text: cut.text, bytes: cut.bytes, dropped: bytes - cut.bytes }
}

export class RuntimeLogRepository implements RuntimeLogStore {
  readonly #db: DatabaseSync
  readonly #q: Record<Query, StatementSync>

  constructor(db: DatabaseSync) {
    this.#db = db
    this.#q = {
      insert: db.prepare(
        `INSERT INTO runtime_logs (session_id, tenant, runtime_id, runtime_session_id, version, started_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (session_id) DO NOTHING`,
      ),
      row: db.prepare(`SELECT bytes, dropped_bytes FROM runtime_logs WHERE session_id = ?`),
      lastChunk: db.prepare(`SELECT seq, bytes FROM runtime_log_chunks WHERE session_id = ? ORDER BY seq DESC LIMIT 1`),
      firstChunk: db.prepare(`SELECT seq, text, bytes FROM runtime_log_chunks WHERE session_id = ? ORDER BY seq LIMIT 1`),
      chunkAppend: db.prepare(`UPDATE runtime_log_chunks SET text = text || ?, bytes = bytes + ? WHERE session_id = ? AND seq = ?`),
      chunkInsert: db.prepare(`INSERT INTO runtime_log_chunks (session_id, seq, text, bytes) VALUES (?, ?, ?, ?)`),
      chunkDelete: db.prepare(`DELETE FROM runtime_log_chunks WHERE session_id = ? AND seq = ?`),
      chunkReplace: db.prepare(`UPDATE runtime_log_chunks SET text = ?, bytes = ? WHERE session_id = ? AND seq = ?`),
      sizes: db.prepare(`UPDATE runtime_logs SET bytes = ?, dropped_bytes = ? WHERE session_id = ?`),
      end: db.prepare(`UPDATE runtime_logs SET ended_at = ?, end_reason = ? WHERE session_id = ?`),
      list: db.prepare(`SELECT * FROM runtime_logs WHERE tenant = ? AND runtime_id = ? ORDER BY started_at DESC, rowid DESC LIMIT ?`),
      listSession: db.prepare(
        `SELECT * FROM runtime_logs WHERE tenant = ? AND runtime_id = ? AND runtime_session_id = ? ORDER BY started_at DESC, rowid DESC LIMIT ?`,
      ),
      chunks: db.prepare(`SELECT text FROM runtime_log_chunks WHERE session_id = ? ORDER BY seq`),
      expire: db.prepare(`DELETE FROM runtime_logs WHERE ended_at IS NOT NULL AND ended_at < ?`),
      // A log whose codebox session is no longer running (its server stopped without ending it) has ended too.
      orphans: db.prepare(
        `UPDATE runtime_logs SET
           ended_at = coalesce((SELECT s.ended_at FROM sessions s WHERE s.session_id = runtime_logs.session_id), ?),
           end_reason = 'its sandbox ended without its server (' || coalesce((SELECT s.end_reason FROM sessions s WHERE s.session_id = runtime_logs.session_id), 'unknown') || ')'
         WHERE ended_at IS NULL AND tenant = ? AND runtime_id = ?
           AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = runtime_logs.session_id AND s.status = 'READY')`,
      ),
      count: db.prepare(`SELECT count(*) AS n FROM runtime_logs WHERE tenant = ? AND runtime_id = ?`),
      dropOldest: db.prepare(
        `DELETE FROM runtime_logs WHERE session_id IN (
           SELECT session_id FROM runtime_logs WHERE tenant = ? AND runtime_id = ? AND ended_at IS NOT NULL ORDER BY ended_at, session_id LIMIT ?)`,
      ),
      forget: db.prepare(`DELETE FROM runtime_logs WHERE tenant = ? AND runtime_id = ?`),
      collectorRow: db.prepare(`SELECT bytes, dropped_bytes, collector FROM runtime_logs WHERE session_id = ?`),
      collected: db.prepare(
        `UPDATE runtime_logs SET collected_ms = ?, stdout_offset = coalesce(?, stdout_offset), stderr_offset = coalesce(?, stderr_offset) WHERE session_id = ?`,
      ),
      claim: db.prepare(
        `UPDATE runtime_logs SET collector = ?, collected_ms = ?
         WHERE session_id = ? AND ended_at IS NULL AND (? OR collector IS NULL OR collector = ? OR collected_ms IS NULL OR collected_ms < ?)
         RETURNING stdout_offset, stderr_offset`,
      ),
    }
  }

  /** Starts a runtime session's log (empty); opening one that exists already keeps it. */
  async openLog(meta: RuntimeLogMeta, startedAt: Date = new Date()): Promise<void> {
    this.#q.insert.run(meta.sessionId, meta.tenant, meta.runtimeId, meta.runtimeSessionId, meta.version, isoNow(startedAt))
  }

  /**
   * Appends `text` to a log and keeps it within `maxBytes` (UTF-8): the oldest text is dropped and
   * counted, with `droppedBefore` (bytes the writer dropped before this flush). A log that is gone
   * (its runtime was deleted, retention took it) ignores the append.
   */
  async appendLog(sessionId: string, text: string, options: LogAppendOptions): Promise<boolean> {
    const { maxBytes, collector } = options
    return transaction(this.#db, () => {
      const row = this.#q.collectorRow.get(sessionId) as { bytes: number; dropped_bytes: number; collector: string | null } | undefined
      if (!row) return false
      if (collector !== undefined) {
        if (row.collector !== collector) return false
        this.#q.collected.run(Date.now(), options.offsets?.stdout ?? null, options.offsets?.stderr ?? null, sessionId)
      }
      const kept = keptTail(text, maxBytes)
      let dropped = row.dropped_bytes + (options.droppedBefore ?? 0) + kept.dropped
      const bytes = kept.bytes
      text = kept.text
      if (bytes > 0) {
        const last = this.#q.lastChunk.get(sessionId) as { seq: number; bytes: number } | undefined
        if (last && last.bytes + bytes <= logChunkBytes) this.#q.chunkAppend.run(text, bytes, sessionId, last.seq)
        else this.#q.chunkInsert.run(sessionId, last ? last.seq + 1 : 0, text, bytes)
      }
      let total = row.bytes + bytes
      while (total > maxBytes) {
        const first = this.#q.firstChunk.get(sessionId) as { seq: number; text: string; bytes: number } | undefined
        if (!first) break
        const excess = total - maxBytes
        if (first.bytes <= excess) {
          this.#q.chunkDelete.run(sessionId, first.seq)
          total -= first.bytes
          dropped += first.bytes
        } else {
          const cut = dropLeadingBytes(first.text, excess)
          this.#q.chunkReplace.run(cut.text, cut.bytes, sessionId, first.seq)
          total -= first.bytes - cut.bytes
          dropped += first.bytes - cut.bytes
        }
      }
      this.#q.sizes.run(total, dropped, sessionId)
      return true
    })
  }

  async claimLog(sessionId: string, collector: string, options: { staleMs: number; force?: boolean }): Promise<{ stdout: number; stderr: number } | undefined> {
    const now = Date.now()
    const r = this.#q.claim.get(collector, now, sessionId, options.force ? 1 : 0, collector, now - options.staleMs) as
      { stdout_offset: number; stderr_offset: number } | undefined
    return r && { stdout: Number(r.stdout_offset), stderr: Number(r.stderr_offset) }
  }

  /** Marks a log ended, with why (replacing what start-up reconciliation may have guessed). */
  async endLog(sessionId: string, reason: string, at: Date = new Date()): Promise<void> {
    this.#q.end.run(isoNow(at), reason.slice(0, 1000), sessionId)
  }

  /** A runtime's logs, newest first, with their text. */
  async listLogs(options: ListRuntimeLogsOptions): Promise<RuntimeLogRecord[]> {
    const { tenant, runtimeId, runtimeSessionId, limit } = options
    const rows = (runtimeSessionId === undefined
      ? this.#q.list.all(tenant, runtimeId, limit)
      : this.#q.listSession.all(tenant, runtimeId, runtimeSessionId, limit)) as unknown as LogRow[]
    return rows.map((r) => toLog(r, (this.#q.chunks.all(r.session_id) as { text: string }[]).map((c) => c.text).join('')))
  }

  /**
   * Retention: removes logs that ended before `endedBefore`; for `runtime`, first marks ended the
   * logs whose codebox session is no longer running (a server that stopped without ending them),
   * then removes its oldest ended logs beyond `keep`. Returns how many logs went.
   */
  async pruneLogs(options: PruneRuntimeLogsOptions): Promise<number> {
    return transaction(this.#db, () => {
      let removed = Number(this.#q.expire.run(isoNow(options.endedBefore)).changes)
      const r = options.runtime
      if (r) {
        this.#q.orphans.run(isoNow(), r.tenant, r.runtimeId)
        const n = Number((this.#q.count.get(r.tenant, r.runtimeId) as { n: number }).n)
        if (n > r.keep) removed += Number(this.#q.dropOldest.run(r.tenant, r.runtimeId, n - r.keep).changes)
      }
      return removed
    })
  }

  /** Removes every log of a runtime (it is being deleted). */
  async forgetLogs(tenant: string, runtimeId: string): Promise<void> {
    this.#q.forget.run(tenant, runtimeId)
  }
}

/** `text` without at least its first `n` UTF-8 bytes, cut at a character boundary, and its size. */
export function dropLeadingBytes(text: string, n: number): { text: string; bytes: number } {
  const buf = Buffer.from(text, 'utf8')
  let i = Math.min(n, buf.length)
  while (i < buf.length && (buf[i]! & 0xc0) === 0x80) i++
  return { text: buf.subarray(i).toString('utf8'), bytes: buf.length - i }
}
