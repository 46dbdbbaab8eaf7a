/**
 * Puts an engine together from its config: the driver the config names (from the registry), the
 * egress proxy service, and a SessionManager over them.
 */
import type { SandboxDriver } from '@codebox/core'
import type { EngineConfig } from './config.ts'
import { drivers } from './drivers/registry.ts'
import type { GatewayHandler } from './egress/gateway.ts'
import { EgressService, type EgressServiceOptions } from './egress/service.ts'
import { SessionManager, type SessionManagerOptions } from './session-manager.ts'

/** The driver the config names, created and checked. */
export async function createDriver(config: EngineConfig, options: { sandboxesDir?: string } = {}): Promise<SandboxDriver> {
  return drivers.create(config.driver, config, options)
}

export async function createEngine(
  config: EngineConfig,
  overrides: {
    poolSize?: number
    onSessionEnd?: SessionManagerOptions['onSessionEnd']
    /** What the store says of a session other servers may serve too (SessionManagerOptions.recordedActivity). */
    recordedActivity?: SessionManagerOptions['recordedActivity']
    onEgressDenial?: EgressServiceOptions['onDenial']
    /** Where the driver records sandboxes that outlive the server (default the state dir's `sandboxes/`). */
    sandboxesDir?: string
    /** The model gateway sessions started with `gateway` reach (EgressServiceOptions.gateway). Default none: they are answered 502. */
    gateway?: GatewayHandler
  } = {},
): Promise<SessionManager> {
  return new SessionManager({
    driver: await createDriver(config, overrides.sandboxesDir ? { sandboxesDir: overrides.sandboxesDir } : {}),
    driverFor: (name) => drivers.create(name, config, { field: 'driver', ...(overrides.sandboxesDir ? { sandboxesDir: overrides.sandboxesDir } : {}) }),
    poolSize: overrides.poolSize ?? config.poolSize,
    preload: config.preload,
    poolRefillDelayMs: config.poolRefillDelayMs,
    maxSessions: config.maxSessions,
    hostBudget: config.hostBudget,
    onSessionEnd: overrides.onSessionEnd,
    ...(overrides.recordedActivity ? { recordedActivity: overrides.recordedActivity } : {}),
    egress: new EgressService({
      trusted: config.egressTrusted,
      onDenial: overrides.onEgressDenial,
      ...(overrides.gateway ? { gateway: overrides.gateway } : {}),
    }),
  })
}
