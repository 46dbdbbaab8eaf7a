/**
 * The fake API server's object store: one global resourceVersion counter as etcd has, writes
 * guarded by resourceVersion preconditions, a bounded history of events that watches replay from
 * (a resourceVersion older than the history is 410 Gone), graceful deletion (deletionTimestamp,
 * finalizers) and the three deletion propagation policies, with garbage collection of objects
 * whose owners are gone (gc.ts). Objects are stored as snapshots that are never mutated in place.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { apiVersionOf, checkName, checkNamespace, type ResourceType } from './resources.ts'
import { applyDefaults } from './defaults.ts'
import { KubeError } from './status.ts'

/** ObjectMeta fields the fake reads and writes. */
export interface ObjectMeta {
  name: string
  namespace: string
  uid: string
  resourceVersion: string
  creationTimestamp: string
  generation?: number
  generateName?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean; blockOwnerDeletion?: boolean }[]
  finalizers?: string[]
  deletionTimestamp?: string
  deletionGracePeriodSeconds?: number
}

/** A stored object: apiVersion, kind, metadata and whatever else its body held. */
export interface KubeObject {
  apiVersion: string
  kind: string
  metadata: ObjectMeta
  [field: string]: unknown
}

export type EventType = 'ADDED' | 'MODIFIED' | 'DELETED'

/** One write, as watches see it; `previous` is the state before (for selector transitions). */
export interface StoreEvent {
  rv: number
  type: EventType
  resource: ResourceType
  object: KubeObject
  previous: KubeObject | undefined
}

/** DeleteOptions the fake honours. */
export interface DeleteOptions {
  gracePeriodSeconds?: number
  propagationPolicy?: 'Foreground' | 'Background' | 'Orphan'
  preconditions?: { uid?: string; resourceVersion?: string }
}

export const timestamp = (ms = Date.now()): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z')
const keyOf = (t: ResourceType, ns: string, name: string): string => `${t.plural}.${t.group}/${ns}/${name}`
const genChars = 'bcdfghjklmnpqrstvwxz2456789'

function notFound(t: ResourceType, name: string): KubeError {
  return new KubeError('NotFound', `${t.plural}${t.group ? '.' + t.group : ''} "${name}" not found`, { name, group: t.group, kind: t.plural })
}

export function conflict(t: ResourceType, name: string): KubeError {
  return new KubeError(
    'Conflict',
    `Operation cannot be fulfilled on ${t.plural}${t.group ? '.' + t.group : ''} "${name}": the object has been modified; please apply your changes to the latest version and try again`,
    { name, group: t.group, kind: t.plural },
  )
}

/** The store; `historyLimit` events are kept for watches (default 1000). */
export class ObjectStore {
  #rv = 1000
  #compactedRv = 0
  #ips = 1
  readonly #objects = new Map<string, { t: ResourceType; obj: KubeObject }>()
  readonly #history: StoreEvent[] = []
  readonly #historyLimit: number
  readonly #listeners = new Set<(e: StoreEvent) => void>()
  /** Called after each write so garbage collection can run (set by gc.ts). */
  afterWrite: () => void = () => {}

  constructor(historyLimit = 1000) {
    if (!Number.isInteger(historyLimit) || historyLimit < 1) throw new Error(`historyLimit must be a positive integer, got ${historyLimit}`)
    this.#historyLimit = historyLimit
  }

  /** The newest resourceVersion (what a list answers with). */
  get resourceVersion(): string {
    return String(this.#rv)
  }

  /** Subscribes to every write; returns the unsubscribe function. */
  subscribe(fn: (e: StoreEvent) => void): () => void {
    this.#listeners.add(fn)
    return () => this.#listeners.delete(fn)
  }

  /** Events after `rv`, or 'gone' when the history no longer reaches back that far. */
  eventsSince(rv: number): StoreEvent[] | 'gone' {
    if (rv < this.#compactedRv) return 'gone'
    return this.#history.filter((e) => e.rv > rv)
  }

  /** The oldest resourceVersion a watch may still start from. */
  get oldestResourceVersion(): number {
    return this.#compactedRv
  }

  /** Drops the whole history, as an etcd compaction at the newest revision would. */
  compact(): void {
    this.#history.length = 0
    this.#compactedRv = this.#rv
  }

  find(t: ResourceType, ns: string, name: string): KubeObject | undefined {
    return this.#objects.get(keyOf(t, ns, name))?.obj
  }

  get(t: ResourceType, ns: string, name: string): KubeObject {
    const obj = this.find(t, ns, name)
    if (!obj) throw notFound(t, name)
    return obj
  }

  /** Objects of a type, in one namespace or all, sorted by namespace then name. */
  list(t: ResourceType, ns: string | undefined): KubeObject[] {
    const out: KubeObject[] = []
    for (const { t: type, obj } of this.#objects.values()) if (type === t && (ns === undefined || obj.metadata.namespace === ns)) out.push(obj)
    return out.sort((a, b) => (a.metadata.namespace + '/' + a.metadata.name < b.metadata.namespace + '/' + b.metadata.name ? -1 : 1))
  }

  /** Every stored object with its type (for garbage collection and the kubelet). */
  all(): { t: ResourceType; obj: KubeObject }[] {
    return [...this.#objects.values()]
  }

  #emit(type: EventType, t: ResourceType, object: KubeObject, previous: KubeObject | undefined): void {
    const event: StoreEvent = { rv: this.#rv, type, resource: t, object, previous }
    this.#history.push(event)
    while (this.#history.length > this.#historyLimit) this.#compactedRv = this.#history.shift()!.rv
    for (const fn of [...this.#listeners]) fn(event)
    this.afterWrite()
  }

  /** POST: a new object; 409 AlreadyExists for a taken name, generateName picks a free one. */
  create(t: ResourceType, ns: string, body: KubeObject): KubeObject {
    checkNamespace(ns)
    const meta = (body.metadata ?? {}) as Partial<ObjectMeta>
    if (meta.namespace !== undefined && meta.namespace !== ns) {
      throw new KubeError('BadRequest', 'the namespace of the provided object does not match the namespace sent on the request')
    }
    let name = meta.name
    if (!name && meta.generateName) {
      for (let i = 0; i < 20 && (!name || this.find(t, ns, name)); i++) {
        name = meta.generateName + [...randomBytes(5)].map((b) => genChars[b % genChars.length]).join('')
      }
    }
    if (!name)
      throw new KubeError('Invalid', `${t.kind} is invalid: metadata.name: Required value: name or generateName is required`, { kind: t.kind, group: t.group })
    checkName(t, name)
    if (this.find(t, ns, name)) {
      throw new KubeError('AlreadyExists', `${t.plural}${t.group ? '.' + t.group : ''} "${name}" already exists`, { name, group: t.group, kind: t.plural })
    }
    const obj = structuredClone(body)
    obj.apiVersion = apiVersionOf(t)
    obj.kind = t.kind
    this.#rv++
    obj.metadata = {
      ...meta,
      name,
      namespace: ns,
      uid: randomUUID(),
      resourceVersion: String(this.#rv),
      creationTimestamp: timestamp(),
      generation: 1,
    } as ObjectMeta
    delete obj.metadata.deletionTimestamp
    delete obj.metadata.deletionGracePeriodSeconds
    applyDefaults(t, obj, () => `10.96.${(this.#ips >> 8) & 255}.${this.#ips++ & 255}`)
    this.#objects.set(keyOf(t, ns, name), { t, obj })
    this.#emit('ADDED', t, obj, undefined)
    return obj
  }

  /**
   * Writes `next` in place of the stored object: a stale metadata.resourceVersion in `next` is a
   * 409 Conflict; uid, creation and deletion fields are kept; for a type with a status, a main
   * write keeps the stored status and a status write (`subresource`) changes nothing else. An
   * unchanged object is not written again (no new resourceVersion, no event).
   */
  replace(t: ResourceType, ns: string, name: string, next: KubeObject, subresource?: 'status'): KubeObject {
    const cur = this.get(t, ns, name)
    const nextMeta = (next.metadata ?? {}) as Partial<ObjectMeta>
    if (nextMeta.name !== undefined && nextMeta.name !== name)
      throw new KubeError('BadRequest', `the name of the object (${nextMeta.name}) does not match the name on the URL (${name})`)
    if (nextMeta.resourceVersion !== undefined && nextMeta.resourceVersion !== '' && nextMeta.resourceVersion !== cur.metadata.resourceVersion)
      throw conflict(t, name)
    if (nextMeta.uid !== undefined && nextMeta.uid !== cur.metadata.uid)
      throw new KubeError('Conflict', `Precondition failed: UID in precondition: ${nextMeta.uid}, UID in object meta: ${cur.metadata.uid}`)
    let obj: KubeObject
    if (subresource === 'status') obj = { ...structuredClone(cur), status: structuredClone(next.status) }
    else {
      obj = structuredClone(next)
      obj.metadata = { ...nextMeta } as ObjectMeta
      if (t.hasStatus) obj.status = structuredClone(cur.status)
    }
    obj.apiVersion = cur.apiVersion
    obj.kind = cur.kind
    const m = obj.metadata
    const c = cur.metadata
    Object.assign(m, { name, namespace: ns, uid: c.uid, creationTimestamp: c.creationTimestamp, resourceVersion: c.resourceVersion, generation: c.generation })
    if (c.generateName) m.generateName = c.generateName
    else delete m.generateName
    for (const f of ['deletionTimestamp', 'deletionGracePeriodSeconds'] as const) {
      if (c[f] === undefined) delete m[f]
      else (m as unknown as Record<string, unknown>)[f] = c[f]
    }
    if (c.deletionTimestamp && (m.finalizers ?? []).some((f) => !(c.finalizers ?? []).includes(f))) {
      throw new KubeError('Forbidden', `${t.kind} "${name}" is being deleted: no new finalizers can be added`)
    }
    if (JSON.stringify(obj.spec) !== JSON.stringify(cur.spec)) m.generation = (c.generation ?? 1) + 1
    if (JSON.stringify(obj) === JSON.stringify(cur)) return cur
    return this.#write(t, obj, cur)
  }

  #write(t: ResourceType, obj: KubeObject, cur: KubeObject): KubeObject {
    this.#rv++
    obj.metadata.resourceVersion = String(this.#rv)
    this.#objects.set(keyOf(t, obj.metadata.namespace, obj.metadata.name), { t, obj })
    this.#emit('MODIFIED', t, obj, cur)
    return this.#finalizeIfDone(t, obj)
  }

  /** Removes an object whose deletion is due: deletionTimestamp set, no finalizers, no grace left. */
  #finalizeIfDone(t: ResourceType, obj: KubeObject): KubeObject {
    const m = obj.metadata
    if (!m.deletionTimestamp || (m.finalizers?.length ?? 0) > 0 || (m.deletionGracePeriodSeconds ?? 0) > 0) return obj
    this.#objects.delete(keyOf(t, m.namespace, m.name))
    this.#rv++
    const gone = { ...obj, metadata: { ...m, resourceVersion: String(this.#rv) } }
    this.#emit('DELETED', t, gone, obj)
    return gone
  }

  /**
   * DELETE: pods that are on a node and not finished get a grace period (deletionTimestamp; the
   * kubelet deletes them again with 0 once their container stopped); objects with finalizers wait
   * for them; anything else is removed now. Orphan strips this owner from its dependents;
   * Foreground keeps the owner (finalizer foregroundDeletion) until its dependents are gone.
   * Returns the object as it is after the call.
   */
  delete(t: ResourceType, ns: string, name: string, options: DeleteOptions = {}): KubeObject {
    const cur = this.get(t, ns, name)
    const pre = options.preconditions
    if (pre?.uid && pre.uid !== cur.metadata.uid)
      throw new KubeError('Conflict', `Precondition failed: UID in precondition: ${pre.uid}, UID in object meta: ${cur.metadata.uid}`)
    if (pre?.resourceVersion && pre.resourceVersion !== cur.metadata.resourceVersion) throw conflict(t, name)
    if (options.propagationPolicy === 'Orphan') this.#orphanDependents(cur.metadata.uid, ns)
    const grace = this.#graceSeconds(t, cur, options.gracePeriodSeconds)
    const m = structuredClone(cur.metadata)
    if (m.deletionTimestamp && (m.deletionGracePeriodSeconds ?? 0) <= grace && options.propagationPolicy !== 'Foreground') return cur
    m.deletionGracePeriodSeconds = grace
    m.deletionTimestamp = timestamp(Date.now() + grace * 1000)
    if (options.propagationPolicy === 'Foreground' && !m.finalizers?.includes('foregroundDeletion'))
      m.finalizers = [...(m.finalizers ?? []), 'foregroundDeletion']
    if (grace === 0 && (m.finalizers?.length ?? 0) === 0) {
      this.#objects.delete(keyOf(t, ns, name))
      this.#rv++
      const gone = { ...cur, metadata: { ...cur.metadata, resourceVersion: String(this.#rv) } }
      this.#emit('DELETED', t, gone, cur)
      return gone
    }
    return this.#write(t, { ...structuredClone(cur), metadata: m }, cur)
  }

  #graceSeconds(t: ResourceType, obj: KubeObject, requested: number | undefined): number {
    if (t.kind !== 'Pod') return 0
    const spec = (obj.spec ?? {}) as { nodeName?: string; terminationGracePeriodSeconds?: number }
    const phase = (obj.status as { phase?: string } | undefined)?.phase
    if (!spec.nodeName || phase === 'Succeeded' || phase === 'Failed') return 0
    const g = requested ?? spec.terminationGracePeriodSeconds ?? 30
    if (!Number.isInteger(g) || g < 0) throw new KubeError('BadRequest', `gracePeriodSeconds must be a non-negative integer, got ${String(g)}`)
    return g
  }

  #orphanDependents(uid: string, ns: string): void {
    for (const { t, obj } of this.all()) {
      const refs = obj.metadata.ownerReferences
      if (obj.metadata.namespace !== ns || !refs?.some((r) => r.uid === uid)) continue
      const next = structuredClone(obj)
      next.metadata.ownerReferences = refs.filter((r) => r.uid !== uid)
      if (next.metadata.ownerReferences.length === 0) delete next.metadata.ownerReferences
      this.#write(t, next, obj)
    }
  }

  /** Removes one finalizer (the garbage collector's foregroundDeletion) and finishes the deletion. */
  dropFinalizer(t: ResourceType, ns: string, name: string, finalizer: string): void {
    const obj = this.get(t, ns, name)
    if (!obj.metadata.finalizers?.includes(finalizer)) return
    const next = structuredClone(obj)
    next.metadata.finalizers = (obj.metadata.finalizers ?? []).filter((f) => f !== finalizer)
    if (next.metadata.finalizers.length === 0) delete next.metadata.finalizers
    this.#write(t, next, obj)
  }
}
