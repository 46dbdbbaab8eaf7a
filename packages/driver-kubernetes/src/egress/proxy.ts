/**
 * The egress proxy of one network profile (`public` or `vpc`) on a Kubernetes cluster: the same
 * proxy as on one host (createEgressProxy in @codebox/sandbox), listening on TCP for every sandbox
 * pod of its profile instead of on one unix socket per session. Which pod (and so which policy) a
 * request comes from is told by its credentials: the pod's proxy URL is
 * `http://<podName>:<egressToken>@<IP>:<port>`, which clients send as `Proxy-Authorization: Basic`.
 *
 * The proxy watches the namespace's sandbox pods of its profile (an informer) and, for every
 * request and CONNECT: the pod must be running and the token must be the one recomputed from the
 * pod's nonce and the shared key (compared in constant time), else 407 with a challenge; the
 * connection must come from the pod's own address when both are IPs, else 403 (a token used from
 * another pod); then the pod's egress policy annotation applies exactly as on one host, private
 * and cluster addresses refused unless the `vpc` profile trusts them (CODEBOX_EGRESS_TRUSTED).
 * Proxy-Authorization is a hop-by-hop header: it is never forwarded. The model gateway
 * (`codebox-gateway`, plain HTTP) is served to pods whose gateway annotation allows it, by
 * relaying their requests to the API (`apiUrl`) signed for the pod (gateway-relay.ts); other
 * pods get the same refusal as on one host.
 */
import { timingSafeEqual } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import net from 'node:net'
import { CoreV1Api, KubeConfig, makeInformer, type Informer, type ObjectCache, type V1Pod } from '@kubernetes/client-node'
import { CodeboxError, validationError } from '@codebox/core'
import {
  createEgressProxy,
  GATEWAY_HOST,
  gatewayRelayKey,
  systemResolver,
  type EgressAdmission,
  type EgressDecision,
  type EgressResolver,
  type TrustedDestination,
} from '@codebox/sandbox'
import { checkDnsLabel, componentLabels, NETWORK_LABEL } from '../names.ts'
import { egressTokenKey } from '../token.ts'
import { gatewayRelay } from './gateway-relay.ts'
import { egressPodEntry, plainAddress, type EgressPodEntry } from './pods.ts'

export type EgressProfile = 'public' | 'vpc'

export interface ClusterEgressProxyOptions {
  /** Credentials for the API server (in a pod: its ServiceAccount, KubeConfig.loadFromCluster()). */
  kubeConfig: KubeConfig
  /** The sandbox pods' namespace. */
  namespace: string
  profile: EgressProfile
  /** The store's sealing key (CODEBOX_SEALING_KEY), 32 bytes: the egress tokens are derived from it. */
  sealingKey: Buffer
  /**
   * The API the model gateway's requests are relayed to (CODEBOX_EGRESS_API_URL), e.g.
   * `http://codebox-api:8080`. Without it, every pod's gateway requests are refused.
   */
  apiUrl?: string
  /** Private destinations `allowlist` policies may reach (CODEBOX_EGRESS_TRUSTED); `vpc` only. */
  trusted?: readonly TrustedDestination[]
  /** Default 0.0.0.0. */
  host?: string
  /** Default 3128; 0 for any free port. */
  port?: number
  /** Default: the pod's resolver (the cluster's DNS). */
  resolve?: EgressResolver
  /** Default 5 s. */
  resolveTimeoutMs?: number
  /** Per address tried. Default 10 s. */
  connectTimeoutMs?: number
  /** Default 5 min. */
  idleTimeoutMs?: number
  /** Default 10 s. */
  headerTimeoutMs?: number
  /** Connections open at once, all pods together; more are answered 503 (and past twice this, closed). Default 4096. */
  maxConnections?: number
  /** Connections open at once per pod; more are answered 503. Default 64, as a session's own proxy on one host. */
  maxConnectionsPerPod?: number
  /** Default 16 KiB. */
  maxHeaderBytes?: number
  /** Every decision on a request of an admitted pod (`client`: the pod's name). */
  onDecision?: (decision: EgressDecision) => void
  /** Every request refused before its pod was admitted (407, 403, 503), with the peer's address. */
  onRefusal?: (refusal: { status: number; reason: string; peer: string | undefined }) => void
  /** The pod watch failed; it is restarted after a delay (1 s, doubling to 30 s). */
  onWatchError?: (error: unknown) => void
  /**
   * How long a request whose credentials do not match waits for the watch to bring a change of
   * that pod before it is refused: a pod that has just started may ask before the watch has shown
   * it to the proxy. Default 2 s.
   */
  watchLagMs?: number
}

export interface ClusterEgressProxy {
  readonly address: net.AddressInfo
  /** Sandbox pods of this profile in the watch's cache. */
  readonly podCount: number
  close(): Promise<void>
}

const realm = 'the proxy credentials (the user and password of HTTP_PROXY: the pod name and its egress token)'
const gatewayNotServed = `the model gateway (${GATEWAY_HOST}) is not served by this egress proxy: it has no API to relay it to (CODEBOX_EGRESS_API_URL)`

/** The API server's credentials as client-node finds them: KUBECONFIG, ~/.kube/config, or in a pod its ServiceAccount. */
export function defaultKubeConfig(): KubeConfig {
  const kc = new KubeConfig()
  kc.loadFromDefault()
  return kc
}

/** `Basic base64(user:password)`, or undefined when the header is not that. */
export function parseBasicCredentials(header: string): { user: string; password: string } | undefined {
  const m = /^Basic +([A-Za-z0-9+/]{1,1024}={0,2})$/i.exec(header.trim())
  if (!m) return undefined
  const text = Buffer.from(m[1]!, 'base64').toString('utf8')
  const colon = text.indexOf(':')
  if (colon <= 0) return undefined
  return { user: text.slice(0, colon), password: text.slice(colon + 1) }
}

/** Lists and watches the sandbox pods of `profile` in the namespace, then serves requests; rejects (Unavailable) when the first list fails. */
export async function startClusterEgressProxy(options: ClusterEgressProxyOptions): Promise<ClusterEgressProxy> {
  const namespace = checkDnsLabel('namespace', options.namespace)
  const { profile } = options
  if (profile !== 'public' && profile !== 'vpc') throw validationError('profile', `must be public or vpc, got ${JSON.stringify(profile)}`)
  const trusted = options.trusted ?? []
  if (profile === 'public' && trusted.length > 0)
    throw validationError('trusted', 'applies to the vpc profile only: the public profile reaches public addresses and nothing private')
  const key = egressTokenKey(options.sealingKey)
  const relay = options.apiUrl === undefined ? undefined : gatewayRelay({ apiUrl: options.apiUrl, key: gatewayRelayKey(options.sealingKey) })
  const maxPerPod = options.maxConnectionsPerPod ?? 64

  const core = options.kubeConfig.makeApiClient(CoreV1Api)
  const labelSelector = Object.entries({ ...componentLabels('sandbox'), [NETWORK_LABEL]: profile })
    .map(([k, v]) => `${k}=${v}`)
    .join(',')
  const informer: Informer<V1Pod> & ObjectCache<V1Pod> = makeInformer(
    options.kubeConfig,
    `/api/v1/namespaces/${namespace}/pods`,
    () => core.listNamespacedPod({ namespace, labelSelector }),
    labelSelector,
  )
  // Requests waiting for a change of a pod (by name) to reach the watch.
  const waiting = new Map<string, Set<() => void>>()
  const changed = (pod: V1Pod): void => {
    const name = pod.metadata?.name ?? ''
    const wake = waiting.get(name)
    waiting.delete(name)
    for (const f of wake ?? []) f()
  }
  informer.on('add', changed)
  informer.on('update', changed)
  const nextChange = (name: string, ms: number): Promise<void> =>
    new Promise((resolve) => {
      const set = waiting.get(name) ?? new Set()
      waiting.set(name, set)
      const done = (): void => {
        clearTimeout(timer)
        set.delete(done)
        if (set.size === 0 && waiting.get(name) === set) waiting.delete(name)
        resolve()
      }
      const timer = setTimeout(done, ms)
      set.add(done)
    })
  const entries = new WeakMap<V1Pod, EgressPodEntry>()
  const entryOf = (name: string): EgressPodEntry | undefined => {
    const pod = informer.get(name, namespace)
    if (!pod) return undefined
    let entry = entries.get(pod)
    if (!entry) entries.set(pod, (entry = egressPodEntry(pod, namespace, key, trusted)))
    return entry
  }

  // The watch: the first list must succeed; later failures restart it with a growing delay.
  let closed = false
  let failedAtStart: unknown
  let started = false
  let retryMs = 1000
  let retry: NodeJS.Timeout | undefined
  let errors = 0
  const fail = (e: unknown): void => {
    errors++
    if (!started) return void (failedAtStart ??= e)
    options.onWatchError?.(e)
    if (closed) return
    clearTimeout(retry)
    retry = setTimeout(() => void restart(), retryMs)
    retryMs = Math.min(retryMs * 2, 30_000)
  }
  const restart = async (): Promise<void> => {
    const before = errors
    try {
      await informer.start()
    } catch (e) {
      return fail(e)
    }
    // Listed and watching again: the next failure starts from the shortest delay.
    if (errors === before) retryMs = 1000
  }
  informer.on('error', fail)
  try {
    await informer.start()
  } catch (e) {
    failedAtStart ??= e
  }
  if (failedAtStart !== undefined) {
    await informer.stop()
    relay?.close()
    const message = (failedAtStart as Error).message ?? String(failedAtStart)
    throw new CodeboxError('Unavailable', `cannot list the sandbox pods of namespace ${namespace}: ${message}`, { cause: failedAtStart })
  }
  started = true

  const perPod = new Map<string, number>()
  const counted = new WeakSet<net.Socket>()
  /** The pod the credentials name, if they are its token and it runs. */
  const authenticated = (name: string, password: string): EgressPodEntry | undefined => {
    const entry = entryOf(name)
    const given = Buffer.from(password)
    // Compared in constant time; a pod that is unknown, not running or has a malformed nonce fails the same way.
    const expected = entry?.token ?? Buffer.alloc(43)
    const match = given.length === expected.length && timingSafeEqual(given, expected) && entry?.token !== undefined
    return entry && match && entry.running ? entry : undefined
  }

  const admit = async (req: IncomingMessage): Promise<EgressAdmission> => {
    const refuse = (status: 403 | 407 | 503, reason: string): EgressAdmission => {
      options.onRefusal?.({ status, reason, peer: req.socket.remoteAddress })
      return { ok: false, status, reason }
    }
    const header = req.headers['proxy-authorization']
    if (header === undefined) return refuse(407, `this proxy serves codebox sandbox pods only: send ${realm} as Proxy-Authorization: Basic`)
    const credentials = parseBasicCredentials(header)
    if (!credentials) return refuse(407, `Proxy-Authorization must be Basic with ${realm}`)
    const name = credentials.user.slice(0, 253)
    let entry = authenticated(name, credentials.password)
    if (!entry) {
      // A pod that has just started (or was just replaced) may not have reached the watch yet.
      await nextChange(name, options.watchLagMs ?? 2000)
      if (closed) return refuse(503, 'the proxy is stopping')
      entry = authenticated(name, credentials.password)
    }
    if (!entry) return refuse(407, `${realm} do not name a running sandbox pod of the ${profile} profile in namespace ${namespace}`)
    if (entry.network !== profile) return refuse(403, `pod ${entry.name} is of network profile ${entry.network ?? '(none)'}, not ${profile}`)
    const peer = req.socket.remoteAddress === undefined ? undefined : plainAddress(req.socket.remoteAddress)
    if (peer !== undefined && net.isIP(peer) && entry.addresses.length > 0 && !entry.addresses.includes(peer))
      return refuse(403, `the credentials of pod ${entry.name} were sent from ${peer}, which is not the pod's address`)
    if (!entry.policy.ok) return refuse(403, `pod ${entry.name}: ${entry.policy.reason}`)
    if (!counted.has(req.socket)) {
      const open = perPod.get(entry.name) ?? 0
      if (open >= maxPerPod) return refuse(503, `pod ${entry.name} already has ${maxPerPod} connections open through the proxy`)
      counted.add(req.socket)
      perPod.set(entry.name, open + 1)
      req.socket.once('close', () => {
        const left = (perPod.get(entry.name) ?? 1) - 1
        if (left > 0) perPod.set(entry.name, left)
        else perPod.delete(entry.name)
      })
    }
    return { ok: true, rules: entry.policy.rules, client: entry.name, ...(entry.gateway ? { gateway: entry.gateway } : {}) }
  }

  const proxy = createEgressProxy({
    admit,
    ...(relay ? { gateway: { handler: relay.handler } } : { gatewayOffReason: gatewayNotServed }),
    resolve: options.resolve ?? systemResolver,
    resolveTimeoutMs: options.resolveTimeoutMs ?? 5_000,
    connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
    idleTimeoutMs: options.idleTimeoutMs ?? 300_000,
    headerTimeoutMs: options.headerTimeoutMs ?? 10_000,
    maxConnections: options.maxConnections ?? 4096,
    maxHeaderBytes: options.maxHeaderBytes ?? 16 * 1024,
    onDecision: (d) => options.onDecision?.(d),
  })
  try {
    await new Promise<void>((resolve, reject) => {
      proxy.server.once('error', reject)
      proxy.server.listen(options.port ?? 3128, options.host ?? '0.0.0.0', () => resolve())
    })
  } catch (e) {
    closed = true
    await informer.stop()
    relay?.close()
    throw new CodeboxError('Unavailable', `cannot listen on ${options.host ?? '0.0.0.0'}:${options.port ?? 3128}: ${(e as Error).message}`, { cause: e })
  }
  proxy.server.on('error', () => {})
  return {
    address: proxy.server.address() as net.AddressInfo,
    get podCount() {
      return informer.list(namespace).length
    },
    async close() {
      closed = true
      clearTimeout(retry)
      for (const set of [...waiting.values()]) for (const f of [...set]) f()
      proxy.close()
      relay?.close()
      await informer.stop()
    },
  }
}
