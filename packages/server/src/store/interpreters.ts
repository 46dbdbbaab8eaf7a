/**
 * Interpreters: named session configurations (image and default limits). The built-in ones have no
 * tenant and are visible to everyone; custom ones belong to one tenant. Deleting one only marks it
 * DELETED, so sessions started from it still name a row.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import type { SessionLimits } from '@codebox/core'
import { CodeboxError } from '@codebox/core'
import { newInterpreterId } from './ids.ts'
import { isoNow, isUniqueViolation, opt, transaction } from './sql.ts'
import type { TenantRepository } from './tenants.ts'
import type { InterpreterStore } from './types.ts'

export type InterpreterStatus = 'READY' | 'DELETED'

/**
 * Where sessions of an interpreter may connect (AgentCore's network modes): `SANDBOX` nowhere (the
 * default), `PUBLIC` public addresses through the egress proxy, `VPC` only the `allow` list.
 */
export interface InterpreterNetwork {
  mode: 'SANDBOX' | 'PUBLIC' | 'VPC'
  /** Egress allow-list entries (host, *.domain, IP or CIDR, each with an optional :port); VPC only. */
  allow?: string[]
  /** AgentCore's vpcConfig, kept to echo back; codebox does not use it. */
  vpcConfig?: { securityGroups: string[]; subnets: string[]; requireServiceS3Endpoint?: boolean }
}

/** An interpreter; `tenant` is absent for a built-in (system) one. */
export interface InterpreterRecord {
  interpreterId: string
  tenant?: string
  name: string
  description?: string
  image: string
  /** Default limits of its sessions; a field left out means the server default. */
  limits: Partial<SessionLimits>
  network: InterpreterNetwork
  /** Python modules its sessions import before hand-over; absent means the server's default (`CODEBOX_PRELOAD`). */
  preload?: string[]
  /** The sandbox driver of its sessions; absent means the server's (`CODEBOX_DRIVER`). */
  driver?: string
  tags: Record<string, string>
  /** AgentCore's `executionRoleArn`: kept and returned, not used (codebox has no IAM). */
  executionRoleArn?: string
  status: InterpreterStatus
  createdAt: string
  lastUpdatedAt: string
}

export interface CreateInterpreterOptions {
  tenant: string
  name: string
  description?: string
  image: string
  limits: Partial<SessionLimits>
  network?: InterpreterNetwork
  /** Absent: the server's default preload, whatever it is when a session starts. */
  preload?: string[]
  /** Absent: the server's driver. */
  driver?: string
  tags?: Record<string, string>
  executionRoleArn?: string
  /** Idempotency token: creating again with the same token returns the first interpreter. */
  clientToken?: string
}

/** The id of the built-in interpreter that migration 1 creates. */
export const builtInInterpreterId = 'codebox.v1'

export interface InterpreterRow {
  interpreter_id: string
  tenant: string | null
  name: string
  description: string | null
  image: string
  limits: string
  network: string
  preload: string | null
  driver: string | null
  tags: string
  execution_role_arn: string | null
  status: InterpreterStatus
  created_at: string
  last_updated_at: string
}

export const toRecord = (r: InterpreterRow): InterpreterRecord => ({
  interpreterId: r.interpreter_id,
  ...opt('tenant', r.tenant),
  name: r.name,
  ...opt('description', r.description),
  image: r.image,
  limits: JSON.parse(r.limits) as Partial<SessionLimits>,
  network: JSON.parse(r.network) as InterpreterNetwork,
  ...(r.preload === null ? {} : { preload: JSON.parse(r.preload) as string[] }),
  ...opt('driver', r.driver),
  tags: JSON.parse(r.tags) as Record<string, string>,
  ...opt('executionRoleArn', r.execution_role_arn),
  status: r.status,
  createdAt: r.created_at,
  lastUpdatedAt: r.last_updated_at,
})

const visible = `status = 'READY' AND (tenant IS NULL OR tenant = :tenant)`

/** Built-in and custom interpreters, in SQLite. */
/** A new interpreter's columns in the order both stores insert them (interpreter_id ... last_updated_at). */
export function interpreterValues(id: string, tenant: string, name: string, options: CreateInterpreterOptions, now: string): (string | null)[] {
  return [
    id,
    tenant,
    name,
    options.description ?? null,
    options.image,
    JSON.stringify(options.limits),
    JSON.stringify(options.network ?? { mode: 'SANDBOX' }),
    options.preload === undefined ? null : JSON.stringify(options.preload),
    options.driver ?? null,
    JSON.stringify(options.tags ?? {}),
    options.executionRoleArn ?? null,
    options.clientToken ?? null,
    now,
    now,
  ]
}

export class InterpreterRepository implements InterpreterStore {
  readonly #db: DatabaseSync
  readonly #tenants: TenantRepository
  readonly #q: Record<'get' | 'list' | 'byName' | 'byToken' | 'insert' | 'markDeleted', StatementSync>

  constructor(db: DatabaseSync, tenants: TenantRepository) {
    this.#db = db
    this.#tenants = tenants
    this.#q = {
      get: db.prepare(`SELECT * FROM interpreters WHERE interpreter_id = :id AND ${visible}`),
      list: db.prepare(`SELECT * FROM interpreters WHERE ${visible} ORDER BY tenant IS NOT NULL, created_at, interpreter_id`),
      byName: db.prepare(`SELECT interpreter_id FROM interpreters WHERE tenant = ? AND name = ? AND status = 'READY'`),
      byToken: db.prepare(`SELECT * FROM interpreters WHERE tenant = ? AND client_token = ?`),
      insert: db.prepare(
        `INSERT INTO interpreters (interpreter_id, tenant, name, description, image, limits, network, preload, driver, tags, execution_role_arn, client_token, status, created_at, last_updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'READY', ?, ?)`,
      ),
      markDeleted: db.prepare(`UPDATE interpreters SET status = 'DELETED', last_updated_at = ? WHERE interpreter_id = ?`),
    }
  }

  /** The interpreter `id` if `tenant` may use it: a built-in one or its own, and not deleted. */
  async get(id: string, tenant: string): Promise<InterpreterRecord | undefined> {
    return this.#get(id, tenant)
  }

  #get(id: string, tenant: string): InterpreterRecord | undefined {
    const row = this.#q.get.get({ id, tenant }) as InterpreterRow | undefined
    return row && toRecord(row)
  }

  /** The interpreters `tenant` may use: the built-in ones first, then its own, oldest first. */
  async list(tenant: string): Promise<InterpreterRecord[]> {
    return (this.#q.list.all({ tenant }) as unknown as InterpreterRow[]).map(toRecord)
  }

  /**
   * Creates a custom interpreter; Conflict if `tenant` already has a live one called `name`. With a
   * clientToken used before, returns that interpreter instead (whatever its status now).
   */
  async create(options: CreateInterpreterOptions): Promise<InterpreterRecord> {
    const { tenant, name } = options
    const conflict = () => new CodeboxError('Conflict', `An interpreter named ${name} already exists.`, { details: { name } })
    try {
      return transaction(this.#db, () => {
        this.#tenants.ensureSync(tenant)
        if (options.clientToken !== undefined) {
          const earlier = this.#q.byToken.get(tenant, options.clientToken) as InterpreterRow | undefined
          if (earlier) return toRecord(earlier)
        }
        if (this.#q.byName.get(tenant, name)) throw conflict()
        const id = newInterpreterId(name)
        const now = isoNow()
        this.#q.insert.run(...interpreterValues(id, tenant, name, options, now))
        return this.#get(id, tenant)!
      })
    } catch (e) {
      // The index is the last word if another process created the same name in between.
      throw isUniqueViolation(e) ? conflict() : e
    }
  }

  /**
   * Marks a custom interpreter DELETED and returns it. NotFound for an unknown, deleted or other
   * tenant's id; Conflict for a built-in one.
   */
  async delete(id: string, tenant: string): Promise<InterpreterRecord> {
    return transaction(this.#db, () => {
      const current = this.#get(id, tenant)
      if (!current) throw new CodeboxError('NotFound', `No interpreter ${id}.`, { details: { interpreterId: id } })
      if (current.tenant === undefined) {
        throw new CodeboxError('Conflict', `${id} is a built-in interpreter and cannot be deleted.`, { details: { interpreterId: id } })
      }
      const now = isoNow()
      this.#q.markDeleted.run(now, id)
      return { ...current, status: 'DELETED', lastUpdatedAt: now }
    })
  }
}
