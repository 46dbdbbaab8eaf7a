/**
 * One watch of the namespace's codebox sandbox pods per driver (client-node's informer: a list,
 * then a watch from its resourceVersion, a relist after 410 Expired), shared by every sandbox the
 * driver serves: each waits for its own pod's changes here instead of opening a watch of its own.
 * The informer gives up on an error other than 410 or a timeout; this restarts it with a backoff
 * (from its last resourceVersion), for as long as the driver lives.
 */
import { setTimeout as delay } from 'node:timers/promises'
import { CoreV1Api, ListWatch, Watch, type KubeConfig, type V1Pod } from '@kubernetes/client-node'
import { APP, APP_LABEL, COMPONENT_LABEL } from '../names.ts'

/** The label selector of codebox's sandbox pods. */
export const SANDBOX_SELECTOR = `${APP_LABEL}=${APP},${COMPONENT_LABEL}=sandbox`

/** A change of one pod: the pod as it is now, or `deleted` with its last state. */
export type PodChange = { type: 'update'; pod: V1Pod } | { type: 'deleted'; pod: V1Pod }

type Listener = (change: PodChange) => void

export class PodWatch {
  readonly #informer: ListWatch<V1Pod>
  readonly #namespace: string
  readonly #listeners = new Map<string, Set<Listener>>()
  #begun = false
  #stopped = false
  #retry: NodeJS.Timeout | undefined
  #backoffMs = 0
  /** The last error the informer reported (for messages), cleared when it connects again. */
  lastError: string | undefined

  constructor(kc: KubeConfig, namespace: string) {
    this.#namespace = namespace
    const core = kc.makeApiClient(CoreV1Api)
    this.#informer = new ListWatch(
      `/api/v1/namespaces/${namespace}/pods`,
      new Watch(kc),
      () => core.listNamespacedPod({ namespace, labelSelector: SANDBOX_SELECTOR }),
      false,
      SANDBOX_SELECTOR,
    )
    const emit = (type: PodChange['type']) => (pod: V1Pod) => {
      const name = pod.metadata?.name
      if (typeof name !== 'string') return
      for (const l of [...(this.#listeners.get(name) ?? [])]) l({ type, pod })
    }
    this.#informer.on('add', emit('update'))
    this.#informer.on('update', emit('update'))
    this.#informer.on('delete', emit('deleted'))
    this.#informer.on('connect', () => {
      this.lastError = undefined
    })
    this.#informer.on('error', (err: unknown) => {
      this.lastError = err instanceof Error ? err.message : String(err)
      this.#scheduleRestart()
    })
  }

  #scheduleRestart(): void {
    if (this.#stopped || this.#retry) return
    this.#backoffMs = Math.min(this.#backoffMs ? this.#backoffMs * 2 : 500, 30_000)
    this.#retry = setTimeout(() => {
      this.#retry = undefined
      if (this.#stopped) return
      this.#informer.start().then(
        () => (this.#backoffMs = 0),
        () => this.#scheduleRestart(),
      )
    }, this.#backoffMs)
    this.#retry.unref()
  }

  /**
   * Starts the watch (once); resolves when it has listed the pods (its cache is filled), rejects
   * naming the informer's last error when that takes longer than `timeoutMs`. The informer goes on
   * retrying either way.
   */
  async start(timeoutMs = 15_000): Promise<void> {
    if (!this.#begun) {
      this.#begun = true
      void this.#informer.start().catch(() => this.#scheduleRestart())
    }
    const deadline = Date.now() + timeoutMs
    while (this.#informer.latestResourceVersion() === '') {
      if (this.#stopped) throw new Error('the driver is closed')
      if (Date.now() > deadline)
        throw new Error(`could not list the sandbox pods of namespace ${this.#namespace} within ${timeoutMs} ms${this.lastError ? `: ${this.lastError}` : ''}`)
      await delay(20)
    }
  }

  /** The pod as the watch last saw it. */
  get(name: string): V1Pod | undefined {
    return this.#informer.get(name, this.#namespace)
  }

  /** Every codebox sandbox pod the watch sees. */
  list(): readonly V1Pod[] {
    return this.#informer.list(this.#namespace)
  }

  /** Calls `listener` on each change of the pod `name` until the returned function is called. */
  subscribe(name: string, listener: Listener): () => void {
    let set = this.#listeners.get(name)
    if (!set) this.#listeners.set(name, (set = new Set()))
    set.add(listener)
    return () => {
      set.delete(listener)
      if (set.size === 0 && this.#listeners.get(name) === set) this.#listeners.delete(name)
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#retry)
    await this.#informer.stop()
  }
}
