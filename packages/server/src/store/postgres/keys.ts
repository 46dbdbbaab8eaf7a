/** API keys, in PostgreSQL: stored only as the SHA-256 of the secret (the SQLite store's keys.ts has the records and rules). */
import { CodeboxError } from '@codebox/core'
import { keySecretPattern, newKeyId, newKeySecret, sha256Hex } from '../ids.ts'
import { lastUsedResolutionMs, toRecord, type CreateKeyOptions, type CreateKeyResult, type KeyRecord, type KeyRow } from '../keys.ts'
import { isoNow } from '../sql.ts'
import type { KeyStore } from '../types.ts'
import { advisoryWrite, type Db, type Queryable } from './db.ts'
import { ensureTenant } from './tenants.ts'

const columns = 'key_id, tenant, name, prefix, created_at, last_used_at, revoked_at'

async function byId(c: Queryable, keyId: string): Promise<KeyRecord | undefined> {
  const row = (await c.query<KeyRow>(`SELECT ${columns} FROM api_keys WHERE key_id = $1`, [keyId])).rows[0]
  return row && toRecord(row)
}

export class PgKeyRepository implements KeyStore {
  readonly #db: Db

  constructor(db: Db) {
    this.#db = db
  }

  async create(options: CreateKeyOptions): Promise<CreateKeyResult> {
    return this.#db.tx(async (c) => {
      await ensureTenant(c, options.tenant)
      const secret = newKeySecret()
      const keyId = newKeyId()
      await c.query('INSERT INTO api_keys (key_id, tenant, name, prefix, secret_sha256, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [
        keyId,
        options.tenant,
        options.name ?? null,
        secret.slice(0, 12),
        sha256Hex(secret),
        isoNow(),
      ])
      return { secret, record: (await byId(c, keyId))! }
    })
  }

  async authenticate(secret: string, at: Date = new Date()): Promise<KeyRecord | undefined> {
    if (!keySecretPattern.test(secret)) return undefined
    const row = (await this.#db.query<KeyRow>(`SELECT ${columns} FROM api_keys WHERE secret_sha256 = $1`, [sha256Hex(secret)])).rows[0]
    if (!row || row.revoked_at !== null) return undefined
    if (row.last_used_at === null || at.getTime() - Date.parse(row.last_used_at) >= lastUsedResolutionMs) {
      row.last_used_at = isoNow(at)
      // Advisory: a busy or unreachable store must not refuse a valid key it has just read.
      await advisoryWrite(() => this.#db.query('UPDATE api_keys SET last_used_at = $1 WHERE key_id = $2', [row.last_used_at, row.key_id]), this.#db.where)
    }
    return toRecord(row)
  }

  async list(tenant?: string): Promise<KeyRecord[]> {
    const rows =
      tenant === undefined
        ? await this.#db.query<KeyRow>(`SELECT ${columns} FROM api_keys ORDER BY created_at, key_id`)
        : await this.#db.query<KeyRow>(`SELECT ${columns} FROM api_keys WHERE tenant = $1 ORDER BY created_at, key_id`, [tenant])
    return rows.rows.map(toRecord)
  }

  async revoke(keyId: string): Promise<KeyRecord> {
    await this.#db.query('UPDATE api_keys SET revoked_at = $1 WHERE key_id = $2 AND revoked_at IS NULL', [isoNow(), keyId])
    const record = await byId(this.#db, keyId)
    if (!record) throw new CodeboxError('NotFound', `No API key ${keyId}.`, { details: { keyId } })
    return record
  }

  async anyCreated(): Promise<boolean> {
    const r = await this.#db.query<{ n: boolean }>('SELECT (EXISTS (SELECT 1 FROM api_keys) OR EXISTS (SELECT 1 FROM aws_keys)) AS n')
    return r.rows[0]?.n === true
  }

  async activeCount(): Promise<number> {
    return (await this.#db.query<{ n: number }>('SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NULL')).rows[0]!.n
  }
}
