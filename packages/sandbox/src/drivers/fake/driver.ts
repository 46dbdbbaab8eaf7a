/**
 * The fake driver: runs the executor as a plain host process in a temporary directory, with no
 * isolation and no limits. For tests of everything above the driver, and for the driver contract
 * suite; never registered unless a config names it explicitly. `spec.network` is ignored: the
 * executor uses the host's network as it is (no relay, no proxy variables). `spec.code` is not
 * mounted anywhere: `CODEBOX_CODE_DIR` names the host directory itself (nothing stops code from
 * writing there). `connectPort` is a plain TCP connection to the host's 127.0.0.1, where the
 * "sandbox" listens: no inbound relay.
 *
 * With `sharedDir`, the driver is shared (SandboxDriver.shared): each executor listens on a unix
 * socket in `<sharedDir>/<id>/` and outlives the server that started it, and every FakeDriver
 * given that directory attaches any of them by id (shared.ts). For tests of replicas.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { CodeboxError } from '@codebox/core'
import type { AttachOptions, LimitCounters, Sandbox, SandboxDriver, SandboxExit, SandboxSpec } from '@codebox/core'
import { connectLoopback } from '../inbound.ts'
import { boundedBuffer, executorDir, hostNodeModules } from '../shared.ts'
import { killTree } from './processes.ts'
import { SharedFakeSandboxes } from './shared.ts'

export interface FakeDriverOptions {
  /** Python used to run the executor. Default `/usr/bin/python3`. */
  python?: string
  /**
   * Script run in place of `executor.py`, with the same environment. For tests only: the
   * hostile-sandbox suite runs a stand-in that writes malformed frames. Default: the real executor.
   */
  executorScript?: string
  /**
   * A directory every FakeDriver of the replicas under test is given: sandboxes live there and
   * outlive their server, and any of these drivers attaches them by id (`shared`). The executor
   * serves several connections at once this way (each authenticated), so two servers may hold one
   * sandbox at the same time, and its ports are reached on the host's loopback as always. Default
   * none: a sandbox ends with its server.
   */
  sharedDir?: string
}

export class FakeDriver implements SandboxDriver {
  readonly name = 'fake'
  readonly shared: boolean
  /** With `sharedDir` only. */
  readonly attach?: (id: string, options?: AttachOptions) => Promise<Sandbox>
  /** With `sharedDir` only. */
  readonly list?: () => Promise<string[]>
  private readonly python: string
  private readonly executorScript: string
  private readonly sharedSandboxes: SharedFakeSandboxes | undefined

  constructor(options: FakeDriverOptions = {}) {
    this.python = options.python ?? '/usr/bin/python3'
    this.executorScript = options.executorScript ?? path.join(executorDir, 'executor.py')
    this.shared = options.sharedDir !== undefined
    if (options.sharedDir !== undefined) {
      const sandboxes = new SharedFakeSandboxes(options.sharedDir)
      this.sharedSandboxes = sandboxes
      this.attach = (id) => sandboxes.attach(id)
      this.list = () => sandboxes.list()
    }
  }

  async check(): Promise<void> {}

  async create(spec: SandboxSpec): Promise<Sandbox> {
    const workspace = await mkdtemp(path.join(tmpdir(), `codebox-fake-${spec.id}-`))
    // The session's /tmp: matplotlib's config and cache go here, as in a real sandbox, not into the workspace.
    const tmp = await mkdtemp(path.join(tmpdir(), `codebox-fake-tmp-${spec.id}-`))
    const env = this.executorEnv(spec, workspace, tmp)
    if (this.sharedSandboxes) {
      return this.sharedSandboxes.create({ id: spec.id, python: this.python, script: this.executorScript, env, workspace, tmp })
    }
    const child = spawn(this.python, ['-s', this.executorScript], {
      cwd: workspace,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      env,
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
      connectPort: (port, options) => connectLoopback(port, options),
      destroy: () =>
        (destroyed ??= (async () => {
          // Only while the executor is unreaped: after that its pid may belong to someone else.
          if (child.exitCode === null && child.signalCode === null) await killTree(pid)
          await exited
          await rm(workspace, { recursive: true, force: true })
          await rm(tmp, { recursive: true, force: true })
        })()),
    }
  }

  /** The executor's environment: the host's tools, the workspace as home, the session's own /tmp. */
  private executorEnv(spec: SandboxSpec, workspace: string, tmp: string): Record<string, string> {
    return {
      PATH: `/usr/local/bin:/usr/bin:/bin:${workspace}/.local/bin`,
      LANG: 'C.UTF-8',
      HOME: workspace,
      // the host's pip (if any) installs into the session's workspace (~/.local), never the host's Python
      PIP_USER: '1',
      PIP_BREAK_SYSTEM_PACKAGES: '1',
      PIP_DISABLE_PIP_VERSION_CHECK: '1',
      MPLBACKEND: 'Agg',
      MPLCONFIGDIR: path.join(tmp, '.config/matplotlib'),
      XDG_CACHE_HOME: path.join(tmp, '.cache'),
      PYTHONDONTWRITEBYTECODE: '1',
      CODEBOX_WORKSPACE: workspace,
      CODEBOX_NODE: process.execPath,
      CODEBOX_PYTHON: this.python,
      // no Deno even when the host has one: fake sessions offer python and nodejs only
      CODEBOX_DENO: '',
      NODE_PATH: hostNodeModules,
      ...(spec.code ? { CODEBOX_CODE_DIR: spec.code.hostPath } : {}),
    }
  }
}
