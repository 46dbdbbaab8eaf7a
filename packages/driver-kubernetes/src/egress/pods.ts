/**
 * What the cluster's egress proxy knows of one sandbox pod, derived from the pod as its watch sees
 * it: the egress token it must present (recomputed from the pod's nonce and the shared key), the
 * addresses it may send from, whether it is running, and the rules of its egress policy
 * annotation. Everything here comes from the pod object, which the API wrote; a malformed nonce
 * or policy only makes the pod's requests fail, with the reason.
 */
import type { V1Pod } from '@kubernetes/client-node'
import { isCodeboxError } from '@codebox/core'
import { checkRelayIdentity, compileEgressRules, parseEgressPolicy, type EgressRules, type GatewayIdentity, type TrustedDestination } from '@codebox/sandbox'
import { EGRESS_POLICY_ANNOTATION, GATEWAY_ANNOTATION, MAX_EGRESS_POLICY_BYTES, NETWORK_LABEL, NONCE_ANNOTATION, SESSION_LABEL } from '../names.ts'
import { egressToken } from '../token.ts'

export interface EgressPodEntry {
  name: string
  /** The egress token the pod must present; undefined when its nonce is malformed (nothing matches). */
  token: Buffer | undefined
  /** `Running` and not being deleted. */
  running: boolean
  /** Its NETWORK_LABEL. */
  network: string | undefined
  /** status.podIPs (and status.podIP), IPv4-mapped IPv6 unwrapped; empty before the pod has one. */
  addresses: string[]
  /** The compiled policy, or why the pod has none usable. */
  policy: { ok: true; rules: EgressRules } | { ok: false; reason: string }
  /** Its identity for the model gateway (GATEWAY_ANNOTATION and its session label); undefined when it may not use it. */
  gateway: GatewayIdentity | undefined
}

/** `::ffff:10.0.0.1` as `10.0.0.1`; other addresses as they are. */
export function plainAddress(address: string): string {
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address
}

/** The entry of `pod` in `namespace`: `key` is egressTokenKey(sealing key); `trusted` the profile's trusted destinations. */
export function egressPodEntry(pod: V1Pod, namespace: string, key: Buffer, trusted: readonly TrustedDestination[]): EgressPodEntry {
  const name = pod.metadata?.name ?? ''
  const annotations = pod.metadata?.annotations ?? {}
  let token: Buffer | undefined
  try {
    token = Buffer.from(egressToken(key, { namespace, podName: name, nonce: annotations[NONCE_ANNOTATION] ?? '' }))
  } catch {
    token = undefined
  }
  const addresses = new Set<string>()
  for (const a of pod.status?.podIPs ?? []) if (typeof a.ip === 'string' && a.ip) addresses.add(plainAddress(a.ip))
  if (pod.status?.podIP) addresses.add(plainAddress(pod.status.podIP))
  return {
    name,
    token,
    running: pod.status?.phase === 'Running' && !pod.metadata?.deletionTimestamp,
    network: pod.metadata?.labels?.[NETWORK_LABEL],
    addresses: [...addresses],
    policy: policyOf(annotations[EGRESS_POLICY_ANNOTATION], trusted),
    gateway: gatewayOf(pod.metadata?.labels?.[SESSION_LABEL], annotations[GATEWAY_ANNOTATION]),
  }
}

/** The pod's gateway identity; a missing session label or a malformed annotation is no gateway (its requests are refused). */
function gatewayOf(sandboxId: string | undefined, json: string | undefined): GatewayIdentity | undefined {
  if (json === undefined || sandboxId === undefined || json.length > 1024) return undefined
  try {
    const value: unknown = JSON.parse(json)
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
    return checkRelayIdentity({ ...(value as Record<string, unknown>), sandboxId })
  } catch {
    return undefined
  }
}

function policyOf(json: string | undefined, trusted: readonly TrustedDestination[]): EgressPodEntry['policy'] {
  if (json === undefined) return { ok: false, reason: `the pod has no ${EGRESS_POLICY_ANNOTATION} annotation` }
  if (Buffer.byteLength(json) > MAX_EGRESS_POLICY_BYTES)
    return { ok: false, reason: `the pod's ${EGRESS_POLICY_ANNOTATION} annotation is over ${MAX_EGRESS_POLICY_BYTES} bytes` }
  let value: unknown
  try {
    value = JSON.parse(json)
  } catch {
    return { ok: false, reason: `the pod's ${EGRESS_POLICY_ANNOTATION} annotation is not JSON` }
  }
  try {
    return { ok: true, rules: compileEgressRules(parseEgressPolicy(value, EGRESS_POLICY_ANNOTATION), trusted) }
  } catch (e) {
    if (!isCodeboxError(e)) throw e
    return { ok: false, reason: `the pod's ${EGRESS_POLICY_ANNOTATION} annotation is not a valid egress policy (${e.message})` }
  }
}
