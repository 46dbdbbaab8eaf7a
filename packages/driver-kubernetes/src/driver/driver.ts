/**
 * The `kubernetes` driver: one pod per sandbox, through `@kubernetes/client-node`. A sandbox is the
 * pod `cbx-<sandboxId>` (sessionPod: an idempotent name, a retried create finds the same pod); the
 * driver waits on its shared watch of the namespace's sandbox pods until the pod is Ready with an
 * IP, dials the executor's port, authenticates with the pod's token (an HMAC any replica
 * recomputes from the pod's nonce annotation and the shared sealing key), and hands that
 * connection to the session as its channel. No Kubernetes write happens on the hot path: calls go
 * straight to the pod. `exited` follows the pod in the shared watch (finished, or deleted);
 * `destroy()` deletes the pod and waits for it to go; `attach(id)` connects again from any replica
 * or a restarted server. Everything read from a pod (its status, its log) is validated and
 * bounded (pod-state.ts).
 */
import { createHash, randomBytes } from 'node:crypto'
import { lookup } from 'node:dns/promises'
import net from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import { CoreV1Api, NodeV1Api, PatchStrategy, setHeaderOptions, type KubeConfig, type V1Pod } from '@kubernetes/client-node'
import {
  CodeboxError,
  defaultLimits,
  type AttachOptions,
  type ConnectPortOptions,
  type CreateOptions,
  type LimitCounters,
  type Sandbox,
  type SandboxDriver,
  type SandboxExit,
  type SandboxNetwork,
  type SandboxSpec,
  type SessionLimits,
  type EgressPolicy,
} from '@codebox/core'
import { parseEgressPolicy } from '@codebox/sandbox'
import { claimPatch } from '../manifests/claim.ts'
import {
  DEFAULT_WARM_MAX_AGE_MS,
  egressPolicyAnnotation,
  EXECUTOR_PORT,
  sessionPod,
  warmPod,
  type SandboxPodOptions,
  type SandboxRequests,
} from '../manifests/sandbox-pod.ts'
import {
  CLAIMED_AT_ANNOTATION,
  EGRESS_POLICY_ANNOTATION,
  NETWORK_LABEL,
  NONCE_ANNOTATION,
  POOL_LABEL,
  POOL_STATE_LABEL,
  sandboxPodName,
  SESSION_LABEL,
  warmPodName,
  type NetworkProfile,
} from '../names.ts'
import { egressToken, egressTokenKey, executorToken, executorTokenKey, newTokenNonce } from '../token.ts'
import { apiCode, apiMessage } from './api-errors.ts'
import { CODE_CONTAINER, receiverDone, receiverIP, scanCode, sendCode, type CodeBundle } from './code-upload.ts'
import { connectExecutor, type Dial } from './channel.ts'
import { connectTunnel } from './tunnel.ts'
import { LeaderElector, type LeaderOptions } from './leader.ts'
import { clean, exitOf, logTail, oomKillsOf, podState } from './pod-state.ts'
import { PodWatch, SANDBOX_SELECTOR, type PodChange } from './pod-watch.ts'

export interface KubernetesDriverOptions {
  kubeConfig: KubeConfig
  /** The namespace of the sandbox pods (the API's own). */
  namespace: string
  /** The sandbox image (`codebox image export --oci`, pushed to a registry the nodes pull from). */
  image: string
  /** The pods' RuntimeClass; default `gvisor`; null for the cluster's default runtime. */
  runtimeClassName?: string | null
  /** Default EXECUTOR_PORT (7070). */
  executorPort?: number
  /** Each network profile's egress proxy as the API reaches it, `host:port`; the host is resolved and pods get the IP. */
  egressProxies?: { public?: string; vpc?: string }
  /** The store's sealing key (32 bytes), the same on every replica: the executor tokens derive from it. */
  sealingKey: Buffer
  /** How a pod's port is reached; default `net.connect({host: podIP, port})`. */
  dial?: Dial
  /** How long a new pod may take to be Ready (scheduling, pulling the image, starting); default 120 s. */
  startTimeoutMs?: number
  /** How often a start waiting for Ready also reads the pod, in case the watch is reconnecting; default 3 s. */
  readyPollMs?: number
  /** How long the executor may take to answer a connection; default 10 s. */
  connectTimeoutMs?: number
  /** How long destroy() waits for the pod to be gone; default 30 s. */
  destroyTimeoutMs?: number
  /** The grace period of the deletion destroy() makes; default 1 s. */
  deleteGraceSeconds?: number
  /**
   * list() leaves out pods younger than this (another replica may be starting a session on one
   * and not have recorded it yet); default the start timeout plus 60 s.
   */
  listGraceMs?: number
  /** Resolves an egress proxy's host name to an IP; default the system resolver. */
  resolveHost?: (host: string) => Promise<string>
  /**
   * Take part in the replicas' leader election (the Lease) and, while leading, sweep the pods
   * nobody will end (leader.ts); started by a successful check(), stopped by close().
   */
  leader?: Omit<LeaderOptions, 'kubeConfig' | 'namespace' | 'tend'>
  /**
   * The claimable warm pool (CODEBOX_K8S_POOL_SIZE, CODEBOX_K8S_POOL_SIZE_PUBLIC): while this
   * replica leads, it keeps `size` free warm pods of the `sandbox` network profile and
   * `publicSize` of the `public` one for each pooled configuration, and every replica's create()
   * claims one of its session's profile before it creates a pod. Off (no warm pods made) without it.
   */
  pool?: KubernetesPoolOptions
  requests?: Partial<SandboxRequests>
  nodeSelector?: Record<string, string>
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never'
}

export interface KubernetesPoolOptions {
  /** Free warm pods of the `sandbox` network profile kept per pooled configuration (0-64); 0 makes none and deletes the free ones. */
  size: number
  /**
   * Free warm pods of the `public` network profile (PUBLIC egress through the public proxy, no
   * model gateway) kept per pooled configuration (0-64); default 0, which makes none and deletes
   * the free ones. Needs `egressProxies.public`.
   */
  publicSize?: number
  /**
   * The limits pooled besides those of the sessions this replica started in the last `maxAgeMs`
   * (at most MAX_POOL_CONFIGS in all); default the core's default limits.
   */
  limits?: SessionLimits[]
  /** How long a free warm pod waits for a session before the leader replaces it; default 1 h. */
  maxAgeMs?: number
}

/** The most pooled configurations (pool keys) the leader keeps warm pods for. */
export const MAX_POOL_CONFIGS = 4

/** The pool label of a sandbox pod: its limits as an opaque key (a warm pod is claimed only for a session of the same key). */
export function poolKeyOf(limits: SessionLimits): string {
  const ordered = Object.fromEntries(Object.entries(limits).sort(([a], [b]) => a.localeCompare(b)))
  return `limits-${createHash('sha256').update(JSON.stringify(ordered)).digest('hex').slice(0, 16)}`
}

/** The policy of every public warm pod (and of a PUBLIC session, which may claim one). */
const PUBLIC_POLICY: EgressPolicy = { mode: 'public', allow: [] }

/** The proxy a pod's executor was given (its HTTP_PROXY without the credentials), `http://<IP>:<port>`; undefined without one. */
function podProxyUrl(pod: V1Pod): string | undefined {
  const container = pod.spec?.containers?.find((c) => c.name === 'executor')
  const url = container?.env?.find((e) => e.name === 'HTTP_PROXY')?.value
  return url?.replace(/^http:\/\/[^@/]*@/, 'http://')
}

/**
 * Whether a warm pod can serve a session of `network` as it is, with no change the pod must see:
 * the same profile; for `public`, the same policy annotation (the proxy's rules) and the proxy the
 * session's replica resolves now (an older pod may name an address the proxy has left). Pods with
 * the model gateway or an allow-list are never warm (their annotation is the session's).
 */
function warmFits(pod: V1Pod, network: PodNetwork): boolean {
  const profile = pod.metadata?.labels?.[NETWORK_LABEL]
  if (profile !== network.profile) return false
  if (profile === 'sandbox') return true
  if (profile !== 'public' || network.gateway !== undefined || network.policy === undefined || network.proxyUrl === undefined) return false
  let wanted: string | undefined
  try {
    wanted = egressPolicyAnnotation('public', parseEgressPolicy(network.policy, 'policy'))[EGRESS_POLICY_ANNOTATION]
  } catch {
    return false
  }
  return pod.metadata?.annotations?.[EGRESS_POLICY_ANNOTATION] === wanted && podProxyUrl(pod) === network.proxyUrl
}

/** One sandbox pod the driver follows: its changes from the shared watch, until it has ended. */
class PodTracker {
  latest: V1Pod | undefined
  readonly exited: Promise<SandboxExit>
  #resolve!: (exit: SandboxExit) => void
  #unsubscribe: () => void
  #listeners = new Set<(change: PodChange) => void>()
  ended = false
  /** Set once this driver deleted the pod: its end is then reported as a kill, whatever the container said. */
  deleting = false
  why = ''

  readonly name: string
  readonly uid: string
  readonly #onEnd: (tracker: PodTracker, exit: SandboxExit, why: string, finished: boolean) => Promise<void>

  constructor(watch: PodWatch, name: string, uid: string, onEnd: (tracker: PodTracker, exit: SandboxExit, why: string, finished: boolean) => Promise<void>) {
    this.name = name
    this.uid = uid
    this.#onEnd = onEnd
    this.exited = new Promise((resolve) => (this.#resolve = resolve))
    this.#unsubscribe = watch.subscribe(name, (change) => {
      if (change.pod.metadata?.uid !== uid) return
      this.observe(change)
    })
    const cached = watch.get(name)
    if (cached?.metadata?.uid === uid) this.latest = cached
  }

  /** A change of the pod (from the watch, or a read): the pod's end when it has finished or is gone. */
  observe(change: PodChange): void {
    if (change.pod.metadata?.uid !== this.uid || this.ended) return
    this.latest = change.pod
    for (const l of [...this.#listeners]) l(change)
    const deleted = change.type === 'deleted'
    const state = podState(change.pod)
    if (!deleted && state.kind !== 'finished') return
    let exit = exitOf(change.pod)
    // A pod deleted while it ran was killed, even when its executor exited cleanly on SIGTERM.
    const killed = deleted || this.deleting || change.pod.metadata?.deletionTimestamp != null
    if (killed && exit.code === 0) exit = { code: null, signal: 'SIGTERM' }
    this.end(exit, deleted ? 'the pod was deleted' : state.kind === 'finished' ? state.why : 'the pod ended', !killed)
  }

  /** Follows every change of the pod (for a start waiting for Ready). */
  listen(listener: (change: PodChange) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  end(exit: SandboxExit, why: string, finished: boolean): void {
    if (this.ended) return
    this.ended = true
    this.why = why
    this.#unsubscribe()
    this.#listeners.clear()
    void this.#onEnd(this, exit, why, finished).finally(() => this.#resolve(exit))
  }

  /** Stops following the pod without ending it (release). */
  detach(): void {
    this.#unsubscribe()
    this.#listeners.clear()
  }
}

/** A sandbox pod's network: its profile label, and with egress its proxy's URL and its own policy. */
interface PodNetwork {
  profile: NetworkProfile
  proxyUrl?: string
  policy?: EgressPolicy
  /** The model gateway, relayed by the pod's egress proxy: the identity its annotation carries. */
  gateway?: { sessionId?: string; tag?: string }
}

export class KubernetesDriver implements SandboxDriver {
  readonly name = 'kubernetes'
  /** Any replica with the same namespace and sealing key reaches every pod (attach), so sessions are served by any of them. */
  readonly shared = true
  readonly namespace: string
  readonly #core: CoreV1Api
  readonly #node: NodeV1Api
  readonly #watch: PodWatch
  readonly #tokenKey: Buffer
  readonly #egressKey: Buffer
  readonly #options: KubernetesDriverOptions
  readonly #dial: Dial
  readonly #port: number
  readonly #runtimeClassName: string | null
  readonly #server: string
  readonly #leader: LeaderElector | undefined
  /** The limits of the sessions this replica started, by pool key, with when last: pooled while recent. */
  readonly #recentLimits = new Map<string, { limits: SessionLimits; at: number }>()

  constructor(options: KubernetesDriverOptions) {
    this.#options = options
    this.namespace = options.namespace
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api)
    this.#node = options.kubeConfig.makeApiClient(NodeV1Api)
    this.#watch = new PodWatch(options.kubeConfig, options.namespace)
    this.#tokenKey = executorTokenKey(options.sealingKey)
    this.#egressKey = egressTokenKey(options.sealingKey)
    this.#dial = options.dial ?? ((o) => net.connect(o))
    this.#port = options.executorPort ?? EXECUTOR_PORT
    this.#runtimeClassName = options.runtimeClassName === undefined ? 'gvisor' : options.runtimeClassName
    this.#server = options.kubeConfig.getCurrentCluster()?.server ?? 'the API server'
    for (const field of ['size', 'publicSize'] as const) {
      const size = options.pool?.[field] ?? 0
      if (!Number.isSafeInteger(size) || size < 0 || size > 64)
        throw new CodeboxError('ValidationError', `pool.${field} must be a whole number from 0 to 64, got ${size}`)
    }
    if ((options.pool?.publicSize ?? 0) > 0 && !options.egressProxies?.public)
      throw new CodeboxError(
        'ValidationError',
        'pool.publicSize needs egressProxies.public (CODEBOX_K8S_EGRESS_PROXY_PUBLIC): public warm pods go through that proxy',
      )
    this.#leader = options.leader
      ? new LeaderElector({
          ...options.leader,
          kubeConfig: options.kubeConfig,
          namespace: options.namespace,
          ...(options.pool ? { tend: async () => void (await this.tendPool()) } : {}),
        })
      : undefined
  }

  /** Whether this replica holds the Lease now (false without `leader`). */
  get leading(): boolean {
    return this.#leader?.leading ?? false
  }

  /** The namespace is reachable (its sandbox pods can be listed) and the RuntimeClass exists; Unavailable naming what is not. */
  async check(): Promise<void> {
    try {
      await this.#core.listNamespacedPod({ namespace: this.namespace, labelSelector: SANDBOX_SELECTOR, limit: 1 })
    } catch (e) {
      throw new CodeboxError('Unavailable', `cannot list pods in namespace ${this.namespace} at ${this.#server}: ${apiMessage(e)}`, { cause: e })
    }
    if (this.#runtimeClassName !== null) await this.#checkRuntimeClass(this.#runtimeClassName)
    await this.#startWatch()
    this.#leader?.start()
  }

  async #checkRuntimeClass(name: string): Promise<void> {
    const missing = (): CodeboxError =>
      new CodeboxError(
        'Unavailable',
        `the RuntimeClass ${JSON.stringify(name)} does not exist in the cluster: install it (gVisor's runsc handler for the default), set CODEBOX_K8S_RUNTIME_CLASS to one that exists, or set it empty to run sandbox pods on the cluster's default runtime (only where the nodes isolate pods some other way)`,
      )
    try {
      await this.#node.readRuntimeClass({ name })
      return
    } catch (e) {
      if (apiCode(e) === 404) throw missing()
      if (apiCode(e) !== 403) throw new CodeboxError('Unavailable', `cannot read the RuntimeClass ${JSON.stringify(name)}: ${apiMessage(e)}`, { cause: e })
    }
    // The API's Role is namespace-scoped and may not read RuntimeClasses (cluster objects): a
    // server-side dry run of a sandbox pod asks admission instead, which refuses an unknown class.
    const nonce = newTokenNonce()
    const podName = sandboxPodName('runtime-class-check')
    try {
      await this.#core.createNamespacedPod({
        namespace: this.namespace,
        dryRun: 'All',
        body: this.#manifest(
          'runtime-class-check',
          defaultLimits,
          { profile: 'sandbox' },
          nonce,
          executorToken(this.#tokenKey, { namespace: this.namespace, podName, nonce }),
        ),
      })
    } catch (e) {
      const message = apiMessage(e)
      if (/RuntimeClass/i.test(message) && /not found/i.test(message)) throw missing()
      if (apiCode(e) !== 409)
        throw new CodeboxError(
          'Unavailable',
          `cannot check that the RuntimeClass ${JSON.stringify(name)} exists: reading it is forbidden and a dry-run pod was refused (${message})`,
          {
            cause: e,
          },
        )
    }
  }

  #manifest(id: string, limits: SessionLimits, network: PodNetwork, nonce: string, token: string, code?: CodeBundle): V1Pod {
    return sessionPod({
      sessionId: id,
      ...this.#podOptions(sandboxPodName(id), limits, network, nonce, token),
      ...(code ? { code: { bytes: code.bytes, entries: code.entries } } : {}),
    }) as V1Pod
  }

  #podOptions(podName: string, limits: SessionLimits, network: PodNetwork, nonce: string, token: string): SandboxPodOptions {
    const o = this.#options
    return {
      namespace: this.namespace,
      image: o.image,
      limits,
      network: network.profile,
      ...(network.proxyUrl !== undefined ? { egressProxyUrl: network.proxyUrl } : {}),
      // The egress proxy tells which pod asks (and so whose allow-list applies) by these.
      ...(network.policy !== undefined
        ? { egressPolicy: network.policy, egressToken: egressToken(this.#egressKey, { namespace: this.namespace, podName, nonce }) }
        : {}),
      ...(network.gateway !== undefined ? { gateway: network.gateway } : {}),
      poolKey: poolKeyOf(limits),
      nonce,
      token,
      runtimeClassName: this.#runtimeClassName,
      executorPort: this.#port,
      ...(o.requests ? { requests: o.requests } : {}),
      ...(o.nodeSelector ? { nodeSelector: o.nodeSelector } : {}),
      ...(o.imagePullPolicy ? { imagePullPolicy: o.imagePullPolicy } : {}),
    }
  }

  /**
   * The pod's network profile for a sandbox's network (the NetworkPolicies select on it): `none`
   * is `sandbox`; `public` egress goes through the public profile's proxy, an allow-list through
   * the vpc profile's, each proxy applying the pod's own policy (its annotation, the pod named by
   * its egress token). The model gateway is relayed by the pod's proxy: a session with it and no
   * other egress (policy `none`) goes through the vpc profile's proxy, which lets it reach nothing else.
   */
  async #profileOf(network: SandboxNetwork): Promise<PodNetwork> {
    if (network.mode === 'none') return { profile: 'sandbox' }
    const { policy, gateway } = network
    if (policy.mode === 'none' && !gateway) return { profile: 'sandbox' }
    const profile = policy.mode === 'public' ? 'public' : 'vpc'
    const proxy = this.#options.egressProxies?.[profile]
    if (!proxy) {
      const what = policy.mode === 'none' ? 'the model gateway' : `network ${profile === 'vpc' ? 'VPC (an allow-list)' : 'PUBLIC'}`
      throw new CodeboxError(
        'Unavailable',
        `${what} needs the ${profile} egress proxy: CODEBOX_K8S_EGRESS_PROXY_${profile.toUpperCase()} (host:port) is not set`,
      )
    }
    const relayed = gateway ? { gateway: { ...(network.sessionId ? { sessionId: network.sessionId } : {}), ...(gateway.tag ? { tag: gateway.tag } : {}) } } : {}
    return { profile, proxyUrl: await this.#proxyUrl(proxy), policy, ...relayed }
  }

  /** `http://<IP>:<port>` of a `host:port` (sandbox pods have no DNS). */
  async #proxyUrl(hostPort: string): Promise<string> {
    const i = hostPort.lastIndexOf(':')
    let host = hostPort.slice(0, i).replace(/^\[(.*)\]$/, '$1')
    const port = hostPort.slice(i + 1)
    if (net.isIP(host) === 0) {
      try {
        host = this.#options.resolveHost ? await this.#options.resolveHost(host) : (await lookup(host)).address
      } catch (e) {
        throw new CodeboxError('Unavailable', `cannot resolve the egress proxy ${hostPort}: ${(e as Error).message}`, { cause: e })
      }
      if (net.isIP(host) === 0) throw new CodeboxError('Unavailable', `the egress proxy ${hostPort} resolved to ${JSON.stringify(host)}, not an IP`)
    }
    return `http://${net.isIPv6(host) ? `[${host}]` : host}:${port}`
  }

  async create(spec: SandboxSpec, options: CreateOptions = {}): Promise<Sandbox> {
    // A code mount is read first (a bad one fails before any pod exists); its pod is never a warm one.
    const code = spec.code ? await scanCode(spec.code) : undefined
    const name = sandboxPodName(spec.id)
    const network = await this.#profileOf(spec.network)
    await this.#startWatch()
    // A warm pod is made before its session: only a network it can carry from creation can be
    // pooled (`sandbox`, and `public` without the model gateway, whose identity is the session's).
    if (!code && (network.profile === 'sandbox' || (network.profile === 'public' && network.gateway === undefined))) {
      const poolKey = poolKeyOf(spec.limits)
      this.#recentLimits.delete(poolKey)
      this.#recentLimits.set(poolKey, { limits: spec.limits, at: Date.now() })
      const claimed = await this.#claim(spec, poolKey, network, options.signal)
      if (claimed) return claimed
    }
    const nonce = newTokenNonce()
    const body = this.#manifest(spec.id, spec.limits, network, nonce, executorToken(this.#tokenKey, { namespace: this.namespace, podName: name, nonce }), code)
    let pod: V1Pod
    try {
      pod = await this.#core.createNamespacedPod({ namespace: this.namespace, body })
    } catch (e) {
      if (apiCode(e) !== 409) throw new CodeboxError('Unavailable', `cannot create the sandbox pod ${this.#what(name)}: ${apiMessage(e)}`, { cause: e })
      // A retried create: the pod is there already (its own nonce, which its token derives from).
      try {
        pod = await this.#core.readNamespacedPod({ namespace: this.namespace, name })
      } catch (e2) {
        throw new CodeboxError('Unavailable', `the sandbox pod ${this.#what(name)} exists but cannot be read: ${apiMessage(e2)}`, { cause: e2 })
      }
    }
    const uid = pod.metadata?.uid
    if (typeof uid !== 'string' || uid === '') throw new CodeboxError('SandboxFailure', `the API server returned the pod ${this.#what(name)} without a uid`)
    const tracker = this.#track(name, uid, pod)
    if (code) await this.#fillCode(tracker, code, options.signal)
    return this.#start(spec.id, tracker, options.signal)
  }

  /**
   * Streams the code mount to the pod's code receiver once it runs (code-upload.ts); Unavailable
   * naming the pod and what failed (with the receiver's log tail), the pod deleted, when it fails.
   */
  async #fillCode(tracker: PodTracker, bundle: CodeBundle, signal: AbortSignal | undefined): Promise<void> {
    const timeoutMs = this.#options.startTimeoutMs ?? 120_000
    const deadline = Date.now() + timeoutMs
    try {
      // A receiver reported running may not listen yet: a refused connection is tried again while the pod lives.
      for (let wait = 50; ; wait = Math.min(wait * 2, 500)) {
        const at = await this.#waitReady(tracker, Math.max(1, deadline - Date.now()), signal, { goal: 'running its code receiver', accept: receiverIP })
        if (receiverDone(at.pod)) return
        try {
          await sendCode({
            dial: this.#dial,
            host: at.podIP,
            port: this.#port,
            token: this.#tokenOf(at.pod),
            what: `pod ${this.#what(tracker.name)}`,
            bundle,
            timeoutMs: Math.max(1, deadline - Date.now()),
            ...(signal ? { signal } : {}),
          })
          return
        } catch (e) {
          const refused = e instanceof CodeboxError && /^cannot connect to .*(ECONNREFUSED|ENOENT)/.test(e.message)
          if (!refused || Date.now() + wait > deadline) throw e
          await delay(wait)
        }
      }
    } catch (e) {
      let err = e
      if (e instanceof CodeboxError && e.code === 'Unavailable') {
        const tail = await this.#logTail(tracker.name, CODE_CONTAINER)
        if (tail) err = new CodeboxError('Unavailable', `${e.message}; the code receiver's log ends: ${tail}`, { cause: e, details: e.details })
      }
      await this.#abandon(tracker)
      throw err
    }
  }

  /** Waits for the pod to be Ready and connects: the sandbox; Unavailable (the pod deleted, its log tail in the message) when it fails. */
  async #start(id: string, tracker: PodTracker, signal: AbortSignal | undefined): Promise<Sandbox> {
    const name = tracker.name
    const options = { signal }
    try {
      const timeoutMs = this.#options.startTimeoutMs ?? 120_000
      const ready = await this.#waitReady(tracker, timeoutMs, options.signal)
      const socket = await this.#connect(ready, Date.now() + timeoutMs, options.signal)
      return this.#sandbox(id, tracker, socket, ready)
    } catch (e) {
      let err = e
      if (e instanceof CodeboxError && e.code === 'Unavailable') {
        const tail = await this.#logTail(name)
        if (tail) err = new CodeboxError('Unavailable', `${e.message}; its log ends: ${tail}`, { cause: e, details: e.details })
      }
      await this.#abandon(tracker)
      throw err
    }
  }

  #what(name: string): string {
    return `${this.namespace}/${name}`
  }

  /**
   * Claims a free, Ready warm pod of `poolKey` and the session's network (warmFits) from the
   * watch's cache for session `spec.id`: a merge patch guarded by the pod's resourceVersion (claimPatch), so of
   * two replicas claiming one pod, one gets 409 Conflict and tries the next. A warm pod this
   * session has claimed already (a retried create) is used as it is. Undefined when there is none
   * to have: the caller creates `cbx-<id>`.
   */
  async #claim(spec: SandboxSpec, poolKey: string, network: PodNetwork, signal: AbortSignal | undefined): Promise<Sandbox | undefined> {
    const cached = this.#watch.list()
    const mine = cached.find(
      (p) => p.metadata?.labels?.[SESSION_LABEL] === spec.id && p.metadata?.name !== sandboxPodName(spec.id) && !p.metadata?.deletionTimestamp,
    )
    if (mine?.metadata?.name && mine.metadata.uid) return this.#start(spec.id, this.#track(mine.metadata.name, mine.metadata.uid, mine), signal)
    const candidates = cached
      .filter((p) => {
        const labels = p.metadata?.labels ?? {}
        return (
          labels[POOL_STATE_LABEL] === 'free' &&
          labels[POOL_LABEL] === poolKey &&
          labels[SESSION_LABEL] === undefined &&
          warmFits(p, network) &&
          podState(p).kind === 'ready'
        )
      })
      // The oldest first (they are the nearest to their max age), then by name: replicas try them in one order.
      .sort(
        (a, b) =>
          String(a.metadata?.creationTimestamp ?? '').localeCompare(String(b.metadata?.creationTimestamp ?? '')) ||
          String(a.metadata?.name ?? '').localeCompare(String(b.metadata?.name ?? '')),
      )
    for (const pod of candidates) {
      signal?.throwIfAborted()
      const name = pod.metadata?.name
      const startTime = Date.parse(String(pod.status?.startTime ?? ''))
      const deadline = pod.spec?.activeDeadlineSeconds
      if (typeof name !== 'string' || !Number.isFinite(startTime) || typeof deadline !== 'number') continue
      let patch
      try {
        patch = claimPatch({
          sessionId: spec.id,
          maxLifetimeMs: spec.limits.maxLifetimeMs,
          resourceVersion: pod.metadata?.resourceVersion ?? '',
          startTime: new Date(startTime),
          activeDeadlineSeconds: deadline,
          now: new Date(),
        })
      } catch {
        continue // too old to hold the session: the leader replaces it
      }
      const body = {
        ...patch,
        metadata: { ...patch.metadata, annotations: { ...patch.metadata.annotations, [CLAIMED_AT_ANNOTATION]: new Date().toISOString() } },
      }
      let claimed: V1Pod
      try {
        claimed = await this.#core.patchNamespacedPod({ namespace: this.namespace, name, body }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch))
      } catch (e) {
        // 409: another replica claimed it first (or it changed); 404: it is gone. Either way, the next.
        if (apiCode(e) === 409 || apiCode(e) === 404) continue
        // Anything else (the API refuses patches, say): a pod of its own, as without a pool.
        return undefined
      }
      const uid = claimed.metadata?.uid
      if (typeof uid !== 'string' || uid === '' || claimed.metadata?.labels?.[SESSION_LABEL] !== spec.id) continue
      try {
        return await this.#start(spec.id, this.#track(name, uid, claimed), signal)
      } catch (e) {
        // The claimed pod is deleted (#start gives it up); a cancelled start ends here, anything else tries the next.
        if (signal?.aborted) throw e
      }
    }
    return undefined
  }

  /**
   * One round of the warm pool's upkeep, which the leader runs each time it renews the Lease: for
   * each pooled configuration (the pool's limits, and those of the sessions this replica started
   * within the max age, at most MAX_POOL_CONFIGS) keep `pool.size` free warm pods of the network
   * profile `sandbox` and `pool.publicSize` of `public`, starting ones included; delete free pods
   * older than the max age, of no pooled configuration or profile, of a public proxy address that
   * is no longer the proxy's (warmFits), or beyond the size (the oldest). Deletions are guarded by
   * the pod's resourceVersion, so a pod a replica claims meanwhile is left alone. When the public
   * proxy cannot be resolved, the public pods are left as they are this round (and the error is
   * thrown after the rest is done). Returns the pods' names.
   */
  async tendPool(now = Date.now()): Promise<{ created: string[]; deleted: string[] }> {
    const done = { created: [] as string[], deleted: [] as string[] }
    const pool = this.#options.pool
    if (!pool) return done
    const maxAgeMs = pool.maxAgeMs ?? DEFAULT_WARM_MAX_AGE_MS
    const configs = new Map<string, SessionLimits>()
    for (const limits of pool.limits ?? [defaultLimits]) if (configs.size < MAX_POOL_CONFIGS) configs.set(poolKeyOf(limits), limits)
    for (const [key, recent] of [...this.#recentLimits].reverse()) {
      if (now - recent.at > maxAgeMs) this.#recentLimits.delete(key)
      else if (configs.size < MAX_POOL_CONFIGS) configs.set(key, recent.limits)
    }
    const networks = new Map<NetworkProfile, { size: number; network: PodNetwork | undefined }>([
      ['sandbox', { size: pool.size, network: { profile: 'sandbox' } }],
    ])
    let unresolved: unknown
    const publicSize = pool.publicSize ?? 0
    const publicProxy = this.#options.egressProxies?.public
    if (publicSize > 0 && publicProxy) {
      try {
        networks.set('public', { size: publicSize, network: { profile: 'public', proxyUrl: await this.#proxyUrl(publicProxy), policy: PUBLIC_POLICY } })
      } catch (e) {
        unresolved = e
        networks.set('public', { size: publicSize, network: undefined })
      }
    }
    const free = (await this.#core.listNamespacedPod({ namespace: this.namespace, labelSelector: `${SANDBOX_SELECTOR},${POOL_STATE_LABEL}=free` })).items
    // By profile and pool key.
    const kept = new Map<string, V1Pod[]>()
    const remove = async (pod: V1Pod): Promise<void> => {
      if (await this.#deleteFree(pod)) done.deleted.push(pod.metadata?.name ?? '')
    }
    for (const pod of free) {
      const labels = pod.metadata?.labels ?? {}
      const state = podState(pod)
      // Finished ones are the sweep's; a claimed one (a stale list) is not the pool's.
      if (state.kind === 'finished' || state.kind === 'terminating' || labels[SESSION_LABEL] !== undefined) continue
      const key = labels[POOL_LABEL] ?? ''
      const profile = networks.get(labels[NETWORK_LABEL] as NetworkProfile)
      const created = Date.parse(String(pod.metadata?.creationTimestamp ?? ''))
      // The public proxy's address is unknown this round: its pods wait for the next.
      if (profile && profile.network === undefined) continue
      const pooled = configs.has(key) && profile !== undefined && profile.size > 0 && warmFits(pod, profile.network!)
      if (!pooled || !Number.isFinite(created) || now - created >= maxAgeMs) {
        await remove(pod)
        continue
      }
      const group = `${profile.network!.profile} ${key}`
      let list = kept.get(group)
      if (!list) kept.set(group, (list = []))
      list.push(pod)
    }
    for (const [key, limits] of configs) {
      for (const { size, network } of networks.values()) {
        if (network === undefined) continue
        const pods = (kept.get(`${network.profile} ${key}`) ?? []).sort((a, b) =>
          String(b.metadata?.creationTimestamp ?? '').localeCompare(String(a.metadata?.creationTimestamp ?? '')),
        )
        for (const surplus of pods.slice(size)) await remove(surplus)
        for (let n = pods.length; n < size; n++) done.created.push(await this.#createWarm(limits, maxAgeMs, network))
      }
    }
    if (unresolved !== undefined) throw unresolved
    return done
  }

  async #createWarm(limits: SessionLimits, maxAgeMs: number, network: PodNetwork): Promise<string> {
    const podId = randomBytes(6).toString('hex')
    const name = warmPodName(podId)
    const nonce = newTokenNonce()
    const token = executorToken(this.#tokenKey, { namespace: this.namespace, podName: name, nonce })
    const body = warmPod({ podId, warmMaxAgeMs: maxAgeMs, ...this.#podOptions(name, limits, network, nonce, token) }) as V1Pod
    try {
      await this.#core.createNamespacedPod({ namespace: this.namespace, body })
    } catch (e) {
      throw new CodeboxError('Unavailable', `cannot create the warm pod ${this.#what(name)}: ${apiMessage(e)}`, { cause: e })
    }
    return name
  }

  /** Deletes a free warm pod unless it changed since it was read (claimed, say): whether it did. */
  async #deleteFree(pod: V1Pod): Promise<boolean> {
    const name = pod.metadata?.name
    if (typeof name !== 'string') return false
    try {
      await this.#core.deleteNamespacedPod({
        namespace: this.namespace,
        name,
        gracePeriodSeconds: this.#options.deleteGraceSeconds ?? 1,
        body: { preconditions: { uid: pod.metadata?.uid ?? '', resourceVersion: pod.metadata?.resourceVersion ?? '' } },
      })
      return true
    } catch (e) {
      if (apiCode(e) === 404 || apiCode(e) === 409) return false
      throw new CodeboxError('Unavailable', `cannot delete the warm pod ${this.#what(name)}: ${apiMessage(e)}`, { cause: e })
    }
  }

  async #startWatch(): Promise<void> {
    try {
      await this.#watch.start()
    } catch (e) {
      throw new CodeboxError('Unavailable', (e as Error).message, { cause: e })
    }
  }

  #track(name: string, uid: string, pod: V1Pod | undefined): PodTracker {
    const tracker = new PodTracker(this.#watch, name, uid, async (t, _exit, why, finished) => {
      t.why = `pod ${this.#what(name)}: ${why}`
      // A pod that ended by itself may say why in its log (a deleted one has none to read).
      if (finished) {
        const tail = await this.#logTail(name)
        if (tail) t.why += `; its log ends: ${tail}`
      }
    })
    if (pod && !tracker.latest) tracker.latest = pod
    return tracker
  }

  /**
   * Waits until the pod is Ready with an IP (or, with `until`, until `accept` gives the pod's IP
   * earlier); Unavailable with its state when it ends, is deleted, or takes too long.
   */
  #waitReady(
    tracker: PodTracker,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    until: { goal: string; accept: (pod: V1Pod) => string | undefined } = { goal: 'ready', accept: () => undefined },
  ): Promise<{ pod: V1Pod; podIP: string }> {
    const what = this.#what(tracker.name)
    return new Promise((resolve, reject) => {
      let last = 'not seen by the watch yet'
      let settled = false
      const cleanups: (() => void)[] = []
      const settle = (err: Error | undefined, value?: { pod: V1Pod; podIP: string }): void => {
        if (settled) return
        settled = true
        for (const c of cleanups) c()
        if (err) reject(err)
        else resolve(value!)
      }
      const fail = (why: string): void => settle(new CodeboxError('Unavailable', `the sandbox pod ${what} ${why}`))
      const look = (change: PodChange): void => {
        if (change.pod.metadata?.uid !== tracker.uid) return
        if (change.type === 'deleted') return fail(`was deleted before it was ${until.goal}`)
        const state = podState(change.pod)
        const early = state.kind === 'starting' ? until.accept(change.pod) : undefined
        if (early !== undefined) settle(undefined, { pod: change.pod, podIP: early })
        else if (state.kind === 'ready') settle(undefined, { pod: change.pod, podIP: state.podIP })
        else if (state.kind === 'finished') fail(`ended before it was ${until.goal}: ${state.why}`)
        else if (state.kind === 'terminating') fail('is being deleted')
        else last = state.why
      }
      cleanups.push(tracker.listen(look))
      // A safety net for a watch that is reconnecting: a read every few seconds.
      const poll = setInterval(() => {
        this.#core.readNamespacedPod({ namespace: this.namespace, name: tracker.name }).then(
          (pod) => look({ type: 'update', pod }),
          (e: unknown) => {
            if (apiCode(e) === 404) fail(`was deleted before it was ${until.goal}`)
          },
        )
      }, this.#options.readyPollMs ?? 3000)
      cleanups.push(() => clearInterval(poll))
      const timer = setTimeout(
        () =>
          fail(
            `was not ${until.goal} within ${Math.round(timeoutMs / 1000)} s (${last})${this.#watch.lastError ? `; the pod watch failed: ${this.#watch.lastError}` : ''}`,
          ),
        timeoutMs,
      )
      cleanups.push(() => clearTimeout(timer))
      if (signal) {
        const onAbort = (): void => settle(signal.reason instanceof Error ? signal.reason : new CodeboxError('Canceled', 'the start was cancelled'))
        signal.addEventListener('abort', onAbort, { once: true })
        cleanups.push(() => signal.removeEventListener('abort', onAbort))
        if (signal.aborted) onAbort()
      }
      // Last: the pod may be ready already, and settling runs the cleanups above.
      if (tracker.latest) look({ type: 'update', pod: tracker.latest })
    })
  }

  /** The pod's executor token, from its nonce annotation; Unavailable when the annotation is missing or malformed. */
  #tokenOf(pod: V1Pod): string {
    const name = pod.metadata?.name ?? ''
    const nonce = pod.metadata?.annotations?.[NONCE_ANNOTATION]
    if (typeof nonce !== 'string') throw new CodeboxError('Unavailable', `the sandbox pod ${this.#what(name)} has no ${NONCE_ANNOTATION} annotation`)
    try {
      return executorToken(this.#tokenKey, { namespace: this.namespace, podName: name, nonce })
    } catch (e) {
      throw new CodeboxError('Unavailable', `the sandbox pod ${this.#what(name)} has a malformed ${NONCE_ANNOTATION} annotation: ${(e as Error).message}`)
    }
  }

  /** Dials the ready pod's executor, retrying a refused connection (a readiness report a moment early) until `deadline`. */
  async #connect(ready: { pod: V1Pod; podIP: string }, deadline: number, signal: AbortSignal | undefined): Promise<net.Socket> {
    const token = this.#tokenOf(ready.pod)
    const what = `pod ${this.#what(ready.pod.metadata?.name ?? '')}`
    for (let wait = 50; ; wait = Math.min(wait * 2, 1000)) {
      try {
        return await connectExecutor({
          dial: this.#dial,
          host: ready.podIP,
          port: this.#port,
          token,
          what,
          timeoutMs: this.#options.connectTimeoutMs ?? 10_000,
          ...(signal ? { signal } : {}),
        })
      } catch (e) {
        const refused = e instanceof CodeboxError && /ECONNREFUSED|ENOENT/.test(e.message)
        if (!refused || Date.now() + wait > deadline) throw e
        await delay(wait)
      }
    }
  }

  /** Deletes a pod the driver gives up on (best effort). */
  async #abandon(tracker: PodTracker): Promise<void> {
    tracker.deleting = true
    await this.#delete(tracker.name, tracker.uid).catch(() => {})
    tracker.end({ code: null, signal: 'SIGKILL' }, 'its start failed', false)
  }

  /** Deletes the pod if it is still the one with `uid`; a pod already gone is fine. */
  async #delete(name: string, uid: string): Promise<void> {
    try {
      await this.#core.deleteNamespacedPod({
        namespace: this.namespace,
        name,
        gracePeriodSeconds: this.#options.deleteGraceSeconds ?? 1,
        body: { preconditions: { uid } },
      })
    } catch (e) {
      // 404: gone already; 409: the name now belongs to another pod, not ours to delete.
      if (apiCode(e) === 404 || apiCode(e) === 409) return
      throw new CodeboxError('Unavailable', `cannot delete the sandbox pod ${this.#what(name)}: ${apiMessage(e)}`, { cause: e })
    }
  }

  /** The last lines of a pod container's log (bounded, printable), or '' when it cannot be read within 2 s. */
  async #logTail(name: string, container = 'executor'): Promise<string> {
    try {
      const log = await Promise.race([
        this.#core.readNamespacedPodLog({ namespace: this.namespace, name, container, tailLines: 20, limitBytes: 4096 }),
        delay(2000, undefined, { ref: false }),
      ])
      return logTail(log, 1000)
    } catch {
      return ''
    }
  }

  #sandbox(id: string, tracker: PodTracker, socket: net.Socket, ready: { pod: V1Pod; podIP: string }): Sandbox {
    let released = false
    socket.on('error', () => {})
    // The connection closing is often the first sign of the pod's end: read the pod then, so
    // `exited` does not wait for a watch that may be reconnecting.
    socket.once('close', () => {
      if (tracker.ended || released) return
      this.#core.readNamespacedPod({ namespace: this.namespace, name: tracker.name }).then(
        (pod) => {
          if (pod.metadata?.uid !== tracker.uid) tracker.end({ code: null, signal: 'SIGTERM' }, 'the pod was replaced', false)
          else tracker.observe({ type: 'update', pod })
        },
        (e: unknown) => {
          if (apiCode(e) === 404) tracker.end({ code: null, signal: 'SIGTERM' }, 'the pod was deleted', false)
        },
      )
    })
    let destroyed: Promise<void> | undefined
    const destroy = (): Promise<void> =>
      (destroyed ??= (async () => {
        tracker.deleting = true
        socket.destroy()
        if (!tracker.ended) {
          await this.#delete(tracker.name, tracker.uid)
          const waited = new AbortController()
          await Promise.race([tracker.exited, delay(this.#options.destroyTimeoutMs ?? 30_000, undefined, { signal: waited.signal }).catch(() => {})])
          waited.abort()
          // Deleted in the API: its processes are the kubelet's to kill now, whatever the watch says.
          tracker.end({ code: null, signal: 'SIGKILL' }, 'the sandbox was destroyed', false)
        }
        await tracker.exited
      })())
    // Ports inside the pod: a tunnel connection each, authenticated as the channel is (tunnel.ts).
    const tunnel = {
      dial: this.#dial,
      host: ready.podIP,
      port: this.#port,
      token: this.#tokenOf(ready.pod),
      what: `pod ${this.#what(tracker.name)}`,
      timeoutMs: this.#options.connectTimeoutMs ?? 10_000,
    }
    const connectPort = async (port: number, options: ConnectPortOptions = {}): Promise<net.Socket> => {
      if (tracker.ended || destroyed) throw new CodeboxError('SessionTerminated', `sandbox ${id} has ended`)
      return connectTunnel({ ...tunnel, ...(options.signal ? { signal: options.signal } : {}) }, port)
    }
    return {
      id,
      input: socket,
      output: socket,
      diagnostics: () => tracker.why,
      exited: tracker.exited,
      counters: async (): Promise<LimitCounters> => ({ oomKills: oomKillsOf(tracker.latest), pidsLimitHits: 0 }),
      memoryUsage: async () => 0,
      connectPort,
      destroy,
      release: () => {
        released = true
        tracker.detach()
        socket.destroy()
      },
    }
  }

  /**
   * The sandbox ids of this namespace's session pods, for a restarted server to re-adopt or
   * remove. Pods younger than the start timeout are left out: another replica may be starting a
   * session on one and not have recorded it yet.
   */
  async list(): Promise<string[]> {
    let pods: V1Pod[]
    try {
      pods = (await this.#core.listNamespacedPod({ namespace: this.namespace, labelSelector: `${SANDBOX_SELECTOR},${SESSION_LABEL}` })).items
    } catch (e) {
      throw new CodeboxError('Unavailable', `cannot list the sandbox pods of namespace ${this.namespace}: ${apiMessage(e)}`, { cause: e })
    }
    const settled = Date.now() - (this.#options.listGraceMs ?? (this.#options.startTimeoutMs ?? 120_000) + 60_000)
    const ids: string[] = []
    for (const pod of pods) {
      const name = pod.metadata?.name
      const id = pod.metadata?.labels?.[SESSION_LABEL]
      if (typeof name !== 'string' || typeof id !== 'string') continue
      const claimedWarm = name.startsWith('cbx-warm-') && pod.metadata?.labels?.[POOL_STATE_LABEL] === 'claimed'
      if (name !== `cbx-${id}` && !claimedWarm) continue
      // A claimed warm pod's session began at its claim, not at the pod's creation.
      const claimedAt = claimedWarm ? Date.parse(String(pod.metadata?.annotations?.[CLAIMED_AT_ANNOTATION] ?? '')) : NaN
      const created = Number.isFinite(claimedAt) ? claimedAt : pod.metadata?.creationTimestamp ? new Date(pod.metadata.creationTimestamp).getTime() : 0
      if (created > settled && podState(pod).kind !== 'finished') continue
      ids.push(id)
    }
    return ids.sort()
  }

  /**
   * Connects again to the pod of sandbox `id` (another replica's, or an earlier server's): a fresh
   * connection, authenticated with the token recomputed from its annotation. SessionTerminated when
   * the pod is gone or has ended (a finished pod is deleted); Unavailable when it cannot be reached
   * (a pod without a valid nonce, or one that is not Ready in time, is deleted; a running pod that
   * does not answer is left to its own idle timeout and deadline, as another replica may serve it).
   */
  async attach(id: string, options: AttachOptions = {}): Promise<Sandbox> {
    const own = sandboxPodName(id)
    await this.#startWatch()
    const pod = await this.#podOf(id)
    if (!pod) throw new CodeboxError('SessionTerminated', `sandbox ${id} has ended: its pod ${this.#what(own)} is gone`)
    const name = pod.metadata?.name ?? own
    const uid = pod.metadata?.uid ?? ''
    const state = podState(pod)
    if (state.kind === 'finished' || state.kind === 'terminating') {
      if (state.kind === 'finished') await this.#delete(name, uid).catch(() => {})
      throw new CodeboxError('SessionTerminated', `sandbox ${id} has ended: ${state.kind === 'finished' ? state.why : 'its pod is being deleted'}`)
    }
    const tracker = this.#track(name, uid, pod)
    let ready: { pod: V1Pod; podIP: string }
    try {
      this.#tokenOf(pod)
      ready = await this.#waitReady(tracker, Math.min(this.#options.startTimeoutMs ?? 120_000, 30_000), options.signal)
    } catch (e) {
      await this.#abandon(tracker)
      throw e
    }
    try {
      const socket = await this.#connect(ready, Date.now() + (this.#options.connectTimeoutMs ?? 10_000), options.signal)
      return this.#sandbox(id, tracker, socket, ready)
    } catch (e) {
      tracker.detach()
      throw e
    }
  }

  /** The pod of sandbox `id`: `cbx-<id>`, else a warm pod it claimed (its SESSION_LABEL); undefined when there is none. */
  async #podOf(id: string): Promise<V1Pod | undefined> {
    const name = sandboxPodName(id)
    try {
      return await this.#core.readNamespacedPod({ namespace: this.namespace, name })
    } catch (e) {
      if (apiCode(e) !== 404) throw new CodeboxError('Unavailable', `cannot read the sandbox pod ${this.#what(name)}: ${apiMessage(e)}`, { cause: e })
    }
    let pods: V1Pod[]
    try {
      pods = (await this.#core.listNamespacedPod({ namespace: this.namespace, labelSelector: `${SANDBOX_SELECTOR},${SESSION_LABEL}=${id}` })).items
    } catch (e) {
      throw new CodeboxError('Unavailable', `cannot list the sandbox pods of session ${id}: ${apiMessage(e)}`, { cause: e })
    }
    // A label selector is the server's: check the label and the name here too.
    const claimed = pods.filter((p) => p.metadata?.labels?.[SESSION_LABEL] === id && String(p.metadata?.name ?? '').startsWith('cbx-warm-'))
    return claimed.find((p) => !p.metadata?.deletionTimestamp) ?? claimed[0]
  }

  /** Stops the driver's watch and its part in the election (its sandboxes' pods live on). */
  async close(): Promise<void> {
    await Promise.all([this.#watch.stop(), this.#leader?.stop()])
  }
}
