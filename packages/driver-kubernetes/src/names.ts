/**
 * The names, labels and annotations codebox gives its Kubernetes objects, and the checks that keep
 * a value within what the API server accepts (a bad id is a ValidationError naming the field, not
 * a 422 from the cluster later).
 */
import { validationError } from '@codebox/core'

/** `app.kubernetes.io/name` of every object codebox makes. */
export const APP_LABEL = 'app.kubernetes.io/name'
export const APP = 'codebox'
/** `app.kubernetes.io/component`: `api` (the API pods), `sandbox` (one pod per session or warm), `egress` (the egress proxies). */
export const COMPONENT_LABEL = 'app.kubernetes.io/component'
/** The session a sandbox pod serves (absent on a free warm pod). */
export const SESSION_LABEL = 'codebox.dev/session'
/** `free` (a warm pod waiting in the pool) or `claimed` (serving a session). */
export const POOL_STATE_LABEL = 'codebox.dev/pool-state'
/** The pool a pod belongs to (its interpreter's limits and preload, as an opaque key); a claim selects on it. */
export const POOL_LABEL = 'codebox.dev/pool'
/** The pod's network profile, which the NetworkPolicies select on: `sandbox`, `public` or `vpc`. */
export const NETWORK_LABEL = 'codebox.dev/network'
/** The random nonce the pod's executor token is derived from (token.ts). */
export const NONCE_ANNOTATION = 'codebox.dev/token-nonce'
/** When a warm pod was claimed (ISO time), set by the claiming driver: list() counts a claimed pod's age from it. */
export const CLAIMED_AT_ANNOTATION = 'codebox.dev/claimed-at'
/** The pod's EgressPolicy as JSON (`{"mode":"allowlist","allow":[...]}`), which the egress proxy applies to its requests. */
export const EGRESS_POLICY_ANNOTATION = 'codebox.dev/egress-policy'
/** The most bytes of EGRESS_POLICY_ANNOTATION: room for the largest valid policy (256 entries of 300 characters). */
export const MAX_EGRESS_POLICY_BYTES = 96 * 1024
/**
 * The pod may use the model gateway, through its egress proxy: JSON `{"sessionId":"...","tag":"..."}`
 * (both optional), the identity the proxy relays to the API with its requests (its sandbox id is
 * the pod's SESSION_LABEL). Absent: the proxy refuses the pod's `codebox-gateway` requests.
 */
export const GATEWAY_ANNOTATION = 'codebox.dev/gateway'

/** The Lease the API replicas elect their leader with (it refills the pool and sweeps expired pods). */
export const LEASE_NAME = 'codebox-leader'
/** The API's ServiceAccount, Role, RoleBinding, Deployment, Service and PodDisruptionBudget. */
export const API_NAME = 'codebox-api'
/** The sandbox pods' ServiceAccount: no token mounted, bound to nothing. */
export const SANDBOX_SERVICE_ACCOUNT = 'codebox-sandbox'
/** The egress proxy's ServiceAccount, Role and RoleBinding (read pods), shared by both profiles' proxies. */
export const EGRESS_NAME = 'codebox-egress'

/** The network profiles of AgentCore's network modes: SANDBOX (no network), PUBLIC and VPC (through the egress proxy). */
export type NetworkProfile = 'sandbox' | 'public' | 'vpc'
export const NETWORK_PROFILES: readonly NetworkProfile[] = ['sandbox', 'public', 'vpc']

export type PoolState = 'free' | 'claimed'

const dnsLabel = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
const labelValue = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$/
const dnsSubdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/

/** A DNS-1123 label (namespace, pod and container names): lowercase letters, digits and `-`, at most 63. */
export function checkDnsLabel(field: string, value: string): string {
  if (value.length > 63 || !dnsLabel.test(value)) {
    throw validationError(
      field,
      `must be a DNS label (a-z, 0-9 and '-', starting and ending with a letter or digit, at most 63 characters), got ${JSON.stringify(value)}`,
    )
  }
  return value
}

/** A DNS-1123 subdomain (object names such as a RuntimeClass's): at most 253 characters. */
export function checkDnsSubdomain(field: string, value: string): string {
  if (value.length > 253 || !dnsSubdomain.test(value)) {
    throw validationError(field, `must be a DNS subdomain (dot-separated DNS labels, at most 253 characters), got ${JSON.stringify(value)}`)
  }
  return value
}

/** A label value: at most 63 characters of letters, digits, `-`, `_` and `.`, alphanumeric at both ends (or empty). */
export function checkLabelValue(field: string, value: string): string {
  if (value.length > 63 || !labelValue.test(value)) {
    throw validationError(
      field,
      `must be a label value (letters, digits, '-', '_' and '.', alphanumeric at both ends, at most 63 characters), got ${JSON.stringify(value)}`,
    )
  }
  return value
}

/** The pod of a session: `cbx-<sessionId>`, an idempotent name (a retried create is a 409, not a second pod). */
export function sandboxPodName(sessionId: string): string {
  return checkDnsLabel('sessionId', `cbx-${sessionId}`)
}

/** A warm pod: `cbx-warm-<podId>`; it keeps this name when a session claims it. */
export function warmPodName(podId: string): string {
  return checkDnsLabel('podId', `cbx-warm-${podId}`)
}

/** The labels every object of a component carries; the selectors of the Deployment, Service, PDB and NetworkPolicies. */
export function componentLabels(component: 'api' | 'sandbox' | 'egress'): Record<string, string> {
  return { [APP_LABEL]: APP, [COMPONENT_LABEL]: component }
}

/** The egress proxy of a network profile: its Deployment and Service, `codebox-egress-<profile>`. */
export function egressProxyName(profile: Exclude<NetworkProfile, 'sandbox'>): string {
  return `${EGRESS_NAME}-${profile}`
}

/** The labels of a profile's egress proxy pods (and its Deployment's selector). */
export function egressProxyLabels(profile: Exclude<NetworkProfile, 'sandbox'>): Record<string, string> {
  return { ...componentLabels('egress'), [NETWORK_LABEL]: profile }
}
