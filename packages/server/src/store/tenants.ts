/**
 * Tenants: the unit of isolation (keys, sessions, interpreters and audit rows all belong to one)
 * and the holder of per-tenant quota overrides.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import { CodeboxError, validationError } from '@codebox/core'
import { isoNow, opt, transaction } from './sql.ts'
import type { TenantStore } from './types.ts'

/** A tenant; an absent quota means the server default applies. */
export interface TenantRecord {
  id: string
  createdAt: string
  maxSessions?: number
  startsPerMinute?: number
  invokesPerSecond?: number
  agentTurnsPerMinute?: number
}

/** Quota overrides to change: a number sets one, `null` returns it to the server default, absent leaves it. */
export interface TenantQuotaUpdate {
  maxSessions?: number | null
  startsPerMinute?: number | null
  invokesPerSecond?: number | null
  agentTurnsPerMinute?: number | null
}

/** Tenant ids: lowercase letters, digits, `_` and `-`, starting with a letter or digit, at most 63. */
export const tenantIdPattern = /^[a-z0-9][a-z0-9_-]{0,62}$/

/** Throws a ValidationError on `tenant` unless `id` is a valid tenant id. */
export function checkTenantId(id: string): void {
  if (!tenantIdPattern.test(id)) throw validationError('tenant', 'must be 1-63 lowercase letters, digits, _ or -, starting with a letter or digit')
}

export interface TenantRow {
  id: string
  created_at: string
  max_sessions: number | null
  starts_per_minute: number | null
  invokes_per_second: number | null
  agent_turns_per_minute: number | null
}

export const toRecord = (r: TenantRow): TenantRecord => ({
  id: r.id,
  createdAt: r.created_at,
  ...opt('maxSessions', r.max_sessions),
  ...opt('startsPerMinute', r.starts_per_minute),
  ...opt('invokesPerSecond', r.invokes_per_second),
  ...opt('agentTurnsPerMinute', r.agent_turns_per_minute),
})

/** Tenants and their quota overrides, in SQLite. */
export class TenantRepository implements TenantStore {
  readonly #db: DatabaseSync
  readonly #q: Record<'insert' | 'get' | 'list' | 'setQuotas', StatementSync>

  constructor(db: DatabaseSync) {
    this.#db = db
    this.#q = {
      insert: db.prepare('INSERT INTO tenants (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING'),
      get: db.prepare('SELECT * FROM tenants WHERE id = ?'),
      list: db.prepare('SELECT * FROM tenants ORDER BY id'),
      setQuotas: db.prepare('UPDATE tenants SET max_sessions = ?, starts_per_minute = ?, invokes_per_second = ?, agent_turns_per_minute = ? WHERE id = ?'),
    }
  }

  /** The tenant `id`, created (with server-default quotas) if it does not exist yet. */
  async ensure(id: string): Promise<TenantRecord> {
    return this.ensureSync(id)
  }

  /**
   * `ensure` without the promise, for the other SQLite repositories: their transaction bodies
   * must stay synchronous, so that no other call runs on the connection in the middle of one.
   */
  ensureSync(id: string): TenantRecord {
    checkTenantId(id)
    this.#q.insert.run(id, isoNow())
    return this.#get(id)!
  }

  /** The tenant `id`, or undefined. */
  async get(id: string): Promise<TenantRecord | undefined> {
    return this.#get(id)
  }

  /** Every tenant, by id. */
  async list(): Promise<TenantRecord[]> {
    return (this.#q.list.all() as unknown as TenantRow[]).map(toRecord)
  }

  /** Changes quota overrides of an existing tenant (NotFound otherwise) and returns the result. */
  async setQuotas(id: string, update: TenantQuotaUpdate): Promise<TenantRecord> {
    const maxSessions = checkQuota('maxSessions', update.maxSessions, true)
    const startsPerMinute = checkQuota('startsPerMinute', update.startsPerMinute, true)
    const invokesPerSecond = checkQuota('invokesPerSecond', update.invokesPerSecond, false)
    const agentTurnsPerMinute = checkQuota('agentTurnsPerMinute', update.agentTurnsPerMinute, true)
    return transaction(this.#db, () => {
      const current = this.#get(id)
      if (!current) throw new CodeboxError('NotFound', `No tenant ${id}.`, { details: { tenant: id } })
      const pick = (next: number | null | undefined, now: number | undefined) => (next === undefined ? (now ?? null) : next)
      this.#q.setQuotas.run(
        pick(maxSessions, current.maxSessions),
        pick(startsPerMinute, current.startsPerMinute),
        pick(invokesPerSecond, current.invokesPerSecond),
        pick(agentTurnsPerMinute, current.agentTurnsPerMinute),
        id,
      )
      return this.#get(id)!
    })
  }

  #get(id: string): TenantRecord | undefined {
    const row = this.#q.get.get(id) as TenantRow | undefined
    return row && toRecord(row)
  }
}

/** A quota is a finite number ≥ 0 (an integer for counts); null and undefined pass through. */
export function checkQuota(field: string, value: number | null | undefined, integer: boolean): number | null | undefined {
  if (value === null || value === undefined) return value
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (integer && !Number.isInteger(value))) {
    throw validationError(
      field,
      integer ? 'must be a whole number ≥ 0, or null for the server default' : 'must be a number ≥ 0, or null for the server default',
    )
  }
  return value
}
