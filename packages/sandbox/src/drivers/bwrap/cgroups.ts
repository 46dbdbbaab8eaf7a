/**
 * Per-sandbox cgroups for memory, pids and CPU: cgroup v2 where its controllers are delegated to
 * us, else the v1 hierarchies (what this project's machines have). The launcher joins the
 * groups before it drops privileges, so every process of the sandbox is counted from its start.
 */
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { LimitCounters, SessionLimits } from '@codebox/core'

export interface CgroupSet {
  /** `cgroup.procs` files the launcher writes its pid into. */
  procsFiles: string[]
  counters(): Promise<LimitCounters>
  memoryBytes(): Promise<number>
  /** Pids in the groups now. */
  pids(): Promise<number[]>
  /** Kills every process in the groups (cgroup.kill on v2). */
  killAll(): Promise<void>
  remove(): Promise<void>
}

export type CgroupMode = 'v2' | 'v1' | 'none'

const ROOT = '/sys/fs/cgroup'

/** Which cgroup layout this host gives us. */
export function detectCgroups(): CgroupMode {
  try {
    const controllers = readFileSync(path.join(ROOT, 'cgroup.controllers'), 'utf8')
    if (['memory', 'pids', 'cpu'].every((c) => controllers.includes(c))) return 'v2'
  } catch {
    // not a v2 root
  }
  if (['memory', 'pids', 'cpu'].every((c) => existsSync(path.join(ROOT, c, 'tasks')))) return 'v1'
  return 'none'
}

const readNumber = async (file: string, key?: string): Promise<number> => {
  try {
    // Sync on purpose: cgroup files are generated in memory (~5 µs), while an async read costs
    // several thread-pool hops, and every call reads the counters twice (half a print(1) round trip).
    const text = readFileSync(file, 'utf8')
    if (!key) return Number(text.trim()) || 0
    const m = new RegExp(`^${key} (\\d+)`, 'm').exec(text)
    return m ? Number(m[1]) : 0
  } catch {
    return 0
  }
}

export async function createCgroups(mode: CgroupMode, id: string, limits: SessionLimits): Promise<CgroupSet | undefined> {
  const quota = Math.max(1000, Math.round(limits.cpuCores * 100_000))
  if (mode === 'v2') {
    const dir = path.join(ROOT, 'codebox', id)
    await mkdir(path.join(ROOT, 'codebox'), { recursive: true })
    await writeFile(path.join(ROOT, 'codebox', 'cgroup.subtree_control'), '+memory +pids +cpu').catch(() => {})
    await mkdir(dir)
    await writeFile(path.join(dir, 'memory.max'), String(limits.memoryBytes))
    await writeFile(path.join(dir, 'memory.swap.max'), '0').catch(() => {})
    await writeFile(path.join(dir, 'pids.max'), String(limits.pids))
    await writeFile(path.join(dir, 'cpu.max'), `${quota} 100000`)
    return openCgroups(mode, id)
  }
  if (mode === 'v1') {
    const dirs = v1Dirs(id)
    for (const d of Object.values(dirs)) await mkdir(d, { recursive: true })
    await writeFile(path.join(dirs.memory, 'memory.limit_in_bytes'), String(limits.memoryBytes))
    await writeFile(path.join(dirs.memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)).catch(() => {})
    await writeFile(path.join(dirs.pids, 'pids.max'), String(limits.pids))
    await writeFile(path.join(dirs.cpu, 'cpu.cfs_period_us'), '100000')
    await writeFile(path.join(dirs.cpu, 'cpu.cfs_quota_us'), String(quota))
    return openCgroups(mode, id)
  }
  return undefined
}

const v1Dirs = (id: string): { memory: string; pids: string; cpu: string } => ({
  memory: path.join(ROOT, 'memory', 'codebox', id),
  pids: path.join(ROOT, 'pids', 'codebox', id),
  cpu: path.join(ROOT, 'cpu', 'codebox', id),
})

/** The cgroups of sandbox `id` as they are (made by createCgroups, maybe by an earlier server). */
export function openCgroups(mode: CgroupMode, id: string): CgroupSet | undefined {
  if (mode === 'v2') {
    const dir = path.join(ROOT, 'codebox', id)
    const procs = path.join(dir, 'cgroup.procs')
    const pids = async (): Promise<number[]> => parsePids(await readFile(procs, 'utf8').catch(() => ''))
    return {
      procsFiles: [procs],
      counters: async () => ({
        oomKills: await readNumber(path.join(dir, 'memory.events'), 'oom_kill'),
        pidsLimitHits: await readNumber(path.join(dir, 'pids.events'), 'max'),
      }),
      memoryBytes: () => readNumber(path.join(dir, 'memory.current')),
      pids,
      killAll: async () => {
        await writeFile(path.join(dir, 'cgroup.kill'), '1').catch(() => {})
      },
      remove: () => removeDir(dir, pids),
    }
  }
  if (mode === 'v1') {
    const dirs = v1Dirs(id)
    const procsFiles = Object.values(dirs).map((d) => path.join(d, 'cgroup.procs'))
    const pids = async (): Promise<number[]> => parsePids(await readFile(path.join(dirs.pids, 'cgroup.procs'), 'utf8').catch(() => ''))
    return {
      procsFiles,
      counters: async () => ({
        oomKills: await readNumber(path.join(dirs.memory, 'memory.oom_control'), 'oom_kill'),
        pidsLimitHits: await readNumber(path.join(dirs.pids, 'pids.events'), 'max'),
      }),
      memoryBytes: () => readNumber(path.join(dirs.memory, 'memory.usage_in_bytes')),
      pids,
      killAll: async () => {
        for (let i = 0; i < 100; i++) {
          const live = await pids()
          if (live.length === 0) return
          for (const p of live) {
            try {
              process.kill(p, 'SIGKILL')
            } catch {
              // gone already
            }
          }
          await new Promise((r) => setTimeout(r, 10))
        }
      },
      remove: async () => {
        for (const d of Object.values(dirs)) await removeDir(d, pids)
      },
    }
  }
  return undefined
}

function parsePids(text: string): number[] {
  return text.split('\n').filter(Boolean).map(Number)
}

async function removeDir(dir: string, pids: () => Promise<number[]>): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      await rmdir(dir)
      return
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return
      if (code !== 'EBUSY') throw e
      if ((await pids()).length === 0 && i > 50) throw e
      await new Promise((r) => setTimeout(r, 20))
    }
  }
}

/**
 * Removes sandbox cgroups left by a server that died without cleaning up: only those older than
 * `olderThanMs` (never one a starting sandbox is about to join) and with no process (rmdir
 * refuses a cgroup that still has one, so a live sandbox's groups are never touched).
 */
export async function sweepStaleCgroups(mode: CgroupMode, olderThanMs = 10 * 60_000): Promise<number> {
  const parents = mode === 'v2' ? [path.join(ROOT, 'codebox')] : mode === 'v1' ? ['memory', 'pids', 'cpu'].map((c) => path.join(ROOT, c, 'codebox')) : []
  let removed = 0
  for (const parent of parents) {
    const entries = await readdir(parent, { withFileTypes: true }).catch(() => [])
    for (const e of entries) {
      if (!e.isDirectory()) continue
      const dir = path.join(parent, e.name)
      const age = Date.now() - ((await stat(dir).catch(() => undefined))?.mtimeMs ?? Date.now())
      if (age < olderThanMs) continue
      if (
        await rmdir(dir).then(
          () => true,
          () => false,
        )
      )
        removed++
    }
  }
  return removed
}
