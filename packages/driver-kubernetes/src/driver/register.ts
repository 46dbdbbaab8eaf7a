/**
 * The kubernetes driver's registration, for the composition root (the CLI's `serve`): the driver
 * package depends on the sandbox package, never the other way, so the server learns of it only
 * through `drivers.register` before it starts (packages/sandbox/src/drivers/registry.ts).
 */
import { hostname } from 'node:os'
import type { DriverRegistration, DriverRegistry } from '@codebox/sandbox'
import { kubernetesSettingsFromEnv } from './config.ts'
import { KubernetesDriver } from './driver.ts'

export interface KubernetesRegistrationOptions {
  /** The environment the CODEBOX_K8S_* variables are read from (when the driver is created, not before). */
  env: Readonly<Record<string, string | undefined>>
  /**
   * The store's sealing key, the same on every replica (the server's CODEBOX_SEALING_KEY or
   * CODEBOX_SEALING_KEY_FILE); throws a ValidationError naming the variable when there is none.
   */
  sealingKey: () => Buffer
}

/** The registration of the `kubernetes` driver: created (and checked) only when CODEBOX_DRIVER or an interpreter names it. */
export function kubernetesDriverRegistration(options: KubernetesRegistrationOptions): DriverRegistration {
  return {
    name: 'kubernetes',
    description: 'one pod per session on a Kubernetes cluster (CODEBOX_K8S_* variables; docs/kubernetes.md)',
    async create() {
      const settings = kubernetesSettingsFromEnv(options.env)
      const driver = new KubernetesDriver({
        kubeConfig: settings.kubeConfig,
        namespace: settings.namespace,
        image: settings.image,
        runtimeClassName: settings.runtimeClassName,
        executorPort: settings.executorPort,
        egressProxies: settings.egressProxies,
        startTimeoutMs: settings.startTimeoutMs,
        sealingKey: options.sealingKey(),
        leader: { leaseName: settings.leaseName, identity: settings.podName ?? hostname() },
        ...(settings.poolSize > 0 || settings.poolSizePublic > 0
          ? { pool: { size: settings.poolSize, publicSize: settings.poolSizePublic, maxAgeMs: settings.poolMaxAgeMs } }
          : {}),
      })
      try {
        await driver.check()
      } catch (e) {
        await driver.close()
        throw e
      }
      return driver
    },
  }
}

/** Registers the kubernetes driver in `registry` unless a driver of that name is there already. */
export function registerKubernetesDriver(registry: DriverRegistry, options: KubernetesRegistrationOptions): void {
  if (!registry.has('kubernetes')) registry.register(kubernetesDriverRegistration(options))
}
