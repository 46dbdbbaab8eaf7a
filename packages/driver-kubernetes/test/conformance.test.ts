/**
 * Conformance mode: the driver contract suite against a real cluster. It runs when
 * CODEBOX_K8S_CONFORMANCE_KUBECONFIG names a kubeconfig file, with
 * CODEBOX_K8S_CONFORMANCE_NAMESPACE (an existing namespace the kubeconfig's user may create,
 * watch and delete pods in) and CODEBOX_K8S_CONFORMANCE_IMAGE (the sandbox image, pushed where the
 * nodes pull from); CODEBOX_K8S_CONFORMANCE_RUNTIME_CLASS picks the RuntimeClass (unset: gvisor;
 * empty: the cluster's default). The test process dials pod IPs directly, so it must run where
 * they are routable: in a pod of the cluster, or on a node. Without the kubeconfig every case is
 * skipped, saying so.
 */
import { randomBytes } from 'node:crypto'
import { after } from 'node:test'
import { KubeConfig } from '@kubernetes/client-node'
import { defineDriverTests } from '@codebox/sandbox/testing'
import { checkDnsLabel, KubernetesDriver } from '../src/index.ts'

const env = process.env
let driver: KubernetesDriver | undefined

defineDriverTests('kubernetes (a real cluster, conformance mode)', async () => {
  const file = env.CODEBOX_K8S_CONFORMANCE_KUBECONFIG
  if (!file) {
    return {
      skip: 'no real cluster: set CODEBOX_K8S_CONFORMANCE_KUBECONFIG (with CODEBOX_K8S_CONFORMANCE_NAMESPACE and CODEBOX_K8S_CONFORMANCE_IMAGE) to run the contract against one',
    }
  }
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
})

after(async () => {
  await driver?.close()
})
