/**
 * Engine configuration: read once from the environment, validated, frozen, passed down. No other
 * module reads process.env. docs/config.md lists every variable.
 */
import os from 'node:os'
import path from 'node:path'
import { checkPreload, defaultPreload, validationError } from '@codebox/core'
import { loadHostBudgetConfig, type HostBudgetConfig } from './budget.ts'
import { parseTrustedList, type TrustedDestination } from './egress/policy.ts'

export interface EngineConfig {
  /** Where images and other state live. `CODEBOX_STATE_DIR`; default /var/lib/codebox as root, else ~/.local/state/codebox. */
  stateDir: string
  /** `CODEBOX_DRIVER`: a registered driver's name (drivers/registry.ts): `bwrap` (default), `fake` (no isolation; tests only), ... */
  driver: string
  /** `CODEBOX_POOL_SIZE`: warm sandboxes kept ready per pooled configuration (limits and preload). Default 2. */
  poolSize: number
  /**
   * `CODEBOX_PRELOAD`: comma-separated Python modules that sessions of an interpreter without a
   * preload of its own (the built-in one) have imported before hand-over; empty for none. Default
   * numpy,pandas,matplotlib.pyplot; none with the fake driver, whose sandboxes run the host's
   * Python (which may lack them).
   */
  preload: readonly string[]
  /** `CODEBOX_POOL_REFILL_DELAY_MS`: how long after a hand-over the pool starts its replacement. Default 1000. */
  poolRefillDelayMs: number
  /** `CODEBOX_DEBIAN_MIRROR`: where image builds fetch packages. Default http://deb.debian.org/debian. */
  debianMirror: string
  /**
   * `CODEBOX_MAX_SESSIONS`: a fixed cap on sessions alive at once. Default none: the host budget
   * (`hostBudget`) admits each start by what the machine has left, so the count follows the
   * machine (about 2,000 idle lean sessions on 24 GiB); 200 when the budget cannot read the host.
   */
  maxSessions: number | undefined
  /**
   * `CODEBOX_EGRESS_TRUSTED`: comma-separated IPs or CIDRs, each optionally with `:port`, that
   * are private or loopback yet may be reached by sessions whose allow-list names them (internal
   * services). Default none. Never reachable in `public` mode; metadata addresses never at all.
   */
  egressTrusted: readonly TrustedDestination[]
  /** `CODEBOX_HOST_*`: what the machine may give sessions; see budget.ts and docs/config.md. */
  hostBudget: Readonly<HostBudgetConfig>
}

export function loadEngineConfig(env: Record<string, string | undefined> = {}): Readonly<EngineConfig> {
  const isRoot = process.getuid?.() === 0
  const driver = env.CODEBOX_DRIVER ?? 'bwrap'
  // Whether a driver of that name is registered is checked when the engine creates it (a driver
  // from another package registers itself later than this runs).
  if (!/^[a-z][a-z0-9-]{0,31}$/.test(driver)) throw validationError('CODEBOX_DRIVER', `must be a driver name such as bwrap, got ${JSON.stringify(driver)}`)
  return Object.freeze({
    stateDir: path.resolve(env.CODEBOX_STATE_DIR ?? (isRoot ? '/var/lib/codebox' : path.join(os.homedir(), '.local/state/codebox'))),
    driver,
    poolSize: intVar(env, 'CODEBOX_POOL_SIZE', 2, 0, 64),
    preload: Object.freeze(preloadVar(env.CODEBOX_PRELOAD, driver === 'fake' ? [] : defaultPreload)),
    poolRefillDelayMs: intVar(env, 'CODEBOX_POOL_REFILL_DELAY_MS', 1000, 0, 60_000),
    debianMirror: env.CODEBOX_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian',
    maxSessions: env.CODEBOX_MAX_SESSIONS ? intVar(env, 'CODEBOX_MAX_SESSIONS', 0, 1, 100_000) : undefined,
    egressTrusted: Object.freeze(parseTrustedList(env.CODEBOX_EGRESS_TRUSTED ?? '')),
    hostBudget: loadHostBudgetConfig(env),
  })
}

function preloadVar(raw: string | undefined, fallback: readonly string[]): string[] {
  if (raw === undefined) return [...fallback]
  const modules = raw
    .split(',')
    .map((m) => m.trim())
    .filter(Boolean)
  return checkPreload(modules, 'CODEBOX_PRELOAD')
}

/** A whole-number environment variable within [min, max], or a ValidationError naming it. */
export function intVar(env: Record<string, string | undefined>, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n < min || n > max) throw validationError(name, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`)
  return n
}
