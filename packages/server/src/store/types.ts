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
  /** Stores a new session (creating its tenant if needed); Conflict if its id or clientToken is taken. */
  insert(record: SessionRecord): Promise<void>
  /** The session if it belongs to `tenant`; another tenant's session is undefined, like an unknown one. */
  get(sessionId: string, tenant: string): Promise<SessionRecord | undefined>
  /** The session `tenant` started with this idempotency token, or undefined. */
  findByClientToken(tenant: string, clientToken: string): Promise<SessionRecord | undefined>
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
}

/** The append-only audit log. */
export interface AuditStore {
  /** Appends an entry and returns its id. */
  record(entry: Omit<AuditEntry, 'id'>): Promise<number>
  /** A page of the tenant's entries: newest first, or oldest first within one session. */
  list(options: ListAuditOptions): Promise<Page<AuditEntry>>
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
}
