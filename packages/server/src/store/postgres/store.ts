/**
 * The PostgreSQL store, for many replicas sharing one database: the same repositories and
 * records as the SQLite store (`StoreApi`), its schema brought up to date on open (migrations.ts),
 * its secrets sealed with a key every replica is given (CODEBOX_SEALING_KEY or
 * CODEBOX_SEALING_KEY_FILE; see store/open.ts), never one made up per replica.
 */
import { createHmac } from 'node:crypto'
import type { StoreApi } from '../types.ts'
import { PgAuditRepository } from './audit.ts'
import { PgAwsKeyRepository } from './aws-keys.ts'
import { PgConversationRepository } from './conversations.ts'
import { Db, guardPg, pgUnavailable } from './db.ts'
import { PgInterpreterRepository } from './interpreters.ts'
import { PgKeyRepository } from './keys.ts'
import { migratePg } from './migrations.ts'
import { PgRateRepository } from './rates.ts'
import { PgRuntimeLogRepository } from './runtime-logs.ts'
import { PgRuntimeRepository } from './runtimes.ts'
import { PgSessionRepository } from './sessions.ts'
import { PgTenantRepository } from './tenants.ts'

export interface PgStoreOptions {
  /** The 32-byte sealing key shared by every replica. */
  sealingKey: Buffer
  /** How long a statement waits for a lock, and a call retries while the server cannot be reached. Default 2000. */
  busyWaitMs?: number
  /** Connections of this process to the server at most. Default 10. */
  maxConnections?: number
}

export class PgStore implements StoreApi {
  readonly kind = 'postgres' as const
  /** The schema version of the database once migrations have run. */
  readonly schemaVersion: number
  /** The URI without its password. */
  readonly where: string
  readonly tenants: PgTenantRepository
  readonly keys: PgKeyRepository
  readonly awsKeys: PgAwsKeyRepository
  readonly interpreters: PgInterpreterRepository
  readonly sessions: PgSessionRepository
  readonly audit: PgAuditRepository
  readonly conversations: PgConversationRepository
  readonly runtimes: PgRuntimeRepository
  readonly runtimeLogs: PgRuntimeLogRepository
  readonly rates: PgRateRepository
  readonly #db: Db
  readonly #sealingKey: Buffer

  private constructor(db: Db, schemaVersion: number, sealingKey: Buffer) {
    this.#db = db
    this.#sealingKey = sealingKey
    this.schemaVersion = schemaVersion
    this.where = db.where
    this.tenants = guardPg(new PgTenantRepository(db), db)
    this.keys = guardPg(new PgKeyRepository(db), db)
    this.awsKeys = guardPg(new PgAwsKeyRepository(db, sealingKey), db)
    this.interpreters = guardPg(new PgInterpreterRepository(db), db)
    this.sessions = guardPg(new PgSessionRepository(db), db)
    this.audit = guardPg(new PgAuditRepository(db), db)
    this.conversations = guardPg(new PgConversationRepository(db), db)
    this.runtimes = guardPg(new PgRuntimeRepository(db, sealingKey), db)
    this.runtimeLogs = guardPg(new PgRuntimeLogRepository(db), db)
    this.rates = guardPg(new PgRateRepository(db), db)
  }

  /**
   * Connects to the database at `uri` (a libpq URI: `postgresql://user:pass@host:5432/db`, or a
   * unix socket as `postgresql:///db?host=/var/run/postgresql`) and migrates it to the latest
   * schema. An unreachable server is an Unavailable error naming it (without its password); a
   * database from a newer codebox is refused.
   */
  static async open(uri: string, options: PgStoreOptions): Promise<PgStore> {
    if (options.sealingKey.length !== 32) throw new Error('the sealing key must be 32 bytes')
    const db = new Db(uri, { busyWaitMs: options.busyWaitMs ?? 2000, ...(options.maxConnections ? { maxConnections: options.maxConnections } : {}) })
    try {
      const version = await migratePg(db)
      return new PgStore(db, version, options.sealingKey)
    } catch (e) {
      await db.close()
      throw pgUnavailable(e, db.where, 0) ?? e
    }
  }

  /** The pool, for `codebox store migrate` and tests. */
  get db(): Db {
    return this.#db
  }

  deriveKey(purpose: string): Buffer {
    return createHmac('sha256', this.#sealingKey).update(`codebox derived key\0${purpose}`).digest()
  }

  /** Closes every connection; further calls fail (Unavailable). Closing twice is harmless. */
  close(): Promise<void> {
    return this.#db.close()
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }
}
