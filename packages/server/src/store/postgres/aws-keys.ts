/** SigV4 access-key pairs, in PostgreSQL, the secrets sealed under the store's sealing key (the SQLite store's aws-keys.ts has the records and rules). */
import { CodeboxError } from '@codebox/core'
import { accessKeyIdPattern, lastUsedResolutionMs, newAccessKeyId, toRecord, type AwsKeyRecord, type CreateAwsKeyResult, type Row } from '../aws-keys.ts'
import { randomBase62 } from '../ids.ts'
import { seal, unseal } from '../sealing.ts'
import { isoNow } from '../sql.ts'
import type { AwsKeyStore } from '../types.ts'
import { advisoryWrite, type Db, type Queryable } from './db.ts'
import { ensureTenant } from './tenants.ts'

const byId = async (c: Queryable, accessKeyId: string): Promise<Row | undefined> =>
  (await c.query<Row>('SELECT * FROM aws_keys WHERE access_key_id = $1', [accessKeyId])).rows[0]

export class PgAwsKeyRepository implements AwsKeyStore {
  readonly #db: Db
  readonly #sealingKey: Buffer

  constructor(db: Db, sealingKey: Buffer) {
    if (sealingKey.length !== 32) throw new Error('the sealing key must be 32 bytes')
    this.#db = db
    this.#sealingKey = sealingKey
  }

  async create(options: { tenant: string; name?: string }): Promise<CreateAwsKeyResult> {
    return this.#db.tx(async (c) => {
      await ensureTenant(c, options.tenant)
      const accessKeyId = newAccessKeyId()
      const secretAccessKey = randomBase62(40)
      await c.query('INSERT INTO aws_keys (access_key_id, tenant, name, secret_sealed, created_at) VALUES ($1, $2, $3, $4, $5)', [
        accessKeyId,
        options.tenant,
        options.name ?? null,
        seal(this.#sealingKey, accessKeyId, secretAccessKey),
        isoNow(),
      ])
      return { accessKeyId, secretAccessKey, record: toRecord((await byId(c, accessKeyId))!) }
    })
  }

  async lookup(accessKeyId: string, at: Date = new Date()): Promise<{ record: AwsKeyRecord; secretAccessKey: string } | undefined> {
    if (!accessKeyIdPattern.test(accessKeyId)) return undefined
    const row = await byId(this.#db, accessKeyId)
    if (!row || row.revoked_at !== null) return undefined
    if (row.last_used_at === null || at.getTime() - Date.parse(row.last_used_at) >= lastUsedResolutionMs) {
      row.last_used_at = isoNow(at)
      await advisoryWrite(
        () => this.#db.query('UPDATE aws_keys SET last_used_at = $1 WHERE access_key_id = $2', [row.last_used_at, row.access_key_id]),
        this.#db.where,
      )
    }
    return { record: toRecord(row), secretAccessKey: unseal(this.#sealingKey, row.access_key_id, row.secret_sealed, `access key ${row.access_key_id}`) }
  }

  async list(tenant?: string): Promise<AwsKeyRecord[]> {
    const rows =
      tenant === undefined
        ? await this.#db.query<Row>('SELECT * FROM aws_keys ORDER BY created_at, access_key_id')
        : await this.#db.query<Row>('SELECT * FROM aws_keys WHERE tenant = $1 ORDER BY created_at, access_key_id', [tenant])
    return rows.rows.map(toRecord)
  }

  async revoke(accessKeyId: string): Promise<AwsKeyRecord> {
    await this.#db.query('UPDATE aws_keys SET revoked_at = $1 WHERE access_key_id = $2 AND revoked_at IS NULL', [isoNow(), accessKeyId])
    const row = await byId(this.#db, accessKeyId)
    if (!row) throw new CodeboxError('NotFound', `No access key ${accessKeyId}.`, { details: { accessKeyId } })
    return toRecord(row)
  }

  async anyCreated(): Promise<boolean> {
    return (await this.#db.query<{ n: boolean }>('SELECT EXISTS (SELECT 1 FROM aws_keys) AS n')).rows[0]?.n === true
  }
}
