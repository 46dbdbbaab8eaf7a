/**
 * Validates a manifest against the Kubernetes OpenAPI schemas of a pinned version, twice over:
 * kubernetes-models (5.1.0, the schemas of Kubernetes 1.36 compiled to validators: types, formats
 * such as quantities, required fields, enums), and a strict walk over @kubernetes/client-node's
 * (2.0.1, generated from the release-1.36 OpenAPI spec) attribute maps that refuses any field the
 * schema does not name, as the API server does with strict field validation. The schemas leave
 * unknown fields open, so the first check alone would let a misspelt field through.
 */
import * as k8s from '@kubernetes/client-node'
import { Deployment } from 'kubernetes-models/apps/v1/Deployment'
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget'
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role'
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding'
import { LimitRange } from 'kubernetes-models/v1/LimitRange'
import { Namespace } from 'kubernetes-models/v1/Namespace'
import { Pod } from 'kubernetes-models/v1/Pod'
import { Service } from 'kubernetes-models/v1/Service'
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount'

interface ModelClass {
  new (data: never): { validate(): void }
  apiVersion: string
  kind: string
}

const models: ModelClass[] = [Pod, Service, ServiceAccount, LimitRange, Namespace, Deployment, NetworkPolicy, PodDisruptionBudget, Role, RoleBinding]

interface Attribute {
  baseName: string
  type: string
}

const generated = k8s as unknown as Record<string, { getAttributeTypeMap?: () => Attribute[] } | undefined>

function strictWalk(value: unknown, type: string, at: string, errors: string[]): void {
  const array = /^Array<(.+)>$/.exec(type)
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type)
  if (array) {
    if (!Array.isArray(value)) errors.push(`${at}: must be a list (${type})`)
    else value.forEach((item, i) => strictWalk(item, array[1]!, `${at}[${i}]`, errors))
  } else if (map) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) errors.push(`${at}: must be a map (${type})`)
    else for (const [k, v] of Object.entries(value)) strictWalk(v, map[1]!, `${at}.${k}`, errors)
  } else if (type === 'string' || type === 'Date') {
    if (typeof value !== 'string') errors.push(`${at}: must be a string`)
  } else if (type === 'number') {
    if (typeof value !== 'number') errors.push(`${at}: must be a number`)
  } else if (type === 'boolean') {
    if (typeof value !== 'boolean') errors.push(`${at}: must be a boolean`)
  } else if (type === 'IntOrString') {
    if (typeof value !== 'string' && typeof value !== 'number') errors.push(`${at}: must be an integer or a string`)
  } else if (type !== 'any') {
    const attributes = generated[type]?.getAttributeTypeMap?.()
    if (attributes === undefined) throw new Error(`${at}: the schema type ${type} is unknown to the validator`)
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      errors.push(`${at}: must be an object (${type})`)
      return
    }
    const byName = new Map(attributes.map((a) => [a.baseName, a.type]))
    for (const [k, v] of Object.entries(value)) {
      const t = byName.get(k)
      if (t === undefined) errors.push(`${at}.${k}: unknown field in ${type}`)
      else strictWalk(v, t, `${at}.${k}`, errors)
    }
  }
}

/** Throws an Error listing every problem of `manifest` (parsed from YAML or built), or returns its `kind/name`. */
export function validateManifest(manifest: unknown): string {
  const m = manifest as { apiVersion?: unknown; kind?: unknown; metadata?: { name?: unknown } }
  const model = models.find((c) => c.apiVersion === m.apiVersion && c.kind === m.kind)
  if (model === undefined) throw new Error(`no schema here for apiVersion ${String(m.apiVersion)} kind ${String(m.kind)}`)
  const id = `${String(m.kind)}/${String(m.metadata?.name)}`
  try {
    new model(manifest as never).validate()
  } catch (e) {
    throw new Error(`${id}: ${(e as Error).message}`, { cause: e })
  }
  const errors: string[] = []
  strictWalk(manifest, `V1${m.kind as string}`, String(m.kind), errors)
  if (errors.length > 0) throw new Error(`${id}: ${errors.join('; ')}`)
  return id
}
