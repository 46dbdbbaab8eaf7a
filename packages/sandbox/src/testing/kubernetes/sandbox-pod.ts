/**
 * Sandbox pods for the kubelet simulator: each container the kubelet runs (the pod's init
 * containers, then its first container) runs its command in a local bwrap sandbox shaped as the
 * pod asks, so the codebox executor a sandbox pod runs is the real one in the real image. The
 * built image is the read-only root, with the executor tree the bwrap driver installs (runtime.ts)
 * over /opt/codebox. The container's volumeMounts of emptyDir volumes are per-pod host directories
 * shared by the pod's containers, bound read-only where the mount says `readOnly` (a `Memory`
 * emptyDir is a tmpfs of the container's own); /workspace, /tmp and /dev/shm are there even
 * unmounted (a host directory, tmpfs, tmpfs). The pod's directories are removed when its last
 * container ends (or one of its init containers fails), or by close(). The pod's socket directory
 * appears at /run/codebox/pod, where the executor listens: CODEBOX_LISTEN `HOST:PORT` becomes
 * `unix:/run/codebox/pod/<PORT>.sock`, the socket the simulator's `dial` reaches. Every namespace is new (a unix socket in a bound directory needs none shared), with no
 * capabilities, and the process runs as the pod's runAsUser (host uid too: setpriv drops to it
 * before bwrap). The pod's environment is the one the simulator gives it. This is a test tool, not
 * a driver: no cgroups, seccomp filter or size caps. Egress only with `egress`: a pod whose
 * HTTP_PROXY names a proxy at `<IP>:<port>` reaches it through a unix socket in its socket
 * directory (the executor's own relay, CODEBOX_EGRESS_SOCKET, serves it on 127.0.0.1:3128 inside,
 * and the proxy variables, CODEBOX_GATEWAY_PROXY too, are pointed there with their credentials), connected from the pod's IP
 * on the host (podNetwork `loopback`), so the proxy sees the pod's own address as on a cluster.
 */
import { execFile } from 'node:child_process'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync } from 'node:fs'
import net from 'node:net'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { loadEngineConfig } from '../../config.ts'
import { installRuntime } from '../../drivers/bwrap/runtime.ts'
import { findImage } from '../../image/build.ts'
import { defaultRecipe } from '../../image/recipe.ts'
import type { ContainerCommand } from './container.ts'
import type { KubeletPod } from './kubelet.ts'

/** Where the pod's socket directory appears in the sandbox. */
export const POD_SOCKET_DIR = '/run/codebox/pod'
/** The uid a pod runs as when its securityContext names none. */
const DEFAULT_UID = 1000

export interface SandboxPodRunnerOptions {
  /** The built image's root (findImage(stateDir, defaultRecipe()).path; see sandboxPodSupport). */
  imagePath: string
  /** Where the executor tree is installed; default `<imagePath>/../../runtime`, as the bwrap driver does. */
  runtimeDir?: string
  /** Relay each pod's HTTP_PROXY (see above). Default false: pods have no network at all. */
  egress?: boolean
}

export interface SandboxPodRunner {
  /** For `startFakeKubernetes({ kubelet: { run } })`. */
  run(pod: KubeletPod): ContainerCommand
  /** Removes the workspaces of pods whose process was killed before it could (after the fake's close()). */
  close(): Promise<void>
}

type Env = { name: string; value?: string }[]
interface ContainerSpec {
  name?: string
  command?: string[]
  args?: string[]
  workingDir?: string
  env?: Env
  securityContext?: { runAsUser?: number; runAsGroup?: number }
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[]
}
interface PodSpec {
  securityContext?: { runAsUser?: number; runAsGroup?: number }
  initContainers?: ContainerSpec[]
  containers: ContainerSpec[]
  volumes?: { name: string; emptyDir?: { medium?: string } }[]
}

const run = promisify(execFile)

/** A program's absolute path on PATH, or undefined. */
function which(program: string): string | undefined {
  return (process.env.PATH ?? '/usr/bin:/bin')
    .split(':')
    .map((dir) => path.join(dir, program))
    .find((p) => existsSync(p))
}

/**
 * The image sandbox pods run, or why they cannot run here (for a test's `skip`): they need root
 * (to drop to the pod's uid and hand it its directories), bwrap and setpriv, the built image, and
 * a kernel that lets an unprivileged uid make user namespaces (tried once).
 */
export async function sandboxPodSupport(): Promise<{ imagePath: string } | { unavailable: string }> {
  if (process.getuid?.() !== 0) return { unavailable: 'sandbox pods need root (to run each as its pod’s uid)' }
  const bwrap = which('bwrap')
  const setpriv = which('setpriv')
  if (!bwrap || !setpriv) return { unavailable: `${bwrap ? 'setpriv' : 'bwrap'} is not installed (apt-get install ${bwrap ? 'util-linux' : 'bubblewrap'})` }
  const config = loadEngineConfig(process.env)
  const image = await findImage(config.stateDir, defaultRecipe({ mirror: config.debianMirror }))
  if (!image) return { unavailable: `no sandbox image in ${config.stateDir}; run \`codebox image build\` (npm test does)` }
  try {
    await run(setpriv, [...dropTo(DEFAULT_UID, DEFAULT_UID), bwrap, '--unshare-all', '--unshare-user', '--ro-bind', image.path, '/', '/bin/true'], {
      timeout: 30_000,
    })
  } catch (e) {
    return { unavailable: `bwrap cannot run a sandbox as uid ${DEFAULT_UID} here: ${((e as { stderr?: string }).stderr || (e as Error).message).trim()}` }
  }
  return { imagePath: image.path }
}

const dropTo = (uid: number, gid: number): string[] => [`--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--inh-caps=-all', '--no-new-privs', '--']

/** A pod the runner cannot run: its process prints why and exits 1 (the pod is Failed, the reason in its log). */
function refuse(why: string): ContainerCommand {
  return { command: '/bin/sh', args: ['-c', 'echo "sandbox pod: $1" >&2; exit 1', 'sandbox-pod', why] }
}

/**
 * The wrapper each container runs: bwrap in the foreground, then the pod's directory removed when
 * the pod is over: after its last container (`always` 1), or after an init container that failed.
 * The simulator's SIGTERM reaches bwrap (which dies, and --die-with-parent ends the sandbox) and
 * this shell, whose trap only lets it go on to clean up.
 */
const WRAPPER = 'dir=$1; always=$2; shift 2; trap : TERM; "$@"; status=$?; if [ "$always" = 1 ] || [ $status -ne 0 ]; then rm -rf -- "$dir"; fi; exit $status'

/**
 * The bwrap arguments of the container's mounts below the image: the defaults, then its emptyDir
 * volumeMounts over them, parents before children. Throws (a message for refuse) for a mount the
 * runner cannot make.
 */
function mountArgs(spec: PodSpec, container: ContainerSpec, podDir: string, uid: number, gid: number): string[] {
  const mounts = new Map<string, string[]>([
    ['/workspace', ['--bind', volumeDir(podDir, '.workspace', uid, gid), '/workspace']],
    ['/tmp', ['--tmpfs', '/tmp']],
    ['/dev/shm', ['--tmpfs', '/dev/shm']],
  ])
  for (const m of container.volumeMounts ?? []) {
    const volume = spec.volumes?.find((v) => v.name === m.name)
    if (!volume) throw new Error(`volumeMount ${m.name} names no volume of the pod`)
    if (!volume.emptyDir) throw new Error(`volume ${m.name} is not an emptyDir (the only kind sandbox pods run with)`)
    if (!path.posix.isAbsolute(m.mountPath) || m.mountPath.split('/').includes('..'))
      throw new Error(`mountPath ${JSON.stringify(m.mountPath)} is not absolute`)
    if (volume.emptyDir.medium === 'Memory') mounts.set(m.mountPath, ['--tmpfs', m.mountPath])
    else mounts.set(m.mountPath, [m.readOnly ? '--ro-bind' : '--bind', volumeDir(podDir, m.name, uid, gid), m.mountPath])
  }
  return [...mounts.keys()].sort((a, b) => a.split('/').length - b.split('/').length || a.localeCompare(b)).flatMap((p) => mounts.get(p)!)
}

/** The pod's directory for volume `name`, made (owned by the pod's uid) on first use. */
function volumeDir(podDir: string, name: string, uid: number, gid: number): string {
  const dir = path.join(podDir, name)
  if (!existsSync(dir)) {
    mkdirSync(dir, { mode: 0o755 })
    chownSync(dir, uid, gid)
  }
  return dir
}

export async function sandboxPodRunner(options: SandboxPodRunnerOptions): Promise<SandboxPodRunner> {
  const bwrap = which('bwrap')
  const setpriv = which('setpriv')
  if (!bwrap || !setpriv) throw new Error('sandbox pods need bwrap and setpriv; check sandboxPodSupport() first')
  const runtime = await installRuntime(path.resolve(options.runtimeDir ?? path.join(options.imagePath, '..', '..', 'runtime')))
  const workRoot = await mkdtemp(path.join(os.tmpdir(), 'kfake-ws-'))
  chmodSync(workRoot, 0o711)
  const relays = new Set<net.Server>()
  const podDirs = new Map<string, string>()
  return {
    run(kpod) {
      const spec = kpod.pod.spec as PodSpec
      const container = (kpod.init ? spec.initContainers : spec.containers)?.find((c) => c.name === kpod.container) ?? spec.containers[0]!
      const last = !kpod.init
      const uid = container.securityContext?.runAsUser ?? spec.securityContext?.runAsUser ?? DEFAULT_UID
      const gid = container.securityContext?.runAsGroup ?? spec.securityContext?.runAsGroup ?? uid
      if (!Number.isInteger(uid) || uid < 1 || !Number.isInteger(gid) || gid < 1)
        return refuse(`runAsUser ${uid}, runAsGroup ${gid}: a sandbox pod runs as a non-root uid`)
      const command = [...(container.command ?? []), ...(container.args ?? [])]
      if (command.length === 0) return refuse('the container names no command (images are not read for an entrypoint)')
      const listen = container.env?.find((e) => e.name === 'CODEBOX_LISTEN')?.value
      const port = listen === undefined ? undefined : /:(\d{1,5})$/.exec(listen)?.[1]
      if (listen !== undefined && port === undefined) return refuse(`CODEBOX_LISTEN ${JSON.stringify(listen)} names no port`)
      // The pod's uid must reach its directories: its socket directory (the simulator's, 0700 in
      // a 0700 root: the root is opened to traversal only) and its volumes, in a directory of the
      // pod's that its containers share.
      let podDir = podDirs.get(kpod.uid)
      let mounts: string[]
      try {
        chownSync(kpod.socketDir, uid, gid)
        chmodSync(path.dirname(kpod.socketDir), 0o711)
        if (podDir === undefined) {
          podDir = mkdtempSync(path.join(workRoot, `${kpod.name}-`))
          chmodSync(podDir, 0o711)
          podDirs.set(kpod.uid, podDir)
        }
        mounts = mountArgs(spec, container, podDir, uid, gid)
      } catch (e) {
        return refuse(`cannot prepare the pod's directories: ${(e as Error).message}`)
      }
      let egressEnv: Record<string, string> = {}
      const proxy = options.egress ? container.env?.find((e) => e.name === 'HTTP_PROXY')?.value : undefined
      if (proxy !== undefined) {
        const m = /^http:\/\/([^@/]+@)?(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(proxy)
        if (!m) return refuse(`HTTP_PROXY ${JSON.stringify(proxy)} is not http://[user:password@]<IPv4>:<port>`)
        const [, credentials = '', host, port] = m
        // The host end: each connection of the pod's relay goes to the proxy from the pod's own address.
        const relay = net.createServer((c) => {
          const up = net.connect({ host: host!, port: Number(port), localAddress: kpod.podIP })
          c.on('error', () => up.destroy())
          up.on('error', () => c.destroy())
          c.pipe(up).pipe(c)
        })
        const socket = path.join(kpod.socketDir, 'egress.sock')
        relay.listen(socket, () => {
          chownSync(socket, uid, gid)
        })
        relay.unref()
        relays.add(relay)
        const inside = `http://${credentials}127.0.0.1:3128`
        egressEnv = { CODEBOX_EGRESS_SOCKET: `${POD_SOCKET_DIR}/egress.sock`, HTTP_PROXY: inside, HTTPS_PROXY: inside, http_proxy: inside, https_proxy: inside }
        // The gateway port's proxy (over TCP) is the same one, reached through that relay too.
        const gatewayProxy = container.env?.find((e) => e.name === 'CODEBOX_GATEWAY_PROXY')?.value
        if (gatewayProxy !== undefined) {
          if (gatewayProxy !== proxy) return refuse(`CODEBOX_GATEWAY_PROXY ${JSON.stringify(gatewayProxy)} is not the pod's HTTP_PROXY`)
          egressEnv.CODEBOX_GATEWAY_PROXY = inside
        }
      }
      if (last) podDirs.delete(kpod.uid)
      const sandbox = [
        '--unshare-all',
        '--unshare-user',
        '--disable-userns',
        '--uid',
        String(uid),
        '--gid',
        String(gid),
        '--hostname',
        kpod.name.slice(0, 63),
        '--new-session',
        '--die-with-parent',
        '--cap-drop',
        'ALL',
        // The simulator's own variable names a host path.
        '--unsetenv',
        'FAKE_POD_SOCKET_DIR',
        '--ro-bind',
        options.imagePath,
        '/',
        '--ro-bind',
        path.join(runtime, 'opt/codebox'),
        '/opt/codebox',
        '--proc',
        '/proc',
        '--dev',
        '/dev',
        ...mounts,
        '--tmpfs',
        '/run',
        '--bind',
        kpod.socketDir,
        POD_SOCKET_DIR,
        '--remount-ro',
        '/run',
        '--chdir',
        container.workingDir ?? '/workspace',
        '--',
        ...command,
      ]
      return {
        command: '/bin/sh',
        args: ['-c', WRAPPER, 'sandbox-pod', podDir, last ? '1' : '0', setpriv, ...dropTo(uid, gid), bwrap, ...sandbox],
        env: { ...egressEnv, ...(port === undefined ? {} : { CODEBOX_LISTEN: `unix:${POD_SOCKET_DIR}/${port}.sock` }) },
      }
    },
    close: async () => {
      for (const r of relays) r.close()
      await rm(workRoot, { recursive: true, force: true })
    },
  }
}
