/**
 * Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), which kubectl's
 * `get` asks for: a meta.k8s.io/v1 Table with kubectl's usual columns for pods (Name, Ready,
 * Status, Restarts, Age, IP, Node) and Name/Age for the other types.
 */
import type { ResourceType } from './resources.ts'
import type { KubeObject } from './store.ts'

/** True when the Accept header asks for a Table first. */
export function wantsTable(accept: string | undefined): boolean {
  const first = (accept ?? '').split(',')[0] ?? ''
  return /;\s*as=Table/.test(first) && /g=meta\.k8s\.io/.test(first)
}

function age(created: string): string {
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(created)) / 1000))
  if (s < 120) return `${s}s`
  if (s < 7200) return `${Math.floor(s / 60)}m`
  return `${Math.floor(s / 3600)}h`
}

const column = (name: string, type: string, priority = 0, format = ''): Record<string, unknown> => ({ name, type, format, description: name, priority })

interface PodView {
  spec?: { containers?: unknown[]; nodeName?: string }
  status?: { phase?: string; reason?: string; podIP?: string; containerStatuses?: { ready?: boolean; restartCount?: number }[] }
}

function podCells(obj: KubeObject): unknown[] {
  const pod = obj as unknown as PodView
  const statuses = pod.status?.containerStatuses ?? []
  const ready = statuses.filter((c) => c.ready).length
  const restarts = statuses.reduce((n, c) => n + (c.restartCount ?? 0), 0)
  const status = obj.metadata.deletionTimestamp ? 'Terminating' : (pod.status?.reason ?? pod.status?.phase ?? 'Unknown')
  return [
    obj.metadata.name,
    `${ready}/${pod.spec?.containers?.length ?? 0}`,
    status,
    restarts,
    age(obj.metadata.creationTimestamp),
    pod.status?.podIP ?? '<none>',
    pod.spec?.nodeName ?? '<none>',
  ]
}

/** The Table of `items` (one object for a get, many for a list). */
export function toTable(t: ResourceType, items: KubeObject[], resourceVersion: string): Record<string, unknown> {
  const isPod = t.kind === 'Pod'
  const columnDefinitions = isPod
    ? [
        column('Name', 'string', 0, 'name'),
        column('Ready', 'string'),
        column('Status', 'string'),
        column('Restarts', 'integer'),
        column('Age', 'string'),
        column('IP', 'string', 1),
        column('Node', 'string', 1),
      ]
    : [column('Name', 'string', 0, 'name'), column('Age', 'string')]
  const rows = items.map((obj) => ({
    cells: isPod ? podCells(obj) : [obj.metadata.name, age(obj.metadata.creationTimestamp)],
    object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: obj.metadata },
  }))
  return { kind: 'Table', apiVersion: 'meta.k8s.io/v1', metadata: { resourceVersion }, columnDefinitions, rows }
}
