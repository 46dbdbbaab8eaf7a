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
import { egressProxyLabels, egressProxyName } from './names.ts'

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

function strings(path: string, v: unknown): string[] {
  if (!Array.isArray(v)) throw validationError(path, 'must be a list')
  return v.map((s, i) => str(`${path}[${i}]`, s))
}

/**
 * A profile's proxy: the built-in one (`external` empty: codebox-egress-<profile> and its pods),
 * or `external` ({address, podLabels, namespaceLabels, port}), a proxy you run.
 */
function profile(values: Obj, name: 'public' | 'vpc', builtInPort: number): { builtIn: boolean; address: string; selector: EgressProxySelector } {
  const path = `networkProfiles.${name}.external`
  const p = obj(`networkProfiles.${name}`, obj('networkProfiles', values.networkProfiles)[name])
  const external = obj(path, p.external ?? {})
  if (Object.keys(external).length === 0)
    return { builtIn: true, address: `${egressProxyName(name)}:${builtInPort}`, selector: { podLabels: egressProxyLabels(name), port: builtInPort } }
  const namespaceLabels = labels(`${path}.namespaceLabels`, external.namespaceLabels)
  return {
    builtIn: false,
    address: str(`${path}.address`, external.address),
    selector: {
      podLabels: labels(`${path}.podLabels`, external.podLabels),
      ...(Object.keys(namespaceLabels).length > 0 ? { namespaceLabels } : {}),
      port: int(`${path}.port`, external.port),
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
  const proxy = obj('egressProxy', v.egressProxy)
  const proxyPort = int('egressProxy.port', proxy.port)
  const denied = obj('egressProxy.deniedCidrs', proxy.deniedCidrs)
  const pub = profile(v, 'public', proxyPort)
  const vpc = profile(v, 'vpc', proxyPort)
  const image_ = `${str('image.repository', image.repository)}:${str('image.tag', image.tag)}`
  const sealingKey = { name: str('sealingKey.secretName', sealing.secretName), key: str('sealingKey.secretKey', sealing.secretKey) }
  return {
    namespace,
    api: {
      image: image_,
      imagePullPolicy: pullPolicy,
      replicas: int('replicas', v.replicas),
      sandboxImage: str('sandbox.image', sandbox.image),
      runtimeClassName: runtimeClassName === '' ? null : runtimeClassName,
      poolSize: int('sandbox.poolSize', sandbox.poolSize),
      poolSizePublic: int('sandbox.poolSizePublic', sandbox.poolSizePublic),
      database: { name: str('postgres.secretName', postgres.secretName), key: str('postgres.secretKey', postgres.secretKey) },
      sealingKey,
      egressProxies: { public: pub.address, vpc: vpc.address },
      allowedHosts: allowed.map((h, i) => str(`api.allowedHosts[${i}]`, h)),
      resources: obj('api.resources', api.resources) as ResourceRequirements,
    },
    egress: { public: pub.selector, vpc: vpc.selector },
    egressProxy: {
      profiles: [...(pub.builtIn ? (['public'] as const) : []), ...(vpc.builtIn ? (['vpc'] as const) : [])],
      image: image_,
      imagePullPolicy: pullPolicy,
      replicas: int('egressProxy.replicas', proxy.replicas),
      port: proxyPort,
      resources: obj('egressProxy.resources', proxy.resources) as ResourceRequirements,
      sealingKey,
      vpcTrusted: str('egressProxy.vpcTrusted', proxy.vpcTrusted),
      deniedCidrs: { ipv4: strings('egressProxy.deniedCidrs.ipv4', denied.ipv4), ipv6: strings('egressProxy.deniedCidrs.ipv6', denied.ipv6) },
    },
    sandboxMaxima: {
      memory: str('sandbox.maxLimits.memory', max.memory),
      cpu: str('sandbox.maxLimits.cpu', max.cpu),
      ephemeralStorage: str('sandbox.maxLimits.ephemeralStorage', max.ephemeralStorage),
    },
  }
}
