/**
 * The warm pool on its own (no sandboxes): sandboxes per configuration, the default one always
 * pooled, another pooled from its first use, the least recently used dropped beyond maxConfigs;
 * and the engine's variables that set the pool and the default preload.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CodeboxError, defaultLimits, defaultPreload } from '@codebox/core'
import { FakeDriver, SessionManager, loadEngineConfig } from '@codebox/sandbox'
import { WarmPool, poolKey, type PoolConfig } from '../src/pool.ts'

interface Fake {
  config: PoolConfig
  n: number
  dead?: boolean
}

function fakePool(options: { size: number; maxConfigs: number }): { pool: WarmPool<Fake>; booted: Fake[]; discarded: Fake[] } {
  const booted: Fake[] = []
  const discarded: Fake[] = []
  const pool = new WarmPool<Fake>(lean, {
    ...options,
    boot: async (config) => {
      const w = { config, n: booted.length }
      booted.push(w)
      return w
    },
    discard: async (w) => void (w && discarded.push(w)),
    usable: (w) => !w.dead,
  })
  return { pool, booted, discarded }
}

const lean: PoolConfig = { limits: defaultLimits, preload: [] }
const data: PoolConfig = { limits: defaultLimits, preload: ['numpy', 'pandas'] }
const small: PoolConfig = { limits: { ...defaultLimits, memoryBytes: 512 * 1024 ** 2 }, preload: [] }
const tick = (): Promise<void> => new Promise((r) => setImmediate(r))

test('configurations that build the same sandbox share a key; limits applied per call do not count', () => {
  assert.equal(poolKey(lean), poolKey({ limits: { ...defaultLimits, callTimeoutMs: 1000, idleTimeoutMs: 5000 }, preload: [] }))
  assert.notEqual(poolKey(lean), poolKey(data))
  assert.notEqual(poolKey(lean), poolKey(small))
  assert.notEqual(poolKey(data), poolKey({ ...data, preload: ['pandas', 'numpy'] }), 'the order of a preload is the order of its imports')
})

test('the default configuration is filled at once; another is pooled after its first request', async () => {
  const { pool, booted } = fakePool({ size: 2, maxConfigs: 4 })
  await tick()
  assert.equal(pool.readyCount, 2)
  assert.deepEqual(
    booted.map((w) => w.config),
    [lean, lean],
  )
  assert.equal(await pool.take(data), undefined, 'nothing pooled for a configuration never asked for')
  pool.fill()
  await tick()
  assert.equal(booted.filter((w) => w.config === data).length, 2, 'the data configuration is pooled from now on')
  const w = await pool.take(data)
  assert.equal(w?.config, data)
  assert.equal(pool.readyCount, 3)
  const l = await pool.take({ limits: { ...defaultLimits }, preload: [] })
  assert.equal(l?.config, lean, 'an equal configuration finds the default one’s sandboxes')
  await pool.close()
})

test('a sandbox whose executor went away is discarded, not handed over', async () => {
  const { pool, booted, discarded } = fakePool({ size: 2, maxConfigs: 4 })
  await tick()
  booted[0]!.dead = true
  const w = await pool.take(lean)
  assert.equal(w, booted[1])
  assert.deepEqual(discarded, [booted[0]])
  await pool.close()
})

test('beyond maxConfigs the least recently used configuration is dropped, never the default one', async () => {
  const { pool, discarded } = fakePool({ size: 1, maxConfigs: 2 })
  await pool.take(data)
  pool.fill()
  await tick()
  assert.deepEqual(
    pool.configs.map((c) => c.preload),
    [[], ['numpy', 'pandas']],
  )
  await pool.take(small)
  await tick()
  assert.deepEqual(pool.configs, [lean, small], 'data, used least recently, made room for small')
  assert.ok(
    discarded.some((w) => w.config === data),
    'its warm sandbox was destroyed',
  )
  await pool.close()
  assert.equal(pool.readyCount, 0)
})

test('size 0 pools nothing, not even the default configuration', async () => {
  const { pool, booted } = fakePool({ size: 0, maxConfigs: 4 })
  assert.equal(await pool.take(lean), undefined)
  pool.fill()
  await tick()
  assert.equal(booted.length, 0)
})

test('CODEBOX_PRELOAD: the data stack by default, none when empty, a bad name refused by position', () => {
  assert.deepEqual(loadEngineConfig({}).preload, defaultPreload)
  assert.deepEqual(loadEngineConfig({ CODEBOX_PRELOAD: '' }).preload, [])
  assert.deepEqual(loadEngineConfig({ CODEBOX_DRIVER: 'fake' }).preload, [], 'the fake driver runs the host’s Python')
  assert.deepEqual(loadEngineConfig({ CODEBOX_DRIVER: 'fake', CODEBOX_PRELOAD: 'fractions' }).preload, ['fractions'])
  assert.deepEqual(loadEngineConfig({ CODEBOX_PRELOAD: ' numpy , scipy.stats,numpy' }).preload, ['numpy', 'scipy.stats'])
  assert.throws(
    () => loadEngineConfig({ CODEBOX_PRELOAD: 'numpy,../etc' }),
    (e: unknown) =>
      e instanceof CodeboxError && e.code === 'ValidationError' && /CODEBOX_PRELOAD\[1\]: "\.\.\/etc" is not a Python module name/.test(e.message),
  )
  assert.equal(loadEngineConfig({}).poolRefillDelayMs, 1000)
  assert.equal(loadEngineConfig({ CODEBOX_POOL_REFILL_DELAY_MS: '0' }).poolRefillDelayMs, 0)
  assert.throws(() => loadEngineConfig({ CODEBOX_POOL_REFILL_DELAY_MS: '-1' }), /CODEBOX_POOL_REFILL_DELAY_MS/)
})

test('with poolRefillDelayMs the replacement of a handed-over sandbox is not started with the session; without, it is', async () => {
  for (const poolRefillDelayMs of [60_000, 0]) {
    const driver = new FakeDriver()
    let created = 0
    const counting = { name: driver.name, check: () => driver.check(), create: (...a: Parameters<FakeDriver['create']>) => (created++, driver.create(...a)) }
    const manager = new SessionManager({ driver: counting, poolSize: 1, poolRefillDelayMs, hostBudget: false })
    try {
      const end = Date.now() + 30_000
      while (manager.warmCount < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
      assert.equal(created, 1)
      const s = await manager.start()
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
      assert.equal(created, poolRefillDelayMs ? 1 : 2, `poolRefillDelayMs ${poolRefillDelayMs}: sandboxes created after the hand-over`)
      await s.stop()
    } finally {
      await manager.close()
    }
  }
})
