/**
 * Hosted agents' logs, in PostgreSQL (the SQLite store's runtime-logs.ts has the records and
 * rules): appends to one log are serialized by its row lock, pruning of one runtime's logs by an
 * advisory lock, so replicas sharing a runtime keep each log within its bound.
 */
import {
  dropLeadingBytes,
  keptTail,
  logChunkBytes,
  toLog,
  type ListRuntimeLogsOptions,
  type LogRow,
  type PruneRuntimeLogsOptions,
  type RuntimeLogMeta,
  type RuntimeLogRecord,
} from '../runtime-logs.ts'
import { isoNow } from '../sql.ts'
import type { LogAppendOptions, RuntimeLogStore } from '../types.ts'
import { withoutNul, type Db } from './db.ts'

export class PgRuntimeLogRepository implements RuntimeLogStore {
  readonly #db: Db

  constructor(db: Db) {
    this.#db = db
  }

  async openLog(meta: RuntimeLogMeta, startedAt: Date = new Date()): Promise<void> {
    await this.#db.query(
      `INSERT INTO runtime_logs (session_id, tenant, runtime_id, runtime_session_id, version, started_at) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (session_id) DO NOTHING`,
      [meta.sessionId, meta.tenant, meta.runtimeId, meta.runtimeSessionId, meta.version, isoNow(startedAt)],
    )
  }

  async appendLog(sessionId: string, text: string, options: LogAppendOptions): Promise<boolean> {
    const { maxBytes, collector } = options
    // PostgreSQL text holds no NUL: counted as what is stored (db.ts replaces it the same way).
    text = withoutNul(text)
    return this.#db.tx(async (c) => {
      const row = (
        await c.query<{ bytes: number; dropped_bytes: number; collector: string | null }>(
          'SELECT bytes, dropped_bytes, collector FROM runtime_logs WHERE session_id = $1 FOR UPDATE',
          [sessionId],
        )
      ).rows[0]
      if (!row) return false
      if (collector !== undefined) {
        // Only the collector holding the log's collection writes it (the row lock orders it against a takeover).
        if (row.collector !== collector) return false
        await c.query(
          `UPDATE runtime_logs SET collected_ms = (extract(epoch FROM clock_timestamp()) * 1000)::bigint, stdout_offset = coalesce($1::bigint, stdout_offset), stderr_offset = coalesce($2::bigint, stderr_offset) WHERE session_id = $3`,
          [options.offsets?.stdout ?? null, options.offsets?.stderr ?? null, sessionId],
        )
      }
      const kept = keptTail(text, maxBytes)
      let dropped = row.dropped_bytes + (options.droppedBefore ?? 0) + kept.dropped
      const bytes = kept.bytes
      text = kept.text
      if (bytes > 0) {
        const last = (
          await c.query<{ seq: number; bytes: number }>('SELECT seq, bytes FROM runtime_log_chunks WHERE session_id = $1 ORDER BY seq DESC LIMIT 1', [
            sessionId,
          ])
        ).rows[0]
        if (last && last.bytes + bytes <= logChunkBytes) {
          await c.query('UPDATE runtime_log_chunks SET text = text || $1, bytes = bytes + $2 WHERE session_id = $3 AND seq = $4', [
            text,
            bytes,
            sessionId,
            last.seq,
          ])
        } else {
          await c.query('INSERT INTO runtime_log_chunks (session_id, seq, text, bytes) VALUES ($1, $2, $3, $4)', [
            sessionId,
            last ? last.seq + 1 : 0,
            text,
            bytes,
          ])
        }
      }
      let total = row.bytes + bytes
      while (total > maxBytes) {
        const first = (
          await c.query<{ seq: number; text: string; bytes: number }>(
            'SELECT seq, text, bytes FROM runtime_log_chunks WHERE session_id = $1 ORDER BY seq LIMIT 1',
            [sessionId],
          )
        ).rows[0]
        if (!first) break
        const excess = total - maxBytes
        if (first.bytes <= excess) {
          await c.query('DELETE FROM runtime_log_chunks WHERE session_id = $1 AND seq = $2', [sessionId, first.seq])
          total -= first.bytes
          dropped += first.bytes
        } else {
          const cut = dropLeadingBytes(first.text, excess)
          await c.query('UPDATE runtime_log_chunks SET text = $1, bytes = $2 WHERE session_id = $3 AND seq = $4', [cut.text, cut.bytes, sessionId, first.seq])
          total -= first.bytes - cut.bytes
          dropped += first.bytes - cut.bytes
        }
      }
      await c.query('UPDATE runtime_logs SET bytes = $1, dropped_bytes = $2 WHERE session_id = $3', [total, dropped, sessionId])
      return true
    })
  }

  async claimLog(sessionId: string, collector: string, options: { staleMs: number; force?: boolean }): Promise<{ stdout: number; stderr: number } | undefined> {
    // The lease is timed on the database's clock, which every replica shares.
    const r = await this.#db.query<{ stdout_offset: string; stderr_offset: string }>(
      `UPDATE runtime_logs SET collector = $1, collected_ms = (extract(epoch FROM clock_timestamp()) * 1000)::bigint
       WHERE session_id = $2 AND ended_at IS NULL
         AND ($3 OR collector IS NULL OR collector = $1 OR collected_ms IS NULL OR collected_ms < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $4)
       RETURNING stdout_offset, stderr_offset`,
      [collector, sessionId, options.force === true, options.staleMs],
    )
    const row = r.rows[0]
    return row && { stdout: Number(row.stdout_offset), stderr: Number(row.stderr_offset) }
  }

  async endLog(sessionId: string, reason: string, at: Date = new Date()): Promise<void> {
    await this.#db.query('UPDATE runtime_logs SET ended_at = $1, end_reason = $2 WHERE session_id = $3', [isoNow(at), reason.slice(0, 1000), sessionId])
  }

  async listLogs(options: ListRuntimeLogsOptions): Promise<RuntimeLogRecord[]> {
    const { tenant, runtimeId, runtimeSessionId, limit } = options
    const rows = (
      runtimeSessionId === undefined
        ? await this.#db.query<LogRow>('SELECT * FROM runtime_logs WHERE tenant = $1 AND runtime_id = $2 ORDER BY started_at DESC, log_seq DESC LIMIT $3', [
            tenant,
            runtimeId,
            limit,
          ])
        : await this.#db.query<LogRow>(
            'SELECT * FROM runtime_logs WHERE tenant = $1 AND runtime_id = $2 AND runtime_session_id = $3 ORDER BY started_at DESC, log_seq DESC LIMIT $4',
            [tenant, runtimeId, runtimeSessionId, limit],
          )
    ).rows
    const out: RuntimeLogRecord[] = []
    for (const r of rows) {
      const chunks = await this.#db.query<{ text: string }>('SELECT text FROM runtime_log_chunks WHERE session_id = $1 ORDER BY seq', [r.session_id])
      out.push(toLog(r, chunks.rows.map((c) => c.text).join('')))
    }
    return out
  }

  async pruneLogs(options: PruneRuntimeLogsOptions): Promise<number> {
    return this.#db.tx(async (c) => {
      let removed = (await c.query('DELETE FROM runtime_logs WHERE ended_at IS NOT NULL AND ended_at < $1', [isoNow(options.endedBefore)])).rowCount ?? 0
      const r = options.runtime
      if (r) {
        await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`codebox runtime logs ${JSON.stringify([r.tenant, r.runtimeId])}`])
        // A log whose codebox session is no longer running (its server stopped without ending it) has ended too.
        await c.query(
          `UPDATE runtime_logs SET
             ended_at = coalesce((SELECT s.ended_at FROM sessions s WHERE s.session_id = runtime_logs.session_id), $1),
             end_reason = 'its sandbox ended without its server (' || coalesce((SELECT s.end_reason FROM sessions s WHERE s.session_id = runtime_logs.session_id), 'unknown') || ')'
           WHERE ended_at IS NULL AND tenant = $2 AND runtime_id = $3
             AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.session_id = runtime_logs.session_id AND s.status = 'READY')`,
          [isoNow(), r.tenant, r.runtimeId],
        )
        const n = (await c.query<{ n: number }>('SELECT count(*) AS n FROM runtime_logs WHERE tenant = $1 AND runtime_id = $2', [r.tenant, r.runtimeId]))
          .rows[0]!.n
        if (n > r.keep) {
          const dropped = await c.query(
            `DELETE FROM runtime_logs WHERE session_id IN (
               SELECT session_id FROM runtime_logs WHERE tenant = $1 AND runtime_id = $2 AND ended_at IS NOT NULL ORDER BY ended_at, session_id LIMIT $3)`,
            [r.tenant, r.runtimeId, n - r.keep],
          )
          removed += dropped.rowCount ?? 0
        }
      }
      return removed
    })
  }

  async forgetLogs(tenant: string, runtimeId: string): Promise<void> {
    await this.#db.query('DELETE FROM runtime_logs WHERE tenant = $1 AND runtime_id = $2', [tenant, runtimeId])
  }
}
