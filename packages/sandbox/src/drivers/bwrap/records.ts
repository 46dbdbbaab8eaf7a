/**
 * What a bwrap sandbox needs to be found again by a later server: one small JSON file per sandbox
 * (root-only, beside the store), naming its launcher's pid and that process's start time (so a
 * reused pid is never mistaken for it), its host uid and whether it has egress.
 */
import { readFileSync } from 'node:fs'
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import type { SandboxExit } from '@codebox/core'

export interface SandboxRecord {
  id: string
  /** The launcher's pid (bwrap's outer process, in the sandbox's private mount namespace). */
  pid: number
  /** Field 22 of /proc/<pid>/stat when it started. */
  startTime: string
  uid: number
  createdAt: string
  egress: boolean
  /** The runtime tree it stands on (runtime.ts: its content hash), kept while it lives. */
  runtime?: string
}

const idPattern = /^[A-Za-z0-9_-]{1,64}$/

export class SandboxRecords {
  readonly dir: string

  constructor(dir: string) {
    this.dir = dir
  }

  async ensureDir(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
  }

  /** Written whole or not at all (a temporary file renamed over). */
  async write(record: SandboxRecord): Promise<void> {
    const file = path.join(this.dir, `${record.id}.json`)
    await writeFile(`${file}.tmp`, JSON.stringify(record), { mode: 0o600 })
    await rename(`${file}.tmp`, file)
  }

  /** The record, or undefined when there is none or it is not one (a torn or foreign file). */
  async read(id: string): Promise<SandboxRecord | undefined> {
    if (!idPattern.test(id)) return undefined
    try {
      const r = JSON.parse(await readFile(path.join(this.dir, `${id}.json`), 'utf8')) as Partial<SandboxRecord>
      const ok =
        r.id === id &&
        Number.isInteger(r.pid) &&
        (r.pid ?? 0) > 1 &&
        typeof r.startTime === 'string' &&
        Number.isInteger(r.uid) &&
        typeof r.createdAt === 'string' &&
        typeof r.egress === 'boolean' &&
        (r.runtime === undefined || (typeof r.runtime === 'string' && /^[0-9a-f]{16}$/.test(r.runtime)))
      return ok ? (r as SandboxRecord) : undefined
    } catch {
      return undefined
    }
  }

  async list(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[])
    return names
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -5))
      .filter((id) => idPattern.test(id))
  }

  async remove(id: string): Promise<void> {
    await rm(path.join(this.dir, `${id}.json`), { force: true })
  }
}

/** A process's start time and state from /proc/<pid>/stat; undefined when there is no such process. */
export function processState(pid: number): { startTime: string; state: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return { state: fields[0] ?? '?', startTime: fields[19] ?? '' }
  } catch {
    return undefined
  }
}

/** Whether `pid` is still the process that started at `startTime` and has not exited (a zombie has). */
export function stillRunning(pid: number, startTime: string): boolean {
  const s = processState(pid)
  return s !== undefined && s.startTime === startTime && s.state !== 'Z' && s.state !== 'X'
}

/** Resolves when the process that started at `startTime` is gone (or a zombie): polled every `everyMs`, as it may be no child of this process. */
export function watchExit(pid: number, startTime: string, everyMs = 500): Promise<SandboxExit> {
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (stillRunning(pid, startTime)) return
      clearInterval(timer)
      resolve({ code: null, signal: null })
    }, everyMs)
    timer.unref()
  })
}
