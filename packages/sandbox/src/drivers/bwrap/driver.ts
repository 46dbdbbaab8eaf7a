/**
 * The bwrap driver (the default): each sandbox is a bubblewrap container with every namespace,
 * a read-only image as /, tmpfs /tmp and a size-capped tmpfs /workspace, no network but `lo`,
 * no capabilities, a seccomp filter, a fresh unprivileged host uid, its own cgroups and rlimits.
 *
 * Launch order (launch.sh): a root bash, in a mount namespace of its own (`unshare`), joins the
 * cgroups, closes every fd but the five it hands on, mounts the size- and inode-capped tmpfs for
 * /workspace, /tmp and /dev/shm there and the sandbox's own read-only overlay of the runtime
 * (runtime.ts: the executor, copied into the state dir) over the image, sets rlimits, then
 * `setpriv` drops to the sandbox's uid and execs bwrap with an empty environment; bwrap reads its
 * arguments and the seccomp program from fds 4 and 3 (so neither shows in /proc/1/cmdline).
 *
 * Network `proxy` keeps the empty network namespace and binds the session's egress socket in
 * (network.ts); the executor's relay then serves it as an HTTP proxy on 127.0.0.1:3128.
 */
import { spawn } from 'node:child_process'
import { access, constants } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { CodeboxError } from '@codebox/core'
import type { Sandbox, SandboxDriver, SandboxExit, SandboxSpec } from '@codebox/core'
import { boundedBuffer, sandboxEnv } from '../shared.ts'
import { createCgroups, detectCgroups, sweepStaleCgroups, type CgroupMode } from './cgroups.ts'
import { networkSetup, prepareNetwork } from './network.ts'
import { installRuntime } from './runtime.ts'
import { buildSeccompFilter } from './seccomp.ts'
import { UidAllocator } from './uids.ts'

export interface BwrapDriverOptions {
  /** Root filesystem of the image (a built image's path). */
  imagePath: string
  /** Where the executor files sandboxes mount are installed. Default `<imagePath>/../../runtime` (the state dir's `runtime/`). */
  runtimeDir?: string
  /** Path to bwrap. Default `bwrap` on PATH. */
  bwrap?: string
  /** cgroup layout to use; default: detected. `none` leaves only rlimits. */
  cgroups?: CgroupMode
  uids?: UidAllocator
}

const LAUNCHER = fileURLToPath(new URL('./launch.sh', import.meta.url))
/** Where the launcher mounts a sandbox's tmpfs, in its private mount namespace only. */
const TMPFS_DIR = '/run/codebox/tmpfs'

export class BwrapDriver implements SandboxDriver {
  readonly name = 'bwrap'
  /** The image's root on the host. */
  readonly imagePath: string
  private readonly bwrap: string
  private readonly cgroupMode: CgroupMode
  private readonly uids: UidAllocator
  private readonly seccomp: Buffer
  private readonly runtimeDir: string
  private runtime: Promise<string> | undefined

  constructor(options: BwrapDriverOptions) {
    this.imagePath = options.imagePath
    this.bwrap = options.bwrap ?? 'bwrap'
    this.cgroupMode = options.cgroups ?? detectCgroups()
    this.uids = options.uids ?? new UidAllocator()
    this.seccomp = buildSeccompFilter()
    this.runtimeDir = path.resolve(options.runtimeDir ?? path.join(options.imagePath, '..', '..', 'runtime'))
  }

  /** The installed runtime's path (installed once per driver; a failure is retried next time). */
  private runtimePath(): Promise<string> {
    const p = (this.runtime ??= installRuntime(this.runtimeDir))
    p.catch(() => {
      if (this.runtime === p) this.runtime = undefined
    })
    return p
  }

  /** The cgroup layout in use; `none` means memory, CPU and pids rely on rlimits only. */
  get cgroups(): CgroupMode {
    return this.cgroupMode
  }

  async check(): Promise<void> {
    if (process.getuid?.() !== 0) throw new CodeboxError('Unavailable', 'the bwrap driver runs as root, to give each sandbox its own host uid and cgroups')
    for (const tool of [this.bwrap, 'setpriv', 'unshare']) {
      const found = tool.includes('/') ? existsSync(tool) : (process.env.PATH ?? '').split(':').some((d) => existsSync(path.join(d, tool)))
      if (!found) throw new CodeboxError('Unavailable', `${tool} is not installed (apt-get install ${tool === 'setpriv' ? 'util-linux' : 'bubblewrap'})`)
    }
    try {
      await access(path.join(this.imagePath, 'usr/bin/python3'), constants.X_OK)
    } catch {
      throw new CodeboxError('Unavailable', `no sandbox image at ${this.imagePath}; run \`codebox image build\``)
    }
    await this.runtimePath()
    // Start-up is when a previous server's leftovers (it was killed) can be found and removed.
    await sweepStaleCgroups(this.cgroupMode)
  }

  async create(spec: SandboxSpec): Promise<Sandbox> {
    const { limits } = spec
    const runtime = await this.runtimePath()
    const uid = this.uids.allocate()
    let cgroups
    try {
      cgroups = await createCgroups(this.cgroupMode, `${spec.id}`, limits)
    } catch (e) {
      this.uids.release(uid)
      throw new CodeboxError('SandboxFailure', `cannot create cgroups for the sandbox: ${(e as Error).message}`, { cause: e })
    }
    try {
      await prepareNetwork(spec.network, uid)
    } catch (e) {
      await cgroups?.remove()
      this.uids.release(uid)
      throw new CodeboxError('SandboxFailure', `cannot hand the egress socket to the sandbox: ${(e as Error).message}`, { cause: e })
    }
    const network = networkSetup(spec.network)
    const env: Record<string, string> = { ...sandboxEnv(limits), ...network.env }
    const args = [
      '--unshare-all',
      '--unshare-user',
      '--disable-userns',
      '--uid',
      '1000',
      '--gid',
      '1000',
      '--hostname',
      'sandbox',
      '--die-with-parent',
      '--new-session',
      '--cap-drop',
      'ALL',
      '--clearenv',
      ...Object.entries(env).flatMap(([k, v]) => ['--setenv', k, v]),
      '--ro-bind',
      `${TMPFS_DIR}/root`,
      '/',
      '--proc',
      '/proc',
      '--dev',
      '/dev',
      '--bind',
      `${TMPFS_DIR}/tmp`,
      '/tmp',
      '--bind',
      `${TMPFS_DIR}/shm`,
      '/dev/shm',
      // A writable /dev would be a tmpfs without any cap, around workspaceBytes and tmpBytes.
      '--remount-ro',
      '/dev',
      '--bind',
      `${TMPFS_DIR}/workspace`,
      '/workspace',
      ...network.args,
      '--seccomp',
      '3',
      '--chdir',
      '/workspace',
    ]
    const nproc = limits.pids + 64
    const fsizeBlocks = Math.ceil(limits.workspaceBytes / 1024)
    // bwrap's --tmpfs cannot cap inodes, and an empty file costs ~1 KiB of kernel memory charged
    // to the session: uncapped, an inode fill OOM-kills the whole sandbox. The three mounts share
    // inodes worth an eighth of the session's memory, so a fill ends in ENOSPC instead.
    const inodes = Math.max(4096, Math.floor(limits.memoryBytes / 8192))
    const tmpfs = [
      ['workspace', limits.workspaceBytes, Math.floor(inodes / 2), '0755'],
      ['tmp', limits.tmpBytes, Math.floor(inodes / 4), '1777'],
      ['shm', Math.min(limits.tmpBytes, 64 * 1024 * 1024), Math.floor(inodes / 4), '1777'],
    ]
    const child = spawn(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        '/bin/bash',
        LAUNCHER,
        String(uid),
        String(limits.openFiles),
        String(nproc),
        String(fsizeBlocks),
        ...(cgroups?.procsFiles ?? []),
      ],
      {
        stdio: ['pipe', 'pipe', 'pipe', 'pipe', 'pipe'],
        env: {
          PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
          CODEBOX_BWRAP: this.bwrap,
          CODEBOX_TMPFS_DIR: TMPFS_DIR,
          CODEBOX_TMPFS: tmpfs.map((t) => t.join(':')).join(' '),
          CODEBOX_IMAGE: this.imagePath,
          CODEBOX_RUNTIME: runtime,
        },
      },
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
        // Kill the sandbox's pid 1 (the kernel then kills every process of the pid namespace) but
        // not bwrap's outer process, which reaps it and exits. Killed first, the outer process
        // would orphan pid 1, leaving its zombie to the host's init (node as a container's pid 1
        // never reaps it). The outer process is killed anyway, and the cgroup sweep catches
        // anything in flight.
        const inner = ((await cgroups?.pids()) ?? []).filter((p) => p !== child.pid)
        for (const p of inner) {
          try {
            process.kill(p, 'SIGKILL')
          } catch {
            // gone already
          }
        }
        if (inner.length) await Promise.race([exited, delay(2000, undefined, { ref: false })])
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
