/** @codebox/sandbox: sessions, the pool, the drivers and the image they run. */
export { SessionManager, type SessionManagerOptions, type StartOptions, type AdoptRecord, type AdoptOutcome, type RecordedActivity } from './session-manager.ts'
export {
  Session,
  MAX_CODE_BYTES,
  MAX_CELL_ENV,
  MAX_CELL_ENV_BYTES,
  CHART_MIME,
  DATA_MIME,
  type CellEnd,
  type CellError,
  type ExecuteCodeOptions,
  type CallOptions,
  type EndReason,
  type JsRuntime,
  type Runtime,
  type SessionStatus,
} from './session.ts'
export { kernelLanguages, type KernelLanguage } from './input.ts'
export { SessionContexts, MAX_CONTEXTS, type ContextCreateOptions, type ContextInfo, type DefaultKernel } from './session-contexts.ts'
export { type PreloadReport } from './preload.ts'
export { type PoolConfig } from './pool.ts'
export { SessionFiles, type FilePath, type FileWatch, type FileWatchEnd, type FileWatchOptions, type ListOptions } from './session-files.ts'
export {
  SessionTasks,
  MAX_INPUT_BYTES,
  processSignals,
  type TaskView,
  type TaskStartOptions,
  type TaskReadOptions,
  type TaskOutput,
  type TaskSelector,
  type ProcessStartOptions,
  type ProcessSignal,
  type ProcessEnd,
  type ProcessEvent,
  type ProcessStream,
  type ProcessInfo,
  type TerminalSize,
  MAX_TERMINAL_SIZE,
} from './session-tasks.ts'
export { loadEngineConfig, intVar, type EngineConfig } from './config.ts'
export { HostBudget, defaultHostBudgetConfig, loadHostBudgetConfig, procHostProbe, type HostBudgetConfig, type HostProbe, type Reservation } from './budget.ts'
export { createEngine, createDriver } from './engine.ts'
export { drivers, DriverRegistry, type DriverContext, type DriverRegistration } from './drivers/registry.ts'
export { FakeDriver } from './drivers/fake/driver.ts'
export { BwrapDriver, type BwrapDriverOptions } from './drivers/bwrap/driver.ts'
export { GvisorDriver, type GvisorDriverOptions } from './drivers/gvisor/driver.ts'
export { EGRESS_PROXY_URL, EGRESS_SOCKET } from './drivers/bwrap/network.ts'
export { sandboxEnv } from './drivers/shared.ts'
export { CONNECT_PORT_TIMEOUT_MS, nothingListens, readPortStatus } from './drivers/inbound.ts'
export {
  EgressService,
  type EgressServiceOptions,
  type EgressListener,
  type EgressOpenOptions,
  type EgressDenial,
  type EgressCounters,
} from './egress/service.ts'
export { createEgressProxy, type EgressAdmission, type EgressDecision, type EgressProxy, type EgressProxyOptions } from './egress/proxy.ts'
export {
  compileEgressRules,
  parseEgressEntry,
  parseEgressPolicy,
  parseTrustedList,
  type EgressEntry,
  type EgressRules,
  type TrustedDestination,
} from './egress/policy.ts'
export { systemResolver, type EgressResolver } from './egress/authorize.ts'
export { defaultRecipe, recipeHash, type ImageRecipe } from './image/recipe.ts'
export { buildImage, ensureImage, findImage, imagePath, type ImageInfo } from './image/build.ts'
export { checkGatewayTag, GATEWAY_HOST, GATEWAY_URL, gatewayEnv, isGatewayHost, type GatewayHandler, type GatewayIdentity } from './egress/gateway.ts'
export {
  checkRelayIdentity,
  GATEWAY_RELAY_HEADERS,
  GATEWAY_RELAY_PREFIX,
  GATEWAY_RELAY_WINDOW_MS,
  gatewayRelayKey,
  signGatewayRelay,
  verifyGatewayRelay,
  type RelayVerdict,
} from './egress/gateway-relay.ts'
export {
  exportOciLayout,
  OCI_MEDIA_TYPES,
  type OciExportOptions,
  type OciExportResult,
  type OciImageConfig,
  type OciLayerSource,
  type OciDescriptor,
} from './image/oci.ts'
export { installRuntime } from './drivers/bwrap/runtime.ts'
