/**
 * Per-session limits with the defaults of DESIGN.md, and the clamp that keeps a request within
 * the configured maxima. Every limit is explicit: nothing is inherited from the server process.
 */
import { validationError } from './errors.ts'

export interface SessionLimits {
  /** Memory for all processes of the session, bytes. Default 2 GiB. */
  memoryBytes: number
  /** CPU share in cores. Default 1. */
  cpuCores: number
  /** Processes and threads. Default 512. */
  pids: number
  /** Size of the writable /workspace, bytes. Default 1 GiB. */
  workspaceBytes: number
  /** Size of /tmp, bytes. Default 256 MiB. */
  tmpBytes: number
  /** Open file descriptors per process. Default 1024. */
  openFiles: number
  /** Output captured per call (stdout + stderr), bytes. Default 1 MiB. */
  outputBytes: number
  /** Largest file written through the file API, bytes. Default 100 MB. */
  fileBytes: number
  /** Wall time of one call, ms. Default 300 s. */
  callTimeoutMs: number
  /** A session with no call for this long ends, ms. Default 900 s. */
  idleTimeoutMs: number
  /** A session ends this long after it started, ms. Default 8 h. */
  maxLifetimeMs: number
}

const GiB = 1024 ** 3
const MiB = 1024 ** 2

export const defaultLimits: Readonly<SessionLimits> = Object.freeze({
  memoryBytes: 2 * GiB,
  cpuCores: 1,
  pids: 512,
  workspaceBytes: 1 * GiB,
  tmpBytes: 256 * MiB,
  openFiles: 1024,
  outputBytes: 1 * MiB,
  fileBytes: 100 * 1000 * 1000,
  callTimeoutMs: 300_000,
  idleTimeoutMs: 900_000,
  maxLifetimeMs: 8 * 3600_000,
})

/** The largest values a request may ask for, unless the operator configures others. */
export const defaultMaxLimits: Readonly<SessionLimits> = Object.freeze({
  memoryBytes: 16 * GiB,
  cpuCores: 2,
  pids: 4096,
  workspaceBytes: 10 * GiB,
  tmpBytes: 2 * GiB,
  openFiles: 65536,
  outputBytes: 64 * MiB,
  fileBytes: 100 * 1000 * 1000,
  callTimeoutMs: 15 * 60_000,
  idleTimeoutMs: 8 * 3600_000,
  maxLifetimeMs: 8 * 3600_000,
})

const minimums: Readonly<SessionLimits> = Object.freeze({
  memoryBytes: 64 * MiB,
  cpuCores: 0.05,
  pids: 16,
  workspaceBytes: 1 * MiB,
  tmpBytes: 1 * MiB,
  openFiles: 64,
  outputBytes: 1024,
  fileBytes: 1,
  callTimeoutMs: 1,
  idleTimeoutMs: 1000,
  maxLifetimeMs: 1000,
})

/**
 * Merges a request's limits over the defaults. A value outside [minimum, maximum] is a
 * ValidationError naming the field and the allowed range, never silently changed.
 */
export function resolveLimits(
  requested: Partial<SessionLimits> = {},
  base: Readonly<SessionLimits> = defaultLimits,
  max: Readonly<SessionLimits> = defaultMaxLimits,
): SessionLimits {
  const out: SessionLimits = { ...base }
  for (const [key, value] of Object.entries(requested) as [keyof SessionLimits, unknown][]) {
    if (value === undefined) continue
    if (!(key in minimums)) throw validationError(`limits.${String(key)}`, 'unknown limit')
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw validationError(`limits.${key}`, `must be a finite number, got ${JSON.stringify(value)}`)
    }
    if (value < minimums[key] || value > max[key]) {
      throw validationError(`limits.${key}`, `must be between ${minimums[key]} and ${max[key]}, got ${value}`)
    }
    out[key] = key === 'cpuCores' ? value : Math.floor(value)
  }
  return out
}
