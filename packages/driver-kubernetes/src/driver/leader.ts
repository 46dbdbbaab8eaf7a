/**
 * The replicas' leader: one holds the Lease LEASE_NAME (coordination.k8s.io/v1) and sweeps the
 * namespace's sandbox pods that nobody will end (and, through `tend`, keeps the driver's warm pool): pods that finished (their executor ended at the
 * session's deadline or idle timeout, or crashed) while no replica was serving them, and pods past
 * their activeDeadlineSeconds that are still there (a lost node: the kubelet that would have failed
 * them is gone). A replica that serves a session ends its pod itself; this is for the rest.
 *
 * The election is client-go's: the holder renews the Lease every `renewMs`; another replica takes
 * it over once it has seen the same record unchanged for the Lease's duration (measured on its own
 * clock, so clock skew between replicas does not matter). Every write is an update guarded by the
 * resourceVersion read, so of two replicas taking over at once one gets 409 and stays a follower.
 * Only get, create and update are used: what the API's Role allows on leases.
 */
import { setTimeout as delay } from 'node:timers/promises'
import { CoordinationV1Api, CoreV1Api, type KubeConfig, type V1Lease, type V1Pod } from '@kubernetes/client-node'
import { apiCode, apiMessage } from './api-errors.ts'
import { podState } from './pod-state.ts'
import { SANDBOX_SELECTOR } from './pod-watch.ts'

export interface LeaderOptions {
  kubeConfig: KubeConfig
  namespace: string
  /** The Lease's name (CODEBOX_K8S_LEASE). */
  leaseName: string
  /** This replica's name (CODEBOX_K8S_POD_NAME; the host name, which is the pod's name in a pod). */
  identity: string
  /** How long a holder that stops renewing keeps the Lease; default 15 s. */
  leaseDurationSeconds?: number
  /** How often the holder renews and a follower looks; default 5 s. */
  renewMs?: number
  /** How often the leader sweeps; default 30 s. */
  sweepMs?: number
  /** How long a finished pod is left (for its replica to read and delete it) before the sweep deletes it; default 60 s. */
  finishedGraceMs?: number
  /**
   * Called after each round this replica leads (every `renewMs`): the driver keeps its warm pool
   * there (KubernetesDriver, `pool`). Its error is told as an `error` event.
   */
  tend?: () => Promise<void>
  /** Told each election result and sweep (for logs and tests). */
  onEvent?: (event: LeaderEvent) => void
}

export type LeaderEvent =
  { type: 'leading' } | { type: 'following'; holder: string } | { type: 'swept'; pod: string; why: string } | { type: 'error'; message: string }

const isoTime = (ms: number): Date => new Date(ms)

export class LeaderElector {
  readonly #options: LeaderOptions
  readonly #leases: CoordinationV1Api
  readonly #core: CoreV1Api
  /** Undefined until the first round: its result is told either way. */
  #leading: boolean | undefined
  #stopped = false
  #loop: Promise<void> | undefined
  #wake: AbortController | undefined
  /** The Lease record as last seen, and when (on this replica's clock) it last changed. */
  #observed: { record: string; at: number } | undefined
  #lastSweep = 0

  constructor(options: LeaderOptions) {
    this.#options = options
    this.#leases = options.kubeConfig.makeApiClient(CoordinationV1Api)
    this.#core = options.kubeConfig.makeApiClient(CoreV1Api)
  }

  get leading(): boolean {
    return this.#leading === true
  }

  start(): void {
    this.#loop ??= this.#run()
  }

  async #run(): Promise<void> {
    const renewMs = this.#options.renewMs ?? 5000
    while (!this.#stopped) {
      try {
        await this.tryAcquireOrRenew()
        if (this.#leading === true && Date.now() - this.#lastSweep >= (this.#options.sweepMs ?? 30_000)) {
          this.#lastSweep = Date.now()
          await this.sweep()
        }
        if (this.#leading === true && this.#options.tend) await this.#options.tend()
      } catch (e) {
        this.#options.onEvent?.({ type: 'error', message: apiMessage(e) })
      }
      this.#wake = new AbortController()
      await delay(renewMs, undefined, { signal: this.#wake.signal }).catch(() => {})
    }
  }

  /** One round of the election: take a free or expired Lease, renew our own, or follow. */
  async tryAcquireOrRenew(): Promise<boolean> {
    const { namespace, leaseName: name, identity } = this.#options
    const duration = this.#options.leaseDurationSeconds ?? 15
    const now = Date.now()
    let lease: V1Lease | undefined
    try {
      lease = await this.#leases.readNamespacedLease({ namespace, name })
    } catch (e) {
      if (apiCode(e) !== 404) throw e
    }
    const spec = { holderIdentity: identity, leaseDurationSeconds: duration, renewTime: isoTime(now) }
    if (!lease) {
      try {
        await this.#leases.createNamespacedLease({
          namespace,
          body: { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name }, spec: { ...spec, acquireTime: isoTime(now), leaseTransitions: 0 } },
        })
        return this.#become(true, identity)
      } catch (e) {
        if (apiCode(e) === 409) return this.#become(false, 'another replica')
        throw e
      }
    }
    const holder = typeof lease.spec?.holderIdentity === 'string' ? lease.spec.holderIdentity : ''
    const record = `${holder}|${String(lease.spec?.renewTime ?? '')}|${lease.metadata?.resourceVersion ?? ''}`
    if (!this.#observed || this.#observed.record !== record) this.#observed = { record, at: now }
    const heldFor = Number.isSafeInteger(lease.spec?.leaseDurationSeconds) ? lease.spec!.leaseDurationSeconds! : duration
    const free = holder === '' || now > this.#observed.at + heldFor * 1000
    if (holder !== identity && !free) return this.#become(false, holder)
    const transitions = (Number.isSafeInteger(lease.spec?.leaseTransitions) ? lease.spec!.leaseTransitions! : 0) + (holder === identity ? 0 : 1)
    try {
      await this.#leases.replaceNamespacedLease({
        namespace,
        name,
        body: {
          ...lease,
          spec: {
            ...lease.spec,
            ...spec,
            acquireTime: holder === identity && lease.spec?.acquireTime ? lease.spec.acquireTime : isoTime(now),
            leaseTransitions: transitions,
          },
        },
      })
      return this.#become(true, identity)
    } catch (e) {
      if (apiCode(e) === 409) return this.#become(false, 'another replica')
      throw e
    }
  }

  #become(leading: boolean, holder: string): boolean {
    if (leading !== this.#leading) {
      this.#leading = leading
      this.#options.onEvent?.(leading ? { type: 'leading' } : { type: 'following', holder })
    }
    return leading
  }

  /**
   * Deletes the sandbox pods nobody will end: finished ones older than the grace, and running ones
   * past their activeDeadlineSeconds (plus a minute). Returns the names deleted.
   */
  async sweep(now = Date.now()): Promise<string[]> {
    const { namespace } = this.#options
    const grace = this.#options.finishedGraceMs ?? 60_000
    const pods = (await this.#core.listNamespacedPod({ namespace, labelSelector: SANDBOX_SELECTOR })).items
    const swept: string[] = []
    for (const pod of pods) {
      const why = sweepReason(pod, now, grace)
      const name = pod.metadata?.name
      if (!why || typeof name !== 'string') continue
      try {
        await this.#core.deleteNamespacedPod({ namespace, name, body: { preconditions: { uid: pod.metadata?.uid ?? '' } } })
        swept.push(name)
        this.#options.onEvent?.({ type: 'swept', pod: name, why })
      } catch (e) {
        if (apiCode(e) !== 404 && apiCode(e) !== 409) this.#options.onEvent?.({ type: 'error', message: `cannot delete pod ${name}: ${apiMessage(e)}` })
      }
    }
    return swept
  }

  /** Stops electing; a leader gives the Lease up (an empty holder) so another replica takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true
    this.#wake?.abort()
    await this.#loop
    if (this.#leading !== true) return
    this.#leading = false
    const { namespace, leaseName: name, identity } = this.#options
    try {
      const lease = await this.#leases.readNamespacedLease({ namespace, name })
      if (lease.spec?.holderIdentity === identity) {
        await this.#leases.replaceNamespacedLease({ namespace, name, body: { ...lease, spec: { ...lease.spec, holderIdentity: '' } } })
      }
    } catch {
      // another replica took it, or the API is gone: the Lease expires anyway
    }
  }
}

/** Why the leader deletes `pod`, or undefined to leave it. */
export function sweepReason(pod: V1Pod, now: number, finishedGraceMs: number): string | undefined {
  if (pod.metadata?.deletionTimestamp) return undefined
  const state = podState(pod)
  const started = Date.parse(String(pod.status?.startTime ?? pod.metadata?.creationTimestamp ?? ''))
  if (state.kind === 'finished') {
    const finishedAt = Date.parse(String(pod.status?.containerStatuses?.[0]?.state?.terminated?.finishedAt ?? ''))
    const since = Number.isFinite(finishedAt) ? finishedAt : started
    if (!Number.isFinite(since) || now - since >= finishedGraceMs) return `it finished (${state.why})`
    return undefined
  }
  const deadline = pod.spec?.activeDeadlineSeconds
  if (typeof deadline === 'number' && Number.isFinite(started) && now > started + (deadline + 60) * 1000) {
    return `it is past its activeDeadlineSeconds (${deadline} s from ${new Date(started).toISOString()}) and still there`
  }
  return undefined
}
