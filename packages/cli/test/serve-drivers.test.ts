/**
 * The composition root: `codebox serve` registers the drivers of other packages (the kubernetes
 * driver) before the server starts, so CODEBOX_DRIVER=kubernetes creates it through the registry,
 * reading its CODEBOX_K8S_* variables and the sealing key as the server reads it; the server
 * itself imports no concrete driver.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { CodeboxError } from '@codebox/core'
import { KubernetesDriver } from '@codebox/driver-kubernetes'
import { DriverRegistry, drivers, loadEngineConfig } from '@codebox/sandbox'
import { startFakeKubernetes, type FakeKubernetes } from '@codebox/sandbox/testing/kubernetes'
import { registerDrivers } from '../src/commands/serve.ts'

describe('codebox serve: CODEBOX_DRIVER=kubernetes', () => {
  let fake: FakeKubernetes
  let dir = ''
  let env: Record<string, string> = {}
  before(async () => {
    fake = await startFakeKubernetes({ kubelet: false })
    dir = await mkdtemp(path.join(tmpdir(), 'serve-k8s-'))
    await writeFile(path.join(dir, 'kubeconfig'), JSON.stringify(fake.kubeconfig(fake.adminToken, 'codebox')))
    await writeFile(path.join(dir, 'sealing.key'), `${randomBytes(32).toString('base64')}\n`)
    env = {
      CODEBOX_STATE_DIR: path.join(dir, 'state'),
      CODEBOX_DRIVER: 'kubernetes',
      CODEBOX_K8S_KUBECONFIG: path.join(dir, 'kubeconfig'),
      CODEBOX_K8S_SANDBOX_IMAGE: 'registry.example.com/codebox/sandbox:0.1.0',
      CODEBOX_SEALING_KEY_FILE: path.join(dir, 'sealing.key'),
    }
  })
  after(async () => {
    await fake?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('registers the kubernetes driver, which the registry then creates and checks from the environment', async () => {
    registerDrivers(env)
    registerDrivers(env) // a second serve in the same process registers nothing twice
    assert.ok(drivers.has('kubernetes'))
    const driver = await drivers.create('kubernetes', loadEngineConfig(env))
    try {
      assert.ok(driver instanceof KubernetesDriver)
      assert.equal(driver.namespace, 'codebox')
      assert.ok(
        fake.requests.some((r) => r.path === '/apis/node.k8s.io/v1/runtimeclasses/gvisor' && r.status === 200),
        'check() read the RuntimeClass',
      )
    } finally {
      await (driver as KubernetesDriver).close()
    }
  })

  it('without a sealing key the kubernetes driver is a ValidationError naming CODEBOX_SEALING_KEY', async () => {
    const { CODEBOX_SEALING_KEY_FILE: _, ...noKey } = env
    const registry = new DriverRegistry()
    registerDrivers(noKey, registry)
    await assert.rejects(
      registry.create('kubernetes', loadEngineConfig(noKey)),
      (e: unknown) =>
        e instanceof CodeboxError &&
        e.code === 'ValidationError' &&
        e.details.field === 'CODEBOX_SEALING_KEY' &&
        /every replica needs the same key/.test(e.message),
    )
  })
})
