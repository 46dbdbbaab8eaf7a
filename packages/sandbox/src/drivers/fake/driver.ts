/**
 * The fake driver: runs the executor as a plain host process in a temporary directory, with no
 * isolation and no limits. For tests of everything above the driver, and for the driver contract
 * suite; never registered unless a config names it explicitly.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { CodeboxError } from '@codebox/core'
import type { LimitCounters, Sandbox, SandboxDriver, SandboxExit, SandboxSpec } from '@codebox/core'
import { boundedBuffer, executorDir, hostNodeModules } from '../shared.ts'

export interface FakeDriverOptions {
  /** Python used to run the executor. Default `/usr/bin/python3`. */
  python?: string
}

export class FakeDriver implements SandboxDriver {
  readonly name = 'fake'
  private readonly python: string

  constructor(options: FakeDriverOptions = {}) {
    this.python = options.python ?? '/usr/bin/python3'
  }

  async check(): Promise<void> {}

  async create(spec: SandboxSpec): Promise<Sandbox> {
    const workspace = await mkdtemp(path.join(tmpdir(), `codebox-fake-${spec.id}-`))
    const child = spawn(this.python, ['-s', path.join(executorDir, 'executor.py')], {
      cwd: workspace,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {
        PATH: '/usr/local/bin:/usr/bin:/bin',
        LANG: 'C.UTF-8',
        HOME: workspace,
        MPLBACKEND: 'Agg',
        CODEBOX_WORKSPACE: workspace,
        CODEBOX_NODE: process.execPath,
        CODEBOX_PYTHON: this.python,
        NODE_PATH: hostNodeModules,
      },
    })
    const diagnostics = boundedBuffer(16 * 1024)
    child.stderr.on('data', (c: Buffer) => diagnostics.push(c))
    const exited = new Promise<SandboxExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
    if (child.pid === undefined) throw new CodeboxError('Unavailable', `cannot start ${this.python}`)
    const pid = child.pid
    let destroyed: Promise<void> | undefined
    return {
      id: spec.id,
      input: child.stdin,
      output: child.stdout,
      diagnostics: diagnostics.text,
      exited,
      counters: async (): Promise<LimitCounters> => ({ oomKills: 0, pidsLimitHits: 0 }),
      memoryUsage: async () => 0,
      destroy: () =>
        (destroyed ??= (async () => {
          try {
            process.kill(-pid, 'SIGKILL')
          } catch {
            // already gone
          }
          await exited
          await rm(workspace, { recursive: true, force: true })
        })()),
    }
  }
}
