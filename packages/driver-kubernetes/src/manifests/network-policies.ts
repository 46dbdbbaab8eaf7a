/**
 * The NetworkPolicies of the sandbox pods, installed once per namespace (the API does not manage
 * them at run time, so its Role has no rights on them). Every sandbox pod is denied all ingress
 * and egress; then ingress is allowed from the API pods to the executor port only, and egress, for
 * pods of the `public` and `vpc` profiles, to their egress proxy's pods and port only. NetworkPolicy
 * filters by address, never by name: domain allow-lists stay in the egress proxy. No DNS egress is
 * allowed: sandbox pods are given the proxy as an IP and name hosts to it (HTTP CONNECT), and a
 * resolver reachable from a sandbox would be a channel out (DNS tunnelling) that the proxy's
 * allow-list never sees. `sandbox` pods (AgentCore's SANDBOX mode) get nothing beyond the denials.
 */
import type { NetworkPolicy, NetworkPolicyPeer } from 'kubernetes-types/networking/v1.js'
import { validationError } from '@codebox/core'
import { checkDnsLabel, componentLabels, NETWORK_LABEL, type NetworkProfile } from '../names.ts'
import { EXECUTOR_PORT } from './sandbox-pod.ts'

/** Where the pods of a network profile may connect: the egress proxy's pods and port. */
export interface EgressProxySelector {
  /** Labels of the proxy's pods. */
  podLabels: Record<string, string>
  /** Labels of the proxy's namespace; absent: the sandboxes' own namespace. */
  namespaceLabels?: Record<string, string>
  port: number
}

export interface NetworkPolicyOptions {
  namespace: string
  /** Default EXECUTOR_PORT. */
  executorPort?: number
  /** The proxies of the profiles with egress. */
  egress: Record<Exclude<NetworkProfile, 'sandbox'>, EgressProxySelector>
}

/** The sandbox namespace's NetworkPolicies: default deny, ingress from the API, egress per profile. */
export function sandboxNetworkPolicies(options: NetworkPolicyOptions): NetworkPolicy[] {
  const namespace = checkDnsLabel('namespace', options.namespace)
  const port = options.executorPort ?? EXECUTOR_PORT
  const sandbox = componentLabels('sandbox')
  const policy = (name: string, spec: NetworkPolicy['spec']): NetworkPolicy => ({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name, namespace, labels: componentLabels('sandbox') },
    spec,
  })
  return [
    policy('codebox-sandbox-default-deny', { podSelector: { matchLabels: sandbox }, policyTypes: ['Ingress', 'Egress'] }),
    policy('codebox-sandbox-ingress-from-api', {
      podSelector: { matchLabels: sandbox },
      policyTypes: ['Ingress'],
      ingress: [{ from: [{ podSelector: { matchLabels: componentLabels('api') } }], ports: [{ protocol: 'TCP', port }] }],
    }),
    ...(['public', 'vpc'] as const).map((profile) => {
      const proxy = options.egress[profile]
      if (!Number.isInteger(proxy.port) || proxy.port < 1 || proxy.port > 65535)
        throw validationError(`egress.${profile}.port`, `must be a port, got ${proxy.port}`)
      if (Object.keys(proxy.podLabels).length === 0)
        throw validationError(`egress.${profile}.podLabels`, 'must select the proxy pods (an empty selector would allow every pod)')
      const to: NetworkPolicyPeer = {
        podSelector: { matchLabels: proxy.podLabels },
        ...(proxy.namespaceLabels !== undefined ? { namespaceSelector: { matchLabels: proxy.namespaceLabels } } : {}),
      }
      return policy(`codebox-sandbox-egress-${profile}`, {
        podSelector: { matchLabels: { ...sandbox, [NETWORK_LABEL]: profile } },
        policyTypes: ['Egress'],
        egress: [{ to: [to], ports: [{ protocol: 'TCP', port: proxy.port }] }],
      })
    }),
  ]
}
