/**
 * The Helm chart's values (deploy/helm/codebox/values.yaml) as the builders' InstallOptions: the
 * one mapping the chart's templates mirror, and what the plain manifests (deploy/kubernetes/) are
 * generated from, so both carry the same defaults. A value of the wrong shape is a ValidationError
 * naming its path in values.yaml.
 */
import type { ResourceRequirements } from 'kubernetes-types/core/v1.js'
import { validationError } from '@codebox/core'
import type { InstallOptions } from './manifests/install.ts'
import type { EgressProxySelector } from './manifests/network-policies.ts'

type Obj = Record<string, unknown>

function obj(path: string, v: unknown): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw validationError(path, 'must be a map')
  return v as Obj
}

function str(path: string, v: unknown): string {
  if (typeof v !== 'string') throw validationError(path, `must be a string, got ${JSON.stringify(v)}`)
  return v
}

function int(path: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw validationError(path, `must be a whole number, got ${JSON.stringify(v)}`)
  return v
}

function labels(path: string, v: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, value] of Object.entries(obj(path, v ?? {}))) out[k] = str(`${path}.${k}`, value)
  return out
}

function profile(values: Obj, name: 'public' | 'vpc'): { address: string; selector: EgressProxySelector } {
  const path = `networkProfiles.${name}`
  const p = obj(path, obj('networkProfiles', values.networkProfiles)[name])
  const namespaceLabels = labels(`${path}.namespaceLabels`, p.namespaceLabels)
  return {
    address: str(`${path}.address`, p.address),
    selector: {
      podLabels: labels(`${path}.podLabels`, p.podLabels),
      ...(Object.keys(namespaceLabels).length > 0 ? { namespaceLabels } : {}),
      port: int(`${path}.port`, p.port),
    },
  }
}

/** The install options of the chart's `values` (values.yaml parsed, with any overrides applied) in `namespace`. */
export function installOptionsFromValues(values: unknown, namespace: string): InstallOptions {
  const v = obj('values', values)
  const image = obj('image', v.image)
  const api = obj('api', v.api)
  const sandbox = obj('sandbox', v.sandbox)
  const max = obj('sandbox.maxLimits', sandbox.maxLimits)
  const postgres = obj('postgres', v.postgres)
  const sealing = obj('sealingKey', v.sealingKey)
  const allowed = api.allowedHosts ?? []
  if (!Array.isArray(allowed)) throw validationError('api.allowedHosts', 'must be a list')
  const runtimeClassName = str('sandbox.runtimeClassName', sandbox.runtimeClassName)
  const pullPolicy = str('image.pullPolicy', image.pullPolicy)
  if (pullPolicy !== 'Always' && pullPolicy !== 'IfNotPresent' && pullPolicy !== 'Never')
    throw validationError('image.pullPolicy', `must be Always, IfNotPresent or Never, got ${pullPolicy}`)
  const pub = profile(v, 'public')
  const vpc = profile(v, 'vpc')
  return {
    namespace,
    api: {
      image: `${str('image.repository', image.repository)}:${str('image.tag', image.tag)}`,
      imagePullPolicy: pullPolicy,
      replicas: int('replicas', v.replicas),
      sandboxImage: str('sandbox.image', sandbox.image),
      runtimeClassName: runtimeClassName === '' ? null : runtimeClassName,
      poolSize: int('sandbox.poolSize', sandbox.poolSize),
      database: { name: str('postgres.secretName', postgres.secretName), key: str('postgres.secretKey', postgres.secretKey) },
      sealingKey: { name: str('sealingKey.secretName', sealing.secretName), key: str('sealingKey.secretKey', sealing.secretKey) },
      egressProxies: { public: pub.address, vpc: vpc.address },
      allowedHosts: allowed.map((h, i) => str(`api.allowedHosts[${i}]`, h)),
      resources: obj('api.resources', api.resources) as ResourceRequirements,
    },
    egress: { public: pub.selector, vpc: vpc.selector },
    sandboxMaxima: {
      memory: str('sandbox.maxLimits.memory', max.memory),
      cpu: str('sandbox.maxLimits.cpu', max.cpu),
      ephemeralStorage: str('sandbox.maxLimits.ephemeralStorage', max.ephemeralStorage),
    },
  }
}
