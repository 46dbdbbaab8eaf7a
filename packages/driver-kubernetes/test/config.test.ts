/** The kubernetes driver's settings from CODEBOX_K8S_* variables: defaults, and each bad value a ValidationError naming its variable. */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { CodeboxError } from '@codebox/core'
import { kubernetesSettingsFromEnv } from '../src/index.ts'

const kubeconfig = {
  apiVersion: 'v1',
  kind: 'Config',
  clusters: [{ name: 'c', cluster: { server: 'https://127.0.0.1:6443', 'insecure-skip-tls-verify': true } }],
  users: [{ name: 'u', user: { token: 'tok' } }],
  contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u', namespace: 'from-context' } }],
  'current-context': 'ctx',
}

describe('kubernetes driver settings from the environment', () => {
  let dir = ''
  let file = ''
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'k8s-settings-'))
    file = path.join(dir, 'kubeconfig')
    await writeFile(file, JSON.stringify(kubeconfig))
  })
  after(async () => {
    await rm(dir, { recursive: true, force: true })
  })
  const base = (): Record<string, string> => ({ CODEBOX_K8S_KUBECONFIG: file, CODEBOX_K8S_SANDBOX_IMAGE: 'registry.example.com/codebox/sandbox:0.1.0' })
  const field = (name: string, message?: RegExp) => (e: unknown) => {
    assert.ok(e instanceof CodeboxError && e.code === 'ValidationError', String(e))
    assert.equal(e.details.field, name)
    if (message) assert.match(e.message, message)
    return true
  }

  it('defaults: the kubeconfig context’s namespace, gvisor, port 7070, no proxies, 120 s to start, the codebox-leader Lease', () => {
    const s = kubernetesSettingsFromEnv(base())
    assert.equal(s.kubeConfigSource, file)
    assert.equal(s.kubeConfig.getCurrentCluster()?.server, 'https://127.0.0.1:6443')
    assert.equal(s.namespace, 'from-context')
    assert.equal(s.image, 'registry.example.com/codebox/sandbox:0.1.0')
    assert.equal(s.runtimeClassName, 'gvisor')
    assert.equal(s.executorPort, 7070)
    assert.deepEqual(s.egressProxies, {})
    assert.equal(s.startTimeoutMs, 120_000)
    assert.equal(s.leaseName, 'codebox-leader')
    assert.equal(s.podName, undefined)
    assert.equal(s.poolSize, 0, 'no cluster pool unless asked for')
    assert.equal(s.poolSizePublic, 0, 'no public warm pods unless asked for')
    assert.equal(s.poolMaxAgeMs, 3_600_000)
  })

  it('every variable is read: namespace, runtime class (empty: none), port, proxies, start timeout, pod name, lease', () => {
    const s = kubernetesSettingsFromEnv({
      ...base(),
      CODEBOX_K8S_NAMESPACE: 'sandboxes',
      CODEBOX_K8S_RUNTIME_CLASS: '',
      CODEBOX_K8S_EXECUTOR_PORT: '9000',
      CODEBOX_K8S_EGRESS_PROXY_PUBLIC: 'egress-public.codebox.svc.cluster.local:3128',
      CODEBOX_K8S_EGRESS_PROXY_VPC: '10.0.0.7:3128',
      CODEBOX_K8S_START_TIMEOUT_SECONDS: '300',
      CODEBOX_K8S_POD_NAME: 'codebox-api-7d9f-abcde',
      CODEBOX_K8S_LEASE: 'my-leader',
      CODEBOX_K8S_POOL_SIZE: '3',
      CODEBOX_K8S_POOL_SIZE_PUBLIC: '2',
      CODEBOX_K8S_POOL_MAX_AGE_SECONDS: '600',
    })
    assert.equal(s.poolSize, 3)
    assert.equal(s.poolSizePublic, 2)
    assert.equal(s.poolMaxAgeMs, 600_000)
    assert.equal(s.namespace, 'sandboxes')
    assert.equal(s.runtimeClassName, null)
    assert.equal(s.executorPort, 9000)
    assert.deepEqual(s.egressProxies, { public: 'egress-public.codebox.svc.cluster.local:3128', vpc: '10.0.0.7:3128' })
    assert.equal(s.startTimeoutMs, 300_000)
    assert.equal(s.podName, 'codebox-api-7d9f-abcde')
    assert.equal(s.leaseName, 'my-leader')
    assert.equal(kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_RUNTIME_CLASS: 'kata-qemu' }).runtimeClassName, 'kata-qemu')
  })

  it('bad values are ValidationErrors naming the variable', () => {
    const { CODEBOX_K8S_SANDBOX_IMAGE: _, ...noImage } = base()
    assert.throws(() => kubernetesSettingsFromEnv(noImage), field('CODEBOX_K8S_SANDBOX_IMAGE', /is required/))
    assert.throws(() => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_SANDBOX_IMAGE: 'a b' }), field('CODEBOX_K8S_SANDBOX_IMAGE'))
    assert.throws(
      () => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_KUBECONFIG: path.join(dir, 'missing') }),
      field('CODEBOX_K8S_KUBECONFIG', /cannot load/),
    )
    assert.throws(() => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_NAMESPACE: 'Not_A_Label' }), field('CODEBOX_K8S_NAMESPACE'))
    assert.throws(() => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_RUNTIME_CLASS: 'GVisor!' }), field('CODEBOX_K8S_RUNTIME_CLASS'))
    assert.throws(() => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_EXECUTOR_PORT: '70000' }), field('CODEBOX_K8S_EXECUTOR_PORT', /from 1 to 65535/))
    assert.throws(() => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_EXECUTOR_PORT: '7070x' }), field('CODEBOX_K8S_EXECUTOR_PORT'))
    assert.throws(
      () => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_EGRESS_PROXY_PUBLIC: 'http://proxy:3128' }),
      field('CODEBOX_K8S_EGRESS_PROXY_PUBLIC', /host:port/),
    )
    assert.throws(() => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_EGRESS_PROXY_VPC: 'proxy:0' }), field('CODEBOX_K8S_EGRESS_PROXY_VPC'))
    assert.throws(() => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_START_TIMEOUT_SECONDS: '1' }), field('CODEBOX_K8S_START_TIMEOUT_SECONDS'))
    assert.throws(() => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_LEASE: 'a/b' }), field('CODEBOX_K8S_LEASE'))
    assert.throws(() => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_POOL_SIZE: '65' }), field('CODEBOX_K8S_POOL_SIZE', /from 0 to 64/))
    assert.throws(
      () => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_EGRESS_PROXY_PUBLIC: '10.0.0.7:3128', CODEBOX_K8S_POOL_SIZE_PUBLIC: '65' }),
      field('CODEBOX_K8S_POOL_SIZE_PUBLIC', /from 0 to 64/),
    )
    assert.throws(
      () => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_POOL_SIZE_PUBLIC: '1' }),
      field('CODEBOX_K8S_POOL_SIZE_PUBLIC', /needs CODEBOX_K8S_EGRESS_PROXY_PUBLIC/),
    )
    assert.throws(
      () => kubernetesSettingsFromEnv({ ...base(), CODEBOX_K8S_POOL_MAX_AGE_SECONDS: '10' }),
      field('CODEBOX_K8S_POOL_MAX_AGE_SECONDS', /from 60 to 86400/),
    )
  })

  it('outside a cluster and without CODEBOX_K8S_KUBECONFIG: Unavailable, saying what to set', () => {
    assert.throws(
      () => kubernetesSettingsFromEnv({ CODEBOX_K8S_SANDBOX_IMAGE: 'img' }),
      (e: unknown) => e instanceof CodeboxError && e.code === 'Unavailable' && /KUBERNETES_SERVICE_HOST.*CODEBOX_K8S_KUBECONFIG/.test(e.message),
    )
  })
})
