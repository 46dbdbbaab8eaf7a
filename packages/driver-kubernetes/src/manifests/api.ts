/**
 * The API's Deployment, Service and PodDisruptionBudget. The replicas keep no session state of
 * their own (the store is PostgreSQL, CODEBOX_DB from a Secret; every replica shares the sealing
 * key, from a Secret), elect a leader with the Lease LEASE_NAME, and find the driver's settings in
 * CODEBOX_K8S_* variables. The pods meet the `restricted` Pod Security Standard, like the sandbox
 * pods, so the namespace can enforce it.
 */
import type { Deployment } from 'kubernetes-types/apps/v1.js'
import type { EnvVar, ResourceRequirements, SecretKeySelector, Service } from 'kubernetes-types/core/v1.js'
import type { PodDisruptionBudget } from 'kubernetes-types/policy/v1.js'
import { validationError } from '@codebox/core'
import { API_NAME, checkDnsLabel, checkDnsSubdomain, componentLabels, LEASE_NAME } from '../names.ts'
import { EXECUTOR_PORT } from './sandbox-pod.ts'

/** The port the API listens on in its pods, and the Service's port. */
export const API_PORT = 8080

export interface ApiOptions {
  namespace: string
  /** The codebox server's image. */
  image: string
  /** Default 2. */
  replicas?: number
  /** The image of the sandbox pods (CODEBOX_K8S_SANDBOX_IMAGE). */
  sandboxImage: string
  /** The sandbox pods' RuntimeClass; default `gvisor`, null for none. */
  runtimeClassName?: string | null
  /**
   * Free warm sandbox pods the leader keeps per pooled configuration, which every replica claims
   * from (CODEBOX_K8S_POOL_SIZE); default 2. The engine's own per-replica pool is off
   * (CODEBOX_POOL_SIZE 0): the cluster's pool replaces it.
   */
  poolSize?: number
  /**
   * Free warm pods of the `public` network profile (PUBLIC egress, no model gateway) per pooled
   * configuration (CODEBOX_K8S_POOL_SIZE_PUBLIC); default 0. Counted apart from `poolSize`.
   */
  poolSizePublic?: number
  /** Default EXECUTOR_PORT. */
  executorPort?: number
  /** The Secret key holding CODEBOX_DB, a `postgres://` URI. */
  database: SecretKeySelector
  /** The Secret key holding CODEBOX_SEALING_KEY (base64 of 32 bytes), the same for every replica. */
  sealingKey: SecretKeySelector
  /** The egress proxy of each profile as the API reaches it, `host:port` (the driver resolves the host and gives sandbox pods the IP). */
  egressProxies: { public: string; vpc: string }
  /** Host names clients use besides the Service's own names (an Ingress's, say): CODEBOX_ALLOWED_HOSTS. */
  allowedHosts?: string[]
  /** Default: requests 250m and 512Mi, limits 1 core and 1Gi. */
  resources?: ResourceRequirements
  /** Default `IfNotPresent`. */
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never'
}

const defaultResources: ResourceRequirements = { requests: { cpu: '250m', memory: '512Mi' }, limits: { cpu: '1000m', memory: '1Gi' } }

/** The names the Service answers to inside the cluster, which the API's Host check must allow. */
export function serviceHostNames(namespace: string): string[] {
  return [API_NAME, `${API_NAME}.${namespace}`, `${API_NAME}.${namespace}.svc`, `${API_NAME}.${namespace}.svc.cluster.local`]
}

export function checkSecretRef(field: string, ref: SecretKeySelector): SecretKeySelector {
  checkDnsSubdomain(`${field}.name`, ref.name ?? '')
  if (!/^[-._a-zA-Z0-9]{1,253}$/.test(ref.key))
    throw validationError(`${field}.key`, `must be a Secret key (letters, digits, '-', '_', '.'), got ${JSON.stringify(ref.key)}`)
  return { name: ref.name, key: ref.key }
}

function apiEnv(options: ApiOptions): EnvVar[] {
  const { namespace } = options
  const poolSize = options.poolSize ?? 2
  const poolSizePublic = options.poolSizePublic ?? 0
  for (const [field, size] of [
    ['poolSize', poolSize],
    ['poolSizePublic', poolSizePublic],
  ] as const)
    if (!Number.isInteger(size) || size < 0 || size > 64) throw validationError(field, `must be a whole number from 0 to 64, got ${size}`)
  for (const [profile, hostPort] of Object.entries(options.egressProxies)) {
    if (!/^[a-z0-9.-]+:\d{1,5}$/.test(hostPort)) throw validationError(`egressProxies.${profile}`, `must be host:port, got ${JSON.stringify(hostPort)}`)
  }
  const runtimeClassName = options.runtimeClassName === undefined ? 'gvisor' : options.runtimeClassName
  if (runtimeClassName !== null) checkDnsSubdomain('runtimeClassName', runtimeClassName)
  const value = (name: string, v: string): EnvVar => ({ name, value: v })
  return [
    value('CODEBOX_DRIVER', 'kubernetes'),
    value('CODEBOX_HOST', '0.0.0.0'),
    value('CODEBOX_PORT', String(API_PORT)),
    value('CODEBOX_ALLOWED_HOSTS', [...serviceHostNames(namespace), ...(options.allowedHosts ?? [])].join(',')),
    value('CODEBOX_STATE_DIR', '/var/lib/codebox'),
    { name: 'CODEBOX_DB', valueFrom: { secretKeyRef: checkSecretRef('database', options.database) } },
    { name: 'CODEBOX_SEALING_KEY', valueFrom: { secretKeyRef: checkSecretRef('sealingKey', options.sealingKey) } },
    value('CODEBOX_POOL_SIZE', '0'),
    value('CODEBOX_K8S_POOL_SIZE', String(poolSize)),
    value('CODEBOX_K8S_POOL_SIZE_PUBLIC', String(poolSizePublic)),
    { name: 'CODEBOX_K8S_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
    // The replica's identity as a Lease holder.
    { name: 'CODEBOX_K8S_POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    value('CODEBOX_K8S_LEASE', LEASE_NAME),
    value('CODEBOX_K8S_SANDBOX_IMAGE', options.sandboxImage),
    value('CODEBOX_K8S_RUNTIME_CLASS', runtimeClassName ?? ''),
    value('CODEBOX_K8S_EXECUTOR_PORT', String(options.executorPort ?? EXECUTOR_PORT)),
    value('CODEBOX_K8S_EGRESS_PROXY_PUBLIC', options.egressProxies.public),
    value('CODEBOX_K8S_EGRESS_PROXY_VPC', options.egressProxies.vpc),
  ]
}

/** The API's Deployment: `replicas` stateless replicas, rolled one at a time without losing capacity. */
export function apiDeployment(options: ApiOptions): Deployment {
  const namespace = checkDnsLabel('namespace', options.namespace)
  const replicas = options.replicas ?? 2
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 1000)
    throw validationError('replicas', `must be a whole number from 1 to 1000, got ${replicas}`)
  const labels = componentLabels('api')
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: API_NAME, namespace, labels },
    spec: {
      replicas,
      selector: { matchLabels: labels },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: API_NAME,
          enableServiceLinks: false,
          securityContext: { runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name: 'api',
              image: options.image,
              imagePullPolicy: options.imagePullPolicy ?? 'IfNotPresent',
              env: apiEnv(options),
              ports: [{ name: 'http', containerPort: API_PORT, protocol: 'TCP' }],
              readinessProbe: { httpGet: { path: '/ping', port: 'http' }, periodSeconds: 5 },
              livenessProbe: { httpGet: { path: '/ping', port: 'http' }, periodSeconds: 10, failureThreshold: 6 },
              resources: options.resources ?? defaultResources,
              securityContext: {
                allowPrivilegeEscalation: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ['ALL'] },
              },
              volumeMounts: [
                { name: 'state', mountPath: '/var/lib/codebox' },
                { name: 'tmp', mountPath: '/tmp' },
              ],
            },
          ],
          volumes: [
            { name: 'state', emptyDir: {} },
            { name: 'tmp', emptyDir: {} },
          ],
        },
      },
    },
  }
}

/** The API's Service: any replica answers for any session, so no session affinity. */
export function apiService(namespace: string): Service {
  checkDnsLabel('namespace', namespace)
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: API_NAME, namespace, labels: componentLabels('api') },
    spec: { type: 'ClusterIP', selector: componentLabels('api'), ports: [{ name: 'http', port: API_PORT, targetPort: 'http', protocol: 'TCP' }] },
  }
}

/** At most one API replica down at a time for voluntary disruptions (node drains). */
export function apiDisruptionBudget(namespace: string): PodDisruptionBudget {
  checkDnsLabel('namespace', namespace)
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name: API_NAME, namespace, labels: componentLabels('api') },
    spec: { maxUnavailable: 1, selector: { matchLabels: componentLabels('api') } },
  }
}
