/**
 * Sessions as the server remembers them: who started them, from which interpreter, with which
 * limits, and how they ended. The sandbox itself lives in the SessionManager; this is the record
 * that outlives it (listings, idempotent starts, reconciliation after a restart).
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import type { SessionEndReason, SessionLimits, sessionStatuses } from '@codebox/core'
import { CodeboxError } from '@codebox/core'
import type { Page } from './sql.ts'
import { checkPageLimit, decodePageToken, encodePageToken, isoNow, isUniqueViolation, opt, transaction } from './sql.ts'
import type { InterpreterRecord } from './interpreters.ts'
import type { TenantRepository } from './tenants.ts'
import type { SessionStore } from './types.ts'

export type SessionStatus = (typeof sessionStatuses)[number]

export interface SessionRecord {
  sessionId: string
  tenant: string
  interpreterId: string
  name: string
  status: SessionStatus
  createdAt: string
  lastUpdatedAt: string
  timeoutSeconds: number
  limits: SessionLimits
  clientToken?: string
  /** The API key that started it; absent when the server runs without keys. */
  keyId?: string
  endedAt?: string
  endReason?: SessionEndReason
  /** The sandbox serving it (the driver's id), for a restarted server to re-adopt. */
  sandboxId?: string
  /** Its model gateway (`{}` or `{tag}`), when it was started with one. */
  gateway?: { tag?: string }
  /** The hosted agent runtime it runs, for a runtime session's sandbox (its interpreterId is then the built-in one's). */
  runtimeId?: string
  /** With runtimeId: the runtime session it serves, for a restarted server to serve it again. */
  hosted?: HostedSessionRecord
  /** A session started through the E2B API (apis/e2b): the template it named and its metadata. */
  e2b?: E2bSessionRecord
  /**
   * The replica that started it (CODEBOX_REPLICA_ID): a starting replica re-adopts or ends only its
   * own sessions. Absent for a session recorded before replicas had an identity.
   */
  replicaId?: string
}

/** What the E2B API keeps of a sandbox beyond the session: returned by its getInfo and list, filtered on by list. */
export interface E2bSessionRecord {
  template: string
  metadata: Record<string, string>
  /** The sandbox's own environment variables, sealed by the E2B API (apis/e2b/envs.ts); absent for none. */
  envs?: string
}

/** What a restarted server needs to serve a hosted agent's runtime session again. */
export interface HostedSessionRecord {
  runtimeSessionId: string
  /** The runtime version its agent runs. */
  version: number
  /** The runtime's network (its egress policy is opened again). */
  network: InterpreterRecord['network']
  /** The agent's process (a task of the sandbox), once started. */
  taskId?: string
}

export interface ListSessionsOptions {
  tenant: string
  status?: SessionStatus
  /** Only sessions started from this interpreter. */
  interpreterId?: string
  /** Only sessions started with this key (a hosted agent sees only its own). */
  keyId?: string
  /** Page size, a whole number ≥ 1. */
  limit: number
  nextToken?: string
}

export interface SessionRow {
  session_id: string
  tenant: string
  interpreter_id: string
  name: string
  status: SessionStatus
  created_at: string
  last_updated_at: string
  timeout_seconds: number
  limits: string
  client_token: string | null
  key_id: string | null
  ended_at: string | null
  end_reason: SessionEndReason | null
  sandbox_id: string | null
  gateway: string | null
  runtime_id: string | null
  hosted: string | null
  e2b: string | null
  replica_id: string | null
}

export const toRecord = (r: SessionRow): SessionRecord => ({
  sessionId: r.session_id,
  tenant: r.tenant,
  interpreterId: r.interpreter_id,
  name: r.name,
  status: r.status,
  createdAt: r.created_at,
  lastUpdatedAt: r.last_updated_at,
  timeoutSeconds: r.timeout_seconds,
  limits: JSON.parse(r.limits) as SessionLimits,
  ...opt('clientToken', r.client_token),
  ...opt('keyId', r.key_id),
  ...opt('endedAt', r.ended_at),
  ...opt('endReason', r.end_reason),
  ...opt('sandboxId', r.sandbox_id),
  ...(r.gateway ? { gateway: JSON.parse(r.gateway) as { tag?: string } } : {}),
  ...(r.runtime_id ? { runtimeId: r.runtime_id } : {}),
  ...(r.hosted ? { hosted: JSON.parse(r.hosted) as HostedSessionRecord } : {}),
  ...(r.e2b ? { e2b: JSON.parse(r.e2b) as E2bSessionRecord } : {}),
  ...opt('replicaId', r.replica_id),
})

/** A record's columns in the order both stores insert them (session_id ... e2b, replica_id): sessionColumns. */
export function sessionValues(rec: SessionRecord): (string | number | null)[] {
  return [
    rec.sessionId,
    rec.tenant,
    rec.interpreterId,
    rec.name,
    rec.status,
    rec.createdAt,
    rec.lastUpdatedAt,
    rec.timeoutSeconds,
    JSON.stringify(rec.limits),
    rec.clientToken ?? null,
    rec.keyId ?? null,
    rec.endedAt ?? null,
    rec.endReason ?? null,
    rec.sandboxId ?? null,
    rec.gateway ? JSON.stringify(rec.gateway) : null,
    rec.runtimeId ?? null,
    rec.hosted ? JSON.stringify(rec.hosted) : null,
    rec.e2b ? JSON.stringify(rec.e2b) : null,
    rec.replicaId ?? null,
  ]
}

/** The columns sessionValues fills, in its order. */
export const sessionColumns =
  'session_id, tenant, interpreter_id, name, status, created_at, last_updated_at, timeout_seconds, limits, client_token, key_id, ended_at, end_reason, sandbox_id, gateway, runtime_id, hosted, e2b, replica_id'

export const pageKind = 'sessions'

/** The error of a start past the tenant's quota of running sessions (`max`). */
export function sessionQuotaExceeded(tenant: string, max: number): CodeboxError {
  return new CodeboxError('QuotaExceeded', `tenant ${tenant} has ${max} sessions running, its quota; stop one first`, {
    details: { quota: 'maxSessions', limit: max, retryAfterSeconds: 10 },
  })
}

/** The error of a hosted agent's session whose runtime session another session (`sessionId`) serves already (SessionStore.insert, exclusiveHosted). */
export function hostedTaken(rec: { runtimeId?: string; hosted?: { runtimeSessionId: string } }, sessionId: string): CodeboxError {
  return new CodeboxError(
    'Conflict',
    `runtime session ${JSON.stringify(rec.hosted?.runtimeSessionId)} of runtime ${rec.runtimeId} is served by session ${sessionId} already`,
    {
      details: { sessionId, hostedTaken: true },
    },
  )
}

/** Session records of all tenants, in SQLite; every read that a caller answers with takes the tenant. */
export class SessionRepository implements SessionStore {
  readonly #db: DatabaseSync
  readonly #tenants: TenantRepository
  readonly #q: Record<
    | 'insert'
    | 'get'
    | 'byId'
    | 'byToken'
    | 'list'
    | 'countActive'
    | 'terminate'
    | 'terminateAll'
    | 'allActive'
    | 'touch'
    | 'hostedTask'
    | 'lifetime'
    | 'activeHosted'
    | 'listHosted',
    StatementSync
  >

  constructor(db: DatabaseSync, tenants: TenantRepository) {
    this.#db = db
    this.#tenants = tenants
    const end = `status = 'TERMINATED', ended_at = :at, end_reason = :reason, last_updated_at = :at`
    this.#q = {
      insert: db.prepare(`INSERT INTO sessions (${sessionColumns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      get: db.prepare('SELECT * FROM sessions WHERE session_id = ? AND tenant = ?'),
      byId: db.prepare('SELECT * FROM sessions WHERE session_id = ?'),
      byToken: db.prepare('SELECT * FROM sessions WHERE tenant = ? AND client_token = ?'),
      list: db.prepare(
        `SELECT * FROM sessions
         WHERE tenant = :tenant AND (:status IS NULL OR status = :status) AND (:interpreter IS NULL OR interpreter_id = :interpreter)
           AND (:key IS NULL OR key_id = :key) AND (:afterCreated IS NULL OR (created_at, session_id) < (:afterCreated, :afterId))
         ORDER BY created_at DESC, session_id DESC LIMIT :limit`,
      ),
      countActive: db.prepare(`SELECT count(*) AS n FROM sessions WHERE tenant = ? AND status = 'READY'`),
      terminate: db.prepare(`UPDATE sessions SET ${end} WHERE session_id = :id AND status = 'READY'`),
      terminateAll: db.prepare(`UPDATE sessions SET ${end} WHERE status = 'READY' RETURNING session_id`),
      allActive: db.prepare(`SELECT * FROM sessions WHERE status = 'READY' ORDER BY created_at, session_id`),
      touch: db.prepare(`UPDATE sessions SET last_updated_at = ? WHERE session_id = ? AND status = 'READY'`),
      lifetime: db.prepare(`UPDATE sessions SET limits = json_set(limits, '$.maxLifetimeMs', ?) WHERE session_id = ? AND status = 'READY'`),
      activeHosted: db.prepare(
        `SELECT * FROM sessions WHERE tenant = ? AND runtime_id = ? AND status = 'READY' AND json_extract(hosted, '$.runtimeSessionId') = ?
         ORDER BY created_at DESC, session_id DESC LIMIT 1`,
      ),
      listHosted: db.prepare(
        `SELECT * FROM sessions WHERE tenant = :tenant AND runtime_id IS NOT NULL AND (:runtime IS NULL OR runtime_id = :runtime) AND status = 'READY'
         ORDER BY created_at, session_id`,
      ),
      hostedTask: db.prepare(`UPDATE sessions SET hosted = json_set(hosted, '$.taskId', ?) WHERE session_id = ? AND hosted IS NOT NULL`),
    }
  }

  /** Stores a new session (creating its tenant if needed); Conflict if its id or clientToken is taken, QuotaExceeded past `maxActive`. */
  async insert(rec: SessionRecord, options: { maxActive?: number; exclusiveHosted?: boolean } = {}): Promise<void> {
    try {
      transaction(this.#db, () => {
        this.#tenants.ensureSync(rec.tenant)
        // A runtime session served already is the winner's to attach, whatever the quota says.
        if (options.exclusiveHosted && rec.runtimeId !== undefined && rec.hosted) {
          const there = this.#one(this.#q.activeHosted, rec.tenant, rec.runtimeId, rec.hosted.runtimeSessionId)
          if (there) throw hostedTaken(rec, there.sessionId)
        }
        const max = options.maxActive
        if (max !== undefined && Number((this.#q.countActive.get(rec.tenant) as { n: number }).n) >= max) throw sessionQuotaExceeded(rec.tenant, max)
        this.#q.insert.run(...sessionValues(rec))
      })
    } catch (e) {
      if (!isUniqueViolation(e)) throw e
      throw new CodeboxError('Conflict', `A session with id ${rec.sessionId} or the same clientToken already exists.`, { cause: e })
    }
  }

  /** The session if it belongs to `tenant`; another tenant's session is undefined, like an unknown one. */
  async get(sessionId: string, tenant: string): Promise<SessionRecord | undefined> {
    return this.#one(this.#q.get, sessionId, tenant)
  }

  /** The session `tenant` started with this idempotency token, or undefined. */
  async findByClientToken(tenant: string, clientToken: string): Promise<SessionRecord | undefined> {
    return this.#one(this.#q.byToken, tenant, clientToken)
  }

  async activeHosted(tenant: string, runtimeId: string, runtimeSessionId: string): Promise<SessionRecord | undefined> {
    return this.#one(this.#q.activeHosted, tenant, runtimeId, runtimeSessionId)
  }

  async listActiveHosted(tenant: string, runtimeId?: string): Promise<SessionRecord[]> {
    return (this.#q.listHosted.all({ tenant, runtime: runtimeId ?? null }) as unknown as SessionRow[]).map(toRecord)
  }

  /** Records the process of a hosted agent's session (HostedSessionRecord.taskId). */
  async setHostedTask(sessionId: string, taskId: string): Promise<void> {
    this.#q.hostedTask.run(taskId, sessionId)
  }

  /** The session with this id, whatever its tenant: for the host's own use, never a caller's read. */
  async owner(sessionId: string): Promise<SessionRecord | undefined> {
    return this.#one(this.#q.byId, sessionId)
  }

  /** A page of the tenant's sessions, newest first. */
  async list(options: ListSessionsOptions): Promise<Page<SessionRecord>> {
    checkPageLimit(options.limit)
    const after = options.nextToken === undefined ? undefined : decodePageToken(pageKind, options.nextToken, { c: 'string', s: 'string' })
    const rows = this.#q.list.all({
      tenant: options.tenant,
      status: options.status ?? null,
      interpreter: options.interpreterId ?? null,
      key: options.keyId ?? null,
      afterCreated: after?.c ?? null,
      afterId: after?.s ?? null,
      limit: options.limit + 1,
    }) as unknown as SessionRow[]
    const items = rows.slice(0, options.limit).map(toRecord)
    const last = items.at(-1)
    return rows.length > options.limit && last ? { items, nextToken: encodePageToken(pageKind, { c: last.createdAt, s: last.sessionId }) } : { items }
  }

  /** How many of the tenant's sessions are READY. */
  async countActive(tenant: string): Promise<number> {
    return Number((this.#q.countActive.get(tenant) as { n: number }).n)
  }

  /**
   * Marks a session TERMINATED and returns it; undefined if unknown. A session that has already
   * ended is returned unchanged: the first reason wins.
   */
  async markTerminated(sessionId: string, reason: SessionEndReason, at: Date = new Date()): Promise<SessionRecord | undefined> {
    this.#q.terminate.run({ id: sessionId, reason, at: isoNow(at) })
    return this.#one(this.#q.byId, sessionId)
  }

  /** Ends every READY session with `reason` (start-up reconciliation) and returns their ids. */
  async listAllActive(): Promise<SessionRecord[]> {
    return (this.#q.allActive.all() as unknown as SessionRow[]).map(toRecord)
  }

  async terminateAllActive(reason: SessionEndReason, at: Date = new Date()): Promise<string[]> {
    const rows = this.#q.terminateAll.all({ reason, at: isoNow(at) }) as unknown as { session_id: string }[]
    return rows.map((r) => r.session_id)
  }

  /** Records activity on a READY session (its `lastUpdatedAt`). */
  async touch(sessionId: string, at: Date = new Date()): Promise<void> {
    this.#q.touch.run(isoNow(at), sessionId)
  }

  /** Records a READY session's new lifetime (its `limits.maxLifetimeMs`, from its start), so a restarted server keeps its deadline. */
  async setLifetime(sessionId: string, maxLifetimeMs: number): Promise<void> {
    this.#q.lifetime.run(maxLifetimeMs, sessionId)
  }

  #one(statement: StatementSync, ...params: string[]): SessionRecord | undefined {
    const row = statement.get(...params) as SessionRow | undefined
    return row && toRecord(row)
  }
}
