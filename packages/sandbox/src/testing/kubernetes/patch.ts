/**
 * The three patch formats the fake API server accepts: JSON merge patch (RFC 7386), JSON patch
 * (RFC 6902), and a strategic merge patch that knows the merge keys of the fields codebox and
 * kubectl touch (containers, env, volumes, ports, ... by their key; finalizers as a set) and the
 * `$patch`, `$setElementOrder`, `$retainKeys` and `$deleteFromPrimitiveList` directives. Lists it
 * does not know are replaced, as in a merge patch.
 */
import { KubeError } from './status.ts'

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
type JsonObject = { [k: string]: Json }

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v)
const clone = <T>(v: T): T => structuredClone(v)

/** RFC 7386: objects merge, null deletes, anything else replaces. */
export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return clone(patch)
  const out: JsonObject = isObject(target) ? { ...target } : {}
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k]
    else out[k] = mergePatch(out[k] ?? null, v)
  }
  return out
}

function pointer(path: string): string[] {
  if (path === '') return []
  if (!path.startsWith('/')) throw new KubeError('Invalid', `json patch: path "${path.slice(0, 80)}" does not start with /`)
  return path
    .slice(1)
    .split('/')
    .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'))
}

function parentOf(doc: Json, tokens: string[], path: string): { parent: JsonObject | Json[]; key: string } {
  let cur: Json = doc
  for (const t of tokens.slice(0, -1)) {
    const next: Json | undefined = Array.isArray(cur) ? cur[Number(t)] : isObject(cur) ? cur[t] : undefined
    if (next === undefined || next === null || typeof next !== 'object') throw new KubeError('Invalid', `json patch: path "${path}" does not exist`)
    cur = next
  }
  if (typeof cur !== 'object' || cur === null) throw new KubeError('Invalid', `json patch: path "${path}" does not exist`)
  return { parent: cur, key: tokens.at(-1)! }
}

function getAt(doc: Json, path: string): Json {
  const tokens = pointer(path)
  if (tokens.length === 0) return doc
  const { parent, key } = parentOf(doc, tokens, path)
  const v = Array.isArray(parent) ? parent[Number(key)] : parent[key]
  if (v === undefined) throw new KubeError('Invalid', `json patch: path "${path}" does not exist`)
  return v
}

function arrayIndex(arr: Json[], key: string, path: string, forAdd: boolean): number {
  if (forAdd && key === '-') return arr.length
  const i = /^(0|[1-9][0-9]*)$/.test(key) ? Number(key) : NaN
  if (!(i >= 0 && i < arr.length + (forAdd ? 1 : 0))) throw new KubeError('Invalid', `json patch: index "${key}" out of range at "${path}"`)
  return i
}

function removeAt(doc: Json, path: string): Json {
  const { parent, key } = parentOf(doc, pointer(path), path)
  if (Array.isArray(parent)) return parent.splice(arrayIndex(parent, key, path, false), 1)[0]!
  if (!Object.hasOwn(parent, key)) throw new KubeError('Invalid', `json patch: path "${path}" does not exist`)
  const v = parent[key]!
  delete parent[key]
  return v
}

function addAt(doc: Json, path: string, value: Json, replace: boolean): Json {
  const tokens = pointer(path)
  if (tokens.length === 0) return value
  const { parent, key } = parentOf(doc, tokens, path)
  if (Array.isArray(parent)) {
    const i = arrayIndex(parent, key, path, !replace)
    parent.splice(i, replace ? 1 : 0, value)
  } else {
    if (replace && !Object.hasOwn(parent, key)) throw new KubeError('Invalid', `json patch: path "${path}" does not exist`)
    parent[key] = value
  }
  return doc
}

/** RFC 6902 operations; a failed `test` or a missing path is a 422 naming the path. */
export function jsonPatch(target: Json, ops: unknown): Json {
  if (!Array.isArray(ops)) throw new KubeError('BadRequest', 'json patch: the body must be an array of operations')
  if (ops.length > 10000) throw new KubeError('RequestEntityTooLarge', 'json patch: more than 10000 operations')
  let doc = clone(target)
  for (const op of ops as unknown[]) {
    if (!isObject(op) || typeof op.op !== 'string' || typeof op.path !== 'string')
      throw new KubeError('BadRequest', 'json patch: each operation needs "op" and "path"')
    const path = op.path
    const from = typeof op.from === 'string' ? op.from : undefined
    switch (op.op) {
      case 'add':
      case 'replace':
        if (op.value === undefined) throw new KubeError('BadRequest', `json patch: "${op.op}" at "${path}" needs a value`)
        doc = addAt(doc, path, clone(op.value), op.op === 'replace')
        break
      case 'remove':
        removeAt(doc, path)
        break
      case 'move':
      case 'copy': {
        if (from === undefined) throw new KubeError('BadRequest', `json patch: "${op.op}" at "${path}" needs "from"`)
        const v = op.op === 'move' ? removeAt(doc, from) : clone(getAt(doc, from))
        doc = addAt(doc, path, v, false)
        break
      }
      case 'test':
        if (JSON.stringify(getAt(doc, path)) !== JSON.stringify(op.value ?? null)) throw new KubeError('Invalid', `json patch: test failed at "${path}"`)
        break
      default:
        throw new KubeError('BadRequest', `json patch: unknown operation "${String(op.op).slice(0, 40)}"`)
    }
  }
  return doc
}

/** The merge key of a list field at `path` (the field names from the object's root), if it has one. */
function mergeKey(path: readonly string[]): string | undefined {
  const field = path.at(-1)
  const inContainer = path.some((p) => p === 'containers' || p === 'initContainers' || p === 'ephemeralContainers')
  switch (field) {
    case 'containers':
    case 'initContainers':
    case 'ephemeralContainers':
    case 'volumes':
    case 'env':
    case 'imagePullSecrets':
    case 'containerStatuses':
    case 'initContainerStatuses':
      return 'name'
    case 'ownerReferences':
      return 'uid'
    case 'volumeMounts':
      return 'mountPath'
    case 'conditions':
      return 'type'
    case 'ports':
      return inContainer ? 'containerPort' : path.includes('spec') && !path.includes('ingress') && !path.includes('egress') ? 'port' : undefined
    default:
      return undefined
  }
}

const setLists = new Set(['finalizers'])

function mergeList(target: Json[], patch: Json[], key: string, path: string[]): Json[] {
  const out = target.map(clone)
  for (const item of patch) {
    if (!isObject(item)) {
      out.push(clone(item))
      continue
    }
    const at = out.findIndex((t) => isObject(t) && t[key] === item[key])
    if (item.$patch === 'delete') {
      if (at >= 0) out.splice(at, 1)
    } else if (at >= 0) out[at] = strategicMerge(out[at]!, item, path)
    else out.push(strategicMerge({}, item, path))
  }
  return out
}

function orderBy(list: Json[], order: Json, key: string | undefined): Json[] {
  if (!Array.isArray(order)) return list
  const idOf = (v: Json): string => JSON.stringify(key && isObject(v) ? v[key] : v)
  const rank = new Map(order.map((o, i) => [idOf(o), i]))
  return list
    .map((v, i) => ({ v, r: rank.get(idOf(v)) ?? order.length + i }))
    .sort((a, b) => a.r - b.r)
    .map((x) => x.v)
}

/** A strategic merge patch over the fields whose merge keys the fake knows (see mergeKey). */
export function strategicMerge(target: Json, patch: Json, path: string[] = []): Json {
  if (!isObject(patch)) return clone(patch)
  if (patch.$patch === 'replace') {
    const rest = { ...patch }
    delete rest.$patch
    return strategicMerge({}, rest, path)
  }
  const out: JsonObject = isObject(target) ? clone(target) : {}
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch' || k === '$retainKeys' || k.startsWith('$setElementOrder/') || k.startsWith('$deleteFromPrimitiveList/')) continue
    const sub = [...path, k]
    const cur = out[k]
    if (v === null) delete out[k]
    else if (Array.isArray(v) && Array.isArray(cur)) {
      const key = mergeKey(sub)
      if (key) out[k] = mergeList(cur, v, key, sub)
      else if (setLists.has(k)) out[k] = [...cur, ...v.filter((x) => !cur.some((c) => JSON.stringify(c) === JSON.stringify(x)))]
      else out[k] = clone(v)
    } else if (Array.isArray(v)) out[k] = v.filter((x) => !(isObject(x) && x.$patch === 'delete')).map((x) => strategicMerge({}, x, sub))
    else out[k] = isObject(v) ? strategicMerge(cur ?? null, v, sub) : clone(v)
  }
  for (const [k, v] of Object.entries(patch)) {
    if (k.startsWith('$deleteFromPrimitiveList/')) {
      const field = k.slice('$deleteFromPrimitiveList/'.length)
      const cur = out[field]
      if (Array.isArray(cur) && Array.isArray(v)) out[field] = cur.filter((x) => !v.some((d) => JSON.stringify(d) === JSON.stringify(x)))
    } else if (k.startsWith('$setElementOrder/')) {
      const field = k.slice('$setElementOrder/'.length)
      const cur = out[field]
      if (Array.isArray(cur)) out[field] = orderBy(cur, v, mergeKey([...path, field]))
    }
  }
  if (Array.isArray(patch.$retainKeys)) {
    const keep = new Set(patch.$retainKeys.filter((x): x is string => typeof x === 'string'))
    for (const k of Object.keys(out)) if (!keep.has(k)) delete out[k]
  }
  return out
}

export type { Json, JsonObject }
