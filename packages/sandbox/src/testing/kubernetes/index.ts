/**
 * `@codebox/sandbox/testing/kubernetes`: a fake Kubernetes API server over real HTTP on loopback,
 * for testing the kubernetes driver with the real `@kubernetes/client-node` (and kubectl) where no
 * cluster can run. It serves namespaced pods, services, networkpolicies and leases with
 * resourceVersion conflicts, selectors, watches (bookmarks, 410 Expired), graceful deletion and
 * owner garbage collection, authenticates bearer tokens with a namespace RBAC check, and runs a
 * kubelet simulator whose pods can be real local processes reached through `dial`. What it
 * simplifies is listed in docs/kubernetes-testing.md.
 */
import { randomBytes } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type net from 'node:net'
import { GarbageCollector } from './gc.ts'
import { handleResource, type HandlerContext } from './handlers.ts'
import { authenticate, authorize, discovery, namespaceObject, routeResource, runtimeClassObject, sendJson, type FakeUser, type RequestRecord } from './http.ts'
import { Kubelet, type KubeletOptions } from './kubelet.ts'
import { checkNamespace } from './resources.ts'
import { KubeError } from './status.ts'
import { ObjectStore } from './store.ts'
import { makeCertificate } from './tls.ts'

export type { FakeUser, RequestRecord } from './http.ts'
export type { KubeletOptions, KubeletPod } from './kubelet.ts'
export type { ContainerCommand } from './container.ts'
export { sandboxPodRunner, sandboxPodSupport, POD_SOCKET_DIR, type SandboxPodRunner, type SandboxPodRunnerOptions } from './sandbox-pod.ts'
export type { KubeObject, ObjectMeta, ObjectStore, StoreEvent } from './store.ts'
export { findResource, resourceTypes, type ResourceType } from './resources.ts'

/** Options of startFakeKubernetes. */
export interface FakeKubernetesOptions {
  /** Bearer tokens and who they are; default: one admin token (all namespaces) in `adminToken`. */
  users?: Record<string, FakeUser>
  /** Events kept for watches to resume from (default 1000); older resourceVersions get 410. */
  historyLimit?: number
  /** How often a watch that allows bookmarks gets one (default 1000 ms). */
  bookmarkIntervalMs?: number
  /** The longest a watch stays open (default 300 000 ms); timeoutSeconds may ask for less. */
  maxWatchMs?: number
  /** The kubelet simulator's options, or false for none (pods then stay Pending, unscheduled). */
  kubelet?: KubeletOptions | false
  /** Requests remembered in `requests` (default 2000, oldest dropped). */
  maxRequestRecords?: number
  /**
   * HTTPS with a throw-away certificate the kubeconfig trusts (default true); with false, plain
   * HTTP, and the kubeconfig skips TLS verification (client-node refuses http:// otherwise).
   */
  tls?: boolean
  /** The RuntimeClasses that exist (GET /apis/node.k8s.io/v1/runtimeclasses/<name>); default `['gvisor']`. */
  runtimeClasses?: readonly string[]
}

/** A running fake API server. */
export interface FakeKubernetes {
  /** https://127.0.0.1:<port> (http:// with tls: false) */
  readonly url: string
  /** The server's certificate (PEM), which is its own CA; undefined with tls: false. */
  readonly caCertificate: string | undefined
  /** A token for every namespace ('' when `users` was given). */
  readonly adminToken: string
  readonly store: ObjectStore
  readonly kubelet: Kubelet | undefined
  readonly gc: GarbageCollector
  /** The latest requests, oldest first. */
  readonly requests: readonly RequestRecord[]
  /** A kubeconfig file's content for `token` (write it as JSON, or `KubeConfig.loadFromString(JSON.stringify(...))`). */
  kubeconfig(token: string, namespace?: string): Record<string, unknown>
  /** The dialer seam (see Kubelet.dial): connects to a pod's port by its pod IP. */
  dial(options: { host: string; port: number }): net.Socket
  /** Ends every open watch, as an API server restart would; clients reconnect with their resourceVersion. */
  closeWatches(): void
  close(): Promise<void>
}

function decodeSegment(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    throw new KubeError('BadRequest', `the path segment "${s.slice(0, 80)}" is not valid percent-encoding`)
  }
}

function serve(ctx: HandlerContext, users: ReadonlyMap<string, FakeUser>, record: (r: RequestRecord) => void, runtimeClasses: readonly string[]) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://fake')
    const rec: RequestRecord = { method: req.method ?? '', path: url.pathname, query: url.search, user: undefined, verb: '', status: 0 }
    record(rec)
    res.on('finish', () => (rec.status = res.statusCode))
    try {
      if (['healthz', 'livez', 'readyz'].includes(url.pathname.slice(1))) {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok')
        return
      }
      const segments = url.pathname.split('/').filter(Boolean).map(decodeSegment)
      const user = authenticate(req, users)
      rec.user = user.name
      const doc = req.method === 'GET' ? discovery(segments) : undefined
      if (doc) return sendJson(res, 200, doc)
      if (req.method === 'GET' && segments.length === 4 && segments.slice(0, 3).join('/') === 'api/v1/namespaces') {
        checkNamespace(segments[3]!)
        return sendJson(res, 200, namespaceObject(user, segments[3]!))
      }
      if (req.method === 'GET' && segments.length === 5 && segments.slice(0, 4).join('/') === 'apis/node.k8s.io/v1/runtimeclasses') {
        rec.verb = 'get'
        return sendJson(res, 200, runtimeClassObject(user, segments[4]!, runtimeClasses))
      }
      const route = routeResource(req.method ?? '', segments, url.searchParams)
      if (!route) throw new KubeError('NotFound', 'the server could not find the requested resource')
      rec.verb = route.verb
      authorize(user, route)
      await handleResource(ctx, { ...route, query: url.searchParams, req, res, user })
    } catch (e) {
      const err = e instanceof KubeError ? e : new KubeError('InternalError', `internal error: ${(e as Error).message}`)
      if (res.headersSent) res.destroy()
      else sendJson(res, err.code, err.toStatus())
    }
  }
}

/** Starts a fake API server on 127.0.0.1 (a free port). */
export async function startFakeKubernetes(options: FakeKubernetesOptions = {}): Promise<FakeKubernetes> {
  const adminToken = options.users ? '' : randomBytes(24).toString('base64url')
  const users = new Map(Object.entries(options.users ?? { [adminToken]: { name: 'admin', namespaces: '*' } }))
  const store = new ObjectStore(options.historyLimit)
  const gc = new GarbageCollector(store)
  const kubelet = options.kubelet === false ? undefined : new Kubelet(store, options.kubelet)
  const ctx: HandlerContext = {
    store,
    watches: new Set(),
    maxWatchMs: options.maxWatchMs ?? 300_000,
    bookmarkIntervalMs: options.bookmarkIntervalMs ?? 1000,
    podLog: (ns, name, container) => kubelet?.log(ns, name, container),
  }
  const requests: RequestRecord[] = []
  const maxRecords = options.maxRequestRecords ?? 2000
  const record = (r: RequestRecord): void => {
    requests.push(r)
    if (requests.length > maxRecords) requests.shift()
  }
  const handler = serve(ctx, users, record, options.runtimeClasses ?? ['gvisor'])
  const certificate = options.tls === false ? undefined : await makeCertificate()
  const listener = (req: IncomingMessage, res: ServerResponse): void => void handler(req, res)
  const server: Server = certificate ? createHttpsServer({ cert: certificate.cert, key: certificate.key }, listener) : createHttpServer(listener)
  server.listen(0, '127.0.0.1')
  await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject))
  const url = `${certificate ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`
  const cluster = certificate
    ? { server: url, 'certificate-authority-data': Buffer.from(certificate.cert).toString('base64') }
    : { server: url, 'insecure-skip-tls-verify': true }
  const closeWatches = (): void => {
    for (const end of [...ctx.watches]) end()
  }
  return {
    url,
    caCertificate: certificate?.cert,
    adminToken,
    store,
    kubelet,
    gc,
    requests,
    kubeconfig: (token, namespace = 'default') => ({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster }],
      users: [{ name: 'fake-user', user: { token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'fake-user', namespace } }],
      'current-context': 'fake',
    }),
    dial: (o) => {
      if (!kubelet) throw new Error('this fake API server runs no kubelet, so no pod can be dialled')
      return kubelet.dial(o)
    },
    closeWatches,
    close: async () => {
      closeWatches()
      gc.stop()
      await kubelet?.stop()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
