/**
 * The gVisor driver: each sandbox is a `runsc` container (gVisor's user-space kernel, platform
 * ptrace by default) over an OCI bundle made from the same image as bwrap (bundle.ts): read-only
 * image as /, the executor read-only at /opt/codebox, size-capped tmpfs /workspace, /tmp and
 * /dev/shm, uid 1000 without capabilities, no network but `lo` (`--network=none`).
 *
 * The code never reaches the host kernel: its syscalls are served by the sentry, which itself
 * runs under a seccomp filter of runsc's. The driver makes the sandbox's host cgroups (memory,
 * pids, CPU) before runsc starts; runsc joins them and leaves their limits alone, and they stay
 * readable after the sandbox ended, so counters() still sees an OOM that killed it.
 *
 * What differs from bwrap (docs/security.md, "gVisor"): a memory limit kills the whole sandbox
 * (the host OOM-kills the sentry), reported through diagnostics and counters().oomKills; the
 * pids limit the code sees is RLIMIT_NPROC, which gVisor enforces itself, while the host pids
 * cgroup leaves room for the sentry's, the gofer's and the ptrace stubs' own threads.
 *
 * Network `proxy` binds the session's egress socket at the same path as bwrap; the sandbox
 * connects to it through runsc's `--host-uds=open` (host unix sockets mounted into it: only that
 * one is).
 *
 * `connectPort` reaches a port inside through the executor's inbound relay, which binds
 * `port-<port>.sock` in GVISOR_PORTS_DIR (bundle.ts): a mount of the sandbox's own host tmpfs
 * (`<bundle>/ports`, 64 KiB, 64 inodes, owned by the sandbox's uid, mode 0700), where runsc's
 * `--host-uds=create` (`all` with egress) makes the bound socket a host socket the driver
 * connects to (inbound.ts, never following a symlink). Every sandbox gets it: the only
 * host-backed mount the sandbox can write is that tmpfs (docs/security.md, "gVisor"). In this
 * runsc such a socket refuses stat, chmod, unlink, rename and connect from inside the sandbox,
 * so the relay's socket, once bound, cannot be swapped (the relay allows for that).
 *
 * A session's code is bound read-only at CODE_DIR (bundle.ts).
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { access, chmod, chown, constants, lstat, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises'
import type net from 'node:net'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { promisify } from 'node:util'
import { CODE_DIR, CodeboxError } from '@codebox/core'
import type { ConnectPortOptions, CreateOptions, EgressListenerHandle, LimitCounters, Sandbox, SandboxDriver, SandboxExit, SandboxSpec } from '@codebox/core'
import { createCgroups, detectCgroups, sweepStaleCgroups, type CgroupMode } from '../bwrap/cgroups.ts'
import { installRuntime } from '../bwrap/runtime.ts'
import { connectRelay, portSocketName } from '../inbound.ts'
import { boundedBuffer } from '../shared.ts'
import { ociSpec, SANDBOX_UID } from './bundle.ts'
import { startRunsc } from './channel.ts'

const run = promisify(execFile)

export interface GvisorDriverOptions {
  /** Root filesystem of the image (a built image's path). */
  imagePath: string
  /** Where the executor files sandboxes mount are installed. Default `<imagePath>/../../runtime` (the state dir's `runtime/`). */
  runtimeDir?: string
  /** Path to runsc. Default `runsc` on PATH. */
  runsc?: string
  /** runsc's platform: `ptrace` (default; works without KVM) or `kvm`. */
  platform?: 'ptrace' | 'kvm'
  /** Holds runsc's state (`state/`) and the sandboxes' bundles (`bundles/`). Default `/run/codebox/gvisor`. */
  workDir?: string
  /** cgroup layout to use; default: detected. */
  cgroups?: CgroupMode
}

/**
 * Host memory the sandbox may use beyond the session's limit: the sentry's and the gofer's own
 * (Go heaps, page tables of the ptrace stubs); measured ~35 MiB for an idle Python sandbox.
 */
export const GVISOR_MEMORY_OVERHEAD = 64 * 1024 * 1024

/**
 * Host tasks (pids cgroup) the sandbox may hold while its code has `pids` processes and threads.
 * Under the ptrace platform each guest address space gets stub processes, one per sentry thread
 * that runs it: measured here, an idle sandbox holds ~39 host tasks, and 10, 30, 50 sleeping
 * children took it to 106, 280, 544 (~10 per child). The code's own limit is RLIMIT_NPROC
 * (bundle.ts); this one only keeps a sandbox from exhausting the host, and reaching it ends the
 * sandbox (the sentry cannot make a stub).
 */
export const hostPidsFor = (pids: number): number => 16 * pids + 256

/**
 * The host tmpfs behind a sandbox's ports directory: its sockets hold no data, so this only bounds
 * what the code may leave there (it can write files too) on the host.
 */
const PORTS_TMPFS_OPTIONS = `size=64k,nr_inodes=64,mode=0700,uid=${SANDBOX_UID},gid=${SANDBOX_UID},nosuid,nodev,noexec`

export class GvisorDriver implements SandboxDriver {
  readonly name = 'gvisor'
  readonly imagePath: string
  private readonly runsc: string
  private readonly platform: 'ptrace' | 'kvm'
  private readonly workDir: string
  private readonly cgroupMode: CgroupMode
  private readonly runtimeDir: string
  private runtime: Promise<string> | undefined

  constructor(options: GvisorDriverOptions) {
    this.imagePath = options.imagePath
    this.runsc = options.runsc ?? 'runsc'
    this.platform = options.platform ?? 'ptrace'
    this.workDir = path.resolve(options.workDir ?? '/run/codebox/gvisor')
    this.cgroupMode = options.cgroups ?? detectCgroups()
    this.runtimeDir = path.resolve(options.runtimeDir ?? path.join(options.imagePath, '..', '..', 'runtime'))
  }

  private get stateDir(): string {
    return path.join(this.workDir, 'state')
  }

  /**
   * Flags every runsc invocation of this driver takes. `--host-uds`: `create` lets the inbound
   * relay bind its sockets in the ports directory; `open` (with egress) lets the sandbox connect
   * to its egress socket.
   */
  private globalArgs(egress: boolean): string[] {
    return [`--root=${this.stateDir}`, `--platform=${this.platform}`, '--network=none', `--host-uds=${egress ? 'all' : 'create'}`]
  }

  private runtimePath(): Promise<string> {
    const p = (this.runtime ??= installRuntime(this.runtimeDir))
    p.catch(() => {
      if (this.runtime === p) this.runtime = undefined
    })
    return p
  }

  async check(): Promise<void> {
    if (process.getuid?.() !== 0) throw new CodeboxError('Unavailable', 'the gvisor driver runs as root (runsc needs it to set up the sandbox)')
    const found = this.runsc.includes('/') ? existsSync(this.runsc) : (process.env.PATH ?? '').split(':').some((d) => existsSync(path.join(d, this.runsc)))
    if (!found) throw new CodeboxError('Unavailable', `${this.runsc} is not installed (apt-get install runsc)`)
    try {
      await run(this.runsc, ['--version'], { timeout: 10_000 })
    } catch (e) {
      throw new CodeboxError('Unavailable', `${this.runsc} --version failed: ${(e as Error).message}`, { cause: e })
    }
    for (const tool of ['mount', 'umount']) {
      if (!SYSTEM_PATH.split(':').some((d) => existsSync(path.join(d, tool))))
        throw new CodeboxError('Unavailable', `the gvisor driver needs ${tool}(8) (util-linux) for each sandbox's ports tmpfs`)
    }
    if (this.platform === 'kvm' && !existsSync('/dev/kvm'))
      throw new CodeboxError('Unavailable', 'the gvisor driver is set to platform kvm but /dev/kvm is missing')
    if (this.cgroupMode === 'none')
      throw new CodeboxError('Unavailable', 'the gvisor driver needs the memory, pids and cpu cgroup controllers (v1 or v2) for its limits')
    try {
      await access(path.join(this.imagePath, 'usr/bin/python3'), constants.X_OK)
    } catch {
      throw new CodeboxError('Unavailable', `no sandbox image at ${this.imagePath}; run \`codebox image build\``)
    }
    await this.runtimePath()
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 })
    await mkdir(path.join(this.workDir, 'bundles'), { recursive: true, mode: 0o700 })
    // Start-up is when a previous server's leftovers (it was killed) can be found and removed.
    await sweepStaleCgroups(this.cgroupMode)
    await this.sweepStaleBundles()
  }

  /**
   * Removes bundles left by a server that was killed: its sandboxes ended when their executor's
   * stdin closed, and runsc removed their state, but not the bundle. Only bundles older than
   * `olderThanMs` whose container runsc no longer lists.
   */
  async sweepStaleBundles(olderThanMs = 10 * 60_000): Promise<number> {
    const dir = path.join(this.workDir, 'bundles')
    let listed: string[]
    try {
      const { stdout } = await run(this.runsc, [`--root=${this.stateDir}`, 'list', '--quiet'], { timeout: 10_000 })
      listed = stdout.split('\n').filter(Boolean)
    } catch {
      return 0 // cannot tell which are live: leave them all
    }
    let removed = 0
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      const age = Date.now() - ((await stat(path.join(dir, name)).catch(() => undefined))?.mtimeMs ?? Date.now())
      if (listed.includes(name) || age < olderThanMs) continue
      await removeBundle(path.join(dir, name))
      removed++
    }
    return removed
  }

  async create(spec: SandboxSpec, options: CreateOptions = {}): Promise<Sandbox> {
    const { limits } = spec
    const runtime = await this.runtimePath()
    if (spec.code && !existsSync(path.join(this.imagePath, CODE_DIR))) {
      throw new CodeboxError(
        'Unavailable',
        `the sandbox image at ${this.imagePath} has no ${CODE_DIR} to mount code on; build a new image (codebox image build)`,
      )
    }
    const bundle = path.join(this.workDir, 'bundles', spec.id)
    let listener: EgressListenerHandle | undefined
    // The egress socket gets a directory of its own, bound over the image's empty /mnt (bundle.ts).
    const egressDir = spec.network.mode === 'egress' ? path.join(bundle, 'egress') : undefined
    if (spec.network.mode === 'egress') {
      if (!options.egress)
        throw new CodeboxError('Unavailable', 'network egress needs the host’s egress proxy, which this engine did not give the gVisor driver')
      const { policy, sessionId, gateway } = spec.network
      await mkdir(egressDir!, { recursive: true, mode: 0o711 })
      await chmod(bundle, 0o700)
      await chmod(egressDir!, 0o711)
      try {
        listener = await options.egress.open({
          sandboxId: spec.id,
          policy,
          ...(sessionId ? { sessionId } : {}),
          ...(gateway ? { gateway } : {}),
          socketPath: path.join(egressDir!, 'egress.sock'),
        })
      } catch (e) {
        await rm(bundle, { recursive: true, force: true })
        throw e
      }
    }
    const portsDir = path.join(bundle, 'ports')
    let cgroups
    try {
      cgroups = await createCgroups(this.cgroupMode, spec.id, {
        ...limits,
        memoryBytes: limits.memoryBytes + GVISOR_MEMORY_OVERHEAD,
        pids: hostPidsFor(limits.pids),
      })
    } catch (e) {
      listener?.close()
      await rm(bundle, { recursive: true, force: true })
      throw new CodeboxError('SandboxFailure', `cannot create cgroups for the sandbox: ${(e as Error).message}`, { cause: e })
    }
    const cgroupsPath = cgroups ? `/codebox/${spec.id}` : undefined
    try {
      await prepareSocket(listener?.socketPath)
      await mkdir(bundle, { recursive: true, mode: 0o700 })
      const runDir = path.join(bundle, 'run')
      await mkdir(path.join(runDir, 'codebox', 'ports'), { recursive: true, mode: 0o755 })
      await mkdir(portsDir, { mode: 0o700 })
      await run('mount', ['-t', 'tmpfs', '-o', PORTS_TMPFS_OPTIONS, 'codebox-ports', portsDir], { timeout: 10_000, env: { PATH: SYSTEM_PATH } })
      const config = ociSpec({
        imagePath: this.imagePath,
        runtimePath: runtime,
        limits,
        egressDir,
        gateway: spec.network.mode === 'egress' && spec.network.gateway !== undefined,
        cgroupsPath,
        ...(spec.code ? { codePath: spec.code.hostPath } : {}),
        ports: { runDir, portsDir },
      })
      await writeFile(path.join(bundle, 'config.json'), JSON.stringify(config))
    } catch (e) {
      await removeBundle(bundle)
      await cgroups?.remove()
      listener?.close()
      throw new CodeboxError('SandboxFailure', `cannot prepare the gVisor bundle: ${(e as Error).message}`, { cause: e })
    }

    const globalArgs = this.globalArgs(listener !== undefined)
    const channel = startRunsc(this.runsc, globalArgs, bundle, spec.id)
    const { child } = channel
    const diagnostics = boundedBuffer(16 * 1024)
    channel.diagnostics.on('data', (c: Buffer) => diagnostics.push(c))
    const counters = async (): Promise<LimitCounters> => (cgroups ? cgroups.counters() : { oomKills: 0, pidsLimitHits: 0 })
    let ended = false
    const exited = new Promise<SandboxExit>((resolve) => {
      child.once('exit', (code, signal) => {
        ended = true
        // Before `exited` resolves: the session layer reads the diagnostics as soon as it does.
        void counters().then((c) => {
          if (c.oomKills > 0) {
            diagnostics.push(
              Buffer.from(`\n[codebox] the sandbox ran out of memory (limit ${limits.memoryBytes} bytes); under gVisor that ends the whole sandbox\n`),
            )
          } else if (c.pidsLimitHits > 0) {
            diagnostics.push(Buffer.from(`\n[codebox] the sandbox reached its host task limit (${hostPidsFor(limits.pids)}) and ended\n`))
          }
          resolve({ code, signal })
        })
      })
      child.once('error', (e) => {
        ended = true
        diagnostics.push(Buffer.from(e.message))
        resolve({ code: null, signal: null })
      })
    })
    let destroyed: Promise<void> | undefined
    const destroy = (): Promise<void> =>
      (destroyed ??= (async () => {
        if (!ended) {
          await this.runscQuiet(globalArgs, ['kill', '--all', spec.id, 'KILL'])
          await Promise.race([exited, delay(3000, undefined, { ref: false })])
        }
        // runsc did not stop it: kill the sentry and gofer (in the cgroups) and the runsc child.
        await cgroups?.killAll()
        child.kill('SIGKILL')
        await exited
        await this.runscQuiet(globalArgs, ['delete', '--force', spec.id])
        await this.removeState(spec.id)
        await removeBundle(bundle)
        await cgroups?.killAll()
        await cgroups?.remove()
        listener?.close()
      })())
    const connectPort = async (port: number, options: ConnectPortOptions = {}): Promise<net.Socket> => {
      if (ended || destroyed) throw new CodeboxError('SessionTerminated', `sandbox ${spec.id} has ended`)
      // The ports directory is the sandbox's to write: connectRelay follows no symlink there.
      return connectRelay(path.join(portsDir, portSocketName(port)), port, options)
    }
    return {
      id: spec.id,
      input: channel.input,
      output: channel.output,
      diagnostics: diagnostics.text,
      exited,
      counters,
      memoryUsage: async () => (cgroups ? cgroups.memoryBytes() : 0),
      ...(listener ? { egressCounters: () => listener.counters } : {}),
      connectPort,
      destroy,
    }
  }

  /** Runs a runsc command whose failure (the container is gone already) does not matter. */
  private async runscQuiet(globalArgs: string[], args: string[]): Promise<void> {
    await run(this.runsc, [...globalArgs, ...args], { timeout: 10_000 }).catch(() => {})
  }

  /** Removes whatever runsc's state dir still holds for this container (its state and lock files). */
  private async removeState(id: string): Promise<void> {
    const entries = await readdir(this.stateDir).catch(() => [] as string[])
    for (const name of entries) if (name.includes(id)) await rm(path.join(this.stateDir, name), { recursive: true, force: true })
  }
}

const SYSTEM_PATH = '/usr/sbin:/usr/bin:/sbin:/bin'

/**
 * Removes a sandbox's bundle, unmounting its ports tmpfs first (lazily: runsc's gofer may still
 * hold it a moment; a bundle without one, or one never mounted, only fails the unmount).
 */
async function removeBundle(bundle: string): Promise<void> {
  const ports = path.join(bundle, 'ports')
  if (existsSync(ports)) await run('umount', ['--lazy', ports], { timeout: 10_000, env: { PATH: SYSTEM_PATH } }).catch(() => {})
  await rm(bundle, { recursive: true, force: true })
}

/**
 * Gives the egress socket to the sandbox's uid alone (mode 0600): gVisor checks the sandbox
 * user's permission on it, and no other host account has SANDBOX_UID's processes in a sandbox
 * that could reach the path.
 */
async function prepareSocket(socketPath: string | undefined): Promise<void> {
  if (socketPath === undefined) return
  const st = await lstat(socketPath)
  if (!st.isSocket()) throw new CodeboxError('SandboxFailure', `${socketPath} is not a unix socket`)
  await chown(socketPath, SANDBOX_UID, SANDBOX_UID)
  await chmod(socketPath, 0o600)
}
