/**
 * The HTTP face of the fake API server: bearer-token authentication, a namespace RBAC check,
 * discovery documents, routing of /api/v1/... and /apis/<group>/<version>/... paths to the
 * resource handlers (handlers.ts), bodies bounded at 3 MiB as on a real server, and every error
 * answered as a Status object.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { coreVersions, findResource, group, groupList, resourceList, versionInfo, type ResourceType } from './resources.ts'
import { KubeError } from './status.ts'

/** Who a bearer token authenticates as, and the namespaces it may touch ('*': all, and cluster-wide lists). */
export interface FakeUser {
  name: string
  namespaces: '*' | readonly string[]
}

/** One request as the fake saw it (kept for tests: how often an informer listed, who was refused); status is 0 until the answer ends (a watch's ends with the watch). */
export interface RequestRecord {
  method: string
  path: string
  query: string
  user: string | undefined
  verb: string
  status: number
}

/** A request routed to a resource. */
export interface ResourceRequest {
  t: ResourceType
  namespace: string | undefined
  name: string | undefined
  subresource: string | undefined
  verb: string
  query: URLSearchParams
  req: IncomingMessage
  res: ServerResponse
  user: FakeUser
}

/** The largest body the fake reads (the real server's limit is 3 MiB as well). */
export const MAX_BODY_BYTES = 3 * 1024 * 1024

/** Reads and parses a JSON body; over MAX_BODY_BYTES is 413, bad JSON or a `__proto__` key is 400. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0)
  if (declared > MAX_BODY_BYTES) throw new KubeError('RequestEntityTooLarge', `the request body is larger than ${MAX_BODY_BYTES} bytes`)
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > MAX_BODY_BYTES) throw new KubeError('RequestEntityTooLarge', `the request body is larger than ${MAX_BODY_BYTES} bytes`)
    chunks.push(chunk)
  }
  const text = Buffer.concat(chunks).toString('utf8')
  if (!text.trim()) throw new KubeError('BadRequest', 'the request body is empty')
  try {
    return JSON.parse(text, (key, value: unknown) => {
      if (key === '__proto__') throw new Error('a "__proto__" key is not accepted')
      return value
    })
  } catch (e) {
    throw new KubeError('BadRequest', `the request body is not valid JSON: ${(e as Error).message}`)
  }
}

/** Sends a JSON body. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

/** The user a request's bearer token names; 401 without one. */
export function authenticate(req: IncomingMessage, users: ReadonlyMap<string, FakeUser>): FakeUser {
  const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '')
  const user = m ? users.get(m[1]!) : undefined
  if (!user) throw new KubeError('Unauthorized', 'Unauthorized')
  return user
}

/** The namespace RBAC check: 403 in the words a real server uses. */
export function authorize(user: FakeUser, r: Pick<ResourceRequest, 't' | 'namespace' | 'verb' | 'subresource'>): void {
  if (user.namespaces === '*' || (r.namespace !== undefined && user.namespaces.includes(r.namespace))) return
  const resource = r.subresource ? `${r.t.plural}/${r.subresource}` : r.t.plural
  const where = r.namespace === undefined ? 'at the cluster scope' : `in the namespace "${r.namespace}"`
  throw new KubeError(
    'Forbidden',
    `${r.t.plural}${r.t.group ? '.' + r.t.group : ''} is forbidden: User "${user.name}" cannot ${r.verb} resource "${resource}" in API group "${r.t.group}" ${where}`,
    { group: r.t.group, kind: r.t.plural },
  )
}

function verbOf(method: string, name: string | undefined, query: URLSearchParams): string {
  const watch = query.get('watch')
  switch (method) {
    case 'GET':
      return name ? 'get' : watch === 'true' || watch === '1' ? 'watch' : 'list'
    case 'POST':
      return 'create'
    case 'PUT':
      return 'update'
    case 'PATCH':
      return 'patch'
    case 'DELETE':
      return name ? 'delete' : 'deletecollection'
    default:
      throw new KubeError('MethodNotAllowed', `the server does not allow this method on the requested resource: ${method.slice(0, 10)}`)
  }
}

/** A discovery document for the path, or undefined when it is not one. */
export function discovery(segments: string[]): Record<string, unknown> | undefined {
  const path = segments.join('/')
  if (path === 'version') return versionInfo()
  if (path === 'api') return coreVersions()
  if (path === 'apis') return groupList()
  if (segments[0] === 'api' && segments.length === 2) return resourceList('', segments[1]!)
  if (segments[0] === 'apis' && segments.length === 2) return group(segments[1]!)
  if (segments[0] === 'apis' && segments.length === 3) return resourceList(segments[1]!, segments[2]!)
  return undefined
}

/** Routes a resource path; undefined when the path names no resource the fake serves. */
export function routeResource(method: string, segments: string[], query: URLSearchParams): Omit<ResourceRequest, 'req' | 'res' | 'user' | 'query'> | undefined {
  let groupName: string
  let version: string
  let rest: string[]
  if (segments[0] === 'api' && segments.length >= 3) [groupName, version, rest] = ['', segments[1]!, segments.slice(2)]
  else if (segments[0] === 'apis' && segments.length >= 4) [groupName, version, rest] = [segments[1]!, segments[2]!, segments.slice(3)]
  else return undefined
  let namespace: string | undefined
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1]
    rest = rest.slice(2)
  }
  if (rest.length < 1 || rest.length > 3 || (namespace === undefined && rest.length > 1)) return undefined
  const t = findResource(groupName, version, rest[0]!)
  if (!t) return undefined
  const name = rest[1]
  const subresource = rest[2]
  if (subresource !== undefined && !(subresource === 'status' && t.hasStatus) && !(subresource === 'log' && t.kind === 'Pod')) return undefined
  return { t, namespace, name, subresource, verb: verbOf(method, name, query) }
}

/**
 * GET /api/v1/namespaces/<ns>: every namespace exists (Active) for a user allowed in it, 403
 * otherwise; kubectl asks after a NotFound to say which of the two was missing.
 */
export function namespaceObject(user: FakeUser, namespace: string): Record<string, unknown> {
  if (user.namespaces !== '*' && !user.namespaces.includes(namespace)) {
    throw new KubeError(
      'Forbidden',
      `namespaces "${namespace}" is forbidden: User "${user.name}" cannot get resource "namespaces" in API group "" in the namespace "${namespace}"`,
      { name: namespace, kind: 'namespaces' },
    )
  }
  return {
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: { name: namespace, labels: { 'kubernetes.io/metadata.name': namespace } },
    spec: { finalizers: ['kubernetes'] },
    status: { phase: 'Active' },
  }
}

/**
 * GET /apis/node.k8s.io/v1/runtimeclasses/<name>: a RuntimeClass the fake was told exists (the
 * `runtimeClasses` option), 404 otherwise; a cluster object, so only a user of every namespace may
 * read it (a namespace-scoped Role cannot), 403 in RBAC's words for the others. Runtime classes
 * are only named: pods run the same whatever class they ask for.
 */
export function runtimeClassObject(user: FakeUser, name: string, known: readonly string[]): Record<string, unknown> {
  if (user.namespaces !== '*') {
    throw new KubeError(
      'Forbidden',
      `runtimeclasses.node.k8s.io "${name}" is forbidden: User "${user.name}" cannot get resource "runtimeclasses" in API group "node.k8s.io" at the cluster scope`,
      { name, group: 'node.k8s.io', kind: 'runtimeclasses' },
    )
  }
  if (!known.includes(name))
    throw new KubeError('NotFound', `runtimeclasses.node.k8s.io "${name}" not found`, { name, group: 'node.k8s.io', kind: 'runtimeclasses' })
  return {
    apiVersion: 'node.k8s.io/v1',
    kind: 'RuntimeClass',
    metadata: { name, uid: `runtimeclass-${name}`, resourceVersion: '1' },
    handler: name === 'gvisor' ? 'runsc' : name,
  }
}
