/**
 * The host budget: its arithmetic with injected host facts, its variables, and the manager
 * refusing a start the machine cannot hold (fake driver) while the other sessions keep working.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { CodeboxError, defaultLimits } from '@codebox/core'
import {
  FakeDriver,
  HostBudget,
  SessionManager,
  defaultHostBudgetConfig,
  loadEngineConfig,
  loadHostBudgetConfig,
  type HostBudgetConfig,
  type HostProbe,
} from '@codebox/sandbox'

const MiB = 1024 ** 2
const GiB = 1024 ** 3

/** A host with these facts; `use` changes what the next sample reads. */
function fakeHost(totalMemoryBytes: number, totalPids: number): HostProbe & { use: { usedMemoryBytes: number; usedPids: number } } {
  const use = { usedMemoryBytes: 0, usedPids: 0 }
  return { totalMemoryBytes, totalPids, use, sample: async () => ({ ...use }) }
}

const config = (over: Partial<HostBudgetConfig> = {}): HostBudgetConfig => ({
  memoryOvercommit: 1,
  reserveBytes: 1 * GiB,
  pidsShare: 0.5,
  pidsOvercommit: 1,
  floorBytes: 64 * MiB,
  ...over,
})

const refusedWith =
  (pattern: RegExp) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof CodeboxError, String(e))
    assert.equal(e.code, 'HostCapacity', e.message)
    assert.equal(e.status, 503)
    assert.match(e.message, pattern)
    assert.ok(e.details.asked && e.details.left, 'details say what was asked and what is left')
    return true
  }

describe('host budget arithmetic', () => {
  it('admits declared memory up to overcommit x host memory and says what is left when it refuses', () => {
    const budget = new HostBudget(config({ memoryOvercommit: 2 }), fakeHost(8 * GiB, 100_000))
    for (let i = 0; i < 4; i++) budget.admit({ memoryBytes: 4 * GiB, pids: 16 })
    assert.throws(
      () => budget.admit({ memoryBytes: 1 * GiB, pids: 16 }),
      (e) => {
        refusedWith(/memory limits/)(e)
        const d = (e as CodeboxError).details as { asked: { memoryBytes: number }; left: { memoryBytes: number } }
        assert.equal(d.asked.memoryBytes, 1 * GiB)
        assert.equal(d.left.memoryBytes, 0)
        return true
      },
    )
  })

  it('admits declared pids up to share x overcommit of the host pids; a release gives room back', () => {
    const budget = new HostBudget(config({ pidsShare: 0.5, pidsOvercommit: 2 }), fakeHost(1000 * GiB, 32_768))
    // 32768 x 0.5 x 2 = 32768: eight sessions of 4096 pids fit, a ninth does not.
    const held = Array.from({ length: 8 }, () => budget.admit({ memoryBytes: 64 * MiB, pids: 4096 }))
    assert.throws(() => budget.admit({ memoryBytes: 64 * MiB, pids: 4096 }), refusedWith(/pids limits/))
    budget.release(held[0]!)
    budget.release(held[0]!) // a second release changes nothing
    budget.admit({ memoryBytes: 64 * MiB, pids: 4096 })
    assert.throws(() => budget.admit({ memoryBytes: 64 * MiB, pids: 16 }), refusedWith(/pids limits/))
  })

  it('refuses on what the host actually uses: used memory + a floor per new sandbox within total - reserve', async () => {
    const host = fakeHost(8 * GiB, 100_000)
    const budget = new HostBudget(config({ memoryOvercommit: 1000, reserveBytes: 1 * GiB, floorBytes: 256 * MiB }), host)
    host.use.usedMemoryBytes = 6 * GiB
    await budget.refresh()
    // 8 - 1 - 6 = 1 GiB left: four floors of 256 MiB, not five.
    for (let i = 0; i < 4; i++) budget.admit({ memoryBytes: 2 * GiB, pids: 16 })
    assert.throws(() => budget.admit({ memoryBytes: 2 * GiB, pids: 16 }), refusedWith(/bytes of memory are free/))
    // The next sample shows the sandboxes use little: there is room again.
    host.use.usedMemoryBytes = 6 * GiB + 100 * MiB
    await budget.refresh()
    budget.admit({ memoryBytes: 2 * GiB, pids: 16 })
  })

  it('refuses when the host is short of pids whatever the sessions declare', async () => {
    const host = fakeHost(64 * GiB, 32_768)
    const budget = new HostBudget(config({ pidsShare: 0.75, pidsOvercommit: 1000 }), host)
    host.use.usedPids = 24_570 // 0.75 x 32768 = 24576: six pids left, less than a session's floor
    await budget.refresh()
    assert.throws(() => budget.admit({ memoryBytes: 64 * MiB, pids: 64 }), refusedWith(/pids are free/))
  })

  it('with the defaults, a 24 GiB host with 32768 pids holds 2,000 idle sessions of the default limits', async () => {
    const host = fakeHost(24 * GiB, 32_768)
    const budget = new HostBudget(defaultHostBudgetConfig, host)
    host.use = { usedMemoryBytes: 2 * GiB, usedPids: 300 }
    for (let i = 0; i < 2000; i++) {
      budget.admit({ memoryBytes: 2 * GiB, pids: 512 })
      if (i % 50 === 49) {
        // Each idle session uses ~8 MB and 5 tasks once it has started.
        host.use = { usedMemoryBytes: 2 * GiB + (i + 1) * 8 * 1000 * 1000, usedPids: 300 + (i + 1) * 5 }
        await budget.refresh()
      }
    }
    assert.equal(budget.state.declaredPids, 2000 * 512)
  })

  it('reads its variables once, with defaults, and names a bad one', () => {
    assert.deepEqual(loadHostBudgetConfig({}), defaultHostBudgetConfig)
    const c = loadHostBudgetConfig({ CODEBOX_HOST_MEMORY_OVERCOMMIT: '1.5', CODEBOX_HOST_PIDS_SHARE: '0.5', CODEBOX_HOST_RESERVE_BYTES: '0' })
    assert.equal(c.memoryOvercommit, 1.5)
    assert.equal(c.pidsShare, 0.5)
    assert.equal(c.reserveBytes, 0)
    assert.throws(() => loadHostBudgetConfig({ CODEBOX_HOST_PIDS_SHARE: '2' }), /CODEBOX_HOST_PIDS_SHARE/)
    assert.throws(() => loadHostBudgetConfig({ CODEBOX_HOST_RESERVE_BYTES: '1.5' }), /CODEBOX_HOST_RESERVE_BYTES/)
  })
})

describe('the session manager admits against the host budget', { timeout: 120_000 }, () => {
  it('refuses a start beyond the budget with HostCapacity, leaves the others running, and counts the pool', async () => {
    const host = fakeHost(8 * GiB, 1000)
    const driver = new FakeDriver()
    let created = 0
    const counting = {
      ...driver,
      name: driver.name,
      check: () => driver.check(),
      create: (...a: Parameters<FakeDriver['create']>) => (created++, driver.create(...a)),
    }
    // Declared memory may reach 8 GiB: a pooled session, the refilled warm sandbox and two
    // sessions of their own (2 GiB each) fit; a fifth sandbox does not.
    const manager = new SessionManager({ driver: counting, poolSize: 1, hostBudget: config(), hostProbe: host, defaults: { ...defaultLimits, pids: 100 } })
    try {
      await manager.budget!.refresh()
      const a = await manager.start()
      const b = await manager.start({ limits: { memoryBytes: 2 * GiB, pids: 50 } })
      const c = await manager.start({ limits: { memoryBytes: 2 * GiB, pids: 50 } })
      const before = created
      await assert.rejects(manager.start({ limits: { memoryBytes: 2 * GiB, pids: 50 } }), (e) => {
        refusedWith(/memory limits/)(e)
        const d = (e as CodeboxError).details as { asked: { memoryBytes: number; pids: number }; left: { memoryBytes: number } }
        assert.deepEqual(d.asked, { memoryBytes: 2 * GiB, pids: 50 })
        assert.equal(d.left.memoryBytes, 0)
        return true
      })
      assert.equal(created, before, 'no sandbox was made for the refused start')
      for (const s of [a, b, c]) {
        const r = await s.runCode({ code: 'print(6 * 7)' })
        assert.equal(r.structuredContent.stdout.trim(), '42', `session ${s.id} still answers`)
      }
      // Stopping one gives its room back.
      await c.stop()
      const d = await manager.start({ limits: { memoryBytes: 2 * GiB, pids: 50 } })
      assert.equal(d.status, 'ready')
    } finally {
      await manager.close()
    }
    assert.equal(manager.budget!.state.declaredMemoryBytes, 0, 'close() released every reservation')
  })
})

describe('the count of sessions follows the host budget', { timeout: 120_000 }, () => {
  it('CODEBOX_MAX_SESSIONS is unset by default (the budget admits); a value is a fixed cap; a bad one is named', () => {
    assert.equal(loadEngineConfig({}).maxSessions, undefined)
    assert.equal(loadEngineConfig({ CODEBOX_MAX_SESSIONS: '5000' }).maxSessions, 5000)
    assert.throws(() => loadEngineConfig({ CODEBOX_MAX_SESSIONS: '0' }), /CODEBOX_MAX_SESSIONS/)
    assert.throws(() => loadEngineConfig({ CODEBOX_MAX_SESSIONS: 'many' }), /CODEBOX_MAX_SESSIONS/)
  })

  it('without a cap the manager counts no sessions: the budget is the limit; without a budget, 200', async () => {
    const budgeted = new SessionManager({ driver: new FakeDriver(), poolSize: 0, hostBudget: config(), hostProbe: fakeHost(8 * GiB, 1000) })
    const unbudgeted = new SessionManager({ driver: new FakeDriver(), poolSize: 0, hostBudget: false })
    try {
      assert.equal(budgeted.maxSessions, undefined)
      assert.equal(unbudgeted.maxSessions, 200)
      // With the budget, the host decides: a host with room for two sandboxes beyond its reserve
      // admits two, and the third is refused for memory, not for a count.
      const host = fakeHost(1 * GiB + 2 * 64 * MiB, 100_000)
      const small = new SessionManager({ driver: new FakeDriver(), poolSize: 0, hostBudget: config({ memoryOvercommit: 1000 }), hostProbe: host })
      try {
        await small.budget!.refresh()
        await small.start({ limits: { memoryBytes: 256 * MiB } })
        await small.start({ limits: { memoryBytes: 256 * MiB } })
        await assert.rejects(small.start({ limits: { memoryBytes: 256 * MiB } }), refusedWith(/bytes of memory are free/))
      } finally {
        await small.close()
      }
    } finally {
      await budgeted.close()
      await unbudgeted.close()
    }
  })

  it('a fixed cap refuses the start beyond it with HostCapacity (503, retry later), whatever the budget has left', async () => {
    const manager = new SessionManager({ driver: new FakeDriver(), poolSize: 0, maxSessions: 2, hostBudget: config(), hostProbe: fakeHost(64 * GiB, 100_000) })
    try {
      await manager.start()
      await manager.start()
      await assert.rejects(
        manager.start(),
        (e) => e instanceof CodeboxError && e.code === 'HostCapacity' && e.status === 503 && /2 sessions are running/.test(e.message),
      )
    } finally {
      await manager.close()
    }
  })
})
