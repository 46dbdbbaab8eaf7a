// Watches on the fake Kubernetes API server through @kubernetes/client-node's Watch and informer:
// events with selector transitions, bookmarks, timeoutSeconds, a resume from a resourceVersion, a
// too-old resourceVersion answered with an ERROR event carrying a 410 Status, and an informer
// that relists after it.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { makeInformer, PatchStrategy, setHeaderOptions, Watch, type KubernetesObject, type V1Pod } from '@kubernetes/client-node'
import { findResource, type KubeObject } from '@codebox/sandbox/testing/kubernetes'
import { fakeKubernetes, podManifest, until } from './fake-fixtures.ts'

interface Seen {
  type: string
  name: string | undefined
  rv: string | undefined
  code?: number
  reason?: string
}

/** Starts a watch and records its events; `stop()` aborts it, `done` resolves when it ends. */
async function record(watch: Watch, path: string, query: Record<string, string | number | boolean | undefined>) {
  const events: Seen[] = []
  let resolveDone: (err: unknown) => void = () => {}
  const done = new Promise<unknown>((r) => (resolveDone = r))
  const controller = await watch.watch(
    path,
    query,
    (type: string, obj: KubernetesObject & { code?: number; reason?: string }) => {
      events.push({ type, name: obj.metadata?.name, rv: obj.metadata?.resourceVersion, ...(type === 'ERROR' ? { code: obj.code, reason: obj.reason } : {}) })
    },
    (err: unknown) => resolveDone(err ?? null),
  )
  return { events, done, stop: () => controller.abort() }
}

const pods = findResource('', 'v1', 'pods')!

describe('fake Kubernetes API: watches', () => {
  const k = fakeKubernetes({ kubelet: false, bookmarkIntervalMs: 100, historyLimit: 8 })

  it('streams ADDED, MODIFIED and DELETED as objects enter and leave the selector, with bookmarks', async () => {
    const { core, kc } = k.admin
    const namespace = 'watched'
    const start = await core.listNamespacedPod({ namespace })
    const w = await record(new Watch(kc), `/api/v1/namespaces/${namespace}/pods`, {
      labelSelector: 'app=w',
      allowWatchBookmarks: true,
      resourceVersion: start.metadata?.resourceVersion,
    })
    try {
      await core.createNamespacedPod({ namespace, body: podManifest('w1', { app: 'w' }) })
      await core.createNamespacedPod({ namespace, body: podManifest('other', { app: 'x' }) })
      const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch)
      await core.patchNamespacedPod({ namespace, name: 'w1', body: { metadata: { annotations: { step: '2' } } } }, merge)
      await core.patchNamespacedPod({ namespace, name: 'w1', body: { metadata: { labels: { app: 'gone' } } } }, merge)
      await core.patchNamespacedPod({ namespace, name: 'other', body: { metadata: { labels: { app: 'w' } } } }, merge)
      const last = await core.deleteNamespacedPod({ namespace, name: 'other' })
      const latest = Number(last.metadata?.resourceVersion)
      await until(
        'a bookmark at the newest resourceVersion',
        () => w.events,
        (evs) => evs.some((e) => e.type === 'BOOKMARK' && Number(e.rv) >= latest),
      )
      const changes = w.events.filter((e) => e.type !== 'BOOKMARK').map((e) => `${e.type} ${e.name}`)
      assert.deepEqual(changes, ['ADDED w1', 'MODIFIED w1', 'DELETED w1', 'ADDED other', 'DELETED other'])
    } finally {
      w.stop()
    }
  })

  it('ends a watch at its timeoutSeconds and replays what happened after a resourceVersion', async () => {
    const { core, kc } = k.admin
    const namespace = 'resume'
    const first = await core.createNamespacedPod({ namespace, body: podManifest('r1') })
    await core.createNamespacedPod({ namespace, body: podManifest('r2') })
    const began = Date.now()
    const w = await record(new Watch(kc), `/api/v1/namespaces/${namespace}/pods`, { resourceVersion: first.metadata?.resourceVersion, timeoutSeconds: 1 })
    assert.equal(await w.done, null)
    const took = Date.now() - began
    assert.ok(took >= 900 && took < 5000, `the watch ended after ${took} ms`)
    assert.deepEqual(
      w.events.map((e) => `${e.type} ${e.name}`),
      ['ADDED r2'],
    )
    const fromNow = await record(new Watch(kc), `/api/v1/namespaces/${namespace}/pods`, { timeoutSeconds: 1 })
    await fromNow.done
    assert.deepEqual(
      fromNow.events.map((e) => `${e.type} ${e.name}`),
      ['ADDED r1', 'ADDED r2'],
      'a watch without a resourceVersion starts with the current objects',
    )
  })

  it('answers a resourceVersion older than its history with an ERROR event carrying a 410 Expired Status, then ends', async () => {
    const { core, kc } = k.admin
    const namespace = 'expired'
    const old = await core.createNamespacedPod({ namespace, body: podManifest('e0') })
    for (let i = 1; i <= 10; i++) await core.createNamespacedPod({ namespace, body: podManifest(`e${i}`) })
    const w = await record(new Watch(kc), `/api/v1/namespaces/${namespace}/pods`, { resourceVersion: old.metadata?.resourceVersion })
    assert.equal(await w.done, null)
    assert.equal(w.events.length, 1)
    assert.deepEqual({ type: w.events[0]?.type, code: w.events[0]?.code, reason: w.events[0]?.reason }, { type: 'ERROR', code: 410, reason: 'Expired' })
  })

  it("relists in the client's informer after a 410: what it missed while away reaches its cache", async () => {
    const { core, kc } = k.admin
    const namespace = 'informer'
    const { fake } = k
    await core.createNamespacedPod({ namespace, body: podManifest('first', { app: 'inf' }) })
    const informer = makeInformer<V1Pod>(
      kc,
      `/api/v1/namespaces/${namespace}/pods`,
      () => core.listNamespacedPod({ namespace, labelSelector: 'app=inf' }),
      'app=inf',
    )
    const added: string[] = []
    const deleted: string[] = []
    informer.on('add', (p) => added.push(p.metadata!.name!))
    informer.on('delete', (p) => deleted.push(p.metadata!.name!))
    const lists = () => fake.requests.filter((r) => r.verb === 'list' && r.path === `/api/v1/namespaces/${namespace}/pods`).length
    await informer.start()
    try {
      await until(
        'the informer to hold the first pod',
        () => added,
        (a) => a.includes('first'),
      )
      await until(
        'the informer to watch',
        () => fake.requests,
        (rs) => rs.some((r) => r.verb === 'watch' && r.path.endsWith(`/${namespace}/pods`)),
      )
      assert.equal(lists(), 1)
      // While the informer is away (its watch ended as on a server restart), more changes happen
      // than the history holds; all in this tick, before it reconnects.
      fake.closeWatches()
      for (let i = 0; i < 12; i++) fake.store.create(pods, namespace, podManifest(`noise-${i}`, { app: 'noise' }) as unknown as KubeObject)
      fake.store.create(pods, namespace, podManifest('late', { app: 'inf' }) as unknown as KubeObject)
      fake.store.delete(pods, namespace, 'first')
      await until(
        'the relisted informer to see the late pod',
        () => added,
        (a) => a.includes('late'),
      )
      await until(
        'the relisted informer to drop the deleted pod',
        () => deleted,
        (d) => d.includes('first'),
      )
      assert.equal(lists(), 2, 'the informer listed again')
      const watches = fake.requests.filter((r) => r.verb === 'watch' && r.path === `/api/v1/namespaces/${namespace}/pods`)
      const resumedFrom = Number(new URLSearchParams(watches[1]?.query).get('resourceVersion'))
      assert.ok(resumedFrom < fake.store.oldestResourceVersion, `its second watch (from ${resumedFrom}) was too old for the history, so it got a 410`)
      assert.deepEqual(
        informer.list(namespace).map((p) => p.metadata?.name),
        ['late'],
      )
      assert.ok(!added.some((n) => n.startsWith('noise')), 'the selector holds across the relist')
    } finally {
      await informer.stop()
    }
  })
})
