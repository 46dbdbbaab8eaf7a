/**
 * The bwrap driver (the default): each sandbox is a bubblewrap container with every namespace,
 * a read-only image as /, tmpfs /tmp and a size-capped tmpfs /workspace, no network but `lo`,
 * no capabilities, a seccomp filter, a fresh unprivileged host uid, its own cgroups and rlimits.
 *
 * Launch order (launch.sh): a root bash joins the cgroups, closes every fd but the five it hands on, sets
 * rlimits, then `setpriv` drops to the sandbox's uid and execs bwrap, which reads its arguments
 * and the seccomp program from fds 4 and 3 (so neither shows in the sandbox's /proc/1/cmdline).
 */
import { spawn } from 'node:child_process'
import { access, constants } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { CodeboxError } from '@codebox/core'
import type { Sandbox, SandboxDriver, SandboxExit, SandboxSpec } from '@codebox/core'
import { boundedBuffer, executorDir, hostNodeModules } from '../shared.ts'
import { createCgroups, detectCgroups, type CgroupMode } from './cgroups.ts'
import { buildSeccompFilter } from './seccomp.ts'
import { UidAllocator } from './uids.ts'

export interface BwrapDriverOptions {
  /** Root filesystem of the image (a built image's path). */
  imagePath: string
  /** Path to bwrap. Default `bwrap` on PATH. */
  bwrap?: string
  /** cgroup layout to use; default: detected. `none` leaves only rlimits. */
  cgroups?: CgroupMode
  uids?: UidAllocator
}

const LAUNCHER = fileURLToPath(new URL('./launch.sh', import.meta.url))

export class BwrapDriver implements SandboxDriver {
  readonly name = 'bwrap'
  private readonly imagePath: string
  private readonly bwrap: string
  private readonly cgroupMode: CgroupMode
  private readonly uids: UidAllocator
  private readonly seccomp: Buffer

  constructor(options: BwrapDriverOptions) {
    this.imagePath = options.imagePath
    this.bwrap = options.bwrap ?? 'bwrap'
    this.cgroupMode = options.cgroups ?? detectCgroups()
    this.uids = options.uids ?? new UidAllocator()
    this.seccomp = buildSeccompFilter()
  }

  /** The cgroup layout in use; `none` means memory, CPU and pids rely on rlimits only. */
  get cgroups(): CgroupMode {
    return this.cgroupMode
  }

  async check(): Promise<void> {
    if (process.getuid?.() !== 0) throw new CodeboxError('Unavailable', 'the bwrap driver runs as root, to give each sandbox its own host uid and cgroups')
    for (const tool of [this.bwrap, 'setpriv']) {
      const found = tool.includes('/') ? existsSync(tool) : (process.env.PATH ?? '').split(':').some((d) => existsSync(path.join(d, tool)))
      if (!found) throw new CodeboxError('Unavailable', `${tool} is not installed (apt-get install ${tool === 'setpriv' ? 'util-linux' : 'bubblewrap'})`)
    }
    try {
      await access(path.join(this.imagePath, 'usr/bin/python3'), constants.X_OK)
    } catch {
      throw new CodeboxError('Unavailable', `no sandbox image at ${this.imagePath}; run \`codebox image build\``)
    }
  }

  async create(spec: SandboxSpec): Promise<Sandbox> {
    const { limits } = spec
    const uid = this.uids.allocate()
    let cgroups
    try {
      cgroups = await createCgroups(this.cgroupMode, `${spec.id}`, limits)
    } catch (e) {
      this.uids.release(uid)
      throw new CodeboxError('SandboxFailure', `cannot create cgroups for the sandbox: ${(e as Error).message}`, { cause: e })
    }
    const threads = String(Math.max(1, Math.ceil(limits.cpuCores)))
    const env: Record<string, string> = {
      PATH: '/usr/local/bin:/usr/bin:/bin',
      HOME: '/workspace',
      USER: 'sandbox',
      LANG: 'C.UTF-8',
      LC_ALL: 'C.UTF-8',
      TERM: 'dumb',
      MPLBACKEND: 'Agg',
      MPLCONFIGDIR: '/tmp/.config/matplotlib',
      XDG_CACHE_HOME: '/tmp/.cache',
      OPENBLAS_NUM_THREADS: threads,
      OMP_NUM_THREADS: threads,
      PYTHONDONTWRITEBYTECODE: '1',
      CODEBOX_WORKSPACE: '/workspace',
      CODEBOX_NODE: '/usr/local/bin/node',
      CODEBOX_PYTHON: '/usr/bin/python3',
    }
    const args = [
      '--unshare-all', '--unshare-user', '--disable-userns', '--uid', '1000', '--gid', '1000',
      '--hostname', 'sandbox', '--die-with-parent', '--new-session', '--cap-drop', 'ALL', '--clearenv',
      ...Object.entries(env).flatMap(([k, v]) => ['--setenv', k, v]),
      '--ro-bind', this.imagePath, '/',
      '--proc', '/proc', '--dev', '/dev',
      '--size', String(limits.tmpBytes), '--perms', '1777', '--tmpfs', '/tmp',
      '--size', String(Math.min(limits.tmpBytes, 64 * 1024 * 1024)), '--perms', '1777', '--tmpfs', '/dev/shm',
      '--size', String(limits.workspaceBytes), '--perms', '0755', '--tmpfs', '/workspace',
      '--ro-bind', executorDir, '/opt/codebox/executor',
      '--ro-bind', path.join(hostNodeModules, 'acorn'), '/opt/codebox/node_modules/acorn',
      '--seccomp', '3', '--chdir', '/workspace',
    ]
    const nproc = limits.pids + 64
    const fsizeBlocks = Math.ceil(limits.workspaceBytes / 1024)
    const child = spawn(
      '/bin/bash',
      [LAUNCHER, String(uid), String(limits.openFiles), String(nproc), String(fsizeBlocks), ...(cgroups?.procsFiles ?? [])],
      { stdio: ['pipe', 'pipe', 'pipe', 'pipe', 'pipe'], env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', CODEBOX_BWRAP: this.bwrap } },
    )
    const [, , , seccompPipe, argsPipe] = child.stdio as unknown as [unknown, unknown, unknown, NodeJS.WritableStream, NodeJS.WritableStream]
    seccompPipe.on('error', () => {})
    argsPipe.on('error', () => {})
    seccompPipe.end(this.seccomp)
    argsPipe.end(Buffer.from(args.map((a) => `${a}\0`).join('')))

    const diagnostics = boundedBuffer(16 * 1024)
    child.stderr!.on('data', (c: Buffer) => diagnostics.push(c))
    const exited = new Promise<SandboxExit>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }))
      child.once('error', (e) => {
        diagnostics.push(Buffer.from(e.message))
        resolve({ code: null, signal: null })
      })
    })
    let destroyed: Promise<void> | undefined
    const destroy = (): Promise<void> =>
      (destroyed ??= (async () => {
        // Killing bwrap's outer process makes the kernel kill the sandbox's pid 1, and with it
        // every process of the pid namespace; the cgroup sweep catches anything in flight.
        child.kill('SIGKILL')
        await cgroups?.killAll()
        await exited
        await cgroups?.killAll()
        await cgroups?.remove()
        this.uids.release(uid)
      })())
    return {
      id: spec.id,
      input: child.stdin!,
      output: child.stdout!,
      diagnostics: diagnostics.text,
      exited,
      counters: async () => (cgroups ? cgroups.counters() : { oomKills: 0, pidsLimitHits: 0 }),
      memoryUsage: async () => (cgroups ? cgroups.memoryBytes() : 0),
      destroy,
    }
  }
}
