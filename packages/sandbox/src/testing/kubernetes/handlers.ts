/**
 * The verbs of the fake API server on one resource: get, list (label and field selectors,
 * limit/continue), watch, create, update (PUT), patch (merge, strategic merge, JSON patch),
 * delete (DeleteOptions from the query or the body) and deletecollection, plus a pod's `/status`
 * and `/log`. Parameters that would change what a real server does and that the fake does not
 * implement (dryRun, sendInitialEvents, server-side apply) are refused with a 400/415, never
 * silently ignored.
 */
import { readJson, sendJson, type ResourceRequest } from './http.ts'
import { jsonPatch, mergePatch, strategicMerge, type Json } from './patch.ts'
import { apiVersionOf } from './resources.ts'
import { parseFieldSelector, parseLabelSelector } from './selectors.ts'
import { KubeError, successStatus } from './status.ts'
import type { DeleteOptions, KubeObject, ObjectStore } from './store.ts'
import { toTable, wantsTable } from './table.ts'
import { fieldsOf, selectableFields, serveWatch } from './watch.ts'

/** What the handlers share with the server. */
export interface HandlerContext {
  store: ObjectStore
  /** Ends of the open watches (closeWatches() calls them all). */
  watches: Set<() => void>
  /** The longest a watch stays open; a shorter timeoutSeconds wins. */
  maxWatchMs: number
  bookmarkIntervalMs: number
  /** A pod's captured output (the kubelet's), or undefined when it has none. */
  podLog: (namespace: string, name: string, container?: string) => string | undefined
}

const isDict = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

function refuseUnsupported(query: URLSearchParams): void {
  if (query.has('dryRun')) throw new KubeError('BadRequest', 'dryRun is not supported by the fake API server')
  if (query.has('sendInitialEvents')) throw new KubeError('BadRequest', 'sendInitialEvents is not supported by the fake API server')
}

function intParam(query: URLSearchParams, name: string): number | undefined {
  const v = query.get(name)
  if (v === null || v === '') return undefined
  if (!/^[0-9]{1,9}$/.test(v)) throw new KubeError('BadRequest', `${name}: Invalid value: "${v.slice(0, 40)}": must be a non-negative integer`)
  return Number(v)
}

function checkBody(r: ResourceRequest, body: unknown): KubeObject {
  if (!isDict(body)) throw new KubeError('BadRequest', `the body must be a JSON object (a ${r.t.kind})`)
  if (body.kind !== undefined && body.kind !== r.t.kind) throw new KubeError('BadRequest', `the kind in the body (${String(body.kind)}) is not ${r.t.kind}`)
  if (body.apiVersion !== undefined && body.apiVersion !== apiVersionOf(r.t)) {
    throw new KubeError('BadRequest', `the API version in the data (${String(body.apiVersion)}) does not match the expected API version (${apiVersionOf(r.t)})`)
  }
  if (body.metadata !== undefined && !isDict(body.metadata)) throw new KubeError('BadRequest', 'metadata must be an object')
  return body as KubeObject
}

function deleteOptions(query: URLSearchParams, body: unknown): DeleteOptions {
  const b = isDict(body) ? body : {}
  const grace = b.gracePeriodSeconds ?? intParam(query, 'gracePeriodSeconds')
  let policy = b.propagationPolicy ?? query.get('propagationPolicy') ?? undefined
  if (policy === undefined && (b.orphanDependents === true || query.get('orphanDependents') === 'true')) policy = 'Orphan'
  if (policy !== undefined && policy !== 'Foreground' && policy !== 'Background' && policy !== 'Orphan') {
    throw new KubeError('BadRequest', `propagationPolicy: Unsupported value: ${JSON.stringify(policy)}: supported values: "Foreground", "Background", "Orphan"`)
  }
  if (grace !== undefined && (!Number.isInteger(grace) || (grace as number) < 0))
    throw new KubeError('BadRequest', 'gracePeriodSeconds must be a non-negative integer')
  const pre = isDict(b.preconditions) ? b.preconditions : undefined
  return {
    ...(grace !== undefined ? { gracePeriodSeconds: grace as number } : {}),
    ...(policy !== undefined ? { propagationPolicy: policy } : {}),
    ...(pre
      ? {
          preconditions: {
            ...(typeof pre.uid === 'string' ? { uid: pre.uid } : {}),
            ...(typeof pre.resourceVersion === 'string' ? { resourceVersion: pre.resourceVersion } : {}),
          },
        }
      : {}),
  }
}

function selected(ctx: HandlerContext, r: ResourceRequest): KubeObject[] {
  const labels = parseLabelSelector(r.query.get('labelSelector'))
  const fields = parseFieldSelector(r.query.get('fieldSelector'), selectableFields(r.t))
  return ctx.store.list(r.t, r.namespace).filter((o) => labels(o.metadata.labels ?? {}) && fields(fieldsOf(r.t, o)))
}

function list(ctx: HandlerContext, r: ResourceRequest): void {
  let items = selected(ctx, r)
  const limit = intParam(r.query, 'limit')
  const token = r.query.get('continue')
  let rv = ctx.store.resourceVersion
  if (token) {
    let cont: { rv?: unknown; after?: unknown }
    try {
      cont = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { rv?: unknown; after?: unknown }
    } catch {
      throw new KubeError('BadRequest', 'continue: Invalid value: the continue token is not valid')
    }
    if (typeof cont.rv !== 'string' || typeof cont.after !== 'string')
      throw new KubeError('BadRequest', 'continue: Invalid value: the continue token is not valid')
    if (Number(cont.rv) < ctx.store.oldestResourceVersion)
      throw new KubeError('Expired', 'The provided continue parameter is too old to display a consistent list result.')
    const after = cont.after
    items = items.filter((o) => `${o.metadata.namespace}/${o.metadata.name}` > after)
    rv = cont.rv
  }
  const metadata: Record<string, unknown> = { resourceVersion: rv }
  if (limit !== undefined && limit > 0 && items.length > limit) {
    const last = items[limit - 1]!
    metadata.continue = Buffer.from(JSON.stringify({ rv, after: `${last.metadata.namespace}/${last.metadata.name}` })).toString('base64url')
    metadata.remainingItemCount = items.length - limit
    items = items.slice(0, limit)
  }
  if (wantsTable(r.req.headers.accept)) return sendJson(r.res, 200, toTable(r.t, items, rv))
  sendJson(r.res, 200, { kind: `${r.t.kind}List`, apiVersion: apiVersionOf(r.t), metadata, items })
}

function watch(ctx: HandlerContext, r: ResourceRequest): void {
  const timeoutSeconds = intParam(r.query, 'timeoutSeconds')
  const labels = parseLabelSelector(r.query.get('labelSelector'))
  const fields = parseFieldSelector(r.query.get('fieldSelector'), selectableFields(r.t))
  const end = serveWatch(
    ctx.store,
    {
      t: r.t,
      namespace: r.namespace,
      labels,
      fields,
      resourceVersion: r.query.get('resourceVersion') ?? undefined,
      allowBookmarks: r.query.get('allowWatchBookmarks') === 'true' || r.query.get('allowWatchBookmarks') === '1',
      timeoutMs: Math.min(ctx.maxWatchMs, timeoutSeconds !== undefined && timeoutSeconds > 0 ? timeoutSeconds * 1000 : Infinity),
      bookmarkIntervalMs: ctx.bookmarkIntervalMs,
    },
    r.res,
  )
  ctx.watches.add(end)
  r.res.on('close', () => ctx.watches.delete(end))
}

async function patch(ctx: HandlerContext, r: ResourceRequest, name: string, ns: string): Promise<KubeObject> {
  const type = (r.req.headers['content-type'] ?? '').split(';')[0]!.trim()
  if (type === 'application/apply-patch+yaml')
    throw new KubeError('UnsupportedMediaType', 'server-side apply (application/apply-patch+yaml) is not supported by the fake API server')
  const body = await readJson(r.req)
  const cur = ctx.store.get(r.t, ns, name) as unknown as Json
  let next: Json
  if (type === 'application/merge-patch+json') next = mergePatch(cur, body as Json)
  else if (type === 'application/strategic-merge-patch+json') next = strategicMerge(cur, body as Json)
  else if (type === 'application/json-patch+json') next = jsonPatch(cur, body)
  else
    throw new KubeError(
      'UnsupportedMediaType',
      `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json`,
    )
  return ctx.store.replace(r.t, ns, name, checkBody(r, next), r.subresource === 'status' ? 'status' : undefined)
}

async function remove(ctx: HandlerContext, r: ResourceRequest, name: string, ns: string): Promise<void> {
  const hasBody = Number(r.req.headers['content-length'] ?? 0) > 0 || r.req.headers['transfer-encoding'] !== undefined
  const options = deleteOptions(r.query, hasBody ? await readJson(r.req) : undefined)
  const after = ctx.store.delete(r.t, ns, name, options)
  const gone = !ctx.store.find(r.t, ns, name)
  if (gone && !r.t.returnsDeleted) return sendJson(r.res, 200, successStatus({ name, group: r.t.group, kind: r.t.plural, uid: after.metadata.uid }))
  sendJson(r.res, gone ? 200 : 202, after)
}

/** Serves one authorized resource request. */
export async function handleResource(ctx: HandlerContext, r: ResourceRequest): Promise<void> {
  refuseUnsupported(r.query)
  const { store } = ctx
  const { t } = r
  const ns = r.namespace
  if (r.verb === 'list') return list(ctx, r)
  if (r.verb === 'watch') return watch(ctx, r)
  if (ns === undefined) throw new KubeError('MethodNotAllowed', `${r.verb} needs a namespace: /…/namespaces/<namespace>/${t.plural}`)
  if (r.verb === 'create') return sendJson(r.res, 201, store.create(t, ns, checkBody(r, await readJson(r.req))))
  if (r.verb === 'deletecollection') {
    const options = deleteOptions(r.query, undefined)
    const items = selected(ctx, r).map((o) => store.delete(t, ns, o.metadata.name, options))
    return sendJson(r.res, 200, { kind: `${t.kind}List`, apiVersion: apiVersionOf(t), metadata: { resourceVersion: store.resourceVersion }, items })
  }
  const name = r.name!
  if (r.subresource === 'log') {
    if (r.verb !== 'get') throw new KubeError('MethodNotAllowed', 'pods/log only answers GET')
    const pod = store.get(t, ns, name)
    const container = r.query.get('container') ?? undefined
    if (container !== undefined) {
      const spec = pod.spec as { containers?: { name?: string }[]; initContainers?: { name?: string }[] } | undefined
      if (![...(spec?.containers ?? []), ...(spec?.initContainers ?? [])].some((c) => c.name === container))
        throw new KubeError('BadRequest', `container ${container} is not valid for pod ${name}`)
    }
    const text = ctx.podLog(ns, name, container) ?? ''
    r.res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(text) })
    r.res.end(text)
    return
  }
  switch (r.verb) {
    case 'get': {
      const obj = store.get(t, ns, name)
      return sendJson(r.res, 200, wantsTable(r.req.headers.accept) ? toTable(t, [obj], obj.metadata.resourceVersion) : obj)
    }
    case 'update':
      return sendJson(r.res, 200, store.replace(t, ns, name, checkBody(r, await readJson(r.req)), r.subresource === 'status' ? 'status' : undefined))
    case 'patch':
      return sendJson(r.res, 200, await patch(ctx, r, name, ns))
    case 'delete':
      if (r.subresource) throw new KubeError('MethodNotAllowed', `${t.plural}/${r.subresource} cannot be deleted`)
      return remove(ctx, r, name, ns)
    default:
      throw new KubeError('MethodNotAllowed', `${r.verb} is not allowed here`)
  }
}
