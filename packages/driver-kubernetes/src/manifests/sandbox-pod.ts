/**
 * The sandbox pod: one per session (`cbx-<sessionId>`) or a warm one waiting in the pool. It runs
 * the same codebox executor as the bwrap and gVisor drivers, listening on EXECUTOR_PORT, under the
 * restrictions of SECURITY.md as Kubernetes expresses them: a RuntimeClass (gVisor by default), no
 * service-account token, no service links, uid 1000 with no capabilities and no privilege
 * escalation, a read-only root with size-capped emptyDirs for /workspace, /tmp and /dev/shm,
 * seccomp RuntimeDefault, no host namespaces, no DNS, resources from the session's limits and
 * `activeDeadlineSeconds` as the backstop for a session nobody ends.
 *
 * The executor runs in its listen mode (CODEBOX_LISTEN, CODEBOX_EXECUTOR_TOKEN: listen.py) and sets
 * its own rlimits (CODEBOX_RLIMITS), as docs/executor-protocol.md describes. A session pod with a
 * code mount (a hosted agent's bundle) also has an emptyDir at CODE_DIR that an init container, the
 * code receiver (code_receiver.py), fills from the driver's stream before the executor starts; the
 * executor's container mounts it read-only. Such pods are never warm pods.
 */
import type { Container, EnvVar, Pod, PodSpec, Volume } from 'kubernetes-types/core/v1.js'
import type { OwnerReference } from 'kubernetes-types/meta/v1.js'
import { CODE_DIR, validationError, type EgressPolicy, type SandboxGateway, type SessionLimits } from '@codebox/core'
import { checkRelayIdentity, gatewayEnv, parseEgressPolicy, sandboxEnv } from '@codebox/sandbox'
import {
  checkDnsLabel,
  EGRESS_POLICY_ANNOTATION,
  GATEWAY_ANNOTATION,
  MAX_EGRESS_POLICY_BYTES,
  checkDnsSubdomain,
  checkLabelValue,
  componentLabels,
  NETWORK_LABEL,
  NETWORK_PROFILES,
  NONCE_ANNOTATION,
  POOL_LABEL,
  POOL_STATE_LABEL,
  SANDBOX_SERVICE_ACCOUNT,
  sandboxPodName,
  SESSION_LABEL,
  warmPodName,
  type NetworkProfile,
} from '../names.ts'
import { bytesQuantity, cpuQuantity } from './quantity.ts'

/** The port the executor listens on in every sandbox pod. */
export const EXECUTOR_PORT = 7070
/** The uid and gid of the executor and everything it starts (the image's `sandbox` user). */
export const SANDBOX_UID = 1000
/** The executor's command: the same as under bwrap and gVisor (the image carries it at /opt/codebox). */
export const EXECUTOR_COMMAND: readonly string[] = ['/usr/bin/python3', '-s', '-B', '/opt/codebox/executor/executor.py']
/** The code receiver's command (the init container of a pod with a code mount): the executor's python3 flags. */
export const CODE_RECEIVER_COMMAND: readonly string[] = ['/usr/bin/python3', '-s', '-B', '/opt/codebox/executor/code_receiver.py']
/** The most file bytes a code mount may hold (a hosted agent's unpacked bundle). */
export const MAX_CODE_BYTES = 1024 ** 3
/** The most entries (files, directories, links) a code mount may hold. */
export const MAX_CODE_ENTRIES = 200_000
/** The largest code volume (emptyDir) a pod gets: MAX_CODE_BYTES with room for its entries' blocks (codeVolumeBytes). */
export const MAX_CODE_VOLUME_BYTES = 2 * 1024 ** 3
/** The code receiver's memory: it streams, so a little is plenty (never more than the session's). */
export const CODE_RECEIVER_MEMORY_BYTES = 128 * 1024 ** 2
/** How long past the session's max lifetime Kubernetes waits before it kills the pod (the executor ends itself at the deadline). */
export const DEADLINE_GRACE_SECONDS = 60
/** Room for the container's logs in the pod's ephemeral storage, beyond /workspace and /tmp. */
export const LOG_ALLOWANCE_BYTES = 64 * 1024 ** 2
/** /dev/shm's size: at most this, never more than /tmp's (as under gVisor). */
export const SHM_MAX_BYTES = 64 * 1024 ** 2

/** What the scheduler reserves for a sandbox pod; each is capped at the pod's limit. */
export interface SandboxRequests {
  /** Default 256 MiB: an idle session with the data stack imported uses about 100 MB. */
  memoryBytes: number
  /** Default 0.1 core. */
  cpuCores: number
  /** Default 64 MiB. */
  ephemeralBytes: number
}

export const defaultSandboxRequests: Readonly<SandboxRequests> = Object.freeze({ memoryBytes: 256 * 1024 ** 2, cpuCores: 0.1, ephemeralBytes: 64 * 1024 ** 2 })

export interface SandboxPodOptions {
  namespace: string
  /** The sandbox image (an OCI image of the sandbox image directory and the executor; `codebox image export --oci`). */
  image: string
  limits: SessionLimits
  network: NetworkProfile
  /** The egress proxy as the pod reaches it, `http://<IP>:<port>` (an IP: sandbox pods have no DNS); required for `public` and `vpc`. */
  egressProxyUrl?: string
  /**
   * The pod's egress token (egressToken, from egressTokenKey and this pod's nonce): the pod's proxy
   * URL becomes `http://<podName>:<egressToken>@<IP>:<port>`, which clients send as
   * Proxy-Authorization: Basic. The cluster's egress proxy (codebox kubernetes egress-proxy) serves
   * no request without it. `public` and `vpc` only, with `egressPolicy`.
   */
  egressToken?: string
  /**
   * The policy the egress proxy applies to this pod (EGRESS_POLICY_ANNOTATION): mode `public` for
   * the `public` profile, `allowlist` for `vpc`. `public` and `vpc` only, with `egressToken`.
   */
  egressPolicy?: EgressPolicy
  /**
   * The pod may use the model gateway through its egress proxy (GATEWAY_ANNOTATION: the session
   * id and tag the proxy relays to the API), and its model clients are pointed there (gatewayEnv:
   * 127.0.0.1:3129, the executor's relay, which tunnels to the proxy named by CODEBOX_GATEWAY_PROXY,
   * the pod's proxy URL). `public` and `vpc` only, with `egressToken`; the policy may then be mode `none`.
   */
  gateway?: SandboxGateway & { sessionId?: string }
  /** The pool this pod belongs to (POOL_LABEL), a label value. */
  poolKey: string
  /** The pod's NONCE_ANNOTATION (newTokenNonce). */
  nonce: string
  /** The executor token derived from the nonce (executorToken); the executor takes it from its environment and drops it. */
  token: string
  /** Default `gvisor`; null for the cluster's default runtime (only where the nodes isolate pods some other way). */
  runtimeClassName?: string | null
  /** Whether the executor needs the gVisor workarounds it has under the gvisor driver; default: the runtime class is `gvisor`. */
  gvisor?: boolean
  /** Default EXECUTOR_PORT. */
  executorPort?: number
  requests?: Partial<SandboxRequests>
  /** Objects whose deletion deletes the pod (garbage collection); none by default. */
  ownerReferences?: OwnerReference[]
  /** Nodes the pod may run on (dedicated sandbox nodes); none by default. */
  nodeSelector?: Record<string, string>
  /** Default `IfNotPresent`. */
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never'
}

/** A session pod's code mount: what the code receiver accepts, and the volume it fills. */
export interface CodeVolumeOptions {
  /** File bytes the bundle holds (the receiver refuses more), 0 to MAX_CODE_BYTES. */
  bytes: number
  /** Entries the bundle holds (the receiver refuses more), 1 to MAX_CODE_ENTRIES. */
  entries: number
}

export interface SessionPodOptions extends SandboxPodOptions {
  sessionId: string
  /** The session's code mount: an emptyDir at CODE_DIR filled by the code receiver; none by default. */
  code?: CodeVolumeOptions
}

/** The code volume's sizeLimit for a bundle: its bytes, a block per entry and 1 MiB, in whole MiB, at most MAX_CODE_VOLUME_BYTES. */
export function codeVolumeBytes(code: CodeVolumeOptions): number {
  const mib = 1024 ** 2
  return Math.min(MAX_CODE_VOLUME_BYTES, Math.ceil((code.bytes + 4096 * code.entries + mib) / mib) * mib)
}

export interface WarmPodOptions extends SandboxPodOptions {
  /** The pod's id (its name is `cbx-warm-<podId>`). */
  podId: string
  /**
   * How long a warm pod may wait for a session, ms; default 1 h. Its activeDeadlineSeconds is this
   * plus the max lifetime, so a claim can always lower it to the session's deadline (Kubernetes lets
   * a running pod's deadline only be set or decreased); the leader replaces older warm pods.
   */
  warmMaxAgeMs?: number
}

export const DEFAULT_WARM_MAX_AGE_MS = 3600_000

/** The pod of session `sessionId`: claimed from its creation, its deadline the session's max lifetime. */
export function sessionPod(options: SessionPodOptions): Pod {
  const name = sandboxPodName(options.sessionId)
  const labels = { [SESSION_LABEL]: checkLabelValue('sessionId', options.sessionId), [POOL_STATE_LABEL]: 'claimed' }
  return podManifest(name, labels, lifetimeSeconds(options.limits.maxLifetimeMs), options, options.code && checkCode(options.code))
}

function checkCode(code: CodeVolumeOptions): CodeVolumeOptions {
  if (!Number.isSafeInteger(code.bytes) || code.bytes < 0 || code.bytes > MAX_CODE_BYTES)
    throw validationError('code.bytes', `must be a whole number from 0 to ${MAX_CODE_BYTES}, got ${code.bytes}`)
  if (!Number.isSafeInteger(code.entries) || code.entries < 1 || code.entries > MAX_CODE_ENTRIES)
    throw validationError('code.entries', `must be a whole number from 1 to ${MAX_CODE_ENTRIES}, got ${code.entries}`)
  return code
}

/** A warm pod: no session yet (POOL_STATE_LABEL `free`); a claim patches it (claimPatch). */
export function warmPod(options: WarmPodOptions): Pod {
  const name = warmPodName(options.podId)
  const warmMaxAgeMs = options.warmMaxAgeMs ?? DEFAULT_WARM_MAX_AGE_MS
  if (!Number.isSafeInteger(warmMaxAgeMs) || warmMaxAgeMs < 1000)
    throw validationError('warmMaxAgeMs', `must be a whole number of ms, at least 1000, got ${warmMaxAgeMs}`)
  const deadline = lifetimeSeconds(options.limits.maxLifetimeMs) + Math.ceil(warmMaxAgeMs / 1000)
  return podManifest(name, { [POOL_STATE_LABEL]: 'free' }, deadline, options)
}

function lifetimeSeconds(maxLifetimeMs: number): number {
  return Math.ceil(maxLifetimeMs / 1000) + DEADLINE_GRACE_SECONDS
}

function podManifest(
  name: string,
  stateLabels: Record<string, string>,
  activeDeadlineSeconds: number,
  options: SandboxPodOptions,
  code?: CodeVolumeOptions,
): Pod {
  const { limits } = options
  if (!NETWORK_PROFILES.includes(options.network))
    throw validationError('network', `must be one of ${NETWORK_PROFILES.join(', ')}, got ${JSON.stringify(options.network)}`)
  const runtimeClassName = options.runtimeClassName === undefined ? 'gvisor' : options.runtimeClassName
  if (runtimeClassName !== null) checkDnsSubdomain('runtimeClassName', runtimeClassName)
  const port = options.executorPort ?? EXECUTOR_PORT
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw validationError('executorPort', `must be a port (1-65535), got ${port}`)
  const spec: PodSpec = {
    ...(runtimeClassName !== null ? { runtimeClassName } : {}),
    serviceAccountName: SANDBOX_SERVICE_ACCOUNT,
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    hostNetwork: false,
    hostPID: false,
    hostIPC: false,
    shareProcessNamespace: false,
    restartPolicy: 'Never',
    activeDeadlineSeconds,
    terminationGracePeriodSeconds: 5,
    // No resolver: a sandbox without network has no use for one, and one with egress names hosts
    // to the proxy (HTTP CONNECT), which resolves them itself. Kubernetes requires a nameserver
    // with dnsPolicy None; loopback answers nothing.
    dnsPolicy: 'None',
    dnsConfig: { nameservers: ['127.0.0.1'] },
    securityContext: {
      runAsUser: SANDBOX_UID,
      runAsGroup: SANDBOX_UID,
      runAsNonRoot: true,
      fsGroup: SANDBOX_UID,
      seccompProfile: { type: 'RuntimeDefault' },
    },
    ...(options.nodeSelector !== undefined ? { nodeSelector: options.nodeSelector } : {}),
    ...(code ? { initContainers: [codeReceiverContainer(options, port, code)] } : {}),
    containers: [executorContainer(name, options, port, code)],
    volumes: [...volumes(limits), ...(code ? [{ name: 'code', emptyDir: { sizeLimit: bytesQuantity(codeVolumeBytes(code)) } }] : [])],
  }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: checkDnsLabel('namespace', options.namespace),
      labels: {
        ...componentLabels('sandbox'),
        [POOL_LABEL]: checkLabelValue('poolKey', options.poolKey),
        [NETWORK_LABEL]: options.network,
        ...stateLabels,
      },
      annotations: { [NONCE_ANNOTATION]: options.nonce, ...egressAnnotation(options), ...gatewayAnnotation(options) },
      ...(options.ownerReferences !== undefined && options.ownerReferences.length > 0 ? { ownerReferences: options.ownerReferences } : {}),
    },
    spec,
  }
}

function executorContainer(podName: string, options: SandboxPodOptions, port: number, code: CodeVolumeOptions | undefined): Container {
  const { limits } = options
  const requests = { ...defaultSandboxRequests, ...options.requests }
  // The pod's own ephemeral storage is its containers' limits together: the code volume counts too.
  const ephemeralBytes = limits.workspaceBytes + limits.tmpBytes + LOG_ALLOWANCE_BYTES + (code ? codeVolumeBytes(code) : 0)
  return {
    name: 'executor',
    image: options.image,
    imagePullPolicy: options.imagePullPolicy ?? 'IfNotPresent',
    command: [...EXECUTOR_COMMAND],
    workingDir: '/workspace',
    env: executorEnv(podName, options, port, code !== undefined),
    ports: [{ name: 'executor', containerPort: port, protocol: 'TCP' }],
    // Ready once the executor accepts connections; the driver waits for this condition.
    readinessProbe: { tcpSocket: { port: 'executor' }, periodSeconds: 1, failureThreshold: 3 },
    resources: {
      limits: { memory: bytesQuantity(limits.memoryBytes), cpu: cpuQuantity(limits.cpuCores), 'ephemeral-storage': bytesQuantity(ephemeralBytes) },
      requests: {
        memory: bytesQuantity(Math.min(requests.memoryBytes, limits.memoryBytes)),
        cpu: cpuQuantity(Math.min(requests.cpuCores, limits.cpuCores)),
        'ephemeral-storage': bytesQuantity(Math.min(requests.ephemeralBytes, ephemeralBytes)),
      },
    },
    securityContext: containerSecurity(),
    volumeMounts: [
      { name: 'workspace', mountPath: '/workspace' },
      { name: 'tmp', mountPath: '/tmp' },
      { name: 'shm', mountPath: '/dev/shm' },
      ...(code ? [{ name: 'code', mountPath: CODE_DIR, readOnly: true }] : []),
    ],
    terminationMessagePolicy: 'FallbackToLogsOnError',
    stdin: false,
    tty: false,
  }
}

/** Every container of a sandbox pod: no privilege, no capability, a read-only root. */
function containerSecurity(): Container['securityContext'] {
  return {
    allowPrivilegeEscalation: false,
    privileged: false,
    readOnlyRootFilesystem: true,
    runAsNonRoot: true,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  }
}

/**
 * The init container of a pod with a code mount: the code receiver, listening on the executor's
 * port with the executor's token until the driver has streamed the bundle into the code volume
 * (docs/executor-protocol.md, "The code receiver"); the executor starts once it exits 0.
 */
function codeReceiverContainer(options: SandboxPodOptions, port: number, code: CodeVolumeOptions): Container {
  const { limits } = options
  const requests = { ...defaultSandboxRequests, ...options.requests }
  const memoryBytes = Math.min(CODE_RECEIVER_MEMORY_BYTES, limits.memoryBytes)
  const env: Record<string, string> = {
    CODEBOX_LISTEN: `0.0.0.0:${port}`,
    CODEBOX_EXECUTOR_TOKEN: options.token,
    CODEBOX_CODE_DIR: CODE_DIR,
    CODEBOX_CODE_MAX_BYTES: String(code.bytes),
    CODEBOX_CODE_MAX_ENTRIES: String(code.entries),
  }
  return {
    name: 'code',
    image: options.image,
    imagePullPolicy: options.imagePullPolicy ?? 'IfNotPresent',
    command: [...CODE_RECEIVER_COMMAND],
    workingDir: CODE_DIR,
    env: Object.entries(env).map(([name, value]) => ({ name, value })),
    // It listens on the executor's port (declared by the executor's container; the NetworkPolicy
    // admits the API's pods to it) until it exits.
    resources: {
      limits: { memory: bytesQuantity(memoryBytes), cpu: cpuQuantity(limits.cpuCores), 'ephemeral-storage': bytesQuantity(LOG_ALLOWANCE_BYTES) },
      requests: {
        memory: bytesQuantity(Math.min(requests.memoryBytes, memoryBytes)),
        cpu: cpuQuantity(Math.min(requests.cpuCores, limits.cpuCores)),
        'ephemeral-storage': bytesQuantity(Math.min(requests.ephemeralBytes, LOG_ALLOWANCE_BYTES)),
      },
    },
    securityContext: containerSecurity(),
    volumeMounts: [{ name: 'code', mountPath: CODE_DIR }],
    terminationMessagePolicy: 'FallbackToLogsOnError',
    stdin: false,
    tty: false,
  }
}

function volumes(limits: SessionLimits): Volume[] {
  return [
    { name: 'workspace', emptyDir: { sizeLimit: bytesQuantity(limits.workspaceBytes) } },
    { name: 'tmp', emptyDir: { sizeLimit: bytesQuantity(limits.tmpBytes) } },
    // Memory-backed, counted in the pod's memory limit.
    { name: 'shm', emptyDir: { medium: 'Memory', sizeLimit: bytesQuantity(Math.min(limits.tmpBytes, SHM_MAX_BYTES)) } },
  ]
}

/**
 * The executor's environment: the sandbox environment every driver gives it (sandboxEnv), then
 * what the pod adds. A clean environment (SECURITY.md rule 2): enableServiceLinks is off, so
 * Kubernetes adds no service variables, and nothing of the API's environment is passed.
 */
function executorEnv(podName: string, options: SandboxPodOptions, port: number, code: boolean): EnvVar[] {
  const { limits } = options
  const gvisor = options.gvisor ?? (options.runtimeClassName === undefined || options.runtimeClassName === 'gvisor')
  const env: Record<string, string> = {
    ...sandboxEnv(limits),
    // The executor's TCP mode: listen here, accept only connections that present the token.
    CODEBOX_LISTEN: `0.0.0.0:${port}`,
    CODEBOX_EXECUTOR_TOKEN: options.token,
    // No cgroup or OCI rlimits of codebox's own in a pod: the executor sets these on itself before serving.
    CODEBOX_RLIMITS: `nofile=${limits.openFiles},nproc=${limits.pids},core=0,fsize=${limits.workspaceBytes}`,
    ...(gvisor ? { CODEBOX_KERNEL_AUTH: 'passcred', CODEBOX_TTY_SIGWINCH: 'executor' } : {}),
    // Where the session's code is, as every driver tells it.
    ...(code ? { CODEBOX_CODE_DIR: CODE_DIR } : {}),
    ...proxyEnv(podName, options),
  }
  return Object.entries(env).map(([name, value]) => ({ name, value }))
}

/**
 * The policy the egress proxy applies to the pod, as its annotation; none without egress. A pod
 * with the model gateway may have mode `none` (nothing but the gateway) on either profile.
 */
export function egressPolicyAnnotation(network: NetworkProfile, policy: EgressPolicy, gateway = false): Record<string, string> {
  const checked = parseEgressPolicy(policy, 'egressPolicy')
  const mode = network === 'public' ? 'public' : network === 'vpc' ? 'allowlist' : undefined
  if (checked.mode !== mode && !(gateway && mode !== undefined && checked.mode === 'none'))
    throw validationError(
      'egressPolicy.mode',
      `must be ${mode ?? 'absent'} for network '${network}' (the proxy of each profile serves its own), got ${checked.mode}`,
    )
  const json = JSON.stringify(checked)
  if (Buffer.byteLength(json) > MAX_EGRESS_POLICY_BYTES) throw validationError('egressPolicy', `must be at most ${MAX_EGRESS_POLICY_BYTES} bytes as JSON`)
  return { [EGRESS_POLICY_ANNOTATION]: json }
}

function egressAnnotation(options: SandboxPodOptions): Record<string, string> {
  if (options.egressPolicy === undefined) return {}
  if (options.network === 'sandbox') throw validationError('egressPolicy', "must be absent for network 'sandbox'")
  return egressPolicyAnnotation(options.network, options.egressPolicy, options.gateway !== undefined)
}

function gatewayAnnotation(options: SandboxPodOptions): Record<string, string> {
  const g = options.gateway
  if (g === undefined) return {}
  if (options.network === 'sandbox' || options.egressToken === undefined)
    throw validationError('gateway', 'needs network public or vpc with an egressToken: the pod reaches the gateway through its egress proxy')
  // Checked as the proxy will read it (the sandbox id there is the pod's session label).
  const identity = checkRelayIdentity({
    sandboxId: 'x',
    ...(g.sessionId !== undefined ? { sessionId: g.sessionId } : {}),
    ...(g.tag !== undefined ? { tag: g.tag } : {}),
  })
  return { [GATEWAY_ANNOTATION]: JSON.stringify({ sessionId: identity.sessionId, tag: identity.tag }) }
}

const egressTokenShape = /^[A-Za-z0-9_-]{43}$/

function proxyEnv(podName: string, options: SandboxPodOptions): Record<string, string> {
  if (options.network === 'sandbox') {
    for (const field of ['egressProxyUrl', 'egressToken', 'egressPolicy'] as const)
      if (options[field] !== undefined) throw validationError(field, "must be absent for network 'sandbox'")
    return {}
  }
  const base = options.egressProxyUrl
  if (base === undefined) throw validationError('egressProxyUrl', `is required for network '${options.network}'`)
  if (!/^http:\/\/(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):\d{1,5}$/.test(base)) {
    throw validationError('egressProxyUrl', `must be http://<IP>:<port> (sandbox pods have no DNS), got ${JSON.stringify(base)}`)
  }
  if ((options.egressToken === undefined) !== (options.egressPolicy === undefined))
    throw validationError(options.egressToken === undefined ? 'egressToken' : 'egressPolicy', 'egressToken and egressPolicy go together (the proxy needs both)')
  if (options.egressToken !== undefined && !egressTokenShape.test(options.egressToken))
    throw validationError('egressToken', 'must be 43 base64url characters (egressToken makes one)')
  // The pod's name and token as the URL's user and password: clients send them as Proxy-Authorization: Basic.
  const url = options.egressToken === undefined ? base : base.replace('http://', `http://${podName}:${options.egressToken}@`)
  return {
    // The gateway on 127.0.0.1:3129 as on one host: the executor's relay tunnels each connection
    // to this proxy (with the pod's credentials), which relays it to the API.
    ...(options.gateway !== undefined ? { ...gatewayEnv(), CODEBOX_GATEWAY_PROXY: url } : {}),
    HTTP_PROXY: url,
    HTTPS_PROXY: url,
    http_proxy: url,
    https_proxy: url,
    NO_PROXY: 'localhost,127.0.0.1',
    no_proxy: 'localhost,127.0.0.1',
    NODE_USE_ENV_PROXY: '1',
  }
}
