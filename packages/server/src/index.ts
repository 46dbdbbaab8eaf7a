/** @codebox/server: the HTTP server of codebox — native API v1, auth and tenants, store, audit, metrics. */
export { buildApp, type App, type AppOptions } from './app.ts'
export { startServer, type RunningServer, type StartServerOptions } from './serve.ts'
export { loadServerConfig, isLoopback, type ServerConfig, type QuotaDefaults } from './config.ts'
export {
  Store,
  PgStore,
  accessKeyIdPattern,
  openStore,
  describeStore,
  copySqliteToPostgres,
  isPostgresUri,
  sealingKeyFromEnv,
  readSealingKey,
} from './store/index.ts'
export type { StoreApi, OpenStore, StoreConfig, CopyCounts } from './store/index.ts'
export type { Caller } from './services/sessions.ts'
export { openApiDocument } from './openapi.ts'
export {
  ModelGateway,
  type ModelGatewayOptions,
  type GatewayConfig,
  type GatewayCredential,
  type CredentialsFor,
  type GatewayProvider,
  type GatewayUsage,
  type GatewaySessionUsage,
  type GatewayUsageRow,
} from './services/gateway.ts'
export { RuntimeService, builtInRuntimeId, type ResolvedRuntime, type RuntimeServiceOptions } from './services/runtimes.ts'
export type { RuntimeRecord, RuntimeVersionRecord, RuntimeBundleRecord, RuntimeSettings, RuntimeSecretRecord } from './store/index.ts'
