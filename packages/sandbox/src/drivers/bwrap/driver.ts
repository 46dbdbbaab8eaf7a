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
 * The executor listens on a unix socket in a directory of the launcher's tmpfs, bound at
 * /run/codebox/channel; the host reaches it through the launcher's /proc/<pid>/root, so the
 * sandbox is no child of the server in any way that matters: it has no pipe to it and does not die
 * with it (no --die-with-parent; its own process group), and a later server connects again
 * (attach) from the record it left beside the store (records.ts). An executor that was never
 * handed to a session ends when its server goes; one that was ends itself at the session's
 * deadline or idle timeout.
 *
 * Network `egress` keeps the empty network namespace and binds in a directory of the launcher's
 * tmpfs, where the driver opens a listener of the host's egress proxy for the sandbox's policy
 * (network.ts); the executor's relay serves it as an HTTP proxy on 127.0.0.1:3128. The listener
 * closes with the sandbox, or with its server: a later server opens it again in the same
 * directory when it re-adopts the sandbox (attach, given the session's policy).
 *
 * `spec.code` (a host directory) appears read-only at CODE_DIR: the launcher binds it in its own
 * namespace and lays a read-only overlay (nosuid, nodev) over it, so the sandbox's mountinfo shows
 * an overlay with relative layer names, never the host path; the runtime tree carries the empty
 * mount point. `connectPort` reaches a port inside through the executor's inbound relay, whose
 * socket is in the channel directory (inbound.ts).
 */
import { spawn } from 'node:child_process'
import { access, constants } from 'node:fs/promises'
import { closeSync, existsSync, openSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { CODE_DIR, CodeboxError } from '@codebox/core'
import type {
  AttachOptions,
  ConnectPortOptions,
  CreateOptions,
  EgressGateway,
  EgressListenerHandle,
  SandboxNetwork,
  Sandbox,
  SandboxDriver,
  SandboxExit,
  SandboxSpec,
} from '@codebox/core'
import { connectRelay, connectUnixNoFollow, portSocketName } from '../inbound.ts'
import { boundedBuffer, sandboxEnv } from '../shared.ts'
import { createCgroups, detectCgroups, openCgroups, sweepStaleCgroups, type CgroupMode, type CgroupSet } from './cgroups.ts'
import { processState, SandboxRecords, stillRunning, watchExit, type SandboxRecord } from './records.ts'
import { networkSetup, prepareNetwork } from './network.ts'
import { installRuntime, pruneRuntimes, RUNTIME_KEEP_MS } from './runtime.ts'
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
  /** Where each sandbox's record and log are kept, for a later server to find it. Default `<runtimeDir>/../sandboxes`. */
  recordsDir?: string
  /** How long a new sandbox's executor may take to listen, ms. Default 30 s. */
  connectTimeoutMs?: number
}

/** What a live sandbox is made of, whoever started it. */
interface Parts {
  id: string
  pid: number
  /** The launcher's start time (records.ts), to tell it from a later process with its pid. */
  startTime: string
  uid: number
  cgroups: CgroupSet | undefined
  listener: EgressListenerHandle | undefined
  channel: net.Socket
  exited: Promise<SandboxExit>
  diagnostics: () => string
}

const LAUNCHER = fileURLToPath(new URL('./launch.sh', import.meta.url))
/** Where the launcher mounts a sandbox's tmpfs, in its private mount namespace only. */
const TMPFS_DIR = '/run/codebox/tmpfs'
/** Where the executor's channel directory appears inside the sandbox. */
const CHANNEL_DIR = '/run/codebox/channel'

export class BwrapDriver implements SandboxDriver {
  readonly name = 'bwrap'
  /** The image's root on the host. */
  readonly imagePath: string
  private readonly bwrap: string
  private readonly cgroupMode: CgroupMode
  private readonly uids: UidAllocator
  private readonly seccomp: Buffer
  private readonly runtimeDir: string
  private readonly records: SandboxRecords
  private readonly connectTimeoutMs: number
  private runtime: Promise<string> | undefined

  constructor(options: BwrapDriverOptions) {
    this.imagePath = options.imagePath
    this.bwrap = options.bwrap ?? 'bwrap'
    this.cgroupMode = options.cgroups ?? detectCgroups()
    this.uids = options.uids ?? new UidAllocator()
    this.seccomp = buildSeccompFilter()
    this.runtimeDir = path.resolve(options.runtimeDir ?? path.join(options.imagePath, '..', '..', 'runtime'))
    this.records = new SandboxRecords(path.resolve(options.recordsDir ?? path.join(this.runtimeDir, '..', 'sandboxes')))
    this.connectTimeoutMs = options.connectTimeoutMs ?? 30_000
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
    const runtime = await this.runtimePath()
    // The uids of sandboxes an earlier server left running are taken until they are re-adopted or removed.
    const inUse = new Set([path.basename(runtime)])
    let unknownRuntime = false
    for (const id of await this.records.list()) {
      const r = await this.records.read(id)
      if (!r || !stillRunning(r.pid, r.startTime)) continue
      this.uids.reserve(r.uid)
      if (r.runtime) inUse.add(r.runtime)
      else unknownRuntime = true
    }
    // Runtime trees of earlier versions pile up with upgrades: those no live sandbox stands on
    // (a record of an older server names none: then none is removed) and unused for a week go.
    if (!unknownRuntime) await pruneRuntimes(this.runtimeDir, inUse, RUNTIME_KEEP_MS)
    // Start-up is when a previous server's leftovers (it was killed) can be found and removed;
    // a live sandbox's cgroups are never touched (rmdir refuses a cgroup with a process).
    await sweepStaleCgroups(this.cgroupMode)
  }

  /** The sandboxes with a record here (live or not: attach tells, and removes what has ended). */
  async list(): Promise<string[]> {
    return this.records.list()
  }

  async attach(id: string, options: AttachOptions = {}): Promise<Sandbox> {
    const record = await this.records.read(id)
    if (!record) throw new CodeboxError('SessionTerminated', `no sandbox ${id} is recorded here`)
    const cgroups = openCgroups(this.cgroupMode, id)
    if (!stillRunning(record.pid, record.startTime)) {
      await this.cleanUp(record, cgroups)
      throw new CodeboxError('SessionTerminated', `sandbox ${id} ended while no server was connected to it (its idle timeout or lifetime, or it exited)`)
    }
    const network = options.network
    if (record.egress && (network?.mode !== 'egress' || !options.egress)) {
      // Its listener went with the earlier server, and what it may reach is not known here.
      await this.cleanUp(record, cgroups)
      throw new CodeboxError('Unavailable', `sandbox ${id} has network egress, and no egress policy was given to open its listener again; it was ended`)
    }
    this.uids.reserve(record.uid)
    const exited = watchExit(record.pid, record.startTime)
    let channel: net.Socket | undefined
    let listener: EgressListenerHandle | undefined
    try {
      channel = await this.connect(record.pid, exited, options.signal, 5_000, id)
      if (record.egress && network?.mode === 'egress') {
        listener = await this.openEgress(record, options.egress!, network)
      }
    } catch (e) {
      channel?.destroy()
      await this.cleanUp(record, cgroups)
      throw e
    }
    // What it printed went to the server that started it.
    return this.sandbox({ id, pid: record.pid, startTime: record.startTime, uid: record.uid, cgroups, listener, channel, exited, diagnostics: () => '' })
  }

  /**
   * Opens a sandbox's egress listener in its launcher's egress directory, which the sandbox has
   * bound at EGRESS_DIR. The directory is reached through a handle held as long as the listener
   * (`/proc/self/fd/N`), never again through `/proc/<pid>`, so a pid reused after the sandbox ends
   * cannot point the listener or its removal elsewhere. The socket goes to the sandbox's uid.
   */
  private async openEgress(
    record: Pick<SandboxRecord, 'id' | 'pid' | 'startTime' | 'uid'>,
    gateway: EgressGateway,
    network: Extract<SandboxNetwork, { mode: 'egress' }>,
  ): Promise<EgressListenerHandle> {
    const { policy, sessionId } = network
    let fd: number
    try {
      fd = openSync(`/proc/${record.pid}/root${TMPFS_DIR}/egress`, constants.O_RDONLY | constants.O_DIRECTORY)
    } catch (e) {
      throw new CodeboxError('SandboxFailure', `cannot reach sandbox ${record.id}'s egress directory: ${(e as Error).message}`, { cause: e })
    }
    let listener: EgressListenerHandle | undefined
    try {
      if (!stillRunning(record.pid, record.startTime)) throw new CodeboxError('SandboxFailure', `sandbox ${record.id} ended while its egress was being opened`)
      listener = await gateway.open({
        sandboxId: record.id,
        policy,
        ...(sessionId ? { sessionId } : {}),
        ...(network.gateway ? { gateway: network.gateway } : {}),
        socketPath: `/proc/self/fd/${fd}/egress.sock`,
      })
      await prepareNetwork(listener.socketPath, record.uid)
    } catch (e) {
      listener?.close()
      closeSync(fd)
      if (e instanceof CodeboxError) throw e
      throw new CodeboxError('SandboxFailure', `cannot hand the egress socket to sandbox ${record.id}: ${(e as Error).message}`, { cause: e })
    }
    const inner = listener
    let closed = false
    return {
      socketPath: inner.socketPath,
      get counters() {
        return inner.counters
      },
      close: () => {
        if (closed) return
        closed = true
        inner.close()
        try {
          closeSync(fd)
        } catch {
          // closed already
        }
      },
    }
  }

  /** Ends what is left of a recorded sandbox: its processes, cgroups, uid and record. */
  private async cleanUp(record: SandboxRecord, cgroups: CgroupSet | undefined): Promise<void> {
    if (stillRunning(record.pid, record.startTime)) {
      try {
        process.kill(record.pid, 'SIGKILL')
      } catch {
        // gone already
      }
    }
    await cgroups?.killAll()
    await cgroups?.remove().catch(() => {})
    this.uids.release(record.uid)
    await this.records.remove(record.id)
  }

  async create(spec: SandboxSpec, options: CreateOptions = {}): Promise<Sandbox> {
    const { limits } = spec
    const runtime = await this.runtimePath()
    const egress = spec.network.mode === 'egress' ? { network: spec.network, proxy: options.egress } : undefined
    if (egress && !egress.proxy)
      throw new CodeboxError('Unavailable', 'network egress needs the host’s egress proxy, which this engine did not give the bwrap driver')
    // Opened once the launcher has made the directory it is bound from (openEgress).
    let listener: EgressListenerHandle | undefined
    const uid = this.uids.allocate()
    let cgroups
    try {
      cgroups = await createCgroups(this.cgroupMode, `${spec.id}`, limits)
    } catch (e) {
      this.uids.release(uid)
      throw new CodeboxError('SandboxFailure', `cannot create cgroups for the sandbox: ${(e as Error).message}`, { cause: e })
    }
    const network = networkSetup(egress ? `${TMPFS_DIR}/egress` : undefined, egress?.network.gateway !== undefined)
    const env: Record<string, string> = {
      ...sandboxEnv(limits),
      ...network.env,
      CODEBOX_CHANNEL_DIR: CHANNEL_DIR,
      ...(spec.code ? { CODEBOX_CODE_DIR: CODE_DIR } : {}),
    }
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
      '--new-session',
      '--cap-drop',
      'ALL',
      '--clearenv',
      ...Object.entries(env).flatMap(([k, v]) => ['--setenv', k, v]),
      '--ro-bind',
      `${TMPFS_DIR}/root`,
      '/',
      // The code's read-only overlay (launch.sh), over the runtime tree's empty mount point.
      ...(spec.code ? ['--ro-bind', `${TMPFS_DIR}/app`, CODE_DIR] : []),
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
      // /run: a read-only tmpfs holding the executor's channel directory (and the egress socket).
      '--tmpfs',
      '/run',
      '--bind',
      `${TMPFS_DIR}/channel`,
      CHANNEL_DIR,
      ...network.args,
      '--remount-ro',
      '/run',
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
    await this.records.ensureDir()
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
        // stderr is a pipe while this server lives; the executor ignores SIGPIPE and a broken stderr.
        stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'],
        // Its own process group: a Ctrl-C to the server's group does not reach the sandbox.
        detached: true,
        env: {
          PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
          CODEBOX_BWRAP: this.bwrap,
          CODEBOX_TMPFS_DIR: TMPFS_DIR,
          CODEBOX_TMPFS: tmpfs.map((t) => t.join(':')).join(' '),
          CODEBOX_IMAGE: this.imagePath,
          CODEBOX_RUNTIME: runtime,
          ...(spec.code ? { CODEBOX_CODE: spec.code.hostPath } : {}),
        },
      },
    )
    child.unref()
    const diagnostics = boundedBuffer(16 * 1024)
    child.stderr!.on('data', (c: Buffer) => diagnostics.push(c))
    child.stderr!.on('error', () => {})
    ;(child.stderr as unknown as { unref?: () => void }).unref?.()
    const [, , , seccompPipe, argsPipe] = child.stdio as unknown as [unknown, unknown, unknown, NodeJS.WritableStream, NodeJS.WritableStream]
    seccompPipe.on('error', () => {})
    argsPipe.on('error', () => {})
    seccompPipe.end(this.seccomp)
    argsPipe.end(Buffer.from(args.map((a) => `${a}\0`).join('')))

    const exited = new Promise<SandboxExit>((resolve) => {
      child.once('exit', (code, signal) => resolve({ code, signal }))
      child.once('error', () => resolve({ code: null, signal: null }))
    })
    const pid = child.pid
    const fail = async (e: unknown): Promise<never> => {
      if (pid !== undefined) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // gone already
        }
      }
      await cgroups?.killAll()
      await exited
      await cgroups?.remove().catch(() => {})
      this.uids.release(uid)
      listener?.close()
      const diag = diagnostics.text().trim()
      await this.records.remove(spec.id)
      if (e instanceof CodeboxError && diag && !e.message.includes(diag)) throw new CodeboxError(e.code, `${e.message}: ${diag.slice(-500)}`)
      throw e
    }
    const state = pid === undefined ? undefined : processState(pid)
    if (pid === undefined || !state) return fail(new CodeboxError('SandboxFailure', 'the sandbox launcher did not start'))
    try {
      await this.records.write({
        id: spec.id,
        pid,
        startTime: state.startTime,
        uid,
        createdAt: new Date().toISOString(),
        egress: egress !== undefined,
        runtime: path.basename(runtime),
      })
      const channel = await this.connect(pid, exited, options.signal, this.connectTimeoutMs, spec.id)
      if (egress) {
        try {
          listener = await this.openEgress({ id: spec.id, pid, startTime: state.startTime, uid }, egress.proxy!, egress.network)
        } catch (e) {
          channel.destroy()
          throw e
        }
      }
      return this.sandbox({ id: spec.id, pid, startTime: state.startTime, uid, cgroups, listener, channel, exited, diagnostics: diagnostics.text })
    } catch (e) {
      return fail(e)
    }
  }

  /** Connects to the executor's socket, through the launcher's mount namespace, once it listens. */
  private async connect(pid: number, exited: Promise<SandboxExit>, signal: AbortSignal | undefined, timeoutMs: number, id: string): Promise<net.Socket> {
    const socketPath = `/proc/${pid}/root${TMPFS_DIR}/channel/executor.sock`
    let gone: SandboxExit | undefined
    void exited.then((e) => (gone = e))
    const deadline = Date.now() + timeoutMs
    for (let wait = 2; ; wait = Math.min(wait * 2, 50)) {
      try {
        // The channel directory is the sandbox's to write: a symlink there must not lead the host elsewhere.
        return await connectUnixNoFollow(socketPath)
      } catch (e) {
        if (gone) {
          const why = gone.signal ? `signal ${gone.signal}` : `exit code ${gone.code}`
          throw new CodeboxError('SandboxFailure', `the sandbox ended (${why}) before its executor listened`)
        }
        if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new CodeboxError('Canceled', 'the start was cancelled')
        if (Date.now() > deadline) {
          // Most often a machine too busy to boot it in time: a 503 to retry, not a server fault.
          throw new CodeboxError(
            'Unavailable',
            `sandbox ${id}'s executor did not listen within ${timeoutMs} ms; the machine may be overloaded (${(e as Error).message})`,
            {
              details: { retryAfterSeconds: 5 },
            },
          )
        }
        await delay(wait)
      }
    }
  }

  /** The Sandbox over its parts; destroy ends its processes and removes everything it had. */
  private sandbox(p: Parts): Sandbox {
    const { id, pid, startTime, uid, cgroups, listener, channel, exited, diagnostics } = p
    channel.on('error', () => {})
    let ended = false
    void exited.then(() => (ended = true))
    const connectPort = async (port: number, options: ConnectPortOptions = {}): Promise<net.Socket> => {
      // The pid must still be this sandbox's launcher: a reused pid's /proc/<pid>/root is another process's.
      if (ended || !stillRunning(pid, startTime)) throw new CodeboxError('SessionTerminated', `sandbox ${id} has ended`)
      return connectRelay(`/proc/${pid}/root${TMPFS_DIR}/channel/${portSocketName(port)}`, port, options)
    }
    let destroyed: Promise<void> | undefined
    const destroy = (): Promise<void> =>
      (destroyed ??= (async () => {
        // Kill the sandbox's pid 1 (the kernel then kills every process of the pid namespace) but
        // not bwrap's outer process, which reaps it and exits. Killed first, the outer process
        // would orphan pid 1, leaving its zombie to the host's init (node as a container's pid 1
        // never reaps it). The outer process is killed anyway, and the cgroup sweep catches
        // anything in flight.
        const inner = ((await cgroups?.pids()) ?? []).filter((x) => x !== pid)
        for (const x of inner) {
          try {
            process.kill(x, 'SIGKILL')
          } catch {
            // gone already
          }
        }
        if (inner.length) await within(exited, 2000)
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // gone already
        }
        channel.destroy()
        await cgroups?.killAll()
        // Ref'd waits: the child is unref'd, and a script that only stops a session must not exit mid-destroy.
        await within(exited, 5000)
        await cgroups?.killAll()
        await cgroups?.remove()
        this.uids.release(uid)
        listener?.close()
        await this.records.remove(id)
      })())
    return {
      id,
      input: channel,
      output: channel,
      diagnostics,
      exited,
      counters: async () => (cgroups ? cgroups.counters() : { oomKills: 0, pidsLimitHits: 0 }),
      memoryUsage: async () => (cgroups ? cgroups.memoryBytes() : 0),
      ...(listener ? { egressCounters: () => listener.counters } : {}),
      connectPort,
      destroy,
      // For the next server: its channel and egress listener close here (the next one opens them again); the sandbox runs on.
      release: () => {
        channel.destroy()
        listener?.close()
      },
    }
  }
}

/** Waits for `p`, at most `ms` (a ref'd timer, cleared as soon as `p` settles). */
async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))])
  clearTimeout(timer)
}
