/**
 * Conformance mode: the driver contract suite against a real cluster. It runs when
 * CODEBOX_K8S_CONFORMANCE_KUBECONFIG names a kubeconfig file, with
 * CODEBOX_K8S_CONFORMANCE_NAMESPACE (an existing namespace the kubeconfig's user may create,
 * watch and delete pods in) and CODEBOX_K8S_CONFORMANCE_IMAGE (the sandbox image, pushed where the
 * nodes pull from); CODEBOX_K8S_CONFORMANCE_RUNTIME_CLASS picks the RuntimeClass (unset: gvisor;
 * empty: the cluster's default). The test process dials pod IPs directly, so it must run where
 * they are routable: in a pod of the cluster, or on a node. Besides the contract, a session with a
 * code mount (a hosted agent's bundle, through the pod's init container) must see it read-only at
 * /app. Without the kubeconfig every case is skipped, saying so.
 */
import { randomBytes } from 'node:crypto'
import { after, test } from 'node:test'
import { KubeConfig } from '@kubernetes/client-node'
import { defineDriverTests } from '@codebox/sandbox/testing'
import { checkDnsLabel, KubernetesDriver } from '../src/index.ts'
import { checkCodeSession, makeBundle } from './code-bundle.ts'

const env = process.env
let driver: KubernetesDriver | undefined
const noCluster =
  'no real cluster: set CODEBOX_K8S_CONFORMANCE_KUBECONFIG (with CODEBOX_K8S_CONFORMANCE_NAMESPACE and CODEBOX_K8S_CONFORMANCE_IMAGE) to run the contract against one'

/** The driver on the configured cluster (one for the whole file), or why there is none. */
function conformanceDriver(): KubernetesDriver | { skip: string } {
  const file = env.CODEBOX_K8S_CONFORMANCE_KUBECONFIG
  if (!file) return { skip: noCluster }
  if (driver) return driver
  const namespace = env.CODEBOX_K8S_CONFORMANCE_NAMESPACE
  const image = env.CODEBOX_K8S_CONFORMANCE_IMAGE
  if (!namespace || !image)
    throw new Error('CODEBOX_K8S_CONFORMANCE_KUBECONFIG is set: CODEBOX_K8S_CONFORMANCE_NAMESPACE and CODEBOX_K8S_CONFORMANCE_IMAGE are required too')
  const kubeConfig = new KubeConfig()
  kubeConfig.loadFromFile(file)
  const runtime = env.CODEBOX_K8S_CONFORMANCE_RUNTIME_CLASS
  driver = new KubernetesDriver({
    kubeConfig,
    namespace: checkDnsLabel('CODEBOX_K8S_CONFORMANCE_NAMESPACE', namespace),
    image,
    runtimeClassName: runtime === undefined ? 'gvisor' : runtime === '' ? null : runtime,
    sealingKey: randomBytes(32),
    startTimeoutMs: 300_000,
  })
  return driver
}

defineDriverTests('kubernetes (a real cluster, conformance mode)', async () => conformanceDriver())

test(
  'a real cluster: a session with a code mount sees the bundle read-only at /app',
  { skip: env.CODEBOX_K8S_CONFORMANCE_KUBECONFIG ? false : noCluster },
  async () => {
    const made = conformanceDriver()
    if ('skip' in made) throw new Error(made.skip)
    const bundle = makeBundle()
    try {
      await checkCodeSession(made, bundle.hostPath)
    } finally {
      bundle.remove()
    }
  },
)

after(async () => {
  await driver?.close()
})
