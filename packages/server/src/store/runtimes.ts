/**
 * Hosted agent runtimes: a tenant's named runtime, its immutable numbered versions (settings and a
 * code bundle each), the DEFAULT endpoint (the latest version, or the one a rollback pinned), code
 * bundles kept in the database in chunks (so replicas sharing the store share them) and sealed
 * per-runtime secrets. Deleting a runtime removes its versions, secrets and the bundles no other
 * version uses.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import type { RuntimeLanguage, RuntimeProtocol, SessionLimits } from '@codebox/core'
import { CodeboxError } from '@codebox/core'
import { randomBase62 } from './ids.ts'
import type { InterpreterNetwork } from './interpreters.ts'
import { seal, unseal } from './sealing.ts'
import { isoNow, isUniqueViolation, opt, transaction } from './sql.ts'
import type { TenantRepository } from './tenants.ts'
import type { RuntimeStore } from './types.ts'

/** The settings of one version, immutable once deployed. */
export interface RuntimeSettings {
  /** The file to run, relative to the bundle's root. */
  entrypoint: string
  language: RuntimeLanguage
  protocol: RuntimeProtocol
  network: Pick<InterpreterNetwork, 'mode' | 'allow'>
  idleTimeoutSeconds: number
  maxLifetimeSeconds: number
  /** Sandbox limits of its sessions; a field left out means the server default. */
  limits: Partial<SessionLimits>
}

/** A stored code bundle (a gzipped tar). */
export interface RuntimeBundleRecord {
  bundleId: string
  tenant: string
  sha256: string
  bytes: number
  createdAt: string
}

/** A runtime; `defaultVersion` is what its DEFAULT endpoint serves. */
export interface RuntimeRecord {
  /** `<name>-<10 letters or digits>`, as AWS forms agentRuntimeId. */
  runtimeId: string
  tenant: string
  name: string
  description?: string
  status: 'READY'
  latestVersion: number
  /** Set by a rollback; cleared by the next deploy (DEFAULT then moves to it, as on AWS). */
  pinnedVersion?: number
  /** `pinnedVersion ?? latestVersion`. */
  defaultVersion: number
  createdAt: string
  updatedAt: string
}

/** One immutable version of a runtime. */
export interface RuntimeVersionRecord {
  runtimeId: string
  version: number
  settings: RuntimeSettings
  bundle: RuntimeBundleRecord
  createdAt: string
}

export interface DeployRuntimeOptions {
  tenant: string
  name: string
  /** Replaces the runtime's description when given. */
  description?: string
  bundleId: string
  settings: RuntimeSettings
}

/** A secret as listings show it: its name and when it was set, never the value. */
export interface RuntimeSecretRecord {
  name: string
  updatedAt: string
}

/** Size of one stored chunk of a bundle. */
export const bundleChunkBytes = 8 * 1024 * 1024

export const newBundleId = (): string => `bnd_${randomBase62(20)}`
export const newRuntimeId = (name: string): string => `${name}-${randomBase62(10)}`

export interface RuntimeRow {
  runtime_id: string
  tenant: string
  name: string
  description: string | null
  status: 'READY'
  latest_version: number
  pinned_version: number | null
  created_at: string
  updated_at: string
}

export interface BundleRow {
  bundle_id: string
  tenant: string
  status: 'UPLOADING' | 'READY'
  sha256: string | null
  bytes: number
  created_at: string
}

export interface VersionRow {
  runtime_id: string
  version: number
  settings: string
  bundle_id: string
  created_at: string
}

export const toRuntime = (r: RuntimeRow): RuntimeRecord => ({
  runtimeId: r.runtime_id,
  tenant: r.tenant,
  name: r.name,
  ...opt('description', r.description),
  status: r.status,
  latestVersion: r.latest_version,
  ...opt('pinnedVersion', r.pinned_version),
  defaultVersion: r.pinned_version ?? r.latest_version,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
})

export const toBundle = (r: BundleRow): RuntimeBundleRecord => ({
  bundleId: r.bundle_id,
  tenant: r.tenant,
  sha256: r.sha256 ?? '',
  bytes: r.bytes,
  createdAt: r.created_at,
})

type Query =
  | 'bundleInsert'
  | 'chunkInsert'
  | 'bundleFinish'
  | 'bundleDelete'
  | 'bundleGet'
  | 'chunkGet'
  | 'sweep'
  | 'byId'
  | 'byName'
  | 'list'
  | 'insertRuntime'
  | 'nextVersion'
  | 'insertVersion'
  | 'versions'
  | 'version'
  | 'pin'
  | 'deleteRuntime'
  | 'bundlesOf'
  | 'bundleUnused'
  | 'secretPut'
  | 'secretList'
  | 'secretDelete'
  | 'secretAll'

/** Runtimes, versions, bundles and secrets of all tenants, in SQLite. */
export class RuntimeRepository implements RuntimeStore {
  readonly #db: DatabaseSync
  readonly #tenants: TenantRepository
  readonly #sealingKey: Buffer
  readonly #q: Record<Query, StatementSync>

  constructor(db: DatabaseSync, tenants: TenantRepository, sealingKey: Buffer) {
    this.#db = db
    this.#tenants = tenants
    this.#sealingKey = sealingKey
    this.#q = {
      bundleInsert: db.prepare(`INSERT INTO runtime_bundles (bundle_id, tenant, status, created_at) VALUES (?, ?, 'UPLOADING', ?)`),
      chunkInsert: db.prepare(`INSERT INTO runtime_bundle_chunks (bundle_id, seq, data) VALUES (?, ?, ?)`),
      bundleFinish: db.prepare(`UPDATE runtime_bundles SET status = 'READY', sha256 = ?, bytes = ? WHERE bundle_id = ? AND status = 'UPLOADING'`),
      bundleDelete: db.prepare(`DELETE FROM runtime_bundles WHERE bundle_id = ?`),
      bundleGet: db.prepare(`SELECT * FROM runtime_bundles WHERE bundle_id = ? AND tenant = ? AND status = 'READY'`),
      chunkGet: db.prepare(`SELECT data FROM runtime_bundle_chunks WHERE bundle_id = ? AND seq = ?`),
      sweep: db.prepare(
        `DELETE FROM runtime_bundles WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM runtime_versions v WHERE v.bundle_id = runtime_bundles.bundle_id)`,
      ),
      byId: db.prepare(`SELECT * FROM runtimes WHERE tenant = ? AND runtime_id = ?`),
      byName: db.prepare(`SELECT * FROM runtimes WHERE tenant = ? AND name = ?`),
      list: db.prepare(`SELECT * FROM runtimes WHERE tenant = ? ORDER BY created_at, runtime_id`),
      insertRuntime: db.prepare(
        `INSERT INTO runtimes (runtime_id, tenant, name, description, status, latest_version, created_at, updated_at) VALUES (?, ?, ?, ?, 'READY', 1, ?, ?)`,
      ),
      nextVersion: db.prepare(
        `UPDATE runtimes SET latest_version = latest_version + 1, pinned_version = NULL, description = coalesce(?, description), updated_at = ? WHERE runtime_id = ? RETURNING latest_version`,
      ),
      insertVersion: db.prepare(`INSERT INTO runtime_versions (runtime_id, version, settings, bundle_id, created_at) VALUES (?, ?, ?, ?, ?)`),
      versions: db.prepare(
        `SELECT v.*, b.tenant, b.sha256, b.bytes, b.created_at AS bundle_created_at FROM runtime_versions v JOIN runtime_bundles b USING (bundle_id) WHERE v.runtime_id = ? ORDER BY v.version DESC`,
      ),
      version: db.prepare(
        `SELECT v.*, b.tenant, b.sha256, b.bytes, b.created_at AS bundle_created_at FROM runtime_versions v JOIN runtime_bundles b USING (bundle_id) WHERE v.runtime_id = ? AND v.version = ?`,
      ),
      pin: db.prepare(`UPDATE runtimes SET pinned_version = ?, updated_at = ? WHERE runtime_id = ?`),
      deleteRuntime: db.prepare(`DELETE FROM runtimes WHERE runtime_id = ?`),
      bundlesOf: db.prepare(`SELECT DISTINCT bundle_id FROM runtime_versions WHERE runtime_id = ?`),
      bundleUnused: db.prepare(
        `DELETE FROM runtime_bundles WHERE bundle_id = ? AND NOT EXISTS (SELECT 1 FROM runtime_versions v WHERE v.bundle_id = runtime_bundles.bundle_id)`,
      ),
      secretPut: db.prepare(
        `INSERT INTO runtime_secrets (runtime_id, name, value_sealed, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (runtime_id, name) DO UPDATE SET value_sealed = excluded.value_sealed, updated_at = excluded.updated_at`,
      ),
      secretList: db.prepare(`SELECT name, updated_at FROM runtime_secrets WHERE runtime_id = ? ORDER BY name`),
      secretDelete: db.prepare(`DELETE FROM runtime_secrets WHERE runtime_id = ? AND name = ?`),
      secretAll: db.prepare(`SELECT name, value_sealed FROM runtime_secrets WHERE runtime_id = ? ORDER BY name`),
    }
  }

  /** Starts storing a bundle for `tenant` (creating the tenant if needed); returns its id. */
  async beginBundle(tenant: string): Promise<string> {
    return transaction(this.#db, () => {
      this.#tenants.ensureSync(tenant)
      const bundleId = newBundleId()
      this.#q.bundleInsert.run(bundleId, tenant, isoNow())
      return bundleId
    })
  }

  /** Stores chunk `seq` (0, 1, ...) of a bundle being uploaded. */
  async appendBundleChunk(bundleId: string, seq: number, data: Uint8Array): Promise<void> {
    this.#q.chunkInsert.run(bundleId, seq, data)
  }

  /** Marks an uploaded bundle complete with its digest and size, and returns it. */
  async finishBundle(bundleId: string, tenant: string, sha256: string, bytes: number): Promise<RuntimeBundleRecord> {
    this.#q.bundleFinish.run(sha256, bytes, bundleId)
    const row = this.#q.bundleGet.get(bundleId, tenant) as BundleRow | undefined
    if (!row) throw new CodeboxError('Internal', `bundle ${bundleId} vanished while it was being stored`)
    return toBundle(row)
  }

  /** Removes a bundle and its chunks (an upload that failed). */
  async discardBundle(bundleId: string): Promise<void> {
    this.#q.bundleDelete.run(bundleId)
  }

  /** A complete bundle of `tenant`, or undefined (unknown, another tenant's, or still uploading). */
  async getBundle(bundleId: string, tenant: string): Promise<RuntimeBundleRecord | undefined> {
    const row = this.#q.bundleGet.get(bundleId, tenant) as BundleRow | undefined
    return row && toBundle(row)
  }

  /** Chunk `seq` of a bundle, or undefined past its last chunk. */
  async readBundleChunk(bundleId: string, seq: number): Promise<Uint8Array | undefined> {
    const row = this.#q.chunkGet.get(bundleId, seq) as { data: Uint8Array } | undefined
    return row?.data
  }

  /** Removes bundles created before `before` that no version uses (abandoned uploads); returns how many. */
  async sweepBundles(before: Date): Promise<number> {
    return Number(this.#q.sweep.run(isoNow(before)).changes)
  }

  /** The tenant's runtime with this id or name, or undefined (another tenant's is undefined too). */
  async get(tenant: string, idOrName: string): Promise<RuntimeRecord | undefined> {
    const row = (this.#q.byId.get(tenant, idOrName) ?? this.#q.byName.get(tenant, idOrName)) as RuntimeRow | undefined
    return row && toRuntime(row)
  }

  /** The tenant's runtimes, oldest first. */
  async list(tenant: string): Promise<RuntimeRecord[]> {
    return (this.#q.list.all(tenant) as unknown as RuntimeRow[]).map(toRuntime)
  }

  /**
   * Deploys a bundle: version 1 of a new runtime, or the next version of the tenant's runtime
   * named `name` (its DEFAULT endpoint moves to it, ending a rollback's pin). ValidationError on
   * `bundleId` when the tenant has no such complete bundle.
   */
  async deploy(options: DeployRuntimeOptions): Promise<{ runtime: RuntimeRecord; version: RuntimeVersionRecord }> {
    const { tenant, name } = options
    try {
      return transaction(this.#db, () => {
        this.#tenants.ensureSync(tenant)
        if (!this.#q.bundleGet.get(options.bundleId, tenant)) {
          throw new CodeboxError('ValidationError', `bundleId: no uploaded bundle ${options.bundleId}; upload one with POST /v1/runtime-bundles`, {
            details: { field: 'bundleId' },
          })
        }
        const now = isoNow()
        const existing = this.#q.byName.get(tenant, name) as RuntimeRow | undefined
        let runtimeId: string
        let version: number
        if (existing) {
          runtimeId = existing.runtime_id
          version = Number((this.#q.nextVersion.get(options.description ?? null, now, runtimeId) as { latest_version: number }).latest_version)
        } else {
          runtimeId = newRuntimeId(name)
          version = 1
          this.#q.insertRuntime.run(runtimeId, tenant, name, options.description ?? null, now, now)
        }
        this.#q.insertVersion.run(runtimeId, version, JSON.stringify(options.settings), options.bundleId, now)
        return { runtime: toRuntime(this.#q.byId.get(tenant, runtimeId) as unknown as RuntimeRow), version: this.#version(runtimeId, version)! }
      })
    } catch (e) {
      if (isUniqueViolation(e)) throw new CodeboxError('Conflict', `runtime ${name} was deployed by another request at the same time; deploy again`)
      throw e
    }
  }

  /** Every version of a runtime, newest first. */
  async versions(runtimeId: string): Promise<RuntimeVersionRecord[]> {
    return (this.#q.versions.all(runtimeId) as unknown as (VersionRow & BundleFields)[]).map(toVersion)
  }

  /** One version, or undefined. */
  async version(runtimeId: string, version: number): Promise<RuntimeVersionRecord | undefined> {
    return this.#version(runtimeId, version)
  }

  #version(runtimeId: string, version: number): RuntimeVersionRecord | undefined {
    const row = this.#q.version.get(runtimeId, version) as (VersionRow & BundleFields) | undefined
    return row && toVersion(row)
  }

  /**
   * Points DEFAULT at `version` (NotFound if the runtime has none); pinning the latest version is
   * the same as following the latest.
   */
  async rollback(tenant: string, runtimeId: string, version: number): Promise<RuntimeRecord> {
    return transaction(this.#db, () => {
      const row = this.#q.byId.get(tenant, runtimeId) as RuntimeRow | undefined
      if (!row) throw new CodeboxError('NotFound', `no runtime ${runtimeId}`, { details: { runtimeId } })
      if (!this.#q.version.get(runtimeId, version)) {
        throw new CodeboxError('NotFound', `runtime ${row.name} has no version ${version} (its versions are 1-${row.latest_version})`, {
          details: { runtimeId, version },
        })
      }
      this.#q.pin.run(version === row.latest_version ? null : version, isoNow(), runtimeId)
      return toRuntime(this.#q.byId.get(tenant, runtimeId) as unknown as RuntimeRow)
    })
  }

  /** Deletes a runtime with its versions, secrets and the bundles no other version uses; returns what it was. */
  async delete(tenant: string, runtimeId: string): Promise<RuntimeRecord> {
    return transaction(this.#db, () => {
      const row = this.#q.byId.get(tenant, runtimeId) as RuntimeRow | undefined
      if (!row) throw new CodeboxError('NotFound', `no runtime ${runtimeId}`, { details: { runtimeId } })
      const bundles = (this.#q.bundlesOf.all(runtimeId) as { bundle_id: string }[]).map((b) => b.bundle_id)
      this.#q.deleteRuntime.run(runtimeId)
      for (const b of bundles) this.#q.bundleUnused.run(b)
      return toRuntime(row)
    })
  }

  /** Sets (or replaces) a secret of a runtime, sealed. */
  async putSecret(runtimeId: string, name: string, value: string): Promise<RuntimeSecretRecord> {
    const updatedAt = isoNow()
    this.#q.secretPut.run(runtimeId, name, seal(this.#sealingKey, secretAad(runtimeId, name), value), updatedAt)
    return { name, updatedAt }
  }

  /** The names of a runtime's secrets and when each was set, by name. */
  async listSecrets(runtimeId: string): Promise<RuntimeSecretRecord[]> {
    return (this.#q.secretList.all(runtimeId) as { name: string; updated_at: string }[]).map((r) => ({ name: r.name, updatedAt: r.updated_at }))
  }

  /** Removes a secret; false if there was none of that name. */
  async deleteSecret(runtimeId: string, name: string): Promise<boolean> {
    return Number(this.#q.secretDelete.run(runtimeId, name).changes) > 0
  }

  /** Every secret of a runtime, unsealed: for the host side only, never for an API answer or a log. */
  async secretValues(runtimeId: string): Promise<Record<string, string>> {
    const out: Record<string, string> = {}
    for (const r of this.#q.secretAll.all(runtimeId) as { name: string; value_sealed: string }[]) {
      out[r.name] = unseal(this.#sealingKey, secretAad(runtimeId, r.name), r.value_sealed, `secret ${r.name} of runtime ${runtimeId}`)
    }
    return out
  }
}

/** A secret's sealed value is bound to its runtime and name. */
export const secretAad = (runtimeId: string, name: string): string => `runtime-secret\u0000${runtimeId}\u0000${name}`

export interface BundleFields {
  tenant: string
  sha256: string | null
  bytes: number
  bundle_created_at: string
}

export const toVersion = (r: VersionRow & BundleFields): RuntimeVersionRecord => ({
  runtimeId: r.runtime_id,
  version: r.version,
  settings: JSON.parse(r.settings) as RuntimeSettings,
  bundle: { bundleId: r.bundle_id, tenant: r.tenant, sha256: r.sha256 ?? '', bytes: r.bytes, createdAt: r.bundle_created_at },
  createdAt: r.created_at,
})
