/**
 * The host budget: admits a new sandbox only when the machine can hold it. Two checks each for
 * memory and pids: what the sandboxes declare (their limits) against the host times a generous
 * overcommit, and what the host actually has in use (sampled from /proc, plus a floor for each
 * sandbox started since the sample) against what it has minus a reserve. Admission is arithmetic
 * on cached numbers; the /proc reads happen on a timer, never on the start path.
 */
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { CodeboxError, validationError, type SessionLimits } from '@codebox/core'

const MiB = 1024 ** 2
const GiB = 1024 ** 3

/** What the operator configures; docs/config.md lists the variables. */
export interface HostBudgetConfig {
  /** `CODEBOX_HOST_MEMORY_OVERCOMMIT`: the sandboxes' memory limits may add up to this many times the host's memory. Default 256. */
  memoryOvercommit: number
  /** `CODEBOX_HOST_RESERVE_BYTES`: memory kept for the host; a start that would eat into it is refused. Default 1 GiB. */
  reserveBytes: number
  /** `CODEBOX_HOST_PIDS_SHARE`: the share of the host's pids (min of pid_max, threads-max) that may be in use after a start. Default 0.75. */
  pidsShare: number
  /** `CODEBOX_HOST_PIDS_OVERCOMMIT`: the sandboxes' pids limits may add up to this many times that share. Default 64. */
  pidsOvercommit: number
  /** `CODEBOX_SANDBOX_FLOOR_BYTES`: memory counted for a sandbox started since the last sample. Default 32 MiB. */
  floorBytes: number
}

export const defaultHostBudgetConfig: Readonly<HostBudgetConfig> = Object.freeze({
  memoryOvercommit: 256,
  reserveBytes: 1 * GiB,
  pidsShare: 0.75,
  pidsOvercommit: 64,
  floorBytes: 32 * MiB,
})

/** Pids counted for a sandbox started since the last sample (an idle one runs a handful). */
const floorPids = 16

/** The host budget's variables, parsed once with the engine's config. */
export function loadHostBudgetConfig(env: Record<string, string | undefined>): Readonly<HostBudgetConfig> {
  const d = defaultHostBudgetConfig
  return Object.freeze({
    memoryOvercommit: numberVar(env, 'CODEBOX_HOST_MEMORY_OVERCOMMIT', d.memoryOvercommit, 0.01, 100_000),
    reserveBytes: numberVar(env, 'CODEBOX_HOST_RESERVE_BYTES', d.reserveBytes, 0, 2 ** 50, true),
    pidsShare: numberVar(env, 'CODEBOX_HOST_PIDS_SHARE', d.pidsShare, 0.01, 1),
    pidsOvercommit: numberVar(env, 'CODEBOX_HOST_PIDS_OVERCOMMIT', d.pidsOvercommit, 0.01, 100_000),
    floorBytes: numberVar(env, 'CODEBOX_SANDBOX_FLOOR_BYTES', d.floorBytes, 0, 2 ** 40, true),
  })
}

/** A numeric variable within [min, max] (whole with `whole`), or a ValidationError naming it. */
function numberVar(env: Record<string, string | undefined>, name: string, fallback: number, min: number, max: number, whole = false): number {
  const raw = env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isFinite(n) || n < min || n > max || (whole && !Number.isInteger(n))) {
    throw validationError(name, `must be a ${whole ? 'whole ' : ''}number from ${min} to ${max}, got ${JSON.stringify(raw)}`)
  }
  return n
}

/** What the host has, and what it uses now. */
export interface HostProbe {
  /** Total memory (MemTotal), bytes, and pids: min(kernel.pid_max, kernel.threads-max). */
  readonly totalMemoryBytes: number
  readonly totalPids: number
  /** Memory in use now (MemTotal - MemAvailable) and tasks (threads) alive on the host. */
  sample(): Promise<{ usedMemoryBytes: number; usedPids: number }>
}

/** The real host, from /proc. */
export function procHostProbe(): HostProbe {
  const meminfo = (text: string, key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024
  const int = (file: string): number => Number.parseInt(readFileSync(file, 'utf8'), 10)
  const totalMemoryBytes = meminfo(readFileSync('/proc/meminfo', 'utf8'), 'MemTotal')
  const totalPids = Math.min(int('/proc/sys/kernel/pid_max'), int('/proc/sys/kernel/threads-max'))
  return {
    totalMemoryBytes,
    totalPids,
    async sample() {
      const [mem, load] = await Promise.all([readFile('/proc/meminfo', 'utf8'), readFile('/proc/loadavg', 'utf8')])
      // /proc/loadavg's fourth field is "running/total" scheduling entities: every thread on the host.
      const usedPids = Number(/^\S+ \S+ \S+ \d+\/(\d+)/.exec(load)?.[1] ?? NaN)
      return { usedMemoryBytes: totalMemoryBytes - meminfo(mem, 'MemAvailable'), usedPids }
    },
  }
}

/** What a sandbox takes from the budget until it is released. */
export interface Reservation {
  readonly memoryBytes: number
  readonly pids: number
  released: boolean
}

/** What a start asks for; the part of SessionLimits the budget counts. */
export type BudgetRequest = Pick<SessionLimits, 'memoryBytes' | 'pids'>

export class HostBudget {
  private readonly config: Readonly<HostBudgetConfig>
  private readonly probe: HostProbe
  private declaredMemory = 0
  private declaredPids = 0
  private usedMemory = 0
  private usedPids = 0
  /** Sandboxes admitted since the last sample: the sample does not show them yet. */
  private sinceSample = 0
  private sampling: Promise<void> | undefined

  constructor(config: Readonly<HostBudgetConfig>, probe: HostProbe) {
    this.config = config
    this.probe = probe
  }

  /** The most the sandboxes' limits may add up to. */
  get maxDeclared(): { memoryBytes: number; pids: number } {
    const c = this.config
    return {
      memoryBytes: Math.floor(c.memoryOvercommit * this.probe.totalMemoryBytes),
      pids: Math.floor(c.pidsOvercommit * c.pidsShare * this.probe.totalPids),
    }
  }

  /** Takes room for a sandbox with these limits, or throws HostCapacity with what was asked and what is left. */
  admit(request: BudgetRequest): Reservation {
    const c = this.config
    const max = this.maxDeclared
    const pending = this.sinceSample + 1
    const memoryLeft = this.probe.totalMemoryBytes - c.reserveBytes - this.usedMemory - this.sinceSample * c.floorBytes
    const pidsLeft = Math.floor(c.pidsShare * this.probe.totalPids) - this.usedPids - this.sinceSample * floorPids
    const refuse = (what: string): never => {
      throw new CodeboxError('HostCapacity', `the host has no room for this session: ${what}; ask for smaller limits, stop a session, or try later`, {
        details: {
          asked: { memoryBytes: request.memoryBytes, pids: request.pids },
          left: {
            memoryBytes: Math.max(0, max.memoryBytes - this.declaredMemory),
            pids: Math.max(0, max.pids - this.declaredPids),
            availableMemoryBytes: Math.max(0, memoryLeft),
            availablePids: Math.max(0, pidsLeft),
          },
        },
      })
    }
    if (this.declaredMemory + request.memoryBytes > max.memoryBytes) {
      refuse(`the sessions' memory limits would add up to more than ${c.memoryOvercommit} x the host's ${this.probe.totalMemoryBytes} bytes`)
    }
    if (this.declaredPids + request.pids > max.pids) {
      refuse(`the sessions' pids limits would add up to more than ${max.pids} (host pids ${this.probe.totalPids} x ${c.pidsShare} x ${c.pidsOvercommit})`)
    }
    if (memoryLeft < c.floorBytes)
      refuse(`${Math.max(0, memoryLeft)} bytes of memory are free beyond the host's reserve, less than the ${c.floorBytes} a session needs`)
    if (pidsLeft < floorPids) refuse(`${Math.max(0, pidsLeft)} pids are free within the host's share, less than the ${floorPids} a session needs`)
    this.declaredMemory += request.memoryBytes
    this.declaredPids += request.pids
    this.sinceSample = pending
    return { memoryBytes: request.memoryBytes, pids: request.pids, released: false }
  }

  /** Gives a sandbox's room back; a second release of the same reservation does nothing. */
  release(r: Reservation): void {
    if (r.released) return
    r.released = true
    this.declaredMemory -= r.memoryBytes
    this.declaredPids -= r.pids
  }

  /** Reads what the host uses now. Concurrent calls share one read; a failed read keeps the last numbers. */
  refresh(): Promise<void> {
    this.sampling ??= (async () => {
      const admittedBefore = this.sinceSample
      try {
        const s = await this.probe.sample()
        if (Number.isFinite(s.usedMemoryBytes) && Number.isFinite(s.usedPids)) {
          this.usedMemory = s.usedMemoryBytes
          this.usedPids = s.usedPids
          // Sandboxes admitted while the read was under way may not show in it yet.
          this.sinceSample = Math.max(0, this.sinceSample - admittedBefore)
        }
      } catch {
        // Keep the last sample: /proc can be missing in odd containers; the declared check still holds.
      } finally {
        this.sampling = undefined
      }
    })()
    return this.sampling
  }

  /** Totals, for tests and status pages. */
  get state(): { declaredMemoryBytes: number; declaredPids: number; usedMemoryBytes: number; usedPids: number; sinceSample: number } {
    return {
      declaredMemoryBytes: this.declaredMemory,
      declaredPids: this.declaredPids,
      usedMemoryBytes: this.usedMemory,
      usedPids: this.usedPids,
      sinceSample: this.sinceSample,
    }
  }
}
