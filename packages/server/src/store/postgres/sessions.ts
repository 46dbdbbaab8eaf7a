/**
 * Session records, in PostgreSQL (the SQLite store's sessions.ts has the records and rules). The
 * unique index on (tenant, client_token) makes one of two replicas' concurrent idempotent starts
 * win; the other gets a Conflict and finds the winner by its token.
 */
import type { SessionEndReason } from '@codebox/core'
import { CodeboxError } from '@codebox/core'
import {
  hostedTaken,
  pageKind,
  sessionColumns,
  sessionQuotaExceeded,
  sessionValues,
  toRecord,
  type ListSessionsOptions,
  type SessionRecord,
  type SessionRow,
} from '../sessions.ts'
import { checkPageLimit, decodePageToken, encodePageToken, isoNow, type Page } from '../sql.ts'
import type { SessionStore } from '../types.ts'
import { isUniqueViolation, type Db } from './db.ts'
import { ensureTenant } from './tenants.ts'

/** The class of the advisory locks that serialize one tenant's quota-checked inserts (the key is the tenant's hash). */
const quotaLock = 0x636278 // "cbx"

/** A READY session of the runtime session ($1 tenant, $2 runtime, $3 runtime session id). */
const activeHostedWhere = `tenant = $1 AND runtime_id = $2 AND status = 'READY' AND hosted::jsonb ->> 'runtimeSessionId' = $3`

const end = `status = 'TERMINATED', ended_at = $2, end_reason = $3, last_updated_at = $2`

export class PgSessionRepository implements SessionStore {
  readonly #db: Db

  constructor(db: Db) {
    this.#db = db
  }

  async insert(rec: SessionRecord, options: { maxActive?: number; exclusiveHosted?: boolean } = {}): Promise<void> {
    try {
      await this.#db.tx(async (c) => {
        await ensureTenant(c, rec.tenant)
        const max = options.maxActive
        const exclusive = options.exclusiveHosted === true && rec.runtimeId !== undefined && rec.hosted !== undefined
        // The tenant's lock until commit: two replicas' starts count (and find each other's runtime sessions) one after the other.
        if (max !== undefined || exclusive) await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [quotaLock, rec.tenant])
        // A runtime session served already is the winner's to attach, whatever the quota says.
        if (exclusive) {
          const there = await c.query<{ session_id: string }>(`SELECT session_id FROM sessions WHERE ${activeHostedWhere} LIMIT 1`, [
            rec.tenant,
            rec.runtimeId,
            rec.hosted!.runtimeSessionId,
          ])
          if (there.rows[0]) throw hostedTaken(rec, there.rows[0].session_id)
        }
        if (max !== undefined) {
          const n = (await c.query<{ n: number }>(`SELECT count(*)::int AS n FROM sessions WHERE tenant = $1 AND status = 'READY'`, [rec.tenant])).rows[0]!.n
          if (n >= max) throw sessionQuotaExceeded(rec.tenant, max)
        }
        await c.query(
          `INSERT INTO sessions (${sessionColumns}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`,
          sessionValues(rec),
        )
      })
    } catch (e) {
      if (!isUniqueViolation(e)) throw e
      throw new CodeboxError('Conflict', `A session with id ${rec.sessionId} or the same clientToken already exists.`, { cause: e })
    }
  }

  async get(sessionId: string, tenant: string): Promise<SessionRecord | undefined> {
    return this.#one('SELECT * FROM sessions WHERE session_id = $1 AND tenant = $2', [sessionId, tenant])
  }

  async findByClientToken(tenant: string, clientToken: string): Promise<SessionRecord | undefined> {
    return this.#one('SELECT * FROM sessions WHERE tenant = $1 AND client_token = $2', [tenant, clientToken])
  }

  async activeHosted(tenant: string, runtimeId: string, runtimeSessionId: string): Promise<SessionRecord | undefined> {
    return this.#one(`SELECT * FROM sessions WHERE ${activeHostedWhere} ORDER BY created_at DESC, session_id DESC LIMIT 1`, [
      tenant,
      runtimeId,
      runtimeSessionId,
    ])
  }

  async listActiveHosted(tenant: string, runtimeId?: string): Promise<SessionRecord[]> {
    const rows = await this.#db.query<SessionRow>(
      `SELECT * FROM sessions WHERE tenant = $1 AND runtime_id IS NOT NULL AND ($2::text IS NULL OR runtime_id = $2) AND status = 'READY' ORDER BY created_at, session_id`,
      [tenant, runtimeId ?? null],
    )
    return rows.rows.map(toRecord)
  }

  async setHostedTask(sessionId: string, taskId: string): Promise<void> {
    await this.#db.query(
      `UPDATE sessions SET hosted = (hosted::jsonb || jsonb_build_object('taskId', $1::text))::text WHERE session_id = $2 AND hosted IS NOT NULL`,
      [taskId, sessionId],
    )
  }

  async owner(sessionId: string): Promise<SessionRecord | undefined> {
    return this.#one('SELECT * FROM sessions WHERE session_id = $1', [sessionId])
  }

  async list(options: ListSessionsOptions): Promise<Page<SessionRecord>> {
    checkPageLimit(options.limit)
    const after = options.nextToken === undefined ? undefined : decodePageToken(pageKind, options.nextToken, { c: 'string', s: 'string' })
    const where = ['tenant = $1']
    const values: unknown[] = [options.tenant]
    const add = (sql: (n: number) => string, ...v: unknown[]): void => {
      values.push(...v)
      where.push(sql(values.length - v.length + 1))
    }
    if (options.status !== undefined) add((n) => `status = $${n}`, options.status)
    if (options.interpreterId !== undefined) add((n) => `interpreter_id = $${n}`, options.interpreterId)
    if (options.keyId !== undefined) add((n) => `key_id = $${n}`, options.keyId)
    if (after) add((n) => `(created_at, session_id) < ($${n}, $${n + 1})`, after.c, after.s)
    values.push(options.limit + 1)
    const rows = (
      await this.#db.query<SessionRow>(
        `SELECT * FROM sessions WHERE ${where.join(' AND ')} ORDER BY created_at DESC, session_id DESC LIMIT $${values.length}`,
        values,
      )
    ).rows
    const items = rows.slice(0, options.limit).map(toRecord)
    const last = items.at(-1)
    return rows.length > options.limit && last ? { items, nextToken: encodePageToken(pageKind, { c: last.createdAt, s: last.sessionId }) } : { items }
  }

  async countActive(tenant: string): Promise<number> {
    return (await this.#db.query<{ n: number }>(`SELECT count(*) AS n FROM sessions WHERE tenant = $1 AND status = 'READY'`, [tenant])).rows[0]!.n
  }

  async markTerminated(sessionId: string, reason: SessionEndReason, at: Date = new Date()): Promise<SessionRecord | undefined> {
    await this.#db.query(`UPDATE sessions SET ${end} WHERE session_id = $1 AND status = 'READY'`, [sessionId, isoNow(at), reason])
    return this.owner(sessionId)
  }

  async terminateAllActive(reason: SessionEndReason, at: Date = new Date()): Promise<string[]> {
    const rows = await this.#db.query<{ session_id: string }>(
      `UPDATE sessions SET status = 'TERMINATED', ended_at = $1, end_reason = $2, last_updated_at = $1 WHERE status = 'READY' RETURNING session_id`,
      [isoNow(at), reason],
    )
    return rows.rows.map((r) => r.session_id)
  }

  async listAllActive(): Promise<SessionRecord[]> {
    return (await this.#db.query<SessionRow>(`SELECT * FROM sessions WHERE status = 'READY' ORDER BY created_at, session_id`)).rows.map(toRecord)
  }

  async touch(sessionId: string, at: Date = new Date()): Promise<void> {
    await this.#db.query(`UPDATE sessions SET last_updated_at = $1 WHERE session_id = $2 AND status = 'READY'`, [isoNow(at), sessionId])
  }

  async setLifetime(sessionId: string, maxLifetimeMs: number): Promise<void> {
    await this.#db.query(
      `UPDATE sessions SET limits = (limits::jsonb || jsonb_build_object('maxLifetimeMs', $1::double precision))::text WHERE session_id = $2 AND status = 'READY'`,
      [maxLifetimeMs, sessionId],
    )
  }

  async #one(sql: string, values: unknown[]): Promise<SessionRecord | undefined> {
    const row = (await this.#db.query<SessionRow>(sql, values)).rows[0]
    return row && toRecord(row)
  }
}
