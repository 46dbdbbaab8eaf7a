/**
 * The embedded SQLite store of the server: one file (WAL mode) holding tenants, API keys,
 * interpreters, session records and the audit log, brought to the current schema on open.
 */
import { createHmac, randomBytes } from 'node:crypto'
import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { AuditRepository } from './audit.ts'
import { busyTimeoutMs, defaultBusyWaitMs, guardRepository } from './busy.ts'
import { AwsKeyRepository } from './aws-keys.ts'
import { ConversationRepository } from './conversations.ts'
import { InterpreterRepository } from './interpreters.ts'
import { KeyRepository } from './keys.ts'
import { migrate } from './migrations.ts'
import { RuntimeLogRepository } from './runtime-logs.ts'
import { RuntimeRepository } from './runtimes.ts'
import { SessionRepository } from './sessions.ts'
import { TenantRepository } from './tenants.ts'
import type { StoreApi } from './types.ts'

/** How long opening (and migrating) waits for another connection's lock: start-up may wait, requests may not. */
const openBusyTimeoutMs = 5000

export interface StoreOptions {
  /** How long a call waits, without blocking the event loop, while another process holds a lock; then 503. Default 2000. */
  busyWaitMs?: number
}

/**
 * The open SQLite store and its repositories. Their methods are asynchronous (the `StoreApi`
 * interface), but each runs its SQL synchronously when called (node:sqlite blocks, briefly), so a
 * transaction never interleaves with another call on the one connection.
 */
export class Store implements StoreApi {
  readonly kind = 'sqlite' as const
  /** The schema version of the database once migrations have run. */
  readonly schemaVersion: number
  readonly tenants: TenantRepository
  readonly keys: KeyRepository
  readonly awsKeys: AwsKeyRepository
  readonly interpreters: InterpreterRepository
  readonly sessions: SessionRepository
  readonly audit: AuditRepository
  /** The agent's conversations and their turns (short-term memory). */
  readonly conversations: ConversationRepository
  /** Hosted agent runtimes, their versions, bundles and secrets. */
  readonly runtimes: RuntimeRepository
  /** Hosted agents' logs, per runtime session. */
  readonly runtimeLogs: RuntimeLogRepository
  readonly #db: DatabaseSync
  readonly #sealingKey: Buffer

  private constructor(db: DatabaseSync, schemaVersion: number, sealingKey: Buffer, guard: { file: string; waitMs: number }) {
    this.#db = db
    this.#sealingKey = sealingKey
    this.schemaVersion = schemaVersion
    const tenants = new TenantRepository(db)
    // Each repository is guarded: a locked or full database is a 503 naming the cause, after a wait that never blocks.
    this.tenants = guardRepository(tenants, guard)
    this.keys = guardRepository(new KeyRepository(db, tenants), guard)
    this.awsKeys = guardRepository(new AwsKeyRepository(db, tenants, sealingKey), guard)
    this.interpreters = guardRepository(new InterpreterRepository(db, tenants), guard)
    this.sessions = guardRepository(new SessionRepository(db, tenants), guard)
    this.audit = guardRepository(new AuditRepository(db), guard)
    this.conversations = guardRepository(new ConversationRepository(db), guard)
    this.runtimes = guardRepository(new RuntimeRepository(db, tenants, sealingKey), guard)
    this.runtimeLogs = guardRepository(new RuntimeLogRepository(db), guard)
  }

  /**
   * Opens (creating if needed) the database at `file` and migrates it to the latest schema;
   * `':memory:'` gives a private in-memory database for tests. A new parent directory gets mode
   * 0700 and the file mode 0600, since it holds every tenant's records. A database from a newer
   * codebox is refused with an Unavailable error. Secrets that must stay readable (SigV4 access
   * keys) are sealed with a key kept in `<file>.key` (created 0600 on first open).
   */
  static open(file: string, options: StoreOptions = {}): Store {
    const inMemory = file === ':memory:'
    if (!inMemory) prepareFile(file)
    const db = new DatabaseSync(file, { enableForeignKeyConstraints: true })
    try {
      db.exec(`PRAGMA busy_timeout = ${openBusyTimeoutMs}`)
      if (!inMemory) db.exec('PRAGMA journal_mode = WAL')
      db.exec('PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON')
      const version = migrate(db)
      db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`)
      const guard = { file, waitMs: options.busyWaitMs ?? defaultBusyWaitMs }
      return new Store(db, version, inMemory ? randomBytes(32) : sealingKey(`${file}.key`), guard)
    } catch (e) {
      db.close()
      throw e
    }
  }

  deriveKey(purpose: string): Buffer {
    return createHmac('sha256', this.#sealingKey).update(`codebox derived key\0${purpose}`).digest()
  }

  /** Closes the database; further calls on the repositories throw. Closing twice is harmless. */
  close(): void {
    if (this.#db.isOpen) this.#db.close()
  }

  [Symbol.dispose](): void {
    this.close()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.close()
  }
}

/** Creates the parent directory (0700) and the file (0600) up front, and tightens a loose file. */
function prepareFile(file: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  closeSync(openSync(file, 'a', 0o600))
  // SQLite gives the -wal and -shm files the mode of the database file, so this covers them too.
  if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600)
}

/** The 32-byte sealing key in `file`, created (0600, exclusively) if it does not exist yet. */
function sealingKey(file: string): Buffer {
  try {
    writeFileSync(file, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' })
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
  }
  const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64')
  if (key.length !== 32) throw new Error(`${file} is not a codebox sealing key (32 bytes, base64)`)
  return key
}
