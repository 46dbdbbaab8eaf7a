/** Tenants and their quota overrides, in PostgreSQL (the SQLite store's tenants.ts has the records and rules). */
import { CodeboxError } from '@codebox/core'
import { isoNow } from '../sql.ts'
import { checkQuota, checkTenantId, toRecord, type TenantQuotaUpdate, type TenantRecord, type TenantRow } from '../tenants.ts'
import type { TenantStore } from '../types.ts'
import type { Db, Queryable } from './db.ts'

/** Creates tenant `id` if it does not exist yet (on `c`, maybe inside a transaction) and returns it. */
export async function ensureTenant(c: Queryable, id: string): Promise<TenantRecord> {
  checkTenantId(id)
  await c.query('INSERT INTO tenants (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING', [id, isoNow()])
  return (await getTenant(c, id))!
}

async function getTenant(c: Queryable, id: string): Promise<TenantRecord | undefined> {
  const row = (await c.query<TenantRow>('SELECT * FROM tenants WHERE id = $1', [id])).rows[0]
  return row && toRecord(row)
}

export class PgTenantRepository implements TenantStore {
  readonly #db: Db

  constructor(db: Db) {
    this.#db = db
  }

  async ensure(id: string): Promise<TenantRecord> {
    return ensureTenant(this.#db, id)
  }

  async get(id: string): Promise<TenantRecord | undefined> {
    return getTenant(this.#db, id)
  }

  async list(): Promise<TenantRecord[]> {
    return (await this.#db.query<TenantRow>('SELECT * FROM tenants ORDER BY id')).rows.map(toRecord)
  }

  async setQuotas(id: string, update: TenantQuotaUpdate): Promise<TenantRecord> {
    const maxSessions = checkQuota('maxSessions', update.maxSessions, true)
    const startsPerMinute = checkQuota('startsPerMinute', update.startsPerMinute, true)
    const invokesPerSecond = checkQuota('invokesPerSecond', update.invokesPerSecond, false)
    const agentTurnsPerMinute = checkQuota('agentTurnsPerMinute', update.agentTurnsPerMinute, true)
    return this.#db.tx(async (c) => {
      const row = (await c.query<TenantRow>('SELECT * FROM tenants WHERE id = $1 FOR UPDATE', [id])).rows[0]
      if (!row) throw new CodeboxError('NotFound', `No tenant ${id}.`, { details: { tenant: id } })
      const current = toRecord(row)
      const pick = (next: number | null | undefined, now: number | undefined) => (next === undefined ? (now ?? null) : next)
      await c.query('UPDATE tenants SET max_sessions = $1, starts_per_minute = $2, invokes_per_second = $3, agent_turns_per_minute = $4 WHERE id = $5', [
        pick(maxSessions, current.maxSessions),
        pick(startsPerMinute, current.startsPerMinute),
        pick(invokesPerSecond, current.invokesPerSecond),
        pick(agentTurnsPerMinute, current.agentTurnsPerMinute),
        id,
      ])
      return (await getTenant(c, id))!
    })
  }
}
