/**
 * Built-in and custom interpreters, in PostgreSQL (the SQLite store's interpreters.ts has the
 * records and rules). Two replicas creating with one clientToken get one interpreter: the unique
 * index decides, and the loser returns the winner's.
 */
import { CodeboxError } from '@codebox/core'
import { newInterpreterId } from '../ids.ts'
import { interpreterValues, toRecord, type CreateInterpreterOptions, type InterpreterRecord, type InterpreterRow } from '../interpreters.ts'
import { isoNow } from '../sql.ts'
import type { InterpreterStore } from '../types.ts'
import { isUniqueViolation, type Db, type Queryable } from './db.ts'
import { ensureTenant } from './tenants.ts'

const visible = `status = 'READY' AND (tenant IS NULL OR tenant = $2)`

async function getVisible(c: Queryable, id: string, tenant: string, lock = false): Promise<InterpreterRecord | undefined> {
  const row = (await c.query<InterpreterRow>(`SELECT * FROM interpreters WHERE interpreter_id = $1 AND ${visible}${lock ? ' FOR UPDATE' : ''}`, [id, tenant]))
    .rows[0]
  return row && toRecord(row)
}

async function byToken(c: Queryable, tenant: string, clientToken: string): Promise<InterpreterRecord | undefined> {
  const row = (await c.query<InterpreterRow>('SELECT * FROM interpreters WHERE tenant = $1 AND client_token = $2', [tenant, clientToken])).rows[0]
  return row && toRecord(row)
}

export class PgInterpreterRepository implements InterpreterStore {
  readonly #db: Db

  constructor(db: Db) {
    this.#db = db
  }

  async get(id: string, tenant: string): Promise<InterpreterRecord | undefined> {
    return getVisible(this.#db, id, tenant)
  }

  async list(tenant: string): Promise<InterpreterRecord[]> {
    const rows = await this.#db.query<InterpreterRow>(
      `SELECT * FROM interpreters WHERE status = 'READY' AND (tenant IS NULL OR tenant = $1) ORDER BY tenant IS NOT NULL, created_at, interpreter_id`,
      [tenant],
    )
    return rows.rows.map(toRecord)
  }

  async create(options: CreateInterpreterOptions): Promise<InterpreterRecord> {
    const { tenant, name } = options
    const conflict = () => new CodeboxError('Conflict', `An interpreter named ${name} already exists.`, { details: { name } })
    try {
      return await this.#db.tx(async (c) => {
        await ensureTenant(c, tenant)
        if (options.clientToken !== undefined) {
          const earlier = await byToken(c, tenant, options.clientToken)
          if (earlier) return earlier
        }
        if ((await c.query(`SELECT 1 FROM interpreters WHERE tenant = $1 AND name = $2 AND status = 'READY'`, [tenant, name])).rowCount) throw conflict()
        const id = newInterpreterId(name)
        const now = isoNow()
        await c.query(
          `INSERT INTO interpreters (interpreter_id, tenant, name, description, image, limits, network, preload, driver, tags, execution_role_arn, client_token, status, created_at, last_updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'READY', $13, $14)`,
          interpreterValues(id, tenant, name, options, now),
        )
        return (await getVisible(c, id, tenant))!
      })
    } catch (e) {
      // Another replica stored the same token in between (the name or token index refused ours, or
      // its name was visible by the time ours was checked): its interpreter is the answer.
      if (options.clientToken !== undefined && (isUniqueViolation(e) || (e instanceof CodeboxError && e.code === 'Conflict'))) {
        const earlier = await byToken(this.#db, tenant, options.clientToken)
        if (earlier) return earlier
      }
      // The index is the last word if another replica created the same name in between.
      throw isUniqueViolation(e) ? conflict() : e
    }
  }

  async delete(id: string, tenant: string): Promise<InterpreterRecord> {
    return this.#db.tx(async (c) => {
      const current = await getVisible(c, id, tenant, true)
      if (!current) throw new CodeboxError('NotFound', `No interpreter ${id}.`, { details: { interpreterId: id } })
      if (current.tenant === undefined) {
        throw new CodeboxError('Conflict', `${id} is a built-in interpreter and cannot be deleted.`, { details: { interpreterId: id } })
      }
      const now = isoNow()
      await c.query(`UPDATE interpreters SET status = 'DELETED', last_updated_at = $1 WHERE interpreter_id = $2`, [now, id])
      return { ...current, status: 'DELETED', lastUpdatedAt: now }
    })
  }
}
