/**
 * Everything installed once per namespace, grouped as the plain manifests (deploy/kubernetes/) and
 * the Helm chart's templates (deploy/helm/codebox/templates/) are: RBAC, NetworkPolicies, the
 * LimitRange that caps sandbox pods, the API, and the built-in egress proxies. Sandbox pods are not here: the driver creates
 * them at run time (sandbox-pod.ts).
 */
import type { LimitRange, Namespace } from 'kubernetes-types/core/v1.js'
import { validationError, type SessionLimits } from '@codebox/core'
import { APP, APP_LABEL, checkDnsLabel, componentLabels } from '../names.ts'
import { apiDeployment, apiDisruptionBudget, apiService, type ApiOptions } from './api.ts'
import { egressProxyManifests, type EgressProxyInstallOptions } from './egress.ts'
import { sandboxNetworkPolicies, type EgressProxySelector } from './network-policies.ts'
import { bytesQuantity, cpuQuantity } from './quantity.ts'
import { apiRbac } from './rbac.ts'
import { LOG_ALLOWANCE_BYTES, MAX_CODE_VOLUME_BYTES } from './sandbox-pod.ts'

/** The most a container of the namespace may have, as Kubernetes quantities (the chart's `sandbox.maxLimits`). */
export interface SandboxMaxima {
  memory: string
  cpu: string
  /** The workspace, /tmp, the logs and the largest code volume (a hosted agent's bundle) together. */
  ephemeralStorage: string
}

/** The maxima of sessions whose limits are at most `max` (the engine's defaultMaxLimits by default). */
export function sandboxMaxima(max: Pick<SessionLimits, 'memoryBytes' | 'cpuCores' | 'workspaceBytes' | 'tmpBytes'>): SandboxMaxima {
  return {
    memory: bytesQuantity(max.memoryBytes),
    cpu: cpuQuantity(max.cpuCores),
    ephemeralStorage: bytesQuantity(max.workspaceBytes + max.tmpBytes + LOG_ALLOWANCE_BYTES + MAX_CODE_VOLUME_BYTES),
  }
}

const quantity = /^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/

export interface InstallOptions {
  namespace: string
  api: Omit<ApiOptions, 'namespace' | 'executorPort'>
  /** The egress proxies of the `public` and `vpc` profiles, as the NetworkPolicies select them. */
  egress: { public: EgressProxySelector; vpc: EgressProxySelector }
  /** The largest limits a session may have (a pod asking for more is refused by Kubernetes itself). */
  sandboxMaxima: SandboxMaxima
  /** The built-in egress proxies (`egress` then selects their pods for the profiles they serve); none when absent. */
  egressProxy?: EgressProxyInstallOptions
}

/**
 * A namespace for codebox that enforces the `restricted` Pod Security Standard: should the API's
 * ServiceAccount (which may create pods) be misused, it still cannot create a privileged pod there.
 * Plain manifests only: Helm users create the namespace and label it themselves (docs/kubernetes.md).
 */
export function codeboxNamespace(name: string): Namespace {
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name: checkDnsLabel('namespace', name),
      labels: { [APP_LABEL]: APP, 'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/enforce-version': 'latest' },
    },
  }
}

/** Caps every container of the namespace at the sandbox maxima (the API's containers are far below them). */
export function sandboxLimitRange(namespace: string, maxima: SandboxMaxima): LimitRange {
  for (const [field, value] of Object.entries(maxima)) {
    if (typeof value !== 'string' || !quantity.test(value))
      throw validationError(`sandboxMaxima.${field}`, `must be a Kubernetes quantity such as 16Gi or 2000m, got ${JSON.stringify(value)}`)
  }
  return {
    apiVersion: 'v1',
    kind: 'LimitRange',
    metadata: { name: 'codebox-sandbox-limits', namespace: checkDnsLabel('namespace', namespace), labels: componentLabels('sandbox') },
    spec: {
      limits: [
        {
          type: 'Container',
          max: { memory: maxima.memory, cpu: maxima.cpu, 'ephemeral-storage': maxima.ephemeralStorage },
        },
      ],
    },
  }
}

/** The install-time manifests, by the file they go to. */
export function installManifests(options: InstallOptions): { rbac: object[]; networkPolicies: object[]; limits: object[]; api: object[]; egress: object[] } {
  const { namespace } = options
  return {
    rbac: apiRbac(namespace),
    networkPolicies: sandboxNetworkPolicies({ namespace, egress: options.egress }),
    limits: [sandboxLimitRange(namespace, options.sandboxMaxima)],
    api: [apiDeployment({ ...options.api, namespace }), apiService(namespace), apiDisruptionBudget(namespace)],
    egress: options.egressProxy ? egressProxyManifests(namespace, options.egressProxy) : [],
  }
}
