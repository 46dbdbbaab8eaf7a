/**
 * Test fixtures for the gVisor driver: the driver on the built image, and the reason it cannot
 * run here (checked once per test process by starting one real sandbox, since runsc may be
 * installed yet unable to run: no ptrace, a kernel it does not support).
 */
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { CODE_DIR, defaultLimits, type SessionLimits } from '@codebox/core'
import { GvisorDriver, SessionManager, defaultRecipe, findImage, loadEngineConfig } from '@codebox/sandbox'
import { ExecutorClient } from '../src/executor-client.ts'

let probed: Promise<string | undefined> | undefined

/** Why the gVisor driver cannot run here, or undefined when it can. */
export function gvisorUnavailable(): Promise<string | undefined> {
  return (probed ??= probe())
}

async function probe(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'the gvisor driver needs root (runsc and per-sandbox cgroups)'
  const config = loadEngineConfig(process.env)
  const image = await findImage(config.stateDir, defaultRecipe({ mirror: config.debianMirror }))
  if (!image) return `no sandbox image in ${config.stateDir}; run \`codebox image build\` (npm test does)`
  const driver = new GvisorDriver({ imagePath: image.path })
  try {
    await driver.check()
  } catch (e) {
    return (e as Error).message
  }
  const sandbox = await driver.create({ id: `probe-${randomBytes(6).toString('hex')}`, limits: { ...defaultLimits }, network: { mode: 'none' } })
  try {
    const client = new ExecutorClient(sandbox)
    const late = new Promise<string>((resolve) => setTimeout(() => resolve('timed out after 30 s'), 30_000).unref())
    const outcome = await Promise.race([
      client.ready.then(
        () => undefined,
        (e: Error) => e.message,
      ),
      late,
    ])
    return outcome === undefined ? undefined : `runsc is installed but cannot start a sandbox here: ${outcome}: ${sandbox.diagnostics().slice(-400)}`
  } finally {
    await sandbox.destroy()
  }
}

/**
 * Why a gVisor session cannot take code (SandboxSpec.code) here, or undefined when it can: the
 * driver's own reason, or an image built before it had an empty CODE_DIR to mount it on.
 */
export async function gvisorCodeUnavailable(): Promise<string | undefined> {
  const why = await gvisorUnavailable()
  if (why !== undefined) return why
  const config = loadEngineConfig(process.env)
  const image = await findImage(config.stateDir, defaultRecipe({ mirror: config.debianMirror }))
  if (!image || !existsSync(path.join(image.path, CODE_DIR)))
    return `the sandbox image predates ${CODE_DIR} (gVisor mounts code only on an existing one); build a new image`
  return undefined
}

/** The gVisor driver on the built image; check gvisorUnavailable() first. */
export async function gvisorDriver(): Promise<GvisorDriver> {
  const config = loadEngineConfig(process.env)
  const image = await findImage(config.stateDir, defaultRecipe({ mirror: config.debianMirror }))
  if (!image) throw new Error('no sandbox image; run `codebox image build`')
  return new GvisorDriver({ imagePath: image.path })
}

/** A SessionManager on the gVisor driver; the caller closes it. */
export async function gvisorManager(options: { poolSize?: number; defaults?: Partial<SessionLimits> } = {}): Promise<SessionManager> {
  return new SessionManager({ driver: await gvisorDriver(), poolSize: options.poolSize ?? 0, defaults: { ...defaultLimits, ...options.defaults } })
}
