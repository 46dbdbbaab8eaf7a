/**
 * The driver registry: the engine creates the driver its config names; an unknown name is a
 * ValidationError listing the registered ones; a driver from elsewhere registers and is created
 * the same way, with the engine's context (image, runtime dir).
 */
import assert from 'node:assert/strict'
import { describe, it, test } from 'node:test'
import { CodeboxError, type SandboxDriver } from '@codebox/core'
import { createDriver, DriverRegistry, drivers, FakeDriver, loadEngineConfig, SessionManager, type DriverContext } from '../src/index.ts'

test('the built-in drivers are registered; the config picks one by name', async () => {
  assert.deepEqual(drivers.names().slice(0, 3), ['bwrap', 'gvisor', 'fake'])
  const driver = await createDriver(loadEngineConfig({ CODEBOX_DRIVER: 'fake', CODEBOX_STATE_DIR: '/nonexistent' }))
  assert.ok(driver instanceof FakeDriver)
})

test('a name nobody registered names the field and the registered drivers', async () => {
  await assert.rejects(
    createDriver(loadEngineConfig({ CODEBOX_DRIVER: 'firecracker' })),
    (e: unknown) =>
      e instanceof CodeboxError && e.code === 'ValidationError' && /CODEBOX_DRIVER: must be one of bwrap, gvisor, fake.*, got "firecracker"/.test(e.message),
  )
  assert.throws(() => loadEngineConfig({ CODEBOX_DRIVER: 'Not A Name!' }), /CODEBOX_DRIVER: must be a driver name/)
})

test('a driver from another package registers and gets the engine context', async () => {
  const registry = new DriverRegistry()
  let seen: DriverContext | undefined
  const made = new FakeDriver()
  registry.register({
    name: 'elsewhere',
    description: 'a test driver',
    create: async (context) => {
      seen = context
      return made as SandboxDriver
    },
  })
  assert.throws(() => registry.register({ name: 'elsewhere', description: 'again', create: async () => made }), /already registered/)
  assert.throws(() => registry.register({ name: 'Bad Name', description: 'x', create: async () => made }), /not a lower-case name/)
  const config = loadEngineConfig({ CODEBOX_DRIVER: 'elsewhere', CODEBOX_STATE_DIR: '/tmp/codebox-registry-test' })
  assert.equal(await registry.create('elsewhere', config), made)
  assert.equal(seen?.runtimeDir, '/tmp/codebox-registry-test/runtime')
  await assert.rejects(seen!.imagePath(), (e: unknown) => e instanceof CodeboxError && e.code === 'Unavailable' && /codebox image build/.test(e.message))
})

describe('adopt() names why a session cannot be re-adopted', () => {
  it('a driver without attach: its sessions fail with the reason, and nothing else is touched', async () => {
    const manager = new SessionManager({ driver: new FakeDriver(), poolSize: 0, driverFor: async () => new FakeDriver() })
    try {
      const outcome = await manager.adopt([
        { sessionId: 'a', sandboxId: 'sb-a', limits: manager.defaults, createdAt: new Date() },
        { sessionId: 'b', sandboxId: 'sb-b', limits: manager.defaults, createdAt: new Date(), driver: 'fake' },
      ])
      assert.deepEqual(outcome.adopted, [])
      assert.equal(outcome.removed, 0)
      assert.deepEqual(
        outcome.failed.sort((x, y) => x.sessionId.localeCompare(y.sessionId)),
        [
          { sessionId: 'a', reason: "the fake driver's sandboxes end with the server that started them" },
          { sessionId: 'b', reason: "the fake driver's sandboxes end with the server that started them" },
        ],
      )
      assert.equal(manager.list().length, 0)
    } finally {
      await manager.close()
    }
  })
})
