/**
 * The store as its callers see it: one interface per repository, every method asynchronous, so a
 * second backend (PostgreSQL, for many replicas) can stand in for the embedded SQLite store. The
 * server and the CLI type against these; `Store` (store.ts) is the SQLite implementation.
 */
import type { AuditEntry, SessionEndReason } from '@codebox/core'
import type { ListAuditOptions } from './audit.ts'
import type { AwsKeyRecord, CreateAwsKeyResult } from './aws-keys.ts'
import type { ConversationStore } from './conversations.ts'
import type { CreateInterpreterOptions, InterpreterRecord } from './interpreters.ts'
import type { CreateKeyOptions, CreateKeyResult, KeyRecord } from './keys.ts'
import type { ListSessionsOptions, SessionRecord } from './sessions.ts'
import type { DeployRuntimeOptions, RuntimeBundleRecord, RuntimeRecord, RuntimeSecretRecord, RuntimeVersionRecord } from './runtimes.ts'
import type { ListRuntimeLogsOptions, PruneRuntimeLogsOptions, RuntimeLogMeta, RuntimeLogRecord } from './runtime-logs.ts'
import type { Page } from './sql.ts'
import type { TenantQuotaUpdate, TenantRecord } from './tenants.ts'

/** Tenants and their quota overrides. */
export interface TenantStore {
  /** The tenant `id`, created (with server-default quotas) if it does not exist yet; ValidationError for a malformed id. */
  ensure(id: string): Promise<TenantRecord>
  /** The tenant `id`, or undefined. */
  get(id: string): Promise<TenantRecord | undefined>
  /** Every tenant, by id. */
  list(): Promise<TenantRecord[]>
  /** Changes quota overrides of an existing tenant (NotFound otherwise) and returns the result. */
  setQuotas(id: string, update: TenantQuotaUpdate): Promise<TenantRecord>
}

/** API keys of all tenants, kept as hashes. */
export interface KeyStore {
  /** Creates a key for `tenant` (creating the tenant too if needed); the secret is returned once. */
  create(options: CreateKeyOptions): Promise<CreateKeyResult>
  /** The key whose secret is `secret`, or undefined for an unknown, malformed or revoked one; records the use. */
  authenticate(secret: string, at?: Date): Promise<KeyRecord | undefined>
  /** Keys of `tenant`, or of every tenant, oldest first; revoked ones included. */
  list(tenant?: string): Promise<KeyRecord[]>
  /** Revokes a key (NotFound if unknown); revoking again keeps the first `revokedAt`. */
  revoke(keyId: string): Promise<KeyRecord>
  /** True once any key (API key or SigV4 access key) was ever created: from then on the server requires keys. */
  anyCreated(): Promise<boolean>
  /** How many API keys are not revoked, across all tenants. */
  activeCount(): Promise<number>
}

/** SigV4 access-key pairs of all tenants, the secrets kept sealed. */
export interface AwsKeyStore {
  /** Creates an access-key pair for `tenant` (creating the tenant if needed); the secret is returned once. */
  create(options: { tenant: string; name?: string }): Promise<CreateAwsKeyResult>
  /** The key and its secret, for verifying a signature; undefined for an unknown or revoked id. Records the use. */
  lookup(accessKeyId: string, at?: Date): Promise<{ record: AwsKeyRecord; secretAccessKey: string } | undefined>
  /** Access keys of `tenant`, or of every tenant, oldest first; revoked ones included. */
  list(tenant?: string): Promise<AwsKeyRecord[]>
  /** Revokes a key (NotFound if unknown); revoking again keeps the first `revokedAt`. */
  revoke(accessKeyId: string): Promise<AwsKeyRecord>
  /** True once any access key was ever created. */
  anyCreated(): Promise<boolean>
}

/** Built-in and custom interpreters. */
export interface InterpreterStore {
  /** The interpreter `id` if `tenant` may use it: a built-in one or its own, and not deleted. */
  get(id: string, tenant: string): Promise<InterpreterRecord | undefined>
  /** The interpreters `tenant` may use: the built-in ones first, then its own, oldest first. */
  list(tenant: string): Promise<InterpreterRecord[]>
  /** Creates a custom interpreter; Conflict on a live name; a clientToken used before returns that interpreter. */
  create(options: CreateInterpreterOptions): Promise<InterpreterRecord>
  /** Marks a custom interpreter DELETED; NotFound for unknown or foreign ids, Conflict for a built-in one. */
  delete(id: string, tenant: string): Promise<InterpreterRecord>
}

/** Session records of all tenants; every read a caller answers with takes the tenant. */
export interface SessionStore {
  /**
   * Stores a new session (creating its tenant if needed); Conflict if its id or clientToken is
   * taken. With `maxActive`, QuotaExceeded when the tenant has that many READY sessions already,
   * counted and inserted at once (on PostgreSQL under the tenant's lock, so replicas starting
   * sessions together never pass the quota). With `exclusiveHosted`, a hosted agent's session
   * whose runtime session has a READY session already is refused (Conflict, `details.sessionId`
   * the one there), checked and inserted at once too: of replicas launching one runtime session
   * together, one wins. That check comes before the quota's: a loser at the tenant's quota learns
   * of the winner's session (to attach it), not of the quota.
   */
  insert(record: SessionRecord, options?: { maxActive?: number; exclusiveHosted?: boolean }): Promise<void>
  /**
   * The READY session serving a hosted agent's runtime session (tenant, runtime, runtime session
   * id), newest first if there were several; undefined when there is none. With replicas, the
   * store is where one finds a runtime session another replica started.
   */
  activeHosted(tenant: string, runtimeId: string, runtimeSessionId: string): Promise<SessionRecord | undefined>
  /** The READY sessions of hosted agents of a tenant (of one runtime, given one), oldest first. */
  listActiveHosted(tenant: string, runtimeId?: string): Promise<SessionRecord[]>
  /** The session if it belongs to `tenant`; another tenant's session is undefined, like an unknown one. */
  get(sessionId: string, tenant: string): Promise<SessionRecord | undefined>
  /** The session `tenant` started with this idempotency token, or undefined. */
  findByClientToken(tenant: string, clientToken: string): Promise<SessionRecord | undefined>
  /** Records the process of a hosted agent's session (HostedSessionRecord.taskId). */
  setHostedTask(sessionId: string, taskId: string): Promise<void>
  /** The session with this id, whatever its tenant: for the host's own use (who a sandbox's gateway call comes from), never a caller's read. */
  owner(sessionId: string): Promise<SessionRecord | undefined>
  /** A page of the tenant's sessions, newest first. */
  list(options: ListSessionsOptions): Promise<Page<SessionRecord>>
  /** How many of the tenant's sessions are READY. */
  countActive(tenant: string): Promise<number>
  /** Marks a session TERMINATED and returns it (undefined if unknown); an ended session keeps its first reason. */
  markTerminated(sessionId: string, reason: SessionEndReason, at?: Date): Promise<SessionRecord | undefined>
  /** Ends every READY session with `reason` (start-up reconciliation) and returns their ids. */
  terminateAllActive(reason: SessionEndReason, at?: Date): Promise<string[]>
  /** Every READY session of every tenant (start-up: the sessions to re-adopt). */
  listAllActive(): Promise<SessionRecord[]>
  /** Records activity on a READY session (its `lastUpdatedAt`). */
  touch(sessionId: string, at?: Date): Promise<void>
  /** Records a READY session's new lifetime (`limits.maxLifetimeMs`, from its start). */
  setLifetime(sessionId: string, maxLifetimeMs: number): Promise<void>
}

/**
 * Token buckets every replica takes from (PostgreSQL): a tenant's rate is the same whichever
 * replica it reaches, and however many there are. Counted on the database's clock.
 */
export interface RateStore {
  /**
   * Takes one token from bucket `key` (created full), which holds at most `burst` tokens and gains
   * `perSecond` a second. Returns whether a token was taken, and the tokens left.
   */
  take(key: string, spec: { perSecond: number; burst: number }): Promise<{ taken: boolean; tokens: number }>
}

/** The append-only audit log. */
export interface AuditStore {
  /** Appends an entry and returns its id. */
  record(entry: Omit<AuditEntry, 'id'>): Promise<number>
  /** A page of the tenant's entries: newest first, or oldest first within one session. */
  list(options: ListAuditOptions): Promise<Page<AuditEntry>>
}

/** Hosted agent runtimes, their versions, code bundles (chunked in the database) and sealed secrets. */
export interface RuntimeStore {
  /** Starts storing a bundle for `tenant` (creating the tenant if needed); returns its id. */
  beginBundle(tenant: string): Promise<string>
  /** Stores chunk `seq` (0, 1, ...) of a bundle being uploaded. */
  appendBundleChunk(bundleId: string, seq: number, data: Uint8Array): Promise<void>
  /** Marks an uploaded bundle complete with its digest and size. */
  finishBundle(bundleId: string, tenant: string, sha256: string, bytes: number): Promise<RuntimeBundleRecord>
  /** Removes a bundle and its chunks. */
  discardBundle(bundleId: string): Promise<void>
  /** A complete bundle of `tenant`, or undefined. */
  getBundle(bundleId: string, tenant: string): Promise<RuntimeBundleRecord | undefined>
  /** Chunk `seq` of a bundle, or undefined past its last one. */
  readBundleChunk(bundleId: string, seq: number): Promise<Uint8Array | undefined>
  /** Removes bundles created before `before` that no version uses; returns how many. */
  sweepBundles(before: Date): Promise<number>
  /** The tenant's runtime with this id or name; another tenant's is undefined, like an unknown one. */
  get(tenant: string, idOrName: string): Promise<RuntimeRecord | undefined>
  /** The tenant's runtimes, oldest first. */
  list(tenant: string): Promise<RuntimeRecord[]>
  /** Version 1 of a new runtime, or the next version of the tenant's runtime of that name (DEFAULT moves to it). */
  deploy(options: DeployRuntimeOptions): Promise<{ runtime: RuntimeRecord; version: RuntimeVersionRecord }>
  /** Every version, newest first. */
  versions(runtimeId: string): Promise<RuntimeVersionRecord[]>
  /** One version, or undefined. */
  version(runtimeId: string, version: number): Promise<RuntimeVersionRecord | undefined>
  /** Pins DEFAULT to `version` (NotFound for an unknown runtime or version). */
  rollback(tenant: string, runtimeId: string, version: number): Promise<RuntimeRecord>
  /** Deletes a runtime with its versions, secrets and unshared bundles (NotFound if unknown). */
  delete(tenant: string, runtimeId: string): Promise<RuntimeRecord>
  /** Sets or replaces a secret (sealed). */
  putSecret(runtimeId: string, name: string, value: string): Promise<RuntimeSecretRecord>
  /** Names and times of a runtime's secrets, never values. */
  listSecrets(runtimeId: string): Promise<RuntimeSecretRecord[]>
  /** Removes a secret; false if there was none. */
  deleteSecret(runtimeId: string, name: string): Promise<boolean>
  /** Every secret of a runtime, unsealed (host side only). */
  secretValues(runtimeId: string): Promise<Record<string, string>>
}

/** An append to a runtime session's log: its bound, and (with replicas) who collects it and how far. */
export interface LogAppendOptions {
  maxBytes: number
  droppedBefore?: number
  collector?: string
  offsets?: { stdout: number; stderr: number }
}

/** What hosted agents printed, per runtime session, bounded by the caller's limits (store/runtime-logs.ts). */
export interface RuntimeLogStore {
  /** Starts a runtime session's log; an existing one is kept. */
  openLog(meta: RuntimeLogMeta, startedAt?: Date): Promise<void>
  /**
   * Appends text, keeping the log's last `maxBytes` (what goes is counted); a log that is gone
   * ignores it. With `collector`, only that collector's append is taken (false when another one
   * holds the log's collection now, or the log is gone): it records `offsets` (where in the
   * agent's output the log has reached; kept as they were without) and renews the collector's lease.
   */
  appendLog(sessionId: string, text: string, options: LogAppendOptions): Promise<boolean>
  /**
   * Takes the collection of a running agent's output for `collector`: granted when no one holds
   * it, `collector` holds it already, its holder's lease was not renewed for `staleMs` (that
   * replica is gone), or with `force`. Resolves with the offsets the log has reached (where to
   * collect on from), or undefined when another collector holds it (or the log is gone).
   */
  claimLog(sessionId: string, collector: string, options: { staleMs: number; force?: boolean }): Promise<{ stdout: number; stderr: number } | undefined>
  /** Marks a log ended, with why. */
  endLog(sessionId: string, reason: string, at?: Date): Promise<void>
  /** A runtime's logs with their text, newest first. */
  listLogs(options: ListRuntimeLogsOptions): Promise<RuntimeLogRecord[]>
  /** Removes expired logs, and a runtime's oldest ended ones beyond its bound; returns how many went. */
  pruneLogs(options: PruneRuntimeLogsOptions): Promise<number>
  /** Removes every log of a runtime. */
  forgetLogs(tenant: string, runtimeId: string): Promise<void>
}

/** The whole store: its repositories. */
export interface StoreApi {
  readonly tenants: TenantStore
  readonly keys: KeyStore
  readonly awsKeys: AwsKeyStore
  readonly interpreters: InterpreterStore
  readonly sessions: SessionStore
  readonly audit: AuditStore
  /** The agent's conversations and turns (short-term memory); the interface is in conversations.ts. */
  readonly conversations: ConversationStore
  /** Hosted agent runtimes (versions, bundles, secrets). */
  readonly runtimes: RuntimeStore
  /** Hosted agents' logs, per runtime session. */
  readonly runtimeLogs: RuntimeLogStore
  /** Rate limits shared by replicas; absent for a store one server has to itself (SQLite), which counts in memory. */
  readonly rates?: RateStore
  /**
   * A 32-byte key for `purpose`, derived from the store's sealing key: the same on every server
   * sharing this store, different for every purpose, never the sealing key itself.
   */
  deriveKey(purpose: string): Buffer
}
