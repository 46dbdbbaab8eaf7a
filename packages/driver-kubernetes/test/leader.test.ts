/**
 * The replicas' leader through the real client against the fake API server: one replica takes the
 * Lease, the others follow; a leader that stops gives it up and another takes it at once; one that
 * dies (stops renewing) loses it after the Lease's duration; of two replicas taking an expired
 * Lease at once exactly one gets it; and the leader's sweep deletes the pods nobody will end
 * (finished ones past their grace, ones past their activeDeadlineSeconds) and nothing else.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { KubeConfig } from '@kubernetes/client-node'
import { findResource, startFakeKubernetes, type FakeKubernetes } from '@codebox/sandbox/testing/kubernetes'
import { componentLabels, LeaderElector, LEASE_NAME, sweepReason, type LeaderEvent } from '../src/index.ts'

const pods = findResource('', 'v1', 'pods')!
const leases = findResource('coordination.k8s.io', 'v1', 'leases')!
const namespace = 'codebox'

describe('kubernetes driver: the Lease leader', () => {
  let fake: FakeKubernetes
  const electors: LeaderElector[] = []
  before(async () => {
    fake = await startFakeKubernetes({ kubelet: false })
  })
  after(async () => {
    await Promise.all(electors.map((e) => e.stop()))
    await fake?.close()
  })
  const elector = (identity: string, options: { leaseName?: string; events?: LeaderEvent[]; leaseDurationSeconds?: number } = {}): LeaderElector => {
    const kc = new KubeConfig()
    kc.loadFromString(JSON.stringify(fake.kubeconfig(fake.adminToken, namespace)))
    const e = new LeaderElector({
      kubeConfig: kc,
      namespace,
      leaseName: options.leaseName ?? LEASE_NAME,
      identity,
      leaseDurationSeconds: options.leaseDurationSeconds ?? 1,
      renewMs: 100,
      sweepMs: 3_600_000,
      onEvent: (ev) => options.events?.push(ev),
    })
    electors.push(e)
    return e
  }
  const holder = (name = LEASE_NAME): unknown => (fake.store.find(leases, namespace, name)?.spec as { holderIdentity?: string } | undefined)?.holderIdentity

  it('the first replica takes the Lease; the next follows while it renews; a stopped leader hands over at once', async () => {
    const eventsA: LeaderEvent[] = []
    const eventsB: LeaderEvent[] = []
    const a = elector('replica-a', { leaseName: 'lease-1', events: eventsA, leaseDurationSeconds: 30 })
    const b = elector('replica-b', { leaseName: 'lease-1', events: eventsB, leaseDurationSeconds: 30 })
    assert.equal(await a.tryAcquireOrRenew(), true)
    assert.equal(holder('lease-1'), 'replica-a')
    assert.equal(await b.tryAcquireOrRenew(), false)
    assert.equal(await a.tryAcquireOrRenew(), true, 'the holder renews')
    assert.equal(await b.tryAcquireOrRenew(), false)
    assert.deepEqual(eventsB, [{ type: 'following', holder: 'replica-a' }])
    a.start()
    await a.stop()
    assert.equal(holder('lease-1'), '', 'a stopping leader gives the Lease up')
    assert.equal(await b.tryAcquireOrRenew(), true)
    assert.equal(holder('lease-1'), 'replica-b')
    const spec = fake.store.get(leases, namespace, 'lease-1').spec as { leaseTransitions: number; leaseDurationSeconds: number }
    assert.equal(spec.leaseTransitions, 1)
    assert.equal(spec.leaseDurationSeconds, 30)
    assert.deepEqual(eventsA[0], { type: 'leading' })
  })

  it('a leader that dies (stops renewing) loses the Lease once another replica has seen it unchanged for its duration', async () => {
    const a = elector('replica-a', { leaseName: 'lease-2' })
    const b = elector('replica-b', { leaseName: 'lease-2' })
    assert.equal(await a.tryAcquireOrRenew(), true)
    assert.equal(await b.tryAcquireOrRenew(), false)
    await delay(600)
    assert.equal(await b.tryAcquireOrRenew(), false, 'not before the duration has passed')
    await delay(600)
    assert.equal(await b.tryAcquireOrRenew(), true)
    assert.equal(holder('lease-2'), 'replica-b')
    assert.equal(await a.tryAcquireOrRenew(), false, 'the old leader, back, follows')
  })

  it('of replicas taking an expired Lease at once, exactly one gets it (the others get 409)', async () => {
    const a = elector('replica-a', { leaseName: 'lease-3' })
    assert.equal(await a.tryAcquireOrRenew(), true)
    const others = ['b', 'c', 'd', 'e'].map((n) => elector(`replica-${n}`, { leaseName: 'lease-3' }))
    for (const o of others) await o.tryAcquireOrRenew()
    await delay(1100)
    const results = await Promise.all(others.map((o) => o.tryAcquireOrRenew()))
    assert.equal(results.filter(Boolean).length, 1, JSON.stringify(results))
    assert.equal(holder('lease-3'), `replica-${['b', 'c', 'd', 'e'][results.indexOf(true)]}`)
  })

  it('the leader’s sweep deletes finished pods past their grace and pods past their deadline, and nothing else', async () => {
    const now = Date.now()
    const make = (name: string, status: Record<string, unknown>, deadline?: number): void => {
      fake.store.create(pods, namespace, {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name, namespace, labels: componentLabels('sandbox') } as never,
        spec: { containers: [{ name: 'executor', image: 'x' }], ...(deadline !== undefined ? { activeDeadlineSeconds: deadline } : {}) },
      } as never)
      const pod = fake.store.get(pods, namespace, name)
      fake.store.replace(pods, namespace, name, { ...pod, status }, 'status')
    }
    const ago = (ms: number): string => new Date(now - ms).toISOString()
    const terminated = (finishedAt: string, exitCode: number) => [
      { name: 'executor', state: { terminated: { exitCode, reason: exitCode ? 'Error' : 'Completed', finishedAt } } },
    ]
    make('cbx-finished-long-ago', { phase: 'Succeeded', startTime: ago(600_000), containerStatuses: terminated(ago(120_000), 0) })
    make('cbx-failed-long-ago', { phase: 'Failed', startTime: ago(600_000), containerStatuses: terminated(ago(90_000), 1) })
    make('cbx-finished-just-now', { phase: 'Succeeded', startTime: ago(600_000), containerStatuses: terminated(ago(1_000), 0) })
    make('cbx-past-deadline', { phase: 'Running', startTime: ago(3_600_000) }, 600)
    make('cbx-running', { phase: 'Running', startTime: ago(3_600_000) }, 7200)
    fake.store.create(pods, namespace, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'not-codebox', namespace } as never,
      spec: { containers: [{ name: 'x', image: 'x' }] },
    } as never)
    const events: LeaderEvent[] = []
    const leader = elector('replica-a', { leaseName: 'lease-4', events })
    const swept = await leader.sweep(now)
    assert.deepEqual(swept.sort(), ['cbx-failed-long-ago', 'cbx-finished-long-ago', 'cbx-past-deadline'])
    const left = fake.store
      .list(pods, namespace)
      .map((p) => p.metadata.name)
      .sort()
    assert.deepEqual(left, ['cbx-finished-just-now', 'cbx-running', 'not-codebox'])
    assert.match(JSON.stringify(events), /past its activeDeadlineSeconds \(600 s/)
    assert.equal(sweepReason(fake.store.get(pods, namespace, 'cbx-running') as never, now, 60_000), undefined)
  })
})
