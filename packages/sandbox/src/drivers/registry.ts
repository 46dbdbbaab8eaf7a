/**
 * The driver registry: drivers are registered by name and the engine creates the one its config
 * names (`CODEBOX_DRIVER`), or an interpreter's own. The built-in drivers are registered here; a
 * driver from another package registers itself with `drivers.register` before the server starts.
 * Nothing above the sandbox package names a concrete driver.
 */
import path from 'node:path'
import { CodeboxError, validationError, type SandboxDriver } from '@codebox/core'
import type { EngineConfig } from '../config.ts'
import { findImage } from '../image/build.ts'
import { defaultRecipe } from '../image/recipe.ts'
import { BwrapDriver } from './bwrap/driver.ts'
import { FakeDriver } from './fake/driver.ts'
import { GvisorDriver } from './gvisor/driver.ts'

/** What a driver factory gets from the engine. */
export interface DriverContext {
  config: Readonly<EngineConfig>
  /** The built image's root filesystem; Unavailable (what to run) when it is not built. */
  imagePath(): Promise<string>
  /** Where a driver keeps files sandboxes mount (the executor runtime): the state dir's `runtime/`. */
  runtimeDir: string
  /** Where a driver records the sandboxes that outlive their server: beside the store that names their sessions (one server per store). */
  sandboxesDir: string
}

export interface DriverRegistration {
  name: string
  /** One line for `codebox serve --help` and the docs. */
  description: string
  /** Makes the driver and checks it can work on this host (`check()`); throws Unavailable naming what is missing. */
  create(context: DriverContext): Promise<SandboxDriver>
}

export class DriverRegistry {
  readonly #entries = new Map<string, DriverRegistration>()

  /** Adds a driver; a name registered twice is a programming error. */
  register(registration: DriverRegistration): void {
    if (!/^[a-z][a-z0-9-]{0,31}$/.test(registration.name)) throw new Error(`driver name ${JSON.stringify(registration.name)} is not a lower-case name`)
    if (this.#entries.has(registration.name)) throw new Error(`a driver named ${registration.name} is already registered`)
    this.#entries.set(registration.name, registration)
  }

  names(): string[] {
    return [...this.#entries.keys()]
  }

  has(name: string): boolean {
    return this.#entries.has(name)
  }

  list(): readonly DriverRegistration[] {
    return [...this.#entries.values()]
  }

  /** Creates and checks the named driver; a name nobody registered is a ValidationError listing the registered ones. */
  async create(name: string, config: Readonly<EngineConfig>, options: { field?: string; sandboxesDir?: string } = {}): Promise<SandboxDriver> {
    const entry = this.#entries.get(name)
    if (!entry) throw validationError(options.field ?? 'CODEBOX_DRIVER', `must be one of ${this.names().join(', ')}, got ${JSON.stringify(name)}`)
    return entry.create(contextOf(config, options.sandboxesDir))
  }
}

function contextOf(config: Readonly<EngineConfig>, sandboxesDir: string | undefined): DriverContext {
  return {
    config,
    runtimeDir: path.join(config.stateDir, 'runtime'),
    sandboxesDir: sandboxesDir ?? path.join(config.stateDir, 'sandboxes'),
    imagePath: async () => {
      const image = await findImage(config.stateDir, defaultRecipe({ mirror: config.debianMirror }))
      if (!image) throw new CodeboxError('Unavailable', `the sandbox image is not built yet (state dir ${config.stateDir}); run \`codebox image build\``)
      return image.path
    },
  }
}

/** The process's registry, with the built-in drivers. */
export const drivers = new DriverRegistry()

drivers.register({
  name: 'bwrap',
  description: 'bubblewrap: namespaces, seccomp, a uid and cgroups per sandbox (the default; root)',
  async create(context) {
    const driver = new BwrapDriver({ imagePath: await context.imagePath(), runtimeDir: context.runtimeDir, recordsDir: context.sandboxesDir })
    await driver.check()
    return driver
  },
})

drivers.register({
  name: 'gvisor',
  description: 'gVisor (runsc): a user-space kernel between the code and the host, from the same image (root; apt-get install runsc)',
  async create(context) {
    const driver = new GvisorDriver({ imagePath: await context.imagePath(), runtimeDir: context.runtimeDir })
    await driver.check()
    return driver
  },
})

drivers.register({
  name: 'fake',
  description: 'no isolation: the executor as a plain host process (tests only)',
  async create() {
    return new FakeDriver()
  },
})
