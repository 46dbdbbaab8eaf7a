/**
 * The claimable warm pool against the fake API server through the real client: the leader keeps
 * `size` free warm pods; create() claims one (no pod created, the session's Python runs in it) and
 * the leader refills; a second replica finds the claimed pod by the session's id (list, attach);
 * replicas claiming at once never share a pod (one gets 409 and takes the next, or creates its
 * own); a session with a code mount takes none; surplus, unpooled and old free pods are deleted,
 * claimed ones never. Public warm pods (the `public` network profile) are a pool of their own: a
 * PUBLIC session claims one and never a `sandbox` pod, and the other way round; the cluster's
 * public egress proxy admits a claimed one with the credentials it had from creation, as it does
 * a per-session pod; the leader replaces the ones that name a proxy address no longer the proxy's.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { defaultLimits, type SandboxSpec } from '@codebox/core'
import { SessionManager, type EgressDecision, type Session } from '@codebox/sandbox'
import { ExecutorClient, within } from '@codebox/sandbox/testing'
import { findResource, type KubeObject } from '@codebox/sandbox/testing/kubernetes'
import {
  CLAIMED_AT_ANNOTATION,
  EGRESS_POLICY_ANNOTATION,
  egressToken,
  egressTokenKey,
  NETWORK_LABEL,
  POOL_LABEL,
  POOL_STATE_LABEL,
  poolKeyOf,
  SESSION_LABEL,
  startClusterEgressProxy,
  type ClusterEgressProxy,
  type KubernetesDriver,
} from '../src/index.ts'
import { makeBundle } from './code-bundle.ts'
import { hostReason, podMode, startKube, testId, type KubeFixture } from './kube-fixtures.ts'

const podsType = findResource('', 'v1', 'pods')!
const defaultKey = poolKeyOf(defaultLimits)

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await ok())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await delay(50)
  }
}

async function py(session: Session, code: string): Promise<string> {
  const r = await session.runCode({ code, language: 'python' })
  if (r.isError) throw new Error(`cell failed: ${r.structuredContent.stderr}`)
  return r.structuredContent.stdout
}

describe('kubernetes driver: the claimable warm pool', () => {
  let kube: KubeFixture
  before(async () => {
    kube = await startKube({ runtimeClasses: ['gvisor'] })
  })
  after(async () => {
    await kube?.close()
  })
  const all = (): KubeObject[] => kube.fake.store.list(podsType, kube.namespace).filter((p) => !p.metadata.deletionTimestamp)
  const ready = (p: KubeObject): boolean =>
    ((p.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')
  const free = (key = defaultKey): KubeObject[] =>
    all().filter((p) => p.metadata.labels?.[POOL_STATE_LABEL] === 'free' && p.metadata.labels?.[POOL_LABEL] === key)
  const podOf = (sandboxId: string): KubeObject | undefined => all().find((p) => p.metadata.labels?.[SESSION_LABEL] === sandboxId)
  const spec = (id = testId()): SandboxSpec => ({ id, limits: { ...defaultLimits }, network: { mode: 'none' } })

  let leader: KubernetesDriver
  let claimedSession: Session | undefined
  let managerB: SessionManager | undefined

  it('the leader fills the pool to its size with free warm pods of the default limits, and no more', async () => {
    leader = kube.driver({ leader: { leaseName: 'pool-lease', identity: 'replica-a', renewMs: 100, sweepMs: 3_600_000 }, pool: { size: 2 } })
    await leader.check()
    await until('two ready free warm pods', () => free().filter(ready).length === 2)
    await delay(500)
    assert.equal(free().length, 2, 'rounds after the pool is full create nothing')
    for (const p of free()) {
      assert.match(p.metadata.name, /^cbx-warm-[0-9a-f]{12}$/)
      assert.equal(p.metadata.labels?.[SESSION_LABEL], undefined)
    }
  })

  it('create claims a free warm pod (no pod created) and the session’s Python runs in it; the leader refills', async () => {
    const before = new Set(free().map((p) => p.metadata.name))
    const count = all().length
    managerB = new SessionManager({ driver: kube.driver(), poolSize: 0 })
    const session = await managerB.start({ preload: [] })
    claimedSession = session
    assert.equal(await py(session, 'import os; shared = "set on B"; print(6 * 7)'), '42\n')
    const pod = podOf(session.sandboxId)
    assert.ok(pod, 'a pod carries the session’s label')
    assert.ok(before.has(pod.metadata.name), `${pod.metadata.name} was one of the free warm pods`)
    assert.equal(pod.metadata.labels?.[POOL_STATE_LABEL], 'claimed')
    assert.ok(Number.isFinite(Date.parse(pod.metadata.annotations?.[CLAIMED_AT_ANNOTATION] ?? '')))
    assert.ok(
      (pod.spec as { activeDeadlineSeconds: number }).activeDeadlineSeconds <= Math.ceil(defaultLimits.maxLifetimeMs / 1000) + 60 + 30,
      'the claim lowered the deadline to the session’s',
    )
    assert.equal(
      all().find((p) => p.metadata.name === `cbx-${session.sandboxId}`),
      undefined,
      'no pod of its own was created',
    )
    assert.ok(all().length <= count + 1, 'at most the refill’s pod is new')
    await until('the leader to refill the pool', () => free().filter(ready).length === 2)
    assert.ok(!free().some((p) => p.metadata.name === pod.metadata.name))
  })

  it('a session with a code mount never claims a warm pod: it gets a pod of its own', { skip: podMode === 'sandbox' ? false : hostReason }, async () => {
    const bundle = makeBundle()
    after(bundle.remove)
    const warm = free()
      .map((p) => p.metadata.name)
      .sort()
    assert.equal(warm.length, 2)
    const s = { ...spec(), code: { hostPath: bundle.hostPath } }
    const sandbox = await kube.driver().create(s)
    try {
      await within(new ExecutorClient(sandbox).ready, 30_000, 'ready')
      assert.equal(podOf(s.id)?.metadata.name, `cbx-${s.id}`)
      assert.deepEqual(
        free()
          .map((p) => p.metadata.name)
          .sort(),
        warm,
        'the free warm pods are untouched',
      )
    } finally {
      await sandbox.destroy()
    }
  })

  it('a second replica finds the claimed pod by the session’s id: list() names it, attach() reaches its state', async () => {
    const session = claimedSession!
    const other = kube.driver({ listGraceMs: 0 })
    assert.ok((await other.list()).includes(session.sandboxId), 'list() names the sandbox of a claimed warm pod')
    assert.ok(!(await other.list()).some((id) => id.startsWith('warm-')), 'free warm pods are no sandboxes')
    const replicaC = new SessionManager({ driver: other, poolSize: 0 })
    try {
      const outcome = await replicaC.adopt([{ sessionId: session.id, sandboxId: session.sandboxId, limits: session.limits, createdAt: session.createdAt }])
      assert.deepEqual(outcome.failed, [])
      const c = outcome.adopted[0]!
      assert.equal(await py(c, 'print(shared)'), 'set on B\n')
      const name = podOf(session.sandboxId)!.metadata.name
      await c.stop()
      await until('the claimed pod to go', () => !all().some((p) => p.metadata.name === name))
    } finally {
      await replicaC.close()
      await managerB?.close()
    }
    await assert.rejects(other.attach(session.sandboxId), (e: Error & { code?: string }) => e.code === 'SessionTerminated')
    await leader.close()
  })

  it('replicas claiming at once never get the same pod: one gets 409 and takes the next; with none left, one creates its own', async () => {
    const tender = kube.driver({ pool: { size: 2 } })
    await tender.tendPool()
    await until('two ready free warm pods', () => free().filter(ready).length === 2)
    const warm = new Set(free().map((p) => p.metadata.name))
    const drivers = [kube.driver(), kube.driver(), kube.driver()]
    await Promise.all(drivers.map((d) => d.check()))
    const conflictsBefore = kube.fake.requests.filter((r) => r.method === 'PATCH' && r.status === 409).length
    const specs = drivers.map(() => spec())
    const sandboxes = await Promise.all(drivers.map((d, i) => d.create(specs[i]!)))
    try {
      await Promise.all(sandboxes.map((s) => within(new ExecutorClient(s).ready, 30_000, 'ready')))
      const names = specs.map((s) => podOf(s.id)?.metadata.name)
      assert.equal(new Set(names).size, 3, `three sandboxes, three pods: ${names.join(', ')}`)
      assert.equal(names.filter((n) => warm.has(n!)).length, 2, 'both warm pods were claimed')
      const own = specs.filter((s) => podOf(s.id)?.metadata.name === `cbx-${s.id}`)
      assert.equal(own.length, 1, 'the third created its own pod')
      assert.ok(kube.fake.requests.filter((r) => r.method === 'PATCH' && r.status === 409).length > conflictsBefore, 'a claim lost the race with 409 Conflict')
      // The pool's upkeep leaves claimed pods alone.
      const { deleted } = await kube.driver({ pool: { size: 0 } }).tendPool()
      assert.deepEqual(deleted, [])
      for (const s of specs) assert.ok(podOf(s.id))
    } finally {
      await Promise.all(sandboxes.map((s) => s.destroy()))
    }
  })

  it('the upkeep deletes surplus free pods (the oldest), ones past the max age, and ones of no pooled configuration', async () => {
    assert.equal(free().length, 0)
    const one = kube.driver({ pool: { size: 1, maxAgeMs: 600_000 } })
    const [older] = (await one.tendPool()).created
    await delay(1100) // creationTimestamp has whole seconds
    const two = kube.driver({ pool: { size: 2 } })
    const [newer] = (await two.tendPool()).created
    assert.equal(free().length, 2)
    await until('both to be ready (their status settled)', () => free().every(ready))
    const r1 = await one.tendPool()
    assert.deepEqual(r1, { created: [], deleted: [older] }, 'the surplus pod deleted is the older one')
    assert.deepEqual(
      free().map((p) => p.metadata.name),
      [newer],
    )
    const r2 = await one.tendPool(Date.now() + 600_000)
    assert.deepEqual(r2.deleted, [newer], 'past the max age: deleted')
    assert.equal(r2.created.length, 1, 'and replaced')
    await until('the replacement to be ready', () => free().length === 1 && free().every(ready))
    const other = { ...defaultLimits, memoryBytes: defaultLimits.memoryBytes / 2 }
    const r3 = await kube.driver({ pool: { size: 1, limits: [other] } }).tendPool()
    assert.deepEqual(r3.deleted, r2.created, 'the default limits are not pooled by that driver: their free pod is deleted')
    assert.equal(free(poolKeyOf(other)).length, 1, 'a warm pod of the other limits')
    assert.equal(free().length, 0)
    // A deletion is guarded by the resourceVersion the list saw: a pod whose status changed meanwhile (still starting) waits for the next round.
    const none = kube.driver({ pool: { size: 0 } })
    await until('size 0 to delete every free pod', async () => (await none.tendPool(), free(poolKeyOf(other)).length === 0))
  })
})

describe('kubernetes driver: public warm pods', () => {
  let kube: KubeFixture
  let proxy: ClusterEgressProxy
  let echo: net.Server
  let echoPort = 0
  let publicProxy = ''
  const decisions: EgressDecision[] = []
  before(async () => {
    // Pod IPs on loopback (127.244.x.y): a connection from a pod's address reaches the proxy as a pod's would.
    kube = await startKube({ runtimeClasses: ['gvisor'], kubelet: { podNetwork: 'loopback' } })
    proxy = await startClusterEgressProxy({
      kubeConfig: kube.kubeConfig(),
      namespace: kube.namespace,
      profile: 'public',
      sealingKey: kube.sealingKey,
      host: '127.0.0.1',
      port: 0,
      resolve: async () => [],
      onDecision: (d) => decisions.push(d),
    })
    publicProxy = `127.0.0.1:${proxy.address.port}`
    echo = net.createServer((c) => c.pipe(c))
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r))
    echoPort = (echo.address() as net.AddressInfo).port
  })
  after(async () => {
    await proxy?.close()
    echo?.close()
    await kube?.close()
  })
  const all = (): KubeObject[] => kube.fake.store.list(podsType, kube.namespace).filter((p) => !p.metadata.deletionTimestamp)
  const ready = (p: KubeObject): boolean =>
    ((p.status as { conditions?: { type: string; status: string }[] } | undefined)?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')
  const free = (profile: 'sandbox' | 'public'): KubeObject[] =>
    all().filter((p) => p.metadata.labels?.[POOL_STATE_LABEL] === 'free' && p.metadata.labels?.[NETWORK_LABEL] === profile)
  const names = (pods: KubeObject[]): string[] => pods.map((p) => p.metadata.name).sort()
  const podOf = (sandboxId: string): KubeObject | undefined => all().find((p) => p.metadata.labels?.[SESSION_LABEL] === sandboxId)
  const envOf = (pod: KubeObject, name: string): string | undefined =>
    (pod.spec as { containers: { env?: { name: string; value?: string }[] }[] }).containers[0]?.env?.find((e) => e.name === name)?.value
  const sandboxSpec = (): SandboxSpec => ({ id: testId(), limits: { ...defaultLimits }, network: { mode: 'none' } })
  const publicSpec = (): SandboxSpec => ({ id: testId(), limits: { ...defaultLimits }, network: { mode: 'egress', policy: { mode: 'public', allow: [] } } })
  const driver = (pool?: { size: number; publicSize: number }): KubernetesDriver =>
    kube.driver({ egressProxies: { public: publicProxy }, ...(pool ? { pool } : {}) })
  const tend = async (pool: { size: number; publicSize: number }): Promise<void> => {
    await driver(pool).tendPool()
    await until('the warm pods to be ready', () => all().every(ready))
  }

  /** A CONNECT to the loopback echo server through the public proxy, from `pod`'s address with the credentials of its HTTP_PROXY. */
  function connectAs(pod: KubeObject, password?: string): Promise<string> {
    const url = new URL(envOf(pod, 'HTTP_PROXY') ?? '')
    const auth = Buffer.from(`${decodeURIComponent(url.username)}:${password ?? decodeURIComponent(url.password)}`).toString('base64')
    const podIP = (pod.status as { podIP: string }).podIP
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = []
      const c = net.connect({ host: url.hostname, port: Number(url.port), localAddress: podIP }, () =>
        c.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n`),
      )
      c.setTimeout(5000, () => c.destroy(new Error('no answer from the proxy within 5 s')))
      c.on('data', (d: Buffer) => chunks.push(d))
      c.on('error', reject)
      c.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
    })
  }

  it('the leader keeps public warm pods apart from sandbox ones, each with its proxy URL and the public policy from creation', async () => {
    assert.throws(() => kube.driver({ pool: { size: 0, publicSize: 1 } }), /pool.publicSize needs egressProxies.public/)
    await tend({ size: 1, publicSize: 1 })
    assert.equal(free('sandbox').length, 1)
    assert.equal(free('public').length, 1)
    const [pub] = free('public')
    const token = egressToken(egressTokenKey(kube.sealingKey), {
      namespace: kube.namespace,
      podName: pub!.metadata.name,
      nonce: pub!.metadata.annotations?.['codebox.dev/token-nonce'] ?? '',
    })
    assert.equal(envOf(pub!, 'HTTP_PROXY'), `http://${pub!.metadata.name}:${token}@${publicProxy}`, 'its own credentials, from its name and nonce')
    assert.deepEqual(JSON.parse(pub!.metadata.annotations?.[EGRESS_POLICY_ANNOTATION] ?? 'null'), { mode: 'public', allow: [] })
    assert.equal(envOf(free('sandbox')[0]!, 'HTTP_PROXY'), undefined)
    assert.deepEqual(await driver({ size: 1, publicSize: 1 }).tendPool(), { created: [], deleted: [] }, 'a full pool makes nothing more')
  })

  it('a sandbox session never takes a public warm pod, and a PUBLIC session never a sandbox one', async () => {
    // Only public pods free: a sandbox session makes its own.
    await tend({ size: 0, publicSize: 1 })
    assert.equal(free('sandbox').length, 0)
    const publicWarm = names(free('public'))
    const s1 = sandboxSpec()
    const a = await driver().create(s1)
    // Only sandbox pods free: a PUBLIC session makes its own.
    await tend({ size: 1, publicSize: 0 })
    assert.equal(free('public').length, 0)
    const sandboxWarm = names(free('sandbox'))
    const s2 = publicSpec()
    const b = await driver().create(s2)
    try {
      await Promise.all([a, b].map((s) => within(new ExecutorClient(s).ready, 30_000, 'ready')))
      assert.equal(podOf(s1.id)?.metadata.name, `cbx-${s1.id}`)
      assert.ok(!publicWarm.includes(podOf(s1.id)!.metadata.name))
      assert.equal(podOf(s2.id)?.metadata.name, `cbx-${s2.id}`)
      assert.deepEqual(names(free('sandbox')), sandboxWarm, 'the sandbox warm pod is untouched')
    } finally {
      await Promise.all([a.destroy(), b.destroy()])
    }
  })

  it('a PUBLIC session claims a public warm pod, which the public proxy admits as it does a per-session pod', async () => {
    await tend({ size: 1, publicSize: 1 })
    const [warm] = names(free('public'))
    const [sandboxWarm] = names(free('sandbox'))
    const claimedSpec = publicSpec()
    const claimed = await driver().create(claimedSpec)
    // The pool is empty now: this one gets a pod of its own.
    const ownSpec = publicSpec()
    const own = await driver().create(ownSpec)
    try {
      await Promise.all([claimed, own].map((s) => within(new ExecutorClient(s).ready, 30_000, 'ready')))
      const claimedPod = podOf(claimedSpec.id)!
      assert.equal(claimedPod.metadata.name, warm, 'the public warm pod was claimed')
      assert.equal(claimedPod.metadata.labels?.[POOL_STATE_LABEL], 'claimed')
      assert.equal(podOf(ownSpec.id)?.metadata.name, `cbx-${ownSpec.id}`)
      assert.deepEqual(names(free('sandbox')), [sandboxWarm], 'the sandbox warm pod is left for a sandbox session')
      for (const pod of [claimedPod, podOf(ownSpec.id)!]) {
        const name = pod.metadata.name
        // The pod's own credentials, from its address: admitted, and its policy (mode public) decides:
        // the public profile reaches public addresses only, so the loopback echo server is refused.
        const answer = await connectAs(pod)
        assert.match(answer, /^HTTP\/1\.1 403 /, `${name}: ${answer}`)
        assert.match(answer, /loopback/)
        const decision = decisions.find((d) => d.client === name)
        assert.ok(decision, `the proxy admitted ${name} and decided by its policy`)
        assert.equal(decision.allowed, false)
        assert.match(decision.reason ?? '', /loopback/)
        // Credentials that are not the pod's: not admitted at all.
        assert.match(await connectAs(pod, 'x'.repeat(43)), /^HTTP\/1\.1 407 /)
      }
    } finally {
      await Promise.all([claimed.destroy(), own.destroy()])
    }
  })

  it('the upkeep replaces free public pods whose proxy address is no longer the proxy’s, and deletes them at publicSize 0', async () => {
    await tend({ size: 0, publicSize: 1 })
    const [old] = names(free('public'))
    const moved = kube.driver({
      egressProxies: { public: `127.0.0.1:${proxy.address.port === 65535 ? 1 : proxy.address.port + 1}` },
      pool: { size: 0, publicSize: 1 },
    })
    const r = await moved.tendPool()
    assert.deepEqual(r.deleted, [old], 'the pod naming the old address is deleted')
    assert.equal(r.created.length, 1, 'and replaced')
    await until('the replacement to be ready', () => free('public').length === 1 && free('public').every(ready))
    const none = driver({ size: 0, publicSize: 0 })
    await until('publicSize 0 to delete every free public pod', async () => (await none.tendPool(), free('public').length === 0))
  })
})
