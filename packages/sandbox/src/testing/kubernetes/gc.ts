/**
 * The garbage collector of the fake API server, run soon after every write (as the real one runs
 * shortly after, not inside, the request): an object none of whose owners (ownerReferences, same
 * namespace, matched by uid) exists any more is deleted with background propagation; an owner
 * being deleted in the foreground has its dependents deleted and loses its foregroundDeletion
 * finalizer once none is left.
 */
import type { KubeObject, ObjectStore } from './store.ts'

/** Runs collections on `store` after its writes until `stop()` is called. */
export class GarbageCollector {
  readonly #store: ObjectStore
  #pending: NodeJS.Immediate | undefined
  #stopped = false
  /** Objects deleted by the collector so far (for tests and logs). */
  collected = 0

  constructor(store: ObjectStore) {
    this.#store = store
    store.afterWrite = () => this.#schedule()
  }

  #schedule(): void {
    if (this.#stopped || this.#pending) return
    this.#pending = setImmediate(() => {
      this.#pending = undefined
      this.collect()
    })
  }

  stop(): void {
    this.#stopped = true
    if (this.#pending) clearImmediate(this.#pending)
    this.#pending = undefined
  }

  /** One pass over every object; writes it makes schedule the next pass. */
  collect(): void {
    const all = this.#store.all()
    const live = new Map<string, KubeObject>()
    for (const { obj } of all) live.set(obj.metadata.namespace + '/' + obj.metadata.uid, obj)
    for (const { t, obj } of all) {
      const m = obj.metadata
      const refs = m.ownerReferences ?? []
      if (refs.length > 0 && !m.deletionTimestamp && refs.every((r) => !live.has(m.namespace + '/' + r.uid))) {
        this.collected++
        this.#safely(() => this.#store.delete(t, m.namespace, m.name, { propagationPolicy: 'Background' }))
        continue
      }
      if (m.deletionTimestamp && m.finalizers?.includes('foregroundDeletion')) {
        const dependents = all.filter(({ obj: d }) => d.metadata.namespace === m.namespace && d.metadata.ownerReferences?.some((r) => r.uid === m.uid))
        for (const { t: dt, obj: d } of dependents) {
          if (d.metadata.deletionTimestamp) continue
          this.collected++
          this.#safely(() => this.#store.delete(dt, d.metadata.namespace, d.metadata.name, { propagationPolicy: 'Foreground' }))
        }
        if (dependents.length === 0) this.#safely(() => this.#store.dropFinalizer(t, m.namespace, m.name, 'foregroundDeletion'))
      }
    }
  }

  /** An object a client changed or removed since this pass began is left to the next pass. */
  #safely(fn: () => unknown): void {
    try {
      fn()
    } catch {
      // the next write schedules another pass that sees the current state
    }
  }
}
