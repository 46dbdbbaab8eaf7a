/** The store of the server: its interface (`StoreApi`, types.ts), the embedded SQLite `Store.open(file)`, PostgreSQL's `PgStore.open(uri)`, `openStore(config)` choosing between them, the repositories and records. */
export { Store, type StoreOptions } from './store.ts'
export { PgStore, type PgStoreOptions } from './postgres/store.ts'
export { pgMigrations, pgLatestSchemaVersion, migratePg } from './postgres/migrations.ts'
export { copySqliteToPostgres, type CopyCounts } from './postgres/copy.ts'
export {
  openStore,
  storeConfigFromEnv,
  sealingKeyFromEnv,
  readSealingKey,
  parseSealingKey,
  isPostgresUri,
  describeStore,
  type OpenStore,
  type StoreConfig,
  type SealingKeySource,
} from './open.ts'
export { isStoreFailure } from './busy.ts'
export type {
  StoreApi,
  TenantStore,
  KeyStore,
  AwsKeyStore,
  InterpreterStore,
  SessionStore,
  AuditStore,
  RuntimeStore,
  RuntimeLogStore,
  LogAppendOptions,
  RateStore,
} from './types.ts'
export { migrate, migrations, latestSchemaVersion } from './migrations.ts'
export type { Migration } from './migrations.ts'
export { TenantRepository, tenantIdPattern, checkTenantId } from './tenants.ts'
export type { TenantRecord, TenantQuotaUpdate } from './tenants.ts'
export { KeyRepository, lastUsedResolutionMs } from './keys.ts'
export type { KeyRecord, CreateKeyOptions, CreateKeyResult } from './keys.ts'
export { AwsKeyRepository, accessKeyIdPattern } from './aws-keys.ts'
export type { AwsKeyRecord, CreateAwsKeyResult } from './aws-keys.ts'
export { InterpreterRepository, builtInInterpreterId } from './interpreters.ts'
export type { InterpreterRecord, InterpreterStatus, InterpreterNetwork, CreateInterpreterOptions } from './interpreters.ts'
export { hostedTaken, SessionRepository, sessionQuotaExceeded } from './sessions.ts'
export type { SessionRecord, SessionStatus, ListSessionsOptions, HostedSessionRecord, E2bSessionRecord } from './sessions.ts'
export { AuditRepository } from './audit.ts'
export type { ListAuditOptions } from './audit.ts'
export { ConversationRepository } from './conversations.ts'
export type { ConversationStore, NewConversation, NewTurn, ListConversationsOptions } from './conversations.ts'
export type { Page } from './sql.ts'
export { keySecretPattern } from './ids.ts'
export { RuntimeRepository, bundleChunkBytes } from './runtimes.ts'
export type { RuntimeRecord, RuntimeVersionRecord, RuntimeBundleRecord, RuntimeSettings, RuntimeSecretRecord, DeployRuntimeOptions } from './runtimes.ts'
export { RuntimeLogRepository, dropLeadingBytes, logChunkBytes } from './runtime-logs.ts'
export type { RuntimeLogMeta, RuntimeLogRecord, ListRuntimeLogsOptions, PruneRuntimeLogsOptions } from './runtime-logs.ts'
