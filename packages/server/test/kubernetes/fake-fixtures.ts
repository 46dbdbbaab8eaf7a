/**
 * The fake Kubernetes API server as the kubernetes tests use it: started in the suite's before
 * hook and closed in its after hook, and `@kubernetes/client-node` clients configured for it with
 * a given bearer token, exactly as a user's kubeconfig would configure them.
 */
import assert from 'node:assert/strict'
import https from 'node:https'
import { after, before } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { ApiException, CoordinationV1Api, CoreV1Api, KubeConfig, KubernetesObjectApi, NetworkingV1Api, type V1Pod } from '@kubernetes/client-node'
import { startFakeKubernetes, type FakeKubernetes, type FakeKubernetesOptions } from '@codebox/sandbox/testing/kubernetes'

/** Clients of one identity. */
export interface Clients {
  kc: KubeConfig
  core: CoreV1Api
  networking: NetworkingV1Api
  coordination: CoordinationV1Api
  objects: KubernetesObjectApi
}

/** Clients for `token` against `fake`, through a kubeconfig as a user would have. */
export function clientsFor(fake: FakeKubernetes, token: string, namespace = 'default'): Clients {
  const kc = new KubeConfig()
  kc.loadFromString(JSON.stringify(fake.kubeconfig(token, namespace)))
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    networking: kc.makeApiClient(NetworkingV1Api),
    coordination: kc.makeApiClient(CoordinationV1Api),
    objects: KubernetesObjectApi.makeApiClient(kc),
  }
}

/** Starts the fake for the enclosing describe; the getter throws if before() did not run. */
export function fakeKubernetes(options: FakeKubernetesOptions = {}): { readonly fake: FakeKubernetes; readonly admin: Clients } {
  let fake: FakeKubernetes | undefined
  let admin: Clients | undefined
  before(async () => {
    fake = await startFakeKubernetes(options)
    if (fake.adminToken) admin = clientsFor(fake, fake.adminToken)
  })
  after(async () => {
    await fake?.close()
  })
  return {
    get fake() {
      if (!fake) throw new Error('the fake API server is not running (before() failed)')
      return fake
    },
    get admin() {
      if (!admin) throw new Error('the fake API server has no admin token (users were given)')
      return admin
    },
  }
}

/** The HTTP status and parsed Status body of a call that must fail. */
export async function failure(call: Promise<unknown>): Promise<{ code: number; reason: string; message: string }> {
  try {
    await call
  } catch (e) {
    assert.ok(e instanceof ApiException, `expected an ApiException, got ${String(e)}`)
    const body = (typeof e.body === 'string' ? JSON.parse(e.body) : e.body) as { kind: string; reason: string; message: string; code: number }
    assert.equal(body.kind, 'Status')
    assert.equal(body.code, e.code)
    return { code: e.code, reason: body.reason, message: body.message }
  }
  assert.fail('the call succeeded; it was expected to fail')
}

/** Polls `read` until `ok` holds (every 20 ms, at most `timeoutMs`); the last value otherwise fails the test. */
export async function until<T>(what: string, read: () => Promise<T> | T, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: T = await read()
  while (!ok(last)) {
    if (Date.now() > deadline) assert.fail(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${JSON.stringify(last)?.slice(0, 2000)}`)
    await sleep(20)
    last = await read()
  }
  return last
}

/** A minimal pod. */
export function podManifest(name: string, labels: Record<string, string> = {}, spec: Partial<NonNullable<V1Pod['spec']>> = {}): V1Pod {
  return { apiVersion: 'v1', kind: 'Pod', metadata: { name, labels }, spec: { containers: [{ name: 'main', image: 'codebox/sandbox:test' }], ...spec } }
}

/** A raw HTTPS request to the fake (for what the typed clients hide: bodies of 401s, malformed input). */
export async function raw(
  fake: FakeKubernetes,
  method: string,
  path: string,
  options: { token?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string; json: () => Record<string, unknown> }> {
  const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = https.request(
      new URL(path, fake.url),
      {
        method,
        ca: fake.caCertificate,
        headers: { ...(options.token ? { authorization: `Bearer ${options.token}` } : {}), 'content-type': 'application/json', ...options.headers },
        timeout: 10_000,
      },
      (r) => {
        const chunks: Buffer[] = []
        r.on('data', (c: Buffer) => chunks.push(c))
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }))
        r.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`${method} ${path} timed out`)))
    req.on('error', reject)
    req.end(options.body)
  })
  return { ...res, json: () => JSON.parse(res.body) as Record<string, unknown> }
}
