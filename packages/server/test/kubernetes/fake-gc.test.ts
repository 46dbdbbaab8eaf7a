// Deletion on the fake Kubernetes API server through @kubernetes/client-node: owner-reference
// garbage collection with background, foreground and orphan propagation, finalizers holding an
// object until they are removed, a delete precondition, and a pod's dependents collected once
// its graceful deletion ends.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { PatchStrategy, setHeaderOptions, type V1Lease, type V1OwnerReference } from '@kubernetes/client-node'
import { failure, fakeKubernetes, podManifest, until } from './fake-fixtures.ts'

const ownedBy = (owner: { metadata?: { name?: string; uid?: string } }, kind: string, apiVersion: string): V1OwnerReference[] => [
  { apiVersion, kind, name: owner.metadata!.name!, uid: owner.metadata!.uid!, controller: true, blockOwnerDeletion: true },
]

describe('fake Kubernetes API: deletion and garbage collection', () => {
  const k = fakeKubernetes({})
  const namespace = 'gc'

  /** A lease as owner, a service and a network policy it owns. */
  async function family(name: string) {
    const { coordination, core, networking } = k.admin
    const owner: V1Lease = await coordination.createNamespacedLease({ namespace, body: { metadata: { name }, spec: { holderIdentity: 'x' } } })
    const refs = ownedBy(owner, 'Lease', 'coordination.k8s.io/v1')
    await core.createNamespacedService({ namespace, body: { metadata: { name: `${name}-svc`, ownerReferences: refs }, spec: { ports: [{ port: 80 }] } } })
    await networking.createNamespacedNetworkPolicy({ namespace, body: { metadata: { name: `${name}-np`, ownerReferences: refs }, spec: { podSelector: {} } } })
    return owner
  }
  const exists = {
    svc: async (name: string) => (await k.admin.core.listNamespacedService({ namespace, fieldSelector: `metadata.name=${name}` })).items[0],
    np: async (name: string) => (await k.admin.networking.listNamespacedNetworkPolicy({ namespace, fieldSelector: `metadata.name=${name}` })).items[0],
    lease: async (name: string) => (await k.admin.coordination.listNamespacedLease({ namespace, fieldSelector: `metadata.name=${name}` })).items[0],
  }

  it('deletes the dependents of a deleted owner (background propagation)', async () => {
    await family('bg')
    await k.admin.coordination.deleteNamespacedLease({ namespace, name: 'bg' })
    await until(
      'the service to be collected',
      () => exists.svc('bg-svc'),
      (s) => s === undefined,
    )
    await until(
      'the network policy to be collected',
      () => exists.np('bg-np'),
      (s) => s === undefined,
    )
  })

  it('keeps a foreground-deleted owner, with deletionTimestamp and the foregroundDeletion finalizer, until its dependents are gone', async () => {
    const { coordination } = k.admin
    await family('fg')
    // A finalizer of our own on the dependent holds it, so the owner's wait can be seen.
    const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch)
    await k.admin.core.patchNamespacedService({ namespace, name: 'fg-svc', body: { metadata: { finalizers: ['codebox.dev/hold'] } } }, merge)
    await coordination.deleteNamespacedLease({ namespace, name: 'fg', propagationPolicy: 'Foreground' })
    const waiting = await until(
      'the policy to be collected',
      () => exists.np('fg-np'),
      (s) => s === undefined,
    )
    assert.equal(waiting, undefined)
    const owner = await exists.lease('fg')
    assert.ok(owner?.metadata?.deletionTimestamp, 'the owner is still there, being deleted')
    assert.deepEqual(owner.metadata.finalizers, ['foregroundDeletion'])
    const held = await exists.svc('fg-svc')
    assert.ok(held?.metadata?.deletionTimestamp, 'the held dependent is being deleted')
    const refused = await failure(
      k.admin.core.patchNamespacedService({ namespace, name: 'fg-svc', body: { metadata: { finalizers: ['codebox.dev/hold', 'another'] } } }, merge),
    )
    assert.equal(refused.code, 403)
    await k.admin.core.patchNamespacedService({ namespace, name: 'fg-svc', body: { metadata: { finalizers: null } } }, merge)
    await until(
      'the owner to be gone',
      () => exists.lease('fg'),
      (s) => s === undefined,
    )
    assert.equal(await exists.svc('fg-svc'), undefined)
  })

  it('leaves the dependents of an orphan-deleted owner, without the owner reference', async () => {
    await family('or')
    await k.admin.coordination.deleteNamespacedLease({ namespace, name: 'or', propagationPolicy: 'Orphan' })
    assert.equal(await exists.lease('or'), undefined)
    await new Promise((r) => setTimeout(r, 100))
    const svc = await exists.svc('or-svc')
    assert.ok(svc, 'the service stays')
    assert.equal(svc.metadata?.ownerReferences, undefined)
  })

  it('collects an object created with an owner that does not exist, and refuses a delete whose uid precondition is wrong', async () => {
    const { core } = k.admin
    const ghost = { metadata: { name: 'ghost', uid: '00000000-0000-4000-8000-000000000000' } }
    await core.createNamespacedService({
      namespace,
      body: { metadata: { name: 'orphaned', ownerReferences: ownedBy(ghost, 'Pod', 'v1') }, spec: { ports: [{ port: 1 }] } },
    })
    await until(
      'the service to be collected',
      () => exists.svc('orphaned'),
      (s) => s === undefined,
    )
    await core.createNamespacedService({ namespace, body: { metadata: { name: 'kept' }, spec: { ports: [{ port: 1 }] } } })
    const wrong = await failure(core.deleteNamespacedService({ namespace, name: 'kept', body: { preconditions: { uid: ghost.metadata.uid } } }))
    assert.equal(wrong.code, 409)
    assert.ok(await exists.svc('kept'))
  })

  it("collects a pod's network policy only once the pod's graceful deletion has ended", async () => {
    const { core, networking } = k.admin
    await core.createNamespacedPod({ namespace, body: podManifest('cbx-s1') })
    const pod = await until(
      'the pod to run',
      () => core.readNamespacedPod({ namespace, name: 'cbx-s1' }),
      (p) => p.status?.phase === 'Running',
    )
    await networking.createNamespacedNetworkPolicy({
      namespace,
      body: { metadata: { name: 'cbx-s1', ownerReferences: ownedBy(pod, 'Pod', 'v1') }, spec: { podSelector: {} } },
    })
    const order: string[] = []
    const unsubscribe = k.fake.store.subscribe((e) => e.object.metadata.name === 'cbx-s1' && order.push(`${e.type} ${e.object.kind}`))
    try {
      const deleting = await core.deleteNamespacedPod({ namespace, name: 'cbx-s1' })
      assert.ok(deleting.metadata?.deletionTimestamp)
      await until(
        'its policy to be collected',
        () => exists.np('cbx-s1'),
        (s) => s === undefined,
      )
      assert.deepEqual(order, ['MODIFIED Pod', 'DELETED Pod', 'DELETED NetworkPolicy'])
    } finally {
      unsubscribe()
    }
  })
})
