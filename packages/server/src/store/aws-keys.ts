/**
 * SigV4 access-key pairs for the AgentCore-compatible API. SigV4 is an HMAC, so the server needs
 * the secret itself, not a hash: it is stored sealed (AES-256-GCM) under the store's sealing key,
 * a separate file beside the database, so a copy of the database alone does not reveal secrets.
 */
import { randomBytes } from 'node:crypto'
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import { CodeboxError } from '@codebox/core'
import { advisoryWrite } from './busy.ts'
import { randomBase62 } from './ids.ts'
import { seal, unseal } from './sealing.ts'
import { isoNow, opt, transaction } from './sql.ts'
import type { TenantRepository } from './tenants.ts'
import type { AwsKeyStore } from './types.ts'

/** An access key as listings show it: everything but the secret. */
export interface AwsKeyRecord {
  accessKeyId: string
  tenant: string
  name?: string
  createdAt: string
  lastUsedAt?: string
  revokedAt?: string
}

/** A new access-key pair; the secret is shown to the user once. */
export interface CreateAwsKeyResult {
  accessKeyId: string
  secretAccessKey: string
  record: AwsKeyRecord
}

/** The form of a codebox access key id: `CBXA` and 16 characters of [A-Z2-7], 20 in all like AWS's. */
export const accessKeyIdPattern = /^CBXA[A-Z2-7]{16}$/

const base32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
export const newAccessKeyId = (): string => `CBXA${Array.from(randomBytes(16), (b) => base32[b % 32]).join('')}`

export interface Row {
  access_key_id: string
  tenant: string
  name: string | null
  secret_sealed: string
  created_at: string
  last_used_at: string | null
  revoked_at: string | null
}

export const toRecord = (r: Row): AwsKeyRecord => ({
  accessKeyId: r.access_key_id,
  tenant: r.tenant,
  ...opt('name', r.name),
  createdAt: r.created_at,
  ...opt('lastUsedAt', r.last_used_at),
  ...opt('revokedAt', r.revoked_at),
})

/** `lastUsedAt` is written at most this often per key. */
export const lastUsedResolutionMs = 60_000

/** SigV4 access keys of all tenants, in SQLite. */
export class AwsKeyRepository implements AwsKeyStore {
  readonly #db: DatabaseSync
  readonly #tenants: TenantRepository
  readonly #sealingKey: Buffer
  readonly #q: Record<'insert' | 'byId' | 'list' | 'listTenant' | 'touch' | 'revoke' | 'any', StatementSync>

  constructor(db: DatabaseSync, tenants: TenantRepository, sealingKey: Buffer) {
    if (sealingKey.length !== 32) throw new Error('the sealing key must be 32 bytes')
    this.#db = db
    this.#tenants = tenants
    this.#sealingKey = sealingKey
    this.#q = {
      insert: db.prepare('INSERT INTO aws_keys (access_key_id, tenant, name, secret_sealed, created_at) VALUES (?, ?, ?, ?, ?)'),
      byId: db.prepare('SELECT * FROM aws_keys WHERE access_key_id = ?'),
      list: db.prepare('SELECT * FROM aws_keys ORDER BY created_at, access_key_id'),
      listTenant: db.prepare('SELECT * FROM aws_keys WHERE tenant = ? ORDER BY created_at, access_key_id'),
      touch: db.prepare('UPDATE aws_keys SET last_used_at = ? WHERE access_key_id = ?'),
      revoke: db.prepare('UPDATE aws_keys SET revoked_at = ? WHERE access_key_id = ? AND revoked_at IS NULL'),
      any: db.prepare('SELECT EXISTS (SELECT 1 FROM aws_keys) AS n'),
    }
  }

  /** Creates an access-key pair for `tenant` (creating the tenant if needed). */
  async create(options: { tenant: string; name?: string }): Promise<CreateAwsKeyResult> {
    return transaction(this.#db, () => {
      this.#tenants.ensureSync(options.tenant)
      const accessKeyId = newAccessKeyId()
      const secretAccessKey = randomBase62(40)
      this.#q.insert.run(accessKeyId, options.tenant, options.name ?? null, this.#seal(accessKeyId, secretAccessKey), isoNow())
      return { accessKeyId, secretAccessKey, record: toRecord(this.#q.byId.get(accessKeyId) as unknown as Row) }
    })
  }

  /**
   * The key and its secret, for verifying a signature; undefined for an unknown or revoked id.
   * Records the use, at most once a minute.
   */
  async lookup(accessKeyId: string, at: Date = new Date()): Promise<{ record: AwsKeyRecord; secretAccessKey: string } | undefined> {
    if (!accessKeyIdPattern.test(accessKeyId)) return undefined
    const row = this.#q.byId.get(accessKeyId) as Row | undefined
    if (!row || row.revoked_at !== null) return undefined
    if (row.last_used_at === null || at.getTime() - Date.parse(row.last_used_at) >= lastUsedResolutionMs) {
      row.last_used_at = isoNow(at)
      // Advisory: a locked or full store must not refuse a valid key.
      advisoryWrite(() => this.#q.touch.run(row.last_used_at, row.access_key_id))
    }
    return { record: toRecord(row), secretAccessKey: this.#unseal(row.access_key_id, row.secret_sealed) }
  }

  /** Access keys of `tenant`, or of every tenant, oldest first; revoked ones included. */
  async list(tenant?: string): Promise<AwsKeyRecord[]> {
    const rows = tenant === undefined ? this.#q.list.all() : this.#q.listTenant.all(tenant)
    return (rows as unknown as Row[]).map(toRecord)
  }

  /** Revokes a key (NotFound if unknown); revoking again keeps the first `revokedAt`. */
  async revoke(accessKeyId: string): Promise<AwsKeyRecord> {
    this.#q.revoke.run(isoNow(), accessKeyId)
    const row = this.#q.byId.get(accessKeyId) as Row | undefined
    if (!row) throw new CodeboxError('NotFound', `No access key ${accessKeyId}.`, { details: { accessKeyId } })
    return toRecord(row)
  }

  /** True once any access key was ever created. */
  async anyCreated(): Promise<boolean> {
    return Number((this.#q.any.get() as { n: number }).n) === 1
  }

  #seal(accessKeyId: string, secret: string): string {
    return seal(this.#sealingKey, accessKeyId, secret)
  }

  #unseal(accessKeyId: string, sealed: string): string {
    return unseal(this.#sealingKey, accessKeyId, sealed, `access key ${accessKeyId}`)
  }
}
