/**
 * The resource types the fake Kubernetes API server serves and the discovery documents that
 * describe them (/api, /apis, /api/v1, /apis/<group>/<version>, /version), which kubectl and
 * `@kubernetes/client-node`'s KubernetesObjectApi read before they make a request.
 */
import { KubeError } from './status.ts'

/** One namespaced resource the fake stores. */
export interface ResourceType {
  group: string
  version: string
  plural: string
  singular: string
  kind: string
  shortNames: string[]
  /** Writes to the main resource keep the stored status; `/status` writes change only the status. */
  hasStatus: boolean
  /** How the name is checked: DNS-1123 subdomain (most), or DNS-1035 label (services). */
  nameRule: 'subdomain' | 'label1035'
  /** DELETE answers with the object (pods, services) rather than a Status once it is gone. */
  returnsDeleted: boolean
}

export const resourceTypes: readonly ResourceType[] = [
  { group: '', version: 'v1', plural: 'pods', singular: 'pod', kind: 'Pod', shortNames: ['po'], hasStatus: true, nameRule: 'subdomain', returnsDeleted: true },
  {
    group: '',
    version: 'v1',
    plural: 'services',
    singular: 'service',
    kind: 'Service',
    shortNames: ['svc'],
    hasStatus: true,
    nameRule: 'label1035',
    returnsDeleted: true,
  },
  {
    group: 'networking.k8s.io',
    version: 'v1',
    plural: 'networkpolicies',
    singular: 'networkpolicy',
    kind: 'NetworkPolicy',
    shortNames: ['netpol'],
    hasStatus: false,
    nameRule: 'subdomain',
    returnsDeleted: false,
  },
  {
    group: 'coordination.k8s.io',
    version: 'v1',
    plural: 'leases',
    singular: 'lease',
    kind: 'Lease',
    shortNames: [],
    hasStatus: false,
    nameRule: 'subdomain',
    returnsDeleted: false,
  },
]

/** The apiVersion string of a resource type ("v1", "networking.k8s.io/v1"). */
export const apiVersionOf = (t: ResourceType): string => (t.group ? `${t.group}/${t.version}` : t.version)

/** The resource type served at a group/version/plural, or undefined. */
export function findResource(group: string, version: string, plural: string): ResourceType | undefined {
  return resourceTypes.find((t) => t.group === group && t.version === version && t.plural === plural)
}

/** The resource type of a kind and apiVersion (for ownerReferences), or undefined. */
export function findKind(apiVersion: string, kind: string): ResourceType | undefined {
  return resourceTypes.find((t) => apiVersionOf(t) === apiVersion && t.kind === kind)
}

const subdomain = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/
const label1035 = /^[a-z]([-a-z0-9]*[a-z0-9])?$/

/** Throws 422 Invalid when `name` is not a valid object name for the resource type. */
export function checkName(t: ResourceType, name: string): void {
  const ok = t.nameRule === 'subdomain' ? name.length <= 253 && subdomain.test(name) : name.length <= 63 && label1035.test(name)
  if (ok) return
  const rule =
    t.nameRule === 'subdomain'
      ? "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
      : "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"
  throw new KubeError('Invalid', `${t.kind} "${name}" is invalid: metadata.name: Invalid value: "${name}": ${rule}`, {
    name,
    group: t.group,
    kind: t.kind,
    causes: [{ reason: 'FieldValueInvalid', message: `Invalid value: "${name}": ${rule}`, field: 'metadata.name' }],
  })
}

/** Checks a namespace name (a DNS-1123 label), 400 otherwise. */
export function checkNamespace(namespace: string): void {
  if (namespace.length > 63 || !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(namespace)) {
    throw new KubeError('BadRequest', `invalid namespace "${namespace.slice(0, 80)}": must be a DNS-1123 label`)
  }
}

const verbs = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']

/** GET /api/<version> or /apis/<group>/<version>: the APIResourceList, or undefined when not served. */
export function resourceList(group: string, version: string): Record<string, unknown> | undefined {
  const types = resourceTypes.filter((t) => t.group === group && t.version === version)
  if (types.length === 0) return undefined
  const resources: Record<string, unknown>[] = []
  for (const t of types) {
    resources.push({
      name: t.plural,
      singularName: t.singular,
      namespaced: true,
      kind: t.kind,
      verbs,
      ...(t.shortNames.length ? { shortNames: t.shortNames } : {}),
    })
    if (t.hasStatus) resources.push({ name: `${t.plural}/status`, singularName: '', namespaced: true, kind: t.kind, verbs: ['get', 'patch', 'update'] })
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group ? `${group}/${version}` : version, resources }
}

/** GET /api: the core group's versions. */
export function coreVersions(): Record<string, unknown> {
  return { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: '127.0.0.1:443' }] }
}

/** GET /apis: the named groups. */
export function groupList(): Record<string, unknown> {
  const groups = [...new Set(resourceTypes.filter((t) => t.group).map((t) => t.group))].map((name) => {
    const gv = { groupVersion: `${name}/v1`, version: 'v1' }
    return { name, versions: [gv], preferredVersion: gv }
  })
  return { kind: 'APIGroupList', apiVersion: 'v1', groups }
}

/** GET /apis/<group>: one group. */
export function group(name: string): Record<string, unknown> | undefined {
  const g = (groupList().groups as { name: string }[]).find((x) => x.name === name)
  return g ? { kind: 'APIGroup', apiVersion: 'v1', ...g } : undefined
}

/** GET /version: the Kubernetes version the fake claims to speak. */
export function versionInfo(): Record<string, unknown> {
  return {
    major: '1',
    minor: '32',
    gitVersion: 'v1.32.0-codebox-fake',
    gitCommit: '0000000000000000000000000000000000000000',
    gitTreeState: 'clean',
    buildDate: '2025-01-01T00:00:00Z',
    goVersion: 'go1.23',
    compiler: 'gc',
    platform: 'linux/amd64',
  }
}
