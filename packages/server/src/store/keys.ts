/**
 * API keys. The secret is shown once at creation and stored only as its SHA-256, so a copy of the
 * database does not let anyone call the server; authentication is one indexed lookup by that hash.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import { CodeboxError } from '@codebox/core'
import { advisoryWrite } from './busy.ts'
import { keySecretPattern, newKeyId, newKeySecret, sha256Hex } from './ids.ts'
import { isoNow, opt, transaction } from './sql.ts'
import type { TenantRepository } from './tenants.ts'
import type { KeyStore } from './types.ts'

/** An API key as the store keeps it: everything but the secret. */
export interface KeyRecord {
  keyId: string
  tenant: string
  name?: string
  /** The first 12 characters of the secret (`cbx_` and 8 more), to tell keys apart in listings. */
  prefix: string
  createdAt: string
  lastUsedAt?: string
  revokedAt?: string
}

export interface CreateKeyOptions {
  tenant: string
  name?: string
}

/** A new key: the secret (shown to the user once, never stored) and its record. */
export interface CreateKeyResult {
  secret: string
  record: KeyRecord
}

/** `lastUsedAt` is written at most this often per key, so authentication rarely writes. */
export const lastUsedResolutionMs = 60_000

export interface KeyRow {
  key_id: string
  tenant: string
  name: string | null
  prefix: string
  created_at: string
  last_used_at: string | null
  revoked_at: string | null
}

const columns = 'key_id, tenant, name, prefix, created_at, last_used_at, revoked_at'

export const toRecord = (r: KeyRow): KeyRecord => ({
  keyId: r.key_id,
  tenant: r.tenant,
  ...opt('name', r.name),
  prefix: r.prefix,
  createdAt: r.created_at,
  ...opt('lastUsedAt', r.last_used_at),
  ...opt('revokedAt', r.revoked_at),
})

/** API keys of all tenants, in SQLite. */
export class KeyRepository implements KeyStore {
  readonly #db: DatabaseSync
  readonly #tenants: TenantRepository
  readonly #q: Record<'insert' | 'byHash' | 'byId' | 'list' | 'listTenant' | 'touch' | 'revoke' | 'active' | 'any', StatementSync>

  constructor(db: DatabaseSync, tenants: TenantRepository) {
    this.#db = db
    this.#tenants = tenants
    this.#q = {
      insert: db.prepare('INSERT INTO api_keys (key_id, tenant, name, prefix, secret_sha256, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
      byHash: db.prepare(`SELECT ${columns} FROM api_keys WHERE secret_sha256 = ?`),
      byId: db.prepare(`SELECT ${columns} FROM api_keys WHERE key_id = ?`),
      list: db.prepare(`SELECT ${columns} FROM api_keys ORDER BY created_at, key_id`),
      listTenant: db.prepare(`SELECT ${columns} FROM api_keys WHERE tenant = ? ORDER BY created_at, key_id`),
      touch: db.prepare('UPDATE api_keys SET last_used_at = ? WHERE key_id = ?'),
      revoke: db.prepare('UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL'),
      any: db.prepare('SELECT (EXISTS (SELECT 1 FROM api_keys) OR EXISTS (SELECT 1 FROM aws_keys)) AS n'),
      active: db.prepare('SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NULL'),
    }
  }

  /** Creates a key for `tenant` (creating the tenant too if needed). */
  async create(options: CreateKeyOptions): Promise<CreateKeyResult> {
    return transaction(this.#db, () => {
      this.#tenants.ensureSync(options.tenant)
      const secret = newKeySecret()
      const keyId = newKeyId()
      this.#q.insert.run(keyId, options.tenant, options.name ?? null, secret.slice(0, 12), sha256Hex(secret), isoNow())
      return { secret, record: this.#byId(keyId)! }
    })
  }

  /**
   * The key whose secret is `secret`, or undefined for an unknown, malformed or revoked one.
   * Records the use, at most once per `lastUsedResolutionMs`.
   */
  async authenticate(secret: string, at: Date = new Date()): Promise<KeyRecord | undefined> {
    if (!keySecretPattern.test(secret)) return undefined
    const row = this.#q.byHash.get(sha256Hex(secret)) as KeyRow | undefined
    if (!row || row.revoked_at !== null) return undefined
    if (row.last_used_at === null || at.getTime() - Date.parse(row.last_used_at) >= lastUsedResolutionMs) {
      row.last_used_at = isoNow(at)
      // Advisory: a locked or full store must not refuse a valid key.
      advisoryWrite(() => this.#q.touch.run(row.last_used_at, row.key_id))
    }
    return toRecord(row)
  }

  /** Keys of `tenant`, or of every tenant, oldest first; revoked ones included. */
  async list(tenant?: string): Promise<KeyRecord[]> {
    const rows = tenant === undefined ? this.#q.list.all() : this.#q.listTenant.all(tenant)
    return (rows as unknown as KeyRow[]).map(toRecord)
  }

  /** Revokes a key (NotFound if unknown); revoking again keeps the first `revokedAt`. */
  async revoke(keyId: string): Promise<KeyRecord> {
    this.#q.revoke.run(isoNow(), keyId)
    const record = this.#byId(keyId)
    if (!record) throw new CodeboxError('NotFound', `No API key ${keyId}.`, { details: { keyId } })
    return record
  }

  /** True once any key (API key or SigV4 access key) was ever created, revoked or not: from then on the server requires keys. */
  async anyCreated(): Promise<boolean> {
    return Number((this.#q.any.get() as { n: number }).n) === 1
  }

  /** How many keys are not revoked, across all tenants. */
  async activeCount(): Promise<number> {
    return Number((this.#q.active.get() as { n: number }).n)
  }

  #byId(keyId: string): KeyRecord | undefined {
    const row = this.#q.byId.get(keyId) as KeyRow | undefined
    return row && toRecord(row)
  }
}
