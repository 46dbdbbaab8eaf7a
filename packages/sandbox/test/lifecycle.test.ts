/**
 * Session lifecycle on the bwrap driver: stop() leaves no process, cgroup or usable handle
 * behind; idle timeout and max lifetime end sessions; the warm pool hands over fresh sandboxes
 * and never reuses one; close() ends everything the manager started.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { CodeboxError, type ErrorCode } from '@codebox/core'
import { SessionManager } from '@codebox/sandbox'
import { within } from './driver-contract.ts'
import { bwrapDriver, bwrapManager, bwrapUnavailable, py, recordingDriver, sandboxCgroups, withSession } from './fixtures.ts'

const unavailable = await bwrapUnavailable()
const MiB = 1024 ** 2

const isError =
  (code: ErrorCode) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof CodeboxError, `expected a CodeboxError, got ${String(e)}`)
    assert.equal(e.code, code, e.message)
    return true
  }

/** Polls `condition` every 20 ms; fails naming `what` after `ms`. */
async function waitFor(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`${what} (waited ${ms} ms)`)
    await delay(20)
  }
}

async function uidOf(pid: number): Promise<number | undefined> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const m = /^Uid:\s+(\d+)/m.exec(status)
  return m ? Number(m[1]) : undefined
}

/**
 * Host processes whose real uid is `uid`, zombies left out: a killed sandbox's pid 1 is
 * reparented to the host's init, which reaps it in its own time.
 */
async function liveProcessesOf(uid: number): Promise<number[]> {
  const pids = (await readdir('/proc')).filter((n) => /^\d+$/.test(n)).map(Number)
  const owners = await Promise.all(pids.map(uidOf))
  const states = await Promise.all(pids.map(async (p) => /\) (\S)/.exec(await readFile(`/proc/${p}/stat`, 'utf8').catch(() => ''))?.[1]))
  return pids.filter((_, i) => owners[i] === uid && states[i] !== 'Z' && states[i] !== 'X')
}

describe('session lifecycle (bwrap)', { skip: unavailable }, () => {
  let manager: SessionManager

  before(async () => {
    manager = await bwrapManager()
  })
  after(async () => {
    await manager?.close()
  })

  it('stop() kills every process, removes the cgroups, and the session cannot be used again', async () => {
    const s = await manager.start()
    try {
      await s.tasks.start('sleep 600')
      await py(s, 'x = 1')
      const cgroups = sandboxCgroups(s.sandboxId)
      const pids = (await readFile(cgroups.procs, 'utf8')).split('\n').filter(Boolean).map(Number)
      assert.ok(pids.length >= 4, `bwrap, the executor, the kernel and the task run: ${pids.join(' ')}`)
      const uids = new Set(await Promise.all(pids.map(uidOf)))
      assert.equal(uids.size, 1, `one owner for all processes: ${[...uids].join(' ')}`)
      const uid = [...uids][0]!
      assert.ok(uid >= 2_000_000, `the sandbox runs as its own unprivileged uid, not ${uid}`)
      const byNumber = (a: number, b: number): number => a - b
      assert.deepEqual((await liveProcessesOf(uid)).sort(byNumber), [...pids].sort(byNumber), 'the uid owns exactly the cgroup’s processes')

      await s.stop()
      assert.equal(s.status, 'terminated')
      assert.equal(s.endReason, 'stopped')
      for (const dir of cgroups.dirs) assert.equal(existsSync(dir), false, `${dir} was removed`)
      assert.deepEqual(await liveProcessesOf(uid), [], `no host process runs as uid ${uid}`)

      for (const call of [
        () => s.runCode({ code: 'print(x)' }),
        () => s.commands.run('true'),
        () => s.files.list(),
        () => s.files.write('a.txt', 'a'),
        () => s.tasks.get('task-1'),
      ]) {
        await assert.rejects(call(), (e) => isError('SessionTerminated')(e) && /has ended \(stopped\)/.test((e as Error).message))
      }
      assert.throws(() => manager.get(s.id), isError('NotFound'))
      await assert.rejects(manager.stop(s.id), isError('NotFound'))
      await within(s.stop(), 5_000, 'a second stop() hung')
    } finally {
      await s.stop()
    }
  })

  describe('sessions end on their own', { concurrency: true }, () => {
    it('an idle session ends after idleTimeoutMs; one with a call running does not', async () => {
      const started = Date.now()
      const idle = await manager.start({ limits: { idleTimeoutMs: 1000 } })
      const busy = await manager.start({ limits: { idleTimeoutMs: 1000 } })
      try {
        const call = busy.runCode({ code: 'import time\ntime.sleep(1.5)\nprint("done")' })
        await waitFor(() => idle.status === 'terminated', 5_000, 'the idle session did not end')
        assert.ok(Date.now() - started >= 990, `ended after ${Date.now() - started} ms`)
        assert.equal(idle.endReason, 'idle-timeout')
        await idle.stop() // idempotent: waits for the sandbox to be gone, keeps the reason
        assert.equal(idle.endReason, 'idle-timeout')
        assert.throws(() => manager.get(idle.id), isError('NotFound'))
        await assert.rejects(idle.runCode({ code: 'print(1)' }), isError('SessionTerminated'))

        assert.equal((await call).structuredContent.stdout, 'done\n')
        assert.equal(busy.status, 'ready')
        assert.equal(await py(busy, 'print("still here")'), 'still here\n')
      } finally {
        await Promise.all([idle.stop(), busy.stop()])
      }
    })

    it('a session ends at maxLifetimeMs, even in the middle of a call', async () => {
      await withSession(
        manager,
        async (s) => {
          const started = performance.now()
          await assert.rejects(s.runCode({ code: 'import time\ntime.sleep(30)' }), isError('SessionTerminated'))
          const took = performance.now() - started
          assert.ok(took < 5_000, `the call ended ${took.toFixed(0)} ms after it started`)
          assert.equal(s.endReason, 'max-lifetime')
          assert.throws(() => manager.get(s.id), isError('NotFound'))
        },
        { maxLifetimeMs: 1000 },
      )
    })
  })

  it('the warm pool hands over a ready sandbox, refills, and never reuses one', async (t) => {
    const { driver, created } = recordingDriver(await bwrapDriver())
    await using pooled = new SessionManager({ driver, poolSize: 1 })
    await waitFor(() => pooled.warmCount === 1, 30_000, 'the pool never got a warm sandbox')

    let started = performance.now()
    const cold = await manager.start()
    const coldStartMs = performance.now() - started
    await py(cold, 'print(1)')
    const coldTotalMs = performance.now() - started
    await cold.stop()

    started = performance.now()
    const first = await pooled.start()
    const pooledStartMs = performance.now() - started
    await py(first, 'print(1)')
    const pooledTotalMs = performance.now() - started
    t.diagnostic(
      `start(): cold ${coldStartMs.toFixed(1)} ms (${coldTotalMs.toFixed(1)} ms with a first cell), pooled ${pooledStartMs.toFixed(1)} ms (${pooledTotalMs.toFixed(1)} ms)`,
    )
    try {
      assert.ok(pooledStartMs < 50, `a pooled start took ${pooledStartMs.toFixed(1)} ms`)
      assert.equal(first.sandboxId, created[0]?.sandbox.id, 'the session got the warm sandbox')
      await waitFor(() => pooled.warmCount === 1 && created.length === 2, 30_000, 'the pool did not refill')

      await py(first, 'secret = "first session"')
      await first.files.write('mine.txt', 'first session')
      await first.stop()
      assert.equal(pooled.warmCount, 1, 'a used sandbox does not go back to the pool')

      const second = await pooled.start()
      assert.notEqual(second.sandboxId, first.sandboxId)
      assert.equal(second.sandboxId, created[1]?.sandbox.id)
      assert.equal(await py(second, 'print("secret" in dir())'), 'False\n')
      assert.deepEqual(await second.files.list(), [])

      await waitFor(() => pooled.warmCount === 1, 30_000, 'the pool did not refill')
      const custom = await pooled.start({ limits: { memoryBytes: 512 * MiB } })
      assert.equal(pooled.warmCount, 1, 'a session with other limits does not take the warm sandbox')
      assert.equal((await readFile(sandboxCgroups(custom.sandboxId).memoryMax, 'utf8')).trim(), String(512 * MiB))
    } finally {
      await first.stop()
    }
  })

  it('close() stops every session and warm sandbox', async () => {
    const { driver, created } = recordingDriver(await bwrapDriver())
    const closing = new SessionManager({ driver, poolSize: 1 })
    const sessions = [await closing.start(), await closing.start()]
    await waitFor(() => closing.warmCount === 1, 30_000, 'the pool never got a warm sandbox')
    assert.equal(created.length, 3)

    await closing.close()
    for (const s of sessions) {
      assert.equal(s.status, 'terminated')
      assert.equal(s.endReason, 'shutdown')
    }
    assert.deepEqual(closing.list(), [])
    assert.equal(closing.warmCount, 0)
    for (const { sandbox } of created) {
      await within(sandbox.exited, 5_000, `sandbox ${sandbox.id} still runs`)
      for (const dir of sandboxCgroups(sandbox.id).dirs) assert.equal(existsSync(dir), false, `${dir} was removed`)
    }
    await assert.rejects(closing.start(), isError('Unavailable'))
  })
})
