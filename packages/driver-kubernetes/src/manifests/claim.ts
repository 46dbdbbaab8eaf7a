/**
 * Claiming a warm pod for a session: a JSON merge patch guarded by the pod's resourceVersion, so of
 * two replicas that claim the same pod at once one gets 409 Conflict and tries the next pod. The
 * patch marks the pod claimed, names the session, and lowers the pod's activeDeadlineSeconds to the
 * session's deadline (Kubernetes lets a running pod's deadline only be set or decreased). With
 * `egress`, it also sets the session's egress policy annotation, which the egress proxy applies from
 * the next request on (a warm pod of the `public` or `vpc` profile may have been made for another
 * allow-list).
 */
import { CodeboxError, validationError, type EgressPolicy } from '@codebox/core'
import { checkLabelValue, POOL_STATE_LABEL, SESSION_LABEL } from '../names.ts'
import { DEADLINE_GRACE_SECONDS, egressPolicyAnnotation } from './sandbox-pod.ts'

export interface ClaimOptions {
  sessionId: string
  maxLifetimeMs: number
  /** The warm pod's `metadata.resourceVersion`, as the claiming replica saw it. */
  resourceVersion: string
  /** The pod's `status.startTime`: activeDeadlineSeconds counts from it. */
  startTime: Date
  /** The pod's current `spec.activeDeadlineSeconds`. */
  activeDeadlineSeconds: number
  now: Date
  /** The session's egress policy, for a pod of the `public` or `vpc` profile (its NETWORK_LABEL). */
  egress?: { network: 'public' | 'vpc'; policy: EgressPolicy }
}

export interface ClaimPatch {
  metadata: { resourceVersion: string; labels: Record<string, string>; annotations?: Record<string, string> }
  spec: { activeDeadlineSeconds: number }
}

/**
 * The merge patch that hands a warm pod to a session. Unavailable when the pod is too old to hold
 * the whole session (its deadline would have to grow): the caller takes another pod.
 */
export function claimPatch(options: ClaimOptions): ClaimPatch {
  if (options.resourceVersion.length === 0) throw validationError('resourceVersion', 'is required: an unguarded claim could hand one pod to two sessions')
  const ageSeconds = Math.max(0, Math.ceil((options.now.getTime() - options.startTime.getTime()) / 1000))
  const deadline = ageSeconds + Math.ceil(options.maxLifetimeMs / 1000) + DEADLINE_GRACE_SECONDS
  if (deadline > options.activeDeadlineSeconds) {
    throw new CodeboxError(
      'Unavailable',
      `the warm pod is ${ageSeconds} s old: its deadline (${options.activeDeadlineSeconds} s) cannot hold a session of ${options.maxLifetimeMs} ms`,
    )
  }
  return {
    metadata: {
      resourceVersion: options.resourceVersion,
      labels: { [POOL_STATE_LABEL]: 'claimed', [SESSION_LABEL]: checkLabelValue('sessionId', options.sessionId) },
      ...(options.egress ? { annotations: egressPolicyAnnotation(options.egress.network, options.egress.policy) } : {}),
    },
    spec: { activeDeadlineSeconds: deadline },
  }
}
