/**
 * Puts an engine together from its config: the driver the config names (from the registry), the
 * egress proxy service, and a SessionManager over them.
 */
import type { SandboxDriver } from '@codebox/core'
import type { EngineConfig } from './config.ts'
import { drivers } from './drivers/registry.ts'
import { EgressService, type EgressServiceOptions } from './egress/service.ts'
import { SessionManager, type SessionManagerOptions } from './session-manager.ts'

/** The driver the config names, created and checked. */
export async function createDriver(config: EngineConfig): Promise<SandboxDriver> {
  return drivers.create(config.driver, config)
}

export async function createEngine(
  config: EngineConfig,
  overrides: { poolSize?: number; onSessionEnd?: SessionManagerOptions['onSessionEnd']; onEgressDenial?: EgressServiceOptions['onDenial'] } = {},
): Promise<SessionManager> {
  return new SessionManager({
    driver: await createDriver(config),
    poolSize: overrides.poolSize ?? config.poolSize,
    maxSessions: config.maxSessions,
    hostBudget: config.hostBudget,
    onSessionEnd: overrides.onSessionEnd,
    egress: new EgressService({ trusted: config.egressTrusted, onDenial: overrides.onEgressDenial }),
  })
}
