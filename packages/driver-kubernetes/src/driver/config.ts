/**
 * The kubernetes driver's settings from the environment: the CODEBOX_K8S_* variables the Helm
 * chart and the plain manifests set (docs/kubernetes.md, "The API"). A bad value is a
 * ValidationError naming its variable.
 */
import { readFileSync } from 'node:fs'
import { KubeConfig } from '@kubernetes/client-node'
import { CodeboxError, validationError } from '@codebox/core'
import { checkDnsLabel, checkDnsSubdomain, LEASE_NAME } from '../names.ts'
import { EXECUTOR_PORT } from '../manifests/sandbox-pod.ts'

/** Where the in-cluster service account's namespace is, as Kubernetes mounts it. */
export const SERVICE_ACCOUNT_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace'

export interface KubernetesEnvSettings {
  kubeConfig: KubeConfig
  /** Where the kubeconfig came from, for messages: `in-cluster` or the file. */
  kubeConfigSource: string
  namespace: string
  image: string
  /** null: the cluster's default runtime. */
  runtimeClassName: string | null
  executorPort: number
  /** Each profile's egress proxy as `host:port`, when set. */
  egressProxies: { public?: string; vpc?: string }
  startTimeoutMs: number
  /** This replica's name (the Lease holder identity); the host name when unset. */
  podName: string | undefined
  leaseName: string
  /** Free warm pods of the `sandbox` network profile the leader keeps per pooled configuration (CODEBOX_K8S_POOL_SIZE); 0: none. */
  poolSize: number
  /** Free warm pods of the `public` network profile per pooled configuration (CODEBOX_K8S_POOL_SIZE_PUBLIC); default 0: none. */
  poolSizePublic: number
  /** How long a warm pod waits for a session before the leader replaces it (CODEBOX_K8S_POOL_MAX_AGE_SECONDS). */
  poolMaxAgeMs: number
}

type Env = Readonly<Record<string, string | undefined>>

/** CODEBOX_K8S_POOL_SIZE_PUBLIC: public warm pods go through the public proxy, so more than 0 needs it. */
function publicPoolSize(env: Env): number {
  const size = intVar(env, 'CODEBOX_K8S_POOL_SIZE_PUBLIC', 0, 0, 64)
  if (size > 0 && !env.CODEBOX_K8S_EGRESS_PROXY_PUBLIC)
    throw validationError('CODEBOX_K8S_POOL_SIZE_PUBLIC', 'needs CODEBOX_K8S_EGRESS_PROXY_PUBLIC: public warm pods go through the public egress proxy')
  return size
}

const hostPort = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?|\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):(\d{1,5})$/

function proxyVar(env: Env, name: string): string | undefined {
  const value = env[name]
  if (value === undefined || value === '') return undefined
  const m = hostPort.exec(value)
  const port = m ? Number(m[4]) : 0
  if (!m || port < 1 || port > 65535) throw validationError(name, `must be host:port (the egress proxy as the API reaches it), got ${JSON.stringify(value)}`)
  return value
}

function intVar(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = env[name]
  if (value === undefined || value === '') return fallback
  const n = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min || n > max)
    throw validationError(name, `must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`)
  return n
}

/**
 * The kubeconfig: the file CODEBOX_K8S_KUBECONFIG names, else the pod's service account
 * (in-cluster). Unavailable when neither is there.
 */
export function loadKubeConfig(env: Env): { kubeConfig: KubeConfig; source: string } {
  const kc = new KubeConfig()
  const file = env.CODEBOX_K8S_KUBECONFIG
  if (file) {
    try {
      kc.loadFromFile(file)
    } catch (e) {
      throw validationError('CODEBOX_K8S_KUBECONFIG', `cannot load ${file}: ${(e as Error).message}`)
    }
    if (!kc.getCurrentCluster()) throw validationError('CODEBOX_K8S_KUBECONFIG', `${file} has no current context with a cluster`)
    return { kubeConfig: kc, source: file }
  }
  if (!env.KUBERNETES_SERVICE_HOST || !env.KUBERNETES_SERVICE_PORT) {
    throw new CodeboxError(
      'Unavailable',
      'the kubernetes driver runs in a pod of the cluster (KUBERNETES_SERVICE_HOST is not set here) or with CODEBOX_K8S_KUBECONFIG naming a kubeconfig file',
    )
  }
  try {
    kc.loadFromCluster()
  } catch (e) {
    throw new CodeboxError('Unavailable', `cannot load the in-cluster service account: ${(e as Error).message}`, { cause: e })
  }
  return { kubeConfig: kc, source: 'in-cluster' }
}

/** The driver's settings from `env`. */
export function kubernetesSettingsFromEnv(env: Env): KubernetesEnvSettings {
  const image = env.CODEBOX_K8S_SANDBOX_IMAGE
  if (!image)
    throw validationError('CODEBOX_K8S_SANDBOX_IMAGE', 'is required with CODEBOX_DRIVER=kubernetes: the sandbox pods’ image (codebox image export --oci)')
  if (image.length > 512 || /\s/.test(image))
    throw validationError('CODEBOX_K8S_SANDBOX_IMAGE', `is not an image reference: ${JSON.stringify(image.slice(0, 100))}`)
  const runtime = env.CODEBOX_K8S_RUNTIME_CLASS
  let runtimeClassName: string | null = 'gvisor'
  if (runtime === '') runtimeClassName = null
  else if (runtime !== undefined) runtimeClassName = checkDnsSubdomain('CODEBOX_K8S_RUNTIME_CLASS', runtime)
  const { kubeConfig, source } = loadKubeConfig(env)
  let namespace = env.CODEBOX_K8S_NAMESPACE
  if (!namespace && source === 'in-cluster') {
    try {
      namespace = readFileSync(SERVICE_ACCOUNT_NAMESPACE_FILE, 'utf8').trim()
    } catch {
      // named below
    }
  }
  if (!namespace && source !== 'in-cluster') namespace = kubeConfig.getContextObject(kubeConfig.getCurrentContext())?.namespace
  if (!namespace) throw validationError('CODEBOX_K8S_NAMESPACE', 'is required: the namespace of the sandbox pods (the API’s own, from the downward API)')
  checkDnsLabel('CODEBOX_K8S_NAMESPACE', namespace)
  const podName = env.CODEBOX_K8S_POD_NAME || undefined
  if (podName !== undefined) checkDnsSubdomain('CODEBOX_K8S_POD_NAME', podName)
  const leaseName = env.CODEBOX_K8S_LEASE || LEASE_NAME
  checkDnsSubdomain('CODEBOX_K8S_LEASE', leaseName)
  return {
    kubeConfig,
    kubeConfigSource: source,
    namespace,
    image,
    runtimeClassName,
    executorPort: intVar(env, 'CODEBOX_K8S_EXECUTOR_PORT', EXECUTOR_PORT, 1, 65535),
    egressProxies: {
      ...(proxyVar(env, 'CODEBOX_K8S_EGRESS_PROXY_PUBLIC') ? { public: env.CODEBOX_K8S_EGRESS_PROXY_PUBLIC! } : {}),
      ...(proxyVar(env, 'CODEBOX_K8S_EGRESS_PROXY_VPC') ? { vpc: env.CODEBOX_K8S_EGRESS_PROXY_VPC! } : {}),
    },
    startTimeoutMs: intVar(env, 'CODEBOX_K8S_START_TIMEOUT_SECONDS', 120, 5, 3600) * 1000,
    podName,
    leaseName,
    poolSize: intVar(env, 'CODEBOX_K8S_POOL_SIZE', 0, 0, 64),
    poolSizePublic: publicPoolSize(env),
    poolMaxAgeMs: intVar(env, 'CODEBOX_K8S_POOL_MAX_AGE_SECONDS', 3600, 60, 86_400) * 1000,
  }
}
