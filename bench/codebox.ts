/**
 * The codebox side of the bench: session start (cold and from the warm pool), print(1) round
 * trips, 1 MiB file write + read, and the idle memory of a session, all on the real bwrap driver.
 */
import { randomBytes } from 'node:crypto'
import type { SandboxDriver } from '@codebox/core'
import { BwrapDriver, SessionManager, type Session } from '@codebox/sandbox'
import { cmdline, cpuTicks, memoryOf, sandboxPids, type ProcessMemory } from './host.ts'
import { sleep, timed } from './stats.ts'

export interface Sizes {
  coldStarts: number
  warmStarts: number
  printWarmup: number
  prints: number
  files: number
  idleSessions: number
}

export interface StartSamples {
  /** ms until `manager.start()` resolved. */
  start: number[]
  /** ms until `start()` and then a first `print(1)` resolved. */
  startPrint: number[]
}

export interface IdleMemory extends ProcessMemory {
  /** The sandbox's memory cgroup usage (includes its tmpfs and page cache), bytes. */
  cgroupBytes: number
}

const PRINT = { code: 'print(1)', language: 'python', timeoutMs: 30_000 } as const

/** A bwrap driver that remembers the ids of the sandboxes it creates, so the bench can find the pool's. */
export function trackingDriver(inner: BwrapDriver): { driver: SandboxDriver; created: string[] } {
  const created: string[] = []
  return {
    created,
    driver: {
      name: inner.name,
      check: () => inner.check(),
      create: async (spec) => {
        created.push(spec.id)
        return inner.create(spec)
      },
    },
  }
}

/** Runs print(1) and fails loudly if the output is not what it should be. */
export async function print1(session: Session): Promise<void> {
  const r = await session.runCode(PRINT)
  if (r.isError || r.structuredContent.stdout !== '1\n') {
    throw new Error(`[session ${session.id}] print(1) gave ${JSON.stringify(r.structuredContent)}`)
  }
}

export interface LoopOptions {
  n: number
  /** Checked before each sample: an aborted run stops between samples, with nothing in flight. */
  signal: AbortSignal
}

/** Cold starts on a manager with no pool: each sample boots a new sandbox. */
export async function coldStarts(manager: SessionManager, { n, signal }: LoopOptions): Promise<StartSamples> {
  const out: StartSamples = { start: [], startPrint: [] }
  for (let i = 0; i < n; i++) {
    signal.throwIfAborted()
    const t0 = performance.now()
    const session = await manager.start()
    try {
      out.start.push(performance.now() - t0)
      await print1(session)
      out.startPrint.push(performance.now() - t0)
    } finally {
      await session.stop()
    }
  }
  return out
}

/**
 * Warm starts on a manager with poolSize 1. Before each sample the pool has refilled and the
 * waiting sandbox's Python kernel has settled, so each sample is a real hand-over (checked).
 */
export async function warmStarts(
  manager: SessionManager,
  { created, cgroups, n, signal }: LoopOptions & { created: readonly string[]; cgroups: CgroupMode },
): Promise<StartSamples> {
  const out: StartSamples = { start: [], startPrint: [] }
  for (let i = 0; i < n; i++) {
    signal.throwIfAborted()
    await until(() => manager.warmCount >= 1, 30_000, 'the pool to refill')
    const pooled = created.at(-1)!
    await kernelSettled(cgroups, pooled)
    const t0 = performance.now()
    const session = await manager.start()
    try {
      out.start.push(performance.now() - t0)
      await print1(session)
      out.startPrint.push(performance.now() - t0)
      if (session.sandboxId !== pooled) throw new Error(`warm start ${i} booted sandbox ${session.sandboxId} instead of taking the pooled ${pooled}`)
    } finally {
      await session.stop()
    }
  }
  return out
}

/** print(1) round trips through session.runCode after a warm-up. */
export async function printRoundTrips(session: Session, { warmup, n, signal }: LoopOptions & { warmup: number }): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await print1(session)
  const out: number[] = []
  for (let i = 0; i < n; i++) {
    signal.throwIfAborted()
    out.push((await timed(() => print1(session))).ms)
  }
  return out
}

/** 1 MiB of random bytes written then read back through session.files, each checked. */
export async function fileRoundTrips(session: Session, { n, signal }: LoopOptions): Promise<{ write: number[]; read: number[]; both: number[] }> {
  const data = randomBytes(1 << 20)
  const out = { write: [] as number[], read: [] as number[], both: [] as number[] }
  for (let i = -3; i < n; i++) {
    signal.throwIfAborted()
    const w = await timed(() => session.files.write('bench-1mib.bin', data))
    const r = await timed(() => session.files.read('bench-1mib.bin'))
    if (w.value.size !== data.length || !r.value.equals(data)) throw new Error(`[session ${session.id}] 1 MiB file did not read back intact`)
    if (i < 0) continue // warm-up
    out.write.push(w.ms)
    out.read.push(r.ms)
    out.both.push(w.ms + r.ms)
  }
  return out
}

/**
 * Memory of `count` sessions idle at once: each started, its kernel started by one print(1),
 * nothing imported. Every process of the sandbox counts (bwrap, executor, kernel).
 */
export async function idleMemory(manager: SessionManager, { n, signal, cgroups }: LoopOptions & { cgroups: CgroupMode }): Promise<IdleMemory[]> {
  const sessions: Session[] = []
  try {
    for (let i = 0; i < n; i++) {
      signal.throwIfAborted()
      const s = await manager.start()
      sessions.push(s)
      await print1(s)
    }
    for (const s of sessions) await kernelSettled(cgroups, s.sandboxId)
    const out: IdleMemory[] = []
    for (const s of sessions) out.push({ ...memoryOf(sandboxPids(cgroups, s.sandboxId), role), cgroupBytes: await s.memoryUsage() })
    return out
  } finally {
    await Promise.all(sessions.map((s) => s.stop()))
  }
}

/** Which part of a sandbox a process is, from its command line. */
function role(cmd: string): string {
  if (/(^|\/)bwrap /.test(cmd)) return 'bwrap'
  if (cmd.includes('kernel_python.py')) return 'Python kernel'
  if (cmd.includes('executor.py')) return 'executor'
  return cmd.split(' ')[0] ?? '?'
}

type CgroupMode = BwrapDriver['cgroups']

/** Waits until the sandbox has a Python kernel process and its processes stop using CPU. */
async function kernelSettled(cgroups: CgroupMode, sandboxId: string): Promise<void> {
  const pids = (): number[] => sandboxPids(cgroups, sandboxId)
  await until(() => pids().some((p) => cmdline(p).includes('kernel_python.py')), 30_000, `the kernel of sandbox ${sandboxId}`)
  let last = -1
  let still = 0
  await until(
    () => {
      const now = cpuTicks(pids())
      still = now === last ? still + 1 : 0
      last = now
      return still >= 2
    },
    30_000,
    `sandbox ${sandboxId} to go idle`,
    30,
  )
}

async function until(ok: () => boolean, timeoutMs: number, what: string, everyMs = 5): Promise<void> {
  const end = performance.now() + timeoutMs
  while (!ok()) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(everyMs)
  }
}
