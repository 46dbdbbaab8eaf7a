/**
 * The audit log: one row per tool call or session action, what was run (size and hash of the
 * code, never the code itself), how long it took and how it ended. Rows are only ever appended.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import type { AuditEntry } from '@codebox/core'
import type { Page } from './sql.ts'
import { checkPageLimit, decodePageToken, encodePageToken, opt } from './sql.ts'
import type { AuditStore } from './types.ts'

export interface ListAuditOptions {
  tenant: string
  /** Only this session's rows, oldest first like a transcript; without it, the tenant's rows newest first. */
  sessionId?: string
  /** Page size, a whole number ≥ 1. */
  limit: number
  nextToken?: string
}

export interface AuditRow {
  id: number
  at: string
  tenant: string
  key_id: string | null
  session_id: string | null
  action: string
  language: string | null
  code_bytes: number | null
  code_sha256: string | null
  exit_code: number | null
  duration_ms: number
  outcome: AuditEntry['outcome']
  detail: string | null
  request_id: string | null
}

export const toEntry = (r: AuditRow): AuditEntry => ({
  id: r.id,
  at: r.at,
  tenant: r.tenant,
  ...opt('keyId', r.key_id),
  ...opt('sessionId', r.session_id),
  action: r.action,
  ...opt('language', r.language),
  ...opt('codeBytes', r.code_bytes),
  ...opt('codeSha256', r.code_sha256),
  ...opt('exitCode', r.exit_code),
  durationMs: r.duration_ms,
  outcome: r.outcome,
  ...opt('detail', r.detail),
  ...opt('requestId', r.request_id),
})

/** Token kinds: the two orders page in opposite directions, so their tokens must not mix. */
export const tenantKind = 'audit'
export const sessionKind = 'audit-session'

/** The append-only audit log, in SQLite. */
/** An entry's columns in the order both stores insert them (at ... request_id). */
export function auditValues(entry: Omit<AuditEntry, 'id'>): (string | number | null)[] {
  return [
    entry.at,
    entry.tenant,
    entry.keyId ?? null,
    entry.sessionId ?? null,
    entry.action,
    entry.language ?? null,
    entry.codeBytes ?? null,
    entry.codeSha256 ?? null,
    entry.exitCode ?? null,
    entry.durationMs,
    entry.outcome,
    entry.detail ?? null,
    entry.requestId ?? null,
  ]
}

export class AuditRepository implements AuditStore {
  readonly #q: Record<'insert' | 'tenantPage' | 'sessionPage', StatementSync>

  constructor(db: DatabaseSync) {
    this.#q = {
      insert: db.prepare(
        `INSERT INTO audit (at, tenant, key_id, session_id, action, language, code_bytes, code_sha256, exit_code, duration_ms, outcome, detail, request_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      tenantPage: db.prepare('SELECT * FROM audit WHERE tenant = :tenant AND id < :after ORDER BY id DESC LIMIT :limit'),
      sessionPage: db.prepare('SELECT * FROM audit WHERE tenant = :tenant AND session_id = :sessionId AND id > :after ORDER BY id LIMIT :limit'),
    }
  }

  /** Appends an entry and returns its id. */
  async record(entry: Omit<AuditEntry, 'id'>): Promise<number> {
    const result = this.#q.insert.run(...auditValues(entry))
    return Number(result.lastInsertRowid)
  }

  /** A page of the tenant's entries: newest first, or oldest first within one session. */
  async list(options: ListAuditOptions): Promise<Page<AuditEntry>> {
    checkPageLimit(options.limit)
    const { tenant, sessionId, limit, nextToken } = options
    const kind = sessionId === undefined ? tenantKind : sessionKind
    const after = nextToken === undefined ? undefined : decodePageToken(kind, nextToken, { id: 'number' }).id
    const rows = (sessionId === undefined
      ? this.#q.tenantPage.all({ tenant, after: after ?? Number.MAX_SAFE_INTEGER, limit: limit + 1 })
      : this.#q.sessionPage.all({ tenant, sessionId, after: after ?? 0, limit: limit + 1 })) as unknown as AuditRow[]
    const items = rows.slice(0, limit).map(toEntry)
    const last = items.at(-1)
    return rows.length > limit && last ? { items, nextToken: encodePageToken(kind, { id: last.id }) } : { items }
  }
}
