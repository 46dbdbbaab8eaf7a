/**
 * What the bench reads from the host: machine facts for the report, and the memory and CPU time
 * of a set of processes from /proc (VmRSS from status, Pss from smaps_rollup).
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export interface MachineFacts {
  cpuModel: string
  cores: number
  memoryBytes: number
  kernel: string
  node: string
  python: string
  bwrap: string
  date: string
  /** /proc/loadavg when the run started; other work on the machine skews the numbers. */
  loadAverage: string
}

export function machineFacts(): MachineFacts {
  const cpuinfo = readText('/proc/cpuinfo') ?? ''
  return {
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memoryBytes: os.totalmem(),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    python: tryRun('/usr/bin/python3', ['--version']),
    bwrap: tryRun('bwrap', ['--version']),
    date: new Date().toISOString(),
    loadAverage: loadAverage(),
  }
}

/** The first three fields of /proc/loadavg. */
export function loadAverage(): string {
  return (readText('/proc/loadavg') ?? '').split(' ').slice(0, 3).join(' ')
}

export interface ProcessMemory {
  /** Sum of VmRSS, bytes: shared pages counted once per process. */
  rssBytes: number
  /** Sum of Pss, bytes: shared pages split between the processes sharing them. */
  pssBytes: number
  processes: number
  /** Per process: its label (see memoryOf) and memory. */
  parts: { label: string; rssBytes: number; pssBytes: number }[]
}

/**
 * Summed VmRSS and Pss of the processes, and each one's, labelled by `label(cmdline)` (default
 * the program's name); pids that have gone are skipped.
 */
export function memoryOf(pids: readonly number[], label: (cmdline: string) => string = (c) => path.basename(c.split(' ')[0] ?? '')): ProcessMemory {
  const parts: ProcessMemory['parts'] = []
  for (const pid of pids) {
    const status = readText(`/proc/${pid}/status`)
    const rollup = readText(`/proc/${pid}/smaps_rollup`)
    if (status === undefined || rollup === undefined) continue
    parts.push({ label: label(cmdline(pid)), rssBytes: kib(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]), pssBytes: kib(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1]) })
  }
  const sum = (k: 'rssBytes' | 'pssBytes'): number => parts.reduce((a, p) => a + p[k], 0)
  return { rssBytes: sum('rssBytes'), pssBytes: sum('pssBytes'), processes: parts.length, parts }
}

/** Pids in a sandbox's cgroup (its pids controller), as the bwrap driver lays the groups out. */
export function sandboxPids(cgroupMode: 'v1' | 'v2' | 'none', sandboxId: string): number[] {
  const dir = cgroupMode === 'v2' ? path.join('/sys/fs/cgroup/codebox', sandboxId) : path.join('/sys/fs/cgroup/pids/codebox', sandboxId)
  return (readText(path.join(dir, 'cgroup.procs')) ?? '').split('\n').filter(Boolean).map(Number)
}

/** The process and all its descendants, found through the ppid field of /proc/<pid>/stat. */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const ppid = statFields(Number(name))?.[1]
    if (ppid === undefined) continue
    children.set(Number(ppid), [...(children.get(Number(ppid)) ?? []), Number(name)])
  }
  const out: number[] = []
  const todo = [root]
  while (todo.length) {
    const pid = todo.pop()!
    out.push(pid)
    todo.push(...(children.get(pid) ?? []))
  }
  return out
}

/** utime + stime of the processes, clock ticks. */
export function cpuTicks(pids: readonly number[]): number {
  let ticks = 0
  for (const pid of pids) {
    const f = statFields(pid)
    if (f) ticks += Number(f[11]) + Number(f[12])
  }
  return ticks
}

/** The command line of a process, spaces for NULs, or '' when it has gone. */
export function cmdline(pid: number): string {
  return (readText(`/proc/${pid}/cmdline`) ?? '').replaceAll('\0', ' ').trim()
}

/** Fields of /proc/<pid>/stat after the command name: [state, ppid, ...]. */
function statFields(pid: number): string[] | undefined {
  const text = readText(`/proc/${pid}/stat`)
  if (text === undefined) return undefined
  return text.slice(text.lastIndexOf(')') + 2).split(' ')
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

const kib = (v: string | undefined): number => Number(v ?? 0) * 1024

function tryRun(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim()
  } catch {
    return 'not found'
  }
}
