/** The append-only audit log, in PostgreSQL (the SQLite store's audit.ts has the records and rules). */
import type { AuditEntry } from '@codebox/core'
import { auditValues, sessionKind, tenantKind, toEntry, type AuditRow, type ListAuditOptions } from '../audit.ts'
import { checkPageLimit, decodePageToken, encodePageToken, type Page } from '../sql.ts'
import type { AuditStore } from '../types.ts'
import type { Db } from './db.ts'

export class PgAuditRepository implements AuditStore {
  readonly #db: Db

  constructor(db: Db) {
    this.#db = db
  }

  async record(entry: Omit<AuditEntry, 'id'>): Promise<number> {
    const r = await this.#db.query<{ id: number }>(
      `INSERT INTO audit (at, tenant, key_id, session_id, action, language, code_bytes, code_sha256, exit_code, duration_ms, outcome, detail, request_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id`,
      auditValues(entry),
    )
    return r.rows[0]!.id
  }

  async list(options: ListAuditOptions): Promise<Page<AuditEntry>> {
    checkPageLimit(options.limit)
    const { tenant, sessionId, limit, nextToken } = options
    const kind = sessionId === undefined ? tenantKind : sessionKind
    const after = nextToken === undefined ? undefined : decodePageToken(kind, nextToken, { id: 'number' }).id
    const rows = (
      sessionId === undefined
        ? await this.#db.query<AuditRow>('SELECT * FROM audit WHERE tenant = $1 AND id < $2 ORDER BY id DESC LIMIT $3', [
            tenant,
            after ?? Number.MAX_SAFE_INTEGER,
            limit + 1,
          ])
        : await this.#db.query<AuditRow>('SELECT * FROM audit WHERE tenant = $1 AND session_id = $2 AND id > $3 ORDER BY id LIMIT $4', [
            tenant,
            sessionId,
            after ?? 0,
            limit + 1,
          ])
    ).rows
    const items = rows.slice(0, limit).map(toEntry)
    const last = items.at(-1)
    return rows.length > limit && last ? { items, nextToken: encodePageToken(kind, { id: last.id }) } : { items }
  }
}
