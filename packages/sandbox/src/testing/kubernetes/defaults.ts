/**
 * What the fake API server fills in and checks on create, as the real one's defaulting and
 * validation do for the fields codebox uses: a pod's restartPolicy, grace period, image pull
 * policy and a Pending status; a service's type, clusterIP and port protocol. A pod without
 * containers, or a container without a name or image, is a 422.
 */
import type { ResourceType } from './resources.ts'
import { KubeError } from './status.ts'
import type { KubeObject } from './store.ts'

type Dict = Record<string, unknown>
const isDict = (v: unknown): v is Dict => typeof v === 'object' && v !== null && !Array.isArray(v)

function invalid(t: ResourceType, name: string, field: string, message: string): KubeError {
  return new KubeError('Invalid', `${t.kind} "${name}" is invalid: ${field}: ${message}`, {
    name,
    group: t.group,
    kind: t.kind,
    causes: [{ reason: 'FieldValueInvalid', message, field }],
  })
}

function podDefaults(t: ResourceType, obj: KubeObject): void {
  const name = obj.metadata.name
  if (!isDict(obj.spec)) throw invalid(t, name, 'spec', 'Required value')
  const spec = obj.spec
  if (!Array.isArray(spec.containers) || spec.containers.length === 0) throw invalid(t, name, 'spec.containers', 'Required value')
  spec.containers.forEach((c: unknown, i) => {
    if (!isDict(c) || typeof c.name !== 'string' || !c.name) throw invalid(t, name, `spec.containers[${i}].name`, 'Required value')
    if (typeof c.image !== 'string' || !c.image) throw invalid(t, name, `spec.containers[${i}].image`, 'Required value')
    c.imagePullPolicy ??= c.image.endsWith(':latest') || !c.image.includes(':') ? 'Always' : 'IfNotPresent'
    c.terminationMessagePath ??= '/dev/termination-log'
    c.terminationMessagePolicy ??= 'File'
  })
  const deadline = spec.activeDeadlineSeconds
  if (deadline !== undefined && (!Number.isInteger(deadline) || (deadline as number) < 1)) {
    throw invalid(t, name, 'spec.activeDeadlineSeconds', `Invalid value: ${JSON.stringify(deadline)}: must be a positive integer`)
  }
  const policy = (spec.restartPolicy ??= 'Always')
  if (policy !== 'Always' && policy !== 'OnFailure' && policy !== 'Never') {
    throw invalid(t, name, 'spec.restartPolicy', `Unsupported value: ${JSON.stringify(policy)}: supported values: "Always", "OnFailure", "Never"`)
  }
  spec.terminationGracePeriodSeconds ??= 30
  spec.dnsPolicy ??= 'ClusterFirst'
  spec.schedulerName ??= 'default-scheduler'
  spec.securityContext ??= {}
  obj.status = { phase: 'Pending', qosClass: 'BestEffort' }
}

function serviceDefaults(t: ResourceType, obj: KubeObject, allocateIp: () => string): void {
  const name = obj.metadata.name
  if (!isDict(obj.spec)) throw invalid(t, name, 'spec', 'Required value')
  const spec = obj.spec
  spec.type ??= 'ClusterIP'
  if (spec.clusterIP === undefined || spec.clusterIP === '') spec.clusterIP = allocateIp()
  spec.clusterIPs ??= [spec.clusterIP]
  spec.sessionAffinity ??= 'None'
  if (spec.ports !== undefined && !Array.isArray(spec.ports)) throw invalid(t, name, 'spec.ports', 'must be a list')
  for (const p of (spec.ports ?? []) as unknown[]) {
    if (!isDict(p) || !Number.isInteger(p.port)) throw invalid(t, name, 'spec.ports.port', 'Required value')
    p.protocol ??= 'TCP'
    p.targetPort ??= p.port
  }
  obj.status = { loadBalancer: {} }
}

/** Fills in defaults and checks required fields of a new object (mutates `obj`). */
export function applyDefaults(t: ResourceType, obj: KubeObject, allocateIp: () => string): void {
  if (t.kind === 'Pod') podDefaults(t, obj)
  else if (t.kind === 'Service') serviceDefaults(t, obj, allocateIp)
  else if (t.kind === 'NetworkPolicy' && !isDict(obj.spec)) throw invalid(t, obj.metadata.name, 'spec', 'Required value')
}
