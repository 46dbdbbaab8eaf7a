/**
 * The kubernetes driver against the fake API server (`@codebox/sandbox/testing/kubernetes`),
 * through the real client: a fake whose kubelet runs each sandbox pod's executor listening where
 * the fake's dialer connects (`<socketDir>/<port>.sock`), and drivers configured as a replica
 * would be (a kubeconfig, a namespace, the sealing key), dialling pods through the fake's dialer
 * seam.
 *
 * Where bwrap sandboxes can run (root, bwrap, the built image), each pod is a sandbox pod
 * (sandboxPodRunner): the pod's own command, the real executor in the real image, as the pod's uid
 * with the pod's environment and rlimits, without cgroups. Elsewhere the executor runs with the
 * host's python3, as the fake driver runs it: no isolation and no limits (and no init containers,
 * so no code mounts). A sandbox whose id starts
 * with `never-ready-` runs a process that never listens; one starting with `crash-` prints a line
 * and exits 3.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { KubeConfig } from '@kubernetes/client-node'
import {
  sandboxPodRunner,
  sandboxPodSupport,
  startFakeKubernetes,
  type FakeKubernetes,
  type FakeKubernetesOptions,
  type KubeletPod,
} from '@codebox/sandbox/testing/kubernetes'
import { KubernetesDriver, type KubernetesDriverOptions } from '../src/index.ts'

export const executorScript = path.resolve(import.meta.dirname, '../../sandbox/executor/executor.py')
const repoNodeModules = path.resolve(import.meta.dirname, '../../../node_modules')

/** What the kubelet runs for a sandbox pod: the executor in listen mode on the pod's socket, with the host's python3. */
function hostExecutor(pod: KubeletPod, dirs: string[]): { command: string; args: string[]; cwd: string; env: Record<string, string> } {
  const workspace = mkdtempSync(path.join(tmpdir(), 'kpod-ws-'))
  const tmp = mkdtempSync(path.join(tmpdir(), 'kpod-tmp-'))
  dirs.push(workspace, tmp)
  const port = (pod.pod.spec as { containers: { ports?: { containerPort: number }[] }[] }).containers[0]?.ports?.[0]?.containerPort ?? 7070
  return {
    command: '/usr/bin/python3',
    args: ['-s', executorScript],
    cwd: workspace,
    env: {
      // The pod's own environment (sandboxEnv, the token, CODEBOX_RLIMITS) comes from its spec;
      // these point it at host paths instead of the image's.
      PATH: `/usr/local/bin:/usr/bin:/bin:${workspace}/.local/bin`,
      HOME: workspace,
      CODEBOX_WORKSPACE: workspace,
      MPLCONFIGDIR: path.join(tmp, '.config/matplotlib'),
      XDG_CACHE_HOME: path.join(tmp, '.cache'),
      CODEBOX_NODE: process.execPath,
      CODEBOX_PYTHON: '/usr/bin/python3',
      CODEBOX_DENO: '',
      NODE_PATH: repoNodeModules,
      PIP_USER: '1',
      // gVisor's workarounds (the pod asks for the gvisor class): not wanted on the host's kernel.
      CODEBOX_KERNEL_AUTH: '',
      CODEBOX_TTY_SIGWINCH: '',
      CODEBOX_LISTEN: `unix:${path.join(pod.socketDir, `${port}.sock`)}`,
    },
  }
}

/** How pods run here: `sandbox` (bwrap sandboxes of the image) or `host` (the host's python3), and why not `sandbox`. */
export const podSupport = await sandboxPodSupport()
export const podMode: 'sandbox' | 'host' = 'imagePath' in podSupport ? 'sandbox' : 'host'
export const hostReason = 'unavailable' in podSupport ? podSupport.unavailable : ''

export interface KubeFixture {
  fake: FakeKubernetes
  sealingKey: Buffer
  namespace: string
  /** A kubeconfig for the fake (a fresh one per call, as each replica has its own). */
  kubeConfig(): KubeConfig
  /** A driver on the fake; each call is another replica. */
  driver(options?: Partial<KubernetesDriverOptions>): KubernetesDriver
  close(): Promise<void>
}

/** Starts the fake API server with a kubelet that runs executors. */
export async function startKube(options: FakeKubernetesOptions = {}): Promise<KubeFixture> {
  const dirs: string[] = []
  const runner = 'imagePath' in podSupport ? await sandboxPodRunner({ imagePath: podSupport.imagePath }) : undefined
  const fake = await startFakeKubernetes({
    ...options,
    kubelet: {
      run: (pod) => {
        if (pod.name.startsWith('cbx-never-ready-')) return { command: '/bin/sh', args: ['-c', 'echo waiting forever; exec sleep 600'] }
        if (pod.name.startsWith('cbx-crash-')) return { command: '/bin/sh', args: ['-c', 'echo "executor: cannot start: boom" >&2; exit 3'] }
        if (runner) return runner.run(pod)
        // The host's python3 has no /app to fill: a code mount needs sandbox pods.
        if (pod.init)
          return { command: '/bin/sh', args: ['-c', `echo "the fake kubelet runs init containers only in sandbox pods (${hostReason})" >&2; exit 1`] }
        return hostExecutor(pod, dirs)
      },
      ...(options.kubelet === false ? {} : options.kubelet),
    },
  })
  const sealingKey = randomBytes(32)
  const namespace = 'codebox'
  const drivers: KubernetesDriver[] = []
  const kubeConfig = (): KubeConfig => {
    const kc = new KubeConfig()
    kc.loadFromString(JSON.stringify(fake.kubeconfig(fake.adminToken, namespace)))
    return kc
  }
  return {
    fake,
    sealingKey,
    namespace,
    kubeConfig,
    driver: (o = {}) => {
      const d = new KubernetesDriver({
        kubeConfig: kubeConfig(),
        namespace,
        image: 'registry.example.com/codebox/sandbox:test',
        sealingKey,
        dial: (x) => fake.dial(x),
        startTimeoutMs: 30_000,
        ...o,
      })
      drivers.push(d)
      return d
    },
    close: async () => {
      await Promise.all(drivers.map((d) => d.close()))
      await fake.close()
      await runner?.close()
      for (const d of dirs) rmSync(d, { recursive: true, force: true })
    },
  }
}

/** A fresh sandbox id; a prefix `never-ready` or `crash` picks what the kubelet runs. */
export const testId = (prefix = 't'): string => `${prefix}-${randomBytes(5).toString('hex')}`
