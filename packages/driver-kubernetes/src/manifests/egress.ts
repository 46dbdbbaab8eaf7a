/**
 * The built-in egress proxy of the `public` and `vpc` profiles (`codebox kubernetes egress-proxy`,
 * from the server's image): a ServiceAccount whose Role may only read pods (get, list, watch: the
 * proxy watches the sandbox pods for their nonce, policy and address), and per profile a
 * Deployment, a ClusterIP Service and a NetworkPolicy. The NetworkPolicy lets only the sandbox
 * pods of its profile in, on the proxy's port; out, it allows DNS to the cluster's resolver and
 * TCP anywhere except the CIDRs you name (your cluster's pod and service ranges): NetworkPolicy
 * cannot say "not a pod" otherwise, and whether an ipBlock matches pod addresses at all is up to
 * the CNI. The proxy itself refuses private, loopback and link-local addresses unless the `vpc`
 * profile trusts them (CODEBOX_EGRESS_TRUSTED), which is the check that holds on every CNI.
 * The proxies relay the model gateway's requests to the API's Service (CODEBOX_EGRESS_API_URL),
 * so their policy also lets them reach the API pods on the API's port.
 */
import type { Deployment } from 'kubernetes-types/apps/v1.js'
import type { ResourceRequirements, SecretKeySelector, Service, ServiceAccount } from 'kubernetes-types/core/v1.js'
import type { NetworkPolicy } from 'kubernetes-types/networking/v1.js'
import type { Role, RoleBinding } from 'kubernetes-types/rbac/v1.js'
import { validationError } from '@codebox/core'
import { parseTrustedList } from '@codebox/sandbox'
import { API_NAME, checkDnsLabel, componentLabels, EGRESS_NAME, egressProxyLabels, egressProxyName, NETWORK_LABEL } from '../names.ts'
import { API_PORT, checkSecretRef } from './api.ts'

/** The built-in proxy's port, in its pods and on its Service. */
export const EGRESS_PROXY_PORT = 3128

export interface EgressProxyInstallOptions {
  /** The profiles served by the built-in proxy (the others use an external proxy you run). */
  profiles: ('public' | 'vpc')[]
  /** The codebox server's image (its `codebox` command runs the proxy). */
  image: string
  /** Default `IfNotPresent`. */
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never'
  /** Per profile; default 2. */
  replicas?: number
  /** Default EGRESS_PROXY_PORT. */
  port?: number
  /** Default: requests 100m and 128Mi, limits 1 core and 512Mi. */
  resources?: ResourceRequirements
  /** The Secret key holding CODEBOX_SEALING_KEY: the API's, from which the egress tokens are derived. */
  sealingKey: SecretKeySelector
  /** CODEBOX_EGRESS_TRUSTED of the vpc proxy: private destinations VPC allow-lists may reach. Default none. */
  vpcTrusted?: string
  /** CIDRs the proxies' NetworkPolicy never lets them connect to (the cluster's pod and service ranges). */
  deniedCidrs?: { ipv4: string[]; ipv6: string[] }
}

const defaultResources: ResourceRequirements = { requests: { cpu: '100m', memory: '128Mi' }, limits: { cpu: '1000m', memory: '512Mi' } }

const cidr4 = /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/
const cidr6 = /^[0-9a-fA-F:]+\/\d{1,3}$/

/** The ServiceAccount, Role and RoleBinding of the proxies, then each built-in profile's Deployment, Service and NetworkPolicy. */
export function egressProxyManifests(namespace: string, options: EgressProxyInstallOptions): object[] {
  checkDnsLabel('namespace', namespace)
  const replicas = options.replicas ?? 2
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > 100)
    throw validationError('egressProxy.replicas', `must be a whole number from 1 to 100, got ${replicas}`)
  const port = options.port ?? EGRESS_PROXY_PORT
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw validationError('egressProxy.port', `must be a port (1-65535), got ${port}`)
  const vpcTrusted = options.vpcTrusted ?? ''
  parseTrustedList(vpcTrusted, 'egressProxy.vpcTrusted')
  const denied = options.deniedCidrs ?? { ipv4: [], ipv6: [] }
  denied.ipv4.forEach((c, i) => {
    if (!cidr4.test(c)) throw validationError(`egressProxy.deniedCidrs.ipv4[${i}]`, `must be an IPv4 CIDR such as 10.0.0.0/8, got ${JSON.stringify(c)}`)
  })
  denied.ipv6.forEach((c, i) => {
    if (!cidr6.test(c)) throw validationError(`egressProxy.deniedCidrs.ipv6[${i}]`, `must be an IPv6 CIDR such as fd00::/8, got ${JSON.stringify(c)}`)
  })
  const sealingKey = checkSecretRef('sealingKey', options.sealingKey)
  const meta = { name: EGRESS_NAME, namespace, labels: componentLabels('egress') }
  const rbac: [ServiceAccount, Role, RoleBinding] = [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: meta, automountServiceAccountToken: true },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: meta,
      rules: [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: meta,
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: EGRESS_NAME },
      subjects: [{ kind: 'ServiceAccount', name: EGRESS_NAME, namespace }],
    },
  ]
  const perProfile = (['public', 'vpc'] as const)
    .filter((p) => options.profiles.includes(p))
    .flatMap((profile) => {
      const name = egressProxyName(profile)
      // A fresh object at each place: the YAML writer would turn a shared one into anchors.
      const labels = (): Record<string, string> => egressProxyLabels(profile)
      const deployment: Deployment = {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name, namespace, labels: labels() },
        spec: {
          replicas,
          selector: { matchLabels: labels() },
          strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
          template: {
            metadata: { labels: labels() },
            spec: {
              serviceAccountName: EGRESS_NAME,
              enableServiceLinks: false,
              securityContext: { runAsUser: 1000, runAsGroup: 1000, runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } },
              containers: [
                {
                  name: 'proxy',
                  image: options.image,
                  imagePullPolicy: options.imagePullPolicy ?? 'IfNotPresent',
                  command: ['codebox', 'kubernetes', 'egress-proxy'],
                  env: [
                    { name: 'CODEBOX_K8S_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                    { name: 'CODEBOX_SEALING_KEY', valueFrom: { secretKeyRef: sealingKey } },
                    { name: 'CODEBOX_EGRESS_PROFILE', value: profile },
                    { name: 'CODEBOX_EGRESS_LISTEN', value: `0.0.0.0:${port}` },
                    // The model gateway's requests go to the API's Service, signed for the pod that made them.
                    { name: 'CODEBOX_EGRESS_API_URL', value: `http://${API_NAME}:${API_PORT}` },
                    ...(profile === 'vpc' ? [{ name: 'CODEBOX_EGRESS_TRUSTED', value: vpcTrusted }] : []),
                  ],
                  ports: [{ name: 'proxy', containerPort: port, protocol: 'TCP' }],
                  readinessProbe: { tcpSocket: { port: 'proxy' }, periodSeconds: 5 },
                  livenessProbe: { tcpSocket: { port: 'proxy' }, periodSeconds: 10, failureThreshold: 6 },
                  resources: options.resources ?? defaultResources,
                  securityContext: {
                    allowPrivilegeEscalation: false,
                    readOnlyRootFilesystem: true,
                    capabilities: { drop: ['ALL'] },
                  },
                  volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
                },
              ],
              volumes: [{ name: 'tmp', emptyDir: {} }],
            },
          },
        },
      }
      const service: Service = {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name, namespace, labels: labels() },
        spec: { type: 'ClusterIP', selector: labels(), ports: [{ name: 'proxy', port, targetPort: 'proxy', protocol: 'TCP' }] },
      }
      const policy: NetworkPolicy = {
        apiVersion: 'networking.k8s.io/v1',
        kind: 'NetworkPolicy',
        metadata: { name, namespace, labels: labels() },
        spec: {
          podSelector: { matchLabels: labels() },
          policyTypes: ['Ingress', 'Egress'],
          ingress: [
            {
              from: [{ podSelector: { matchLabels: { ...componentLabels('sandbox'), [NETWORK_LABEL]: profile } } }],
              ports: [{ protocol: 'TCP', port }],
            },
          ],
          egress: [
            // The API pods, where the model gateway's requests are relayed to.
            { to: [{ podSelector: { matchLabels: componentLabels('api') } }], ports: [{ protocol: 'TCP', port: API_PORT }] },
            {
              // The cluster's resolver (CoreDNS keeps the kube-dns label): the proxy resolves the names sandboxes ask for.
              to: [
                {
                  namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
                  podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
                },
              ],
              ports: [
                { protocol: 'UDP', port: 53 },
                { protocol: 'TCP', port: 53 },
              ],
            },
            {
              to: [
                { ipBlock: { cidr: '0.0.0.0/0', ...(denied.ipv4.length > 0 ? { except: denied.ipv4 } : {}) } },
                { ipBlock: { cidr: '::/0', ...(denied.ipv6.length > 0 ? { except: denied.ipv6 } : {}) } },
              ],
              ports: [{ protocol: 'TCP' }],
            },
          ],
        },
      }
      return [deployment, service, policy]
    })
  return [...rbac, ...perProfile]
}
