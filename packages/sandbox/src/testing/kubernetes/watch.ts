/**
 * Watches of the fake API server: a stream of JSON lines `{type, object}` from a resourceVersion
 * (replayed from the store's bounded history; too old is an ERROR event carrying a 410 Expired
 * Status, then the end of the stream, as a real server answers), with selector transitions
 * (an object that stops matching is DELETED for that watch, one that starts matching is ADDED),
 * BOOKMARK events when asked for, an end at `timeoutSeconds`, and a slow reader dropped.
 */
import type { ServerResponse } from 'node:http'
import { apiVersionOf, type ResourceType } from './resources.ts'
import type { Matcher } from './selectors.ts'
import { KubeError, statusObject } from './status.ts'
import type { KubeObject, ObjectStore, StoreEvent } from './store.ts'

/** What one watch request asks for. */
export interface WatchSpec {
  t: ResourceType
  namespace: string | undefined
  labels: Matcher
  fields: Matcher
  resourceVersion: string | undefined
  allowBookmarks: boolean
  timeoutMs: number
  bookmarkIntervalMs: number
}

/** A watch stream buffered beyond this is dropped, as a real server drops a slow watcher. */
const MAX_BUFFERED_BYTES = 16 * 1024 * 1024

/** The field values a fieldSelector can name on an object of this type. */
export function fieldsOf(t: ResourceType, obj: KubeObject): Record<string, string> {
  const fields: Record<string, string> = { 'metadata.name': obj.metadata.name, 'metadata.namespace': obj.metadata.namespace }
  if (t.kind === 'Pod') {
    fields['spec.nodeName'] = String((obj.spec as { nodeName?: string } | undefined)?.nodeName ?? '')
    fields['status.phase'] = String((obj.status as { phase?: string } | undefined)?.phase ?? '')
  }
  return fields
}

/** The fields each type's fieldSelector may name. */
export const selectableFields = (t: ResourceType): string[] =>
  t.kind === 'Pod' ? ['metadata.name', 'metadata.namespace', 'spec.nodeName', 'status.phase'] : ['metadata.name', 'metadata.namespace']

function parseRv(rv: string): number {
  if (!/^[0-9]{1,15}$/.test(rv)) throw new KubeError('BadRequest', `resourceVersion: Invalid value: "${rv.slice(0, 40)}": must be an integer`)
  return Number(rv)
}

/**
 * Streams the watch on `res` (status 200 is sent at once); returns a function that ends it. A
 * malformed resourceVersion throws before anything is written.
 */
export function serveWatch(store: ObjectStore, spec: WatchSpec, res: ServerResponse): () => void {
  const { t } = spec
  const fromRv = spec.resourceVersion && spec.resourceVersion !== '0' ? parseRv(spec.resourceVersion) : undefined
  const matches = (obj: KubeObject | undefined): boolean =>
    obj !== undefined &&
    (spec.namespace === undefined || obj.metadata.namespace === spec.namespace) &&
    spec.labels(obj.metadata.labels ?? {}) &&
    spec.fields(fieldsOf(t, obj))

  res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache, private' })
  res.flushHeaders()
  let ended = false
  const send = (type: string, object: unknown): void => {
    if (ended) return
    res.write(JSON.stringify({ type, object }) + '\n')
    if (res.writableLength > MAX_BUFFERED_BYTES) end()
  }
  const translate = (e: StoreEvent): void => {
    if (e.resource !== t) return
    const now = e.type !== 'DELETED' && matches(e.object)
    const before = e.type === 'DELETED' ? matches(e.object) : matches(e.previous)
    if (now && before) send('MODIFIED', e.object)
    else if (now) send('ADDED', e.object)
    else if (before) send('DELETED', e.object)
  }

  let timeoutTimer: NodeJS.Timeout | undefined
  let bookmarkTimer: NodeJS.Timeout | undefined
  let unsubscribe = (): void => {}
  const end = (): void => {
    if (ended) return
    ended = true
    clearTimeout(timeoutTimer)
    clearTimeout(bookmarkTimer)
    unsubscribe()
    res.end()
  }
  res.on('close', end)

  if (fromRv !== undefined) {
    const replay = store.eventsSince(fromRv)
    if (replay === 'gone') {
      const message = `too old resource version: ${fromRv} (${store.oldestResourceVersion + 1})`
      send('ERROR', statusObject('Expired', message))
      end()
      return end
    }
    for (const e of replay) translate(e)
  } else {
    for (const obj of store.list(t, spec.namespace)) if (matches(obj)) send('ADDED', obj)
  }
  unsubscribe = store.subscribe(translate)
  timeoutTimer = setTimeout(end, spec.timeoutMs)
  if (spec.allowBookmarks) {
    const bookmark = (): void => {
      send('BOOKMARK', { kind: t.kind, apiVersion: apiVersionOf(t), metadata: { resourceVersion: store.resourceVersion } })
      bookmarkTimer = setTimeout(bookmark, spec.bookmarkIntervalMs)
    }
    bookmarkTimer = setTimeout(bookmark, spec.bookmarkIntervalMs)
  }
  return end
}
