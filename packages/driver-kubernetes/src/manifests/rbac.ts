/**
 * What the API may do in its namespace, and nothing more (no ClusterRole): pods (create, claim by
 * patch, watch, delete), their logs, and its leader-election Lease. It has no rights on
 * NetworkPolicies (they are installed once, not managed at run time), on Secrets (its own reach it
 * as environment variables) or on Services (it finds the egress proxy by DNS). The sandbox pods get
 * a ServiceAccount of their own, bound to nothing and with no token mounted.
 */
import type { ServiceAccount } from 'kubernetes-types/core/v1.js'
import type { Role, RoleBinding } from 'kubernetes-types/rbac/v1.js'
import { API_NAME, checkDnsLabel, componentLabels, LEASE_NAME, SANDBOX_SERVICE_ACCOUNT } from '../names.ts'

/** The API's ServiceAccount, Role and RoleBinding, and the sandbox pods' ServiceAccount. */
export function apiRbac(namespace: string): [ServiceAccount, ServiceAccount, Role, RoleBinding] {
  checkDnsLabel('namespace', namespace)
  const api = { name: API_NAME, namespace, labels: componentLabels('api') }
  return [
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: api, automountServiceAccountToken: true },
    {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name: SANDBOX_SERVICE_ACCOUNT, namespace, labels: componentLabels('sandbox') },
      automountServiceAccountToken: false,
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: api,
      rules: [
        { apiGroups: [''], resources: ['pods'], verbs: ['create', 'get', 'list', 'watch', 'patch', 'delete'] },
        { apiGroups: [''], resources: ['pods/log'], verbs: ['get'] },
        // `create` cannot be limited to a name; reading and renewing can.
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
        { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [LEASE_NAME], verbs: ['get', 'update'] },
      ],
    },
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: api,
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: API_NAME },
      subjects: [{ kind: 'ServiceAccount', name: API_NAME, namespace }],
    },
  ]
}
