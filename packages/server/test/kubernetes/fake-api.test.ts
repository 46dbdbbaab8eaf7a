// The fake Kubernetes API server through the real @kubernetes/client-node: create/get/list/
// replace/patch/delete of pods, services, network policies and leases, label and field selectors,
// resourceVersion conflicts, pagination, Status errors, bearer tokens and namespace RBAC.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ApiException, PatchStrategy, setHeaderOptions, type V1Lease, type V1NetworkPolicy, type V1Pod } from '@kubernetes/client-node'
import { clientsFor, failure, fakeKubernetes, podManifest, raw } from './fake-fixtures.ts'

describe('fake Kubernetes API: objects through @kubernetes/client-node', () => {
  const k = fakeKubernetes({ kubelet: false })
  const namespace = 'crud'

  it('creates, gets, replaces and deletes a pod; a taken name is 409 AlreadyExists; generateName picks a name', async () => {
    const { core } = k.admin
    const created = await core.createNamespacedPod({ namespace, body: podManifest('p1', { app: 'a' }) })
    assert.equal(created.metadata?.namespace, namespace)
    assert.match(created.metadata?.uid ?? '', /^[0-9a-f-]{36}$/)
    assert.equal(created.status?.phase, 'Pending')
    assert.equal(created.spec?.restartPolicy, 'Always')
    const again = await failure(core.createNamespacedPod({ namespace, body: podManifest('p1') }))
    assert.deepEqual([again.code, again.reason, again.message], [409, 'AlreadyExists', 'pods "p1" already exists'])

    const generated = await core.createNamespacedPod({ namespace, body: { ...podManifest(''), metadata: { generateName: 'cbx-' } } })
    assert.match(generated.metadata?.name ?? '', /^cbx-[a-z0-9]{5}$/)

    const got = await core.readNamespacedPod({ namespace, name: 'p1' })
    assert.equal(got.metadata?.resourceVersion, created.metadata?.resourceVersion)
    got.metadata!.labels = { app: 'a', tier: 'x' }
    const replaced = await core.replaceNamespacedPod({ namespace, name: 'p1', body: got })
    assert.equal(replaced.metadata?.labels?.tier, 'x')
    assert.ok(Number(replaced.metadata?.resourceVersion) > Number(created.metadata?.resourceVersion))

    const invalid = await failure(core.createNamespacedPod({ namespace, body: podManifest('Bad_Name') }))
    assert.equal(invalid.code, 422)
    assert.match(invalid.message, /metadata\.name: Invalid value: "Bad_Name"/)
    const noContainers = await failure(core.createNamespacedPod({ namespace, body: { metadata: { name: 'empty' }, spec: { containers: [] } } }))
    assert.match(noContainers.message, /spec\.containers: Required value/)

    await core.deleteNamespacedPod({ namespace, name: 'p1' })
    const gone = await failure(core.readNamespacedPod({ namespace, name: 'p1' }))
    assert.deepEqual([gone.code, gone.reason, gone.message], [404, 'NotFound', 'pods "p1" not found'])
  })

  it('a replace or patch carrying a stale resourceVersion is 409 Conflict and changes nothing', async () => {
    const { core } = k.admin
    const v1 = await core.createNamespacedPod({ namespace, body: podManifest('racy', { round: '1' }) })
    const v2 = await core.patchNamespacedPod(
      { namespace, name: 'racy', body: { metadata: { labels: { round: '2' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    )
    const stale = await failure(
      core.replaceNamespacedPod({ namespace, name: 'racy', body: { ...v1, metadata: { ...v1.metadata, labels: { round: 'lost' } } } }),
    )
    assert.equal(stale.code, 409)
    assert.equal(stale.reason, 'Conflict')
    assert.match(stale.message, /the object has been modified; please apply your changes to the latest version/)
    const stalePatch = await failure(
      core.patchNamespacedPod(
        { namespace, name: 'racy', body: { metadata: { resourceVersion: v1.metadata?.resourceVersion, labels: { round: 'lost' } } } },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      ),
    )
    assert.equal(stalePatch.code, 409)
    const now = await core.readNamespacedPod({ namespace, name: 'racy' })
    assert.equal(now.metadata?.labels?.round, '2')
    assert.equal(now.metadata?.resourceVersion, v2.metadata?.resourceVersion)
    const claimed = await core.patchNamespacedPod(
      { namespace, name: 'racy', body: { metadata: { resourceVersion: v2.metadata?.resourceVersion, labels: { round: '3' } } } },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    )
    assert.equal(claimed.metadata?.labels?.round, '3')
  })

  it('merges a strategic merge patch by container name, applies a JSON patch, and fails a JSON patch test with 422', async () => {
    const { core } = k.admin
    const body: V1Pod = podManifest('patched')
    body.spec!.containers.push({ name: 'side', image: 'side:1', env: [{ name: 'A', value: '1' }] })
    await core.createNamespacedPod({ namespace, body })
    const smp = await core.patchNamespacedPod(
      { namespace, name: 'patched', body: { spec: { containers: [{ name: 'side', env: [{ name: 'B', value: '2' }] }] } } },
      setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
    )
    assert.deepEqual(
      smp.spec?.containers.map((c) => [c.name, c.image, (c.env ?? []).map((e) => e.name)]),
      [
        ['main', 'codebox/sandbox:test', []],
        ['side', 'side:1', ['A', 'B']],
      ],
    )
    const jp = await core.patchNamespacedPod(
      {
        namespace,
        name: 'patched',
        body: [
          { op: 'test', path: '/spec/containers/1/image', value: 'side:1' },
          { op: 'add', path: '/metadata/annotations', value: { 'codebox.dev/claimed': 'yes' } },
        ],
      },
      setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
    )
    assert.equal(jp.metadata?.annotations?.['codebox.dev/claimed'], 'yes')
    const failed = await failure(
      core.patchNamespacedPod(
        { namespace, name: 'patched', body: [{ op: 'test', path: '/metadata/annotations/codebox.dev~1claimed', value: 'no' }] },
        setHeaderOptions('Content-Type', PatchStrategy.JsonPatch),
      ),
    )
    assert.deepEqual([failed.code, failed.reason], [422, 'Invalid'])
    const ssa = await failure(
      core.patchNamespacedPod({ namespace, name: 'patched', body: { metadata: {} } }, setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply)),
    )
    assert.equal(ssa.code, 415)
  })

  it('lists with label selectors (=, !=, in, notin, exists, !exists) and the metadata.name field selector', async () => {
    const { core } = k.admin
    const ns = 'selectors'
    for (const [name, labels] of [
      ['s1', { app: 'web', tier: 'front' }],
      ['s2', { app: 'web', tier: 'back' }],
      ['s3', { app: 'db' }],
      ['s4', {}],
    ] as const) {
      await core.createNamespacedPod({ namespace: ns, body: podManifest(name, labels) })
    }
    const names = async (labelSelector?: string, fieldSelector?: string): Promise<string[]> =>
      (await core.listNamespacedPod({ namespace: ns, ...(labelSelector ? { labelSelector } : {}), ...(fieldSelector ? { fieldSelector } : {}) })).items.map(
        (p) => p.metadata!.name!,
      )
    assert.deepEqual(await names('app=web'), ['s1', 's2'])
    assert.deepEqual(await names('app==web,tier!=front'), ['s2'])
    assert.deepEqual(await names('app!=web'), ['s3', 's4'])
    assert.deepEqual(await names('tier in (front, side)'), ['s1'])
    assert.deepEqual(await names('app notin (web)'), ['s3', 's4'])
    assert.deepEqual(await names('tier'), ['s1', 's2'])
    assert.deepEqual(await names('!app'), ['s4'])
    assert.deepEqual(await names(undefined, 'metadata.name=s3'), ['s3'])
    assert.deepEqual(await names('app=web', 'metadata.name!=s1'), ['s2'])
    const badLabel = await failure(core.listNamespacedPod({ namespace: ns, labelSelector: 'app in (web' }))
    assert.equal(badLabel.code, 400)
    const badField = await failure(core.listNamespacedPod({ namespace: ns, fieldSelector: 'spec.image=x' }))
    assert.deepEqual([badField.code, badField.message], [400, 'field label not supported: spec.image'])

    const page1 = await core.listNamespacedPod({ namespace: ns, limit: 3 })
    assert.deepEqual(
      page1.items.map((p) => p.metadata?.name),
      ['s1', 's2', 's3'],
    )
    assert.equal(page1.metadata?.remainingItemCount, 1)
    const page2 = await core.listNamespacedPod({ namespace: ns, limit: 3, _continue: page1.metadata!._continue! })
    assert.deepEqual(
      page2.items.map((p) => p.metadata?.name),
      ['s4'],
    )
    assert.equal(page2.metadata?._continue, undefined)
  })

  it('serves services (a clusterIP is allocated), network policies and leases, with the status subresource kept apart', async () => {
    const { core, networking, coordination, objects } = k.admin
    const svc = await core.createNamespacedService({
      namespace,
      body: { metadata: { name: 'cbx-api' }, spec: { selector: { app: 'api' }, ports: [{ port: 80 }] } },
    })
    assert.match(svc.spec?.clusterIP ?? '', /^10\.96\.\d+\.\d+$/)
    assert.equal(svc.spec?.ports?.[0]?.protocol, 'TCP')
    const policy: V1NetworkPolicy = {
      metadata: { name: 'deny-all', labels: { 'app.kubernetes.io/managed-by': 'codebox' } },
      spec: { podSelector: {}, policyTypes: ['Ingress', 'Egress'] },
    }
    await networking.createNamespacedNetworkPolicy({ namespace, body: policy })
    const policies = await networking.listNamespacedNetworkPolicy({ namespace, labelSelector: 'app.kubernetes.io/managed-by=codebox' })
    assert.deepEqual(policies.items[0]?.spec?.policyTypes, ['Ingress', 'Egress'])
    const lease: V1Lease = { metadata: { name: 'codebox-leader' }, spec: { holderIdentity: 'replica-a', leaseDurationSeconds: 15 } }
    const held = await coordination.createNamespacedLease({ namespace, body: lease })
    const renewed = await coordination.replaceNamespacedLease({
      namespace,
      name: 'codebox-leader',
      body: { ...held, spec: { ...held.spec, holderIdentity: 'replica-b' } },
    })
    assert.equal(renewed.spec?.holderIdentity, 'replica-b')
    const lost = await failure(
      coordination.replaceNamespacedLease({ namespace, name: 'codebox-leader', body: { ...held, spec: { ...held.spec, holderIdentity: 'replica-c' } } }),
    )
    assert.equal(lost.code, 409)
    const generic = await objects.read({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'codebox-leader', namespace } })
    assert.equal((generic as V1Lease).spec?.holderIdentity, 'replica-b')
    const deleted = await networking.deleteNamespacedNetworkPolicy({ namespace, name: 'deny-all' })
    assert.equal(deleted.status, 'Success')

    const pod = await core.createNamespacedPod({ namespace, body: podManifest('with-status') })
    const spoofed = await core.replaceNamespacedPod({ namespace, name: 'with-status', body: { ...pod, status: { phase: 'Running' } } })
    assert.equal(spoofed.status?.phase, 'Pending', 'a write to the pod itself keeps the status')
    const viaStatus = await core.replaceNamespacedPodStatus({ namespace, name: 'with-status', body: { ...spoofed, status: { phase: 'Running' } } })
    assert.equal(viaStatus.status?.phase, 'Running')
  })

  it('refuses a missing or unknown token with 401, and malformed or oversized bodies with a Status naming the fault', async () => {
    const stranger = clientsFor(k.fake, 'no-such-token')
    await assert.rejects(stranger.core.listNamespacedPod({ namespace }), (e: ApiException<unknown>) => e.code === 401)
    const anonymous = await raw(k.fake, 'GET', `/api/v1/namespaces/${namespace}/pods`)
    assert.equal(anonymous.status, 401)
    assert.deepEqual(anonymous.json(), {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: 'Unauthorized',
      reason: 'Unauthorized',
      code: 401,
    })
    const token = k.fake.adminToken
    const badJson = await raw(k.fake, 'POST', `/api/v1/namespaces/${namespace}/pods`, { token, body: '{"metadata": ' })
    assert.equal(badJson.status, 400)
    assert.match(String(badJson.json().message), /not valid JSON/)
    const proto = await raw(k.fake, 'POST', `/api/v1/namespaces/${namespace}/pods`, { token, body: '{"metadata":{"name":"x","__proto__":{"polluted":1}}}' })
    assert.equal(proto.status, 400)
    const big = await raw(k.fake, 'POST', `/api/v1/namespaces/${namespace}/pods`, {
      token,
      body: JSON.stringify({ metadata: { name: 'big' }, pad: 'x'.repeat(4 << 20) }),
    })
    assert.equal(big.status, 413)
    const unknownPath = await raw(k.fake, 'GET', '/apis/apps/v1/namespaces/crud/deployments', { token })
    assert.deepEqual([unknownPath.status, unknownPath.json().reason], [404, 'NotFound'])
    const dryRun = await raw(k.fake, 'POST', `/api/v1/namespaces/${namespace}/pods?dryRun=All`, { token, body: JSON.stringify(podManifest('dry')) })
    assert.equal(dryRun.status, 400)
    assert.match(String(dryRun.json().message), /dryRun is not supported/)
  })
})

describe('fake Kubernetes API: namespace RBAC', () => {
  const k = fakeKubernetes({
    kubelet: false,
    users: { 'tok-a': { name: 'codebox-a', namespaces: ['team-a'] }, 'tok-b': { name: 'codebox-b', namespaces: ['team-b'] } },
  })

  it('lets a user act in its namespace only: another namespace and cluster-wide lists are 403 Forbidden', async () => {
    const a = clientsFor(k.fake, 'tok-a', 'team-a')
    await a.core.createNamespacedPod({ namespace: 'team-a', body: podManifest('mine') })
    assert.equal((await a.core.listNamespacedPod({ namespace: 'team-a' })).items.length, 1)
    const other = await failure(a.core.createNamespacedPod({ namespace: 'team-b', body: podManifest('theirs') }))
    assert.deepEqual([other.code, other.reason], [403, 'Forbidden'])
    assert.equal(other.message, 'pods is forbidden: User "codebox-a" cannot create resource "pods" in API group "" in the namespace "team-b"')
    const all = await failure(a.core.listPodForAllNamespaces())
    assert.match(all.message, /cannot list resource "pods" in API group "" at the cluster scope/)
    const b = clientsFor(k.fake, 'tok-b', 'team-b')
    const peek = await failure(b.core.readNamespacedPod({ namespace: 'team-a', name: 'mine' }))
    assert.equal(peek.code, 403)
    assert.ok(k.fake.requests.some((r) => r.user === 'codebox-b' && r.status === 403 && r.verb === 'get'))
  })
})
