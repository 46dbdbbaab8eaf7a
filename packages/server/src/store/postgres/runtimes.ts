/**
 * Hosted agent runtimes, versions, bundles (chunks as bytea) and sealed secrets, in PostgreSQL
 * (the SQLite store's runtimes.ts has the records and rules). Deploys of one runtime from two
 * replicas are serialized by its row lock; a first deploy of one name by the unique index.
 */
import { CodeboxError } from '@codebox/core'
import {
  newBundleId,
  newRuntimeId,
  secretAad,
  toBundle,
  toRuntime,
  toVersion,
  type BundleFields,
  type BundleRow,
  type DeployRuntimeOptions,
  type RuntimeBundleRecord,
  type RuntimeRecord,
  type RuntimeRow,
  type RuntimeSecretRecord,
  type RuntimeVersionRecord,
  type VersionRow,
} from '../runtimes.ts'
import { seal, unseal } from '../sealing.ts'
import { isoNow } from '../sql.ts'
import type { RuntimeStore } from '../types.ts'
import { isUniqueViolation, type Db, type Queryable } from './db.ts'
import { ensureTenant } from './tenants.ts'

const versionColumns = `v.*, b.tenant, b.sha256, b.bytes, b.created_at AS bundle_created_at`

const readyBundle = async (c: Queryable, bundleId: string, tenant: string): Promise<BundleRow | undefined> =>
  (await c.query<BundleRow>(`SELECT * FROM runtime_bundles WHERE bundle_id = $1 AND tenant = $2 AND status = 'READY'`, [bundleId, tenant])).rows[0]

const runtimeById = async (c: Queryable, tenant: string, runtimeId: string, lock = false): Promise<RuntimeRow | undefined> =>
  (await c.query<RuntimeRow>(`SELECT * FROM runtimes WHERE tenant = $1 AND runtime_id = $2${lock ? ' FOR UPDATE' : ''}`, [tenant, runtimeId])).rows[0]

async function versionOf(c: Queryable, runtimeId: string, version: number): Promise<RuntimeVersionRecord | undefined> {
  const row = (
    await c.query<VersionRow & BundleFields>(
      `SELECT ${versionColumns} FROM runtime_versions v JOIN runtime_bundles b USING (bundle_id) WHERE v.runtime_id = $1 AND v.version = $2`,
      [runtimeId, version],
    )
  ).rows[0]
  return row && toVersion(row)
}

export class PgRuntimeRepository implements RuntimeStore {
  readonly #db: Db
  readonly #sealingKey: Buffer

  constructor(db: Db, sealingKey: Buffer) {
    this.#db = db
    this.#sealingKey = sealingKey
  }

  async beginBundle(tenant: string): Promise<string> {
    return this.#db.tx(async (c) => {
      await ensureTenant(c, tenant)
      const bundleId = newBundleId()
      await c.query(`INSERT INTO runtime_bundles (bundle_id, tenant, status, created_at) VALUES ($1, $2, 'UPLOADING', $3)`, [bundleId, tenant, isoNow()])
      return bundleId
    })
  }

  async appendBundleChunk(bundleId: string, seq: number, data: Uint8Array): Promise<void> {
    await this.#db.query('INSERT INTO runtime_bundle_chunks (bundle_id, seq, data) VALUES ($1, $2, $3)', [
      bundleId,
      seq,
      Buffer.from(data.buffer, data.byteOffset, data.byteLength),
    ])
  }

  async finishBundle(bundleId: string, tenant: string, sha256: string, bytes: number): Promise<RuntimeBundleRecord> {
    await this.#db.query(`UPDATE runtime_bundles SET status = 'READY', sha256 = $1, bytes = $2 WHERE bundle_id = $3 AND status = 'UPLOADING'`, [
      sha256,
      bytes,
      bundleId,
    ])
    const row = await readyBundle(this.#db, bundleId, tenant)
    if (!row) throw new CodeboxError('Internal', `bundle ${bundleId} vanished while it was being stored`)
    return toBundle(row)
  }

  async discardBundle(bundleId: string): Promise<void> {
    await this.#db.query('DELETE FROM runtime_bundles WHERE bundle_id = $1', [bundleId])
  }

  async getBundle(bundleId: string, tenant: string): Promise<RuntimeBundleRecord | undefined> {
    const row = await readyBundle(this.#db, bundleId, tenant)
    return row && toBundle(row)
  }

  async readBundleChunk(bundleId: string, seq: number): Promise<Uint8Array | undefined> {
    return (await this.#db.query<{ data: Buffer }>('SELECT data FROM runtime_bundle_chunks WHERE bundle_id = $1 AND seq = $2', [bundleId, seq])).rows[0]?.data
  }

  async sweepBundles(before: Date): Promise<number> {
    const r = await this.#db.query(
      `DELETE FROM runtime_bundles WHERE created_at < $1 AND NOT EXISTS (SELECT 1 FROM runtime_versions v WHERE v.bundle_id = runtime_bundles.bundle_id)`,
      [isoNow(before)],
    )
    return r.rowCount ?? 0
  }

  async get(tenant: string, idOrName: string): Promise<RuntimeRecord | undefined> {
    const row =
      (await runtimeById(this.#db, tenant, idOrName)) ??
      (await this.#db.query<RuntimeRow>('SELECT * FROM runtimes WHERE tenant = $1 AND name = $2', [tenant, idOrName])).rows[0]
    return row && toRuntime(row)
  }

  async list(tenant: string): Promise<RuntimeRecord[]> {
    return (await this.#db.query<RuntimeRow>('SELECT * FROM runtimes WHERE tenant = $1 ORDER BY created_at, runtime_id', [tenant])).rows.map(toRuntime)
  }

  async deploy(options: DeployRuntimeOptions): Promise<{ runtime: RuntimeRecord; version: RuntimeVersionRecord }> {
    const { tenant, name } = options
    try {
      return await this.#db.tx(async (c) => {
        await ensureTenant(c, tenant)
        if (!(await readyBundle(c, options.bundleId, tenant))) {
          throw new CodeboxError('ValidationError', `bundleId: no uploaded bundle ${options.bundleId}; upload one with POST /v1/runtime-bundles`, {
            details: { field: 'bundleId' },
          })
        }
        const now = isoNow()
        // Deploys of one name are serialized across replicas (an advisory lock for the first one,
        // which has no row to lock yet): each gets the next version.
        await c.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`codebox runtime ${JSON.stringify([tenant, name])}`])
        const existing = (await c.query<RuntimeRow>('SELECT * FROM runtimes WHERE tenant = $1 AND name = $2 FOR UPDATE', [tenant, name])).rows[0]
        let runtimeId: string
        let version: number
        if (existing) {
          runtimeId = existing.runtime_id
          const next = await c.query<{ latest_version: number }>(
            `UPDATE runtimes SET latest_version = latest_version + 1, pinned_version = NULL, description = coalesce($1, description), updated_at = $2
             WHERE runtime_id = $3 RETURNING latest_version`,
            [options.description ?? null, now, runtimeId],
          )
          version = next.rows[0]!.latest_version
        } else {
          runtimeId = newRuntimeId(name)
          version = 1
          await c.query(
            `INSERT INTO runtimes (runtime_id, tenant, name, description, status, latest_version, created_at, updated_at) VALUES ($1, $2, $3, $4, 'READY', 1, $5, $5)`,
            [runtimeId, tenant, name, options.description ?? null, now],
          )
        }
        await c.query('INSERT INTO runtime_versions (runtime_id, version, settings, bundle_id, created_at) VALUES ($1, $2, $3, $4, $5)', [
          runtimeId,
          version,
          JSON.stringify(options.settings),
          options.bundleId,
          now,
        ])
        return { runtime: toRuntime((await runtimeById(c, tenant, runtimeId))!), version: (await versionOf(c, runtimeId, version))! }
      })
    } catch (e) {
      if (isUniqueViolation(e)) throw new CodeboxError('Conflict', `runtime ${name} was deployed by another request at the same time; deploy again`)
      throw e
    }
  }

  async versions(runtimeId: string): Promise<RuntimeVersionRecord[]> {
    const rows = await this.#db.query<VersionRow & BundleFields>(
      `SELECT ${versionColumns} FROM runtime_versions v JOIN runtime_bundles b USING (bundle_id) WHERE v.runtime_id = $1 ORDER BY v.version DESC`,
      [runtimeId],
    )
    return rows.rows.map(toVersion)
  }

  async version(runtimeId: string, version: number): Promise<RuntimeVersionRecord | undefined> {
    return versionOf(this.#db, runtimeId, version)
  }

  async rollback(tenant: string, runtimeId: string, version: number): Promise<RuntimeRecord> {
    return this.#db.tx(async (c) => {
      const row = await runtimeById(c, tenant, runtimeId, true)
      if (!row) throw new CodeboxError('NotFound', `no runtime ${runtimeId}`, { details: { runtimeId } })
      if (!(await versionOf(c, runtimeId, version))) {
        throw new CodeboxError('NotFound', `runtime ${row.name} has no version ${version} (its versions are 1-${row.latest_version})`, {
          details: { runtimeId, version },
        })
      }
      await c.query('UPDATE runtimes SET pinned_version = $1, updated_at = $2 WHERE runtime_id = $3', [
        version === row.latest_version ? null : version,
        isoNow(),
        runtimeId,
      ])
      return toRuntime((await runtimeById(c, tenant, runtimeId))!)
    })
  }

  async delete(tenant: string, runtimeId: string): Promise<RuntimeRecord> {
    return this.#db.tx(async (c) => {
      const row = await runtimeById(c, tenant, runtimeId, true)
      if (!row) throw new CodeboxError('NotFound', `no runtime ${runtimeId}`, { details: { runtimeId } })
      const bundles = (await c.query<{ bundle_id: string }>('SELECT DISTINCT bundle_id FROM runtime_versions WHERE runtime_id = $1', [runtimeId])).rows
      await c.query('DELETE FROM runtimes WHERE runtime_id = $1', [runtimeId])
      for (const b of bundles) {
        await c.query(
          `DELETE FROM runtime_bundles WHERE bundle_id = $1 AND NOT EXISTS (SELECT 1 FROM runtime_versions v WHERE v.bundle_id = runtime_bundles.bundle_id)`,
          [b.bundle_id],
        )
      }
      return toRuntime(row)
    })
  }

  async putSecret(runtimeId: string, name: string, value: string): Promise<RuntimeSecretRecord> {
    const updatedAt = isoNow()
    await this.#db.query(
      `INSERT INTO runtime_secrets (runtime_id, name, value_sealed, updated_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (runtime_id, name) DO UPDATE SET value_sealed = excluded.value_sealed, updated_at = excluded.updated_at`,
      [runtimeId, name, seal(this.#sealingKey, secretAad(runtimeId, name), value), updatedAt],
    )
    return { name, updatedAt }
  }

  async listSecrets(runtimeId: string): Promise<RuntimeSecretRecord[]> {
    const rows = await this.#db.query<{ name: string; updated_at: string }>(
      'SELECT name, updated_at FROM runtime_secrets WHERE runtime_id = $1 ORDER BY name',
      [runtimeId],
    )
    return rows.rows.map((r) => ({ name: r.name, updatedAt: r.updated_at }))
  }

  async deleteSecret(runtimeId: string, name: string): Promise<boolean> {
    return ((await this.#db.query('DELETE FROM runtime_secrets WHERE runtime_id = $1 AND name = $2', [runtimeId, name])).rowCount ?? 0) > 0
  }

  async secretValues(runtimeId: string): Promise<Record<string, string>> {
    const out: Record<string, string> = {}
    const rows = await this.#db.query<{ name: string; value_sealed: string }>(
      'SELECT name, value_sealed FROM runtime_secrets WHERE runtime_id = $1 ORDER BY name',
      [runtimeId],
    )
    for (const r of rows.rows) {
      out[r.name] = unseal(this.#sealingKey, secretAad(runtimeId, r.name), r.value_sealed, `secret ${r.name} of runtime ${runtimeId}`)
    }
    return out
  }
}
