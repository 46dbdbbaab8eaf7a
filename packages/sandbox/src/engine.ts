/**
 * Puts an engine together from its config: the image (built if missing), the driver, the egress
 * proxy service, and a SessionManager over them. The one place that picks a concrete driver.
 */
import path from 'node:path'
import { CodeboxError, type SandboxDriver } from '@codebox/core'
import type { EngineConfig } from './config.ts'
import { BwrapDriver } from './drivers/bwrap/driver.ts'
import { FakeDriver } from './drivers/fake/driver.ts'
import { EgressService, type EgressServiceOptions } from './egress/service.ts'
import { findImage } from './image/build.ts'
import { defaultRecipe } from './image/recipe.ts'
import { SessionManager, type SessionManagerOptions } from './session-manager.ts'

export async function createDriver(config: EngineConfig): Promise<SandboxDriver> {
  if (config.driver === 'fake') return new FakeDriver()
  const image = await findImage(config.stateDir, defaultRecipe({ mirror: config.debianMirror }))
  if (!image) throw new CodeboxError('Unavailable', `the sandbox image is not built yet (state dir ${config.stateDir}); run \`codebox image build\``)
  const driver = new BwrapDriver({ imagePath: image.path, runtimeDir: path.join(config.stateDir, 'runtime') })
  await driver.check()
  return driver
}

export async function createEngine(
  config: EngineConfig,
  overrides: { poolSize?: number; onSessionEnd?: SessionManagerOptions['onSessionEnd']; onEgressDenial?: EgressServiceOptions['onDenial'] } = {},
): Promise<SessionManager> {
  return new SessionManager({
    driver: await createDriver(config),
    poolSize: overrides.poolSize ?? config.poolSize,
    preload: config.preload,
    poolRefillDelayMs: config.poolRefillDelayMs,
    maxSessions: config.maxSessions,
    hostBudget: config.hostBudget,
    onSessionEnd: overrides.onSessionEnd,
    egress: new EgressService({ trusted: config.egressTrusted, onDenial: overrides.onEgressDenial }),
  })
}
