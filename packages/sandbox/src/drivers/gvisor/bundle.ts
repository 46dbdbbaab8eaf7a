/**
 * The OCI runtime spec (config.json) of one gVisor sandbox: the image as a read-only root, the
 * runtime tree (runtime.ts: the executor) bound read-only at /opt/codebox, size-capped tmpfs for
 * /workspace, /tmp and /dev/shm (gVisor's own tmpfs, held in the sandbox's memory), uid 1000 with
 * no capabilities, and the host cgroups the driver made (runsc joins groups that exist and leaves
 * their limits alone). Pure: the driver writes the result to `<bundle>/config.json`. A session's
 * code (a host directory) is bound read-only, nosuid, nodev at CODE_DIR, which must exist in the
 * image (runsc would otherwise make the mount point in the shared image itself). The inbound
 * relay's ports directory (`ports`) is a host-backed mount at GVISOR_PORTS_DIR, where the
 * executor binds sockets the host connects to (runsc --host-uds=create; driver.ts).
 */
import path from 'node:path'
import { CODE_DIR, type SessionLimits } from '@codebox/core'
import { egressEnv } from '../bwrap/network.ts'

import { sandboxEnv } from '../shared.ts'

/** Where a gVisor sandbox finds its egress socket. */
export const GVISOR_EGRESS_SOCKET = '/mnt/egress.sock'
/** Where a gVisor sandbox's inbound relay binds its port sockets (a host-backed mount, executor/inbound_relay.py). */
export const GVISOR_PORTS_DIR = '/run/codebox/ports'

export interface BundleOptions {
  /** The image's root on the host. */
  imagePath: string
  /** The installed runtime tree (its `opt/codebox` is bound at /opt/codebox). */
  runtimePath: string
  limits: SessionLimits
  /** The host directory holding the sandbox's egress socket `egress.sock` (a listener of the host's egress proxy), or undefined for no network. */
  egressDir: string | undefined
  /** Whether the sandbox uses the model gateway (its environment points model clients there). Default false. */
  gateway?: boolean
  /** cgroup path relative to each hierarchy's root (e.g. `/codebox/<id>`), or undefined for none. */
  cgroupsPath: string | undefined
  /** The host directory seen read-only at CODE_DIR, or undefined for none. */
  codePath?: string
  /**
   * The inbound relay's directories, or undefined for none: `runDir`, a host directory holding
   * only the empty `codebox/ports/`, is bound read-only over the image's /run (so the nested
   * mount point exists without runsc making it in the shared image), and `portsDir`, the
   * sandbox's writable, size-capped host tmpfs, at GVISOR_PORTS_DIR.
   */
  ports?: { runDir: string; portsDir: string }
}

/** The uid and gid the executor runs as inside the sandbox (the image's `sandbox` user). */
export const SANDBOX_UID = 1000

const tmpfs = (destination: string, bytes: number, mode: string, owned = false): Record<string, unknown> => ({
  destination,
  type: 'tmpfs',
  source: 'tmpfs',
  options: ['nosuid', 'nodev', `size=${bytes}`, `mode=${mode}`, ...(owned ? [`uid=${SANDBOX_UID}`, `gid=${SANDBOX_UID}`] : [])],
})

export function ociSpec(options: BundleOptions): Record<string, unknown> {
  const { limits, egressDir } = options
  const env = {
    ...sandboxEnv(limits),
    ...(egressDir !== undefined ? egressEnv(GVISOR_EGRESS_SOCKET, options.gateway === true) : {}),
    // gVisor's SO_PEERCRED (runsc 2022) gives the caller's own pid: the executor and its kernels
    // tell each other apart by SCM_CREDENTIALS instead (executor/kernel_channel.py).
    CODEBOX_KERNEL_AUTH: 'passcred',
    // gVisor's terminals (runsc 2022) send no SIGWINCH on a resize: the executor does (executor/terminal.py).
    CODEBOX_TTY_SIGWINCH: 'executor',
    ...(options.codePath !== undefined ? { CODEBOX_CODE_DIR: CODE_DIR } : {}),
    ...(options.ports !== undefined ? { CODEBOX_PORTS_DIR: GVISOR_PORTS_DIR } : {}),
  }
  const mounts: Record<string, unknown>[] = [
    { destination: '/proc', type: 'proc', source: 'proc' },
    tmpfs('/tmp', limits.tmpBytes, '1777'),
    tmpfs('/dev/shm', Math.min(limits.tmpBytes, 64 * 1024 * 1024), '1777'),
    tmpfs('/workspace', limits.workspaceBytes, '0755', true),
    { destination: '/opt/codebox', type: 'bind', source: path.join(options.runtimePath, 'opt', 'codebox'), options: ['rbind', 'ro', 'nosuid', 'nodev'] },
  ]
  if (options.codePath !== undefined) {
    mounts.push({ destination: CODE_DIR, type: 'bind', source: options.codePath, options: ['rbind', 'ro', 'nosuid', 'nodev'] })
  }
  if (egressDir !== undefined) {
    // The socket's directory over the image's empty /mnt: runsc creates a bind's missing mount point
    // in the image itself (shared by every sandbox), so the destination must exist there already.
    mounts.push({ destination: '/mnt', type: 'bind', source: egressDir, options: ['rbind', 'nosuid', 'nodev', 'noexec'] })
  }
  if (options.ports !== undefined) {
    // In this order: the read-only /run first, the ports directory on its (existing) codebox/ports.
    mounts.push({ destination: '/run', type: 'bind', source: options.ports.runDir, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] })
    mounts.push({ destination: GVISOR_PORTS_DIR, type: 'bind', source: options.ports.portsDir, options: ['rbind', 'nosuid', 'nodev', 'noexec'] })
  }
  const noCaps: string[] = []
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: SANDBOX_UID, gid: SANDBOX_UID, additionalGids: [] },
      args: ['/usr/bin/python3', '-s', '-B', '/opt/codebox/executor/executor.py'],
      env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      cwd: '/workspace',
      capabilities: { bounding: noCaps, effective: noCaps, inheritable: noCaps, permitted: noCaps, ambient: noCaps },
      // gVisor enforces RLIMIT_NPROC per uid across the sandbox (every process runs as SANDBOX_UID),
      // refusing the fork or thread with EAGAIN: the pids limit the code sees.
      rlimits: [
        { type: 'RLIMIT_NOFILE', hard: limits.openFiles, soft: limits.openFiles },
        { type: 'RLIMIT_NPROC', hard: limits.pids, soft: limits.pids },
        { type: 'RLIMIT_CORE', hard: 0, soft: 0 },
        { type: 'RLIMIT_FSIZE', hard: limits.workspaceBytes, soft: limits.workspaceBytes },
      ],
      noNewPrivileges: true,
    },
    root: { path: options.imagePath, readonly: true },
    hostname: 'sandbox',
    mounts,
    linux: {
      ...(options.cgroupsPath ? { cgroupsPath: options.cgroupsPath } : {}),
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      // Sizes the sandbox's /proc/meminfo; the host cgroup the driver made holds the actual limit.
      resources: { memory: { limit: limits.memoryBytes } },
    },
  }
}
