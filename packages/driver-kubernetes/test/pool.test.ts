/**
 * The claimable warm pool against the fake API server through the real client: the leader keeps
 * `size` free warm pods; create() claims one (no pod created, the session's Python runs in it) and
 * the leader refills; a second replica finds the claimed pod by the session's id (list, attach);
 * replicas claiming at once never share a pod (one gets 409 and takes the next, or creates its
 * own); a session with a code mount takes none; surplus, unpooled and old free pods are deleted,
 * claimed ones never.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { defaultLimits, type SandboxSpec } from '@codebox/core'
import { SessionManager, type Session } from '@codebox/sandbox'
import { ExecutorClient, within } from '@codebox/sandbox/testing'
import { findResource, type KubeObject } from '@codebox/sandbox/testing/kubernetes'
import { CLAIMED_AT_ANNOTATION, POOL_LABEL, POOL_STATE_LABEL, poolKeyOf, SESSION_LABEL, type KubernetesDriver } from '../src/index.ts'
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
