/**
 * Faults inside a sandbox, on the bwrap driver: the kernel, the executor or the whole sandbox
 * killed in the middle of a call. Each time the call ends with a clear error naming what died,
 * the session is marked as its fault leaves it (a dead kernel: the session goes on with a new
 * kernel; a dead executor or sandbox: the session ends, `sandbox-exited`), and another session,
 * running a cell at the same moment, is untouched. And a sandbox that never says ready (the fake
 * driver, any host) fails its start with a retryable 503.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { CodeboxError } from '@codebox/core'
import { FakeDriver, SessionManager, type Session } from '@codebox/sandbox'
import { bwrapDriver, bwrapUnavailable, py } from './fixtures.ts'

const unavailable = await bwrapUnavailable()

describe('faults mid-call', { skip: unavailable }, () => {
  let manager: SessionManager
  let bystander: Session
  before(async () => {
    manager = new SessionManager({ driver: await bwrapDriver(), poolSize: 0 })
    bystander = await manager.start({ preload: [] })
    await py(bystander, 'kept = "bystander state"')
  })
  after(async () => {
    await manager?.close()
  })

  /** The bystander runs a cell across the fault and keeps its state. */
  async function bystanderUntouched(during: Promise<unknown>): Promise<void> {
    const cell = bystander.runCode({ code: 'import time\ntime.sleep(1.5)\nprint(kept)' })
    await during
    const r = await cell
    assert.equal(r.structuredContent.stdout, 'bystander state\n', r.structuredContent.stderr)
    assert.equal(bystander.status, 'ready')
  }

  it('the kernel killed mid-cell: the call says the kernel died; the session goes on with a new kernel', async () => {
    const s = await manager.start({ preload: [] })
    try {
      await py(s, 'x = 1')
      const call = s.runCode({ code: 'import os, time\nprint("before", flush=True)\ntime.sleep(0.5)\nos.kill(os.getpid(), 9)' })
      await bystanderUntouched(call)
      const r = await call
      assert.equal(r.isError, true)
      assert.equal(r.structuredContent.stdout, 'before\n')
      assert.match(r.structuredContent.stderr, /the kernel died( \(SIGKILL\))?; its state is lost/)
      assert.equal(s.status, 'ready')
      assert.equal(await py(s, 'print("new kernel", "x" in globals())'), 'new kernel False\n')
    } finally {
      await s.stop()
    }
  })

  it('the executor killed mid-call: the call fails naming the sandbox end; the session ends, recorded as sandbox-exited', async () => {
    const s = await manager.start({ preload: [] })
    const call = s.runCommand('sleep 0.5; kill -KILL $PPID; sleep 30', { timeoutMs: 20_000 })
    await bystanderUntouched(call.catch(() => undefined))
    await assert.rejects(call, (e: unknown) => {
      assert.ok(e instanceof CodeboxError, String(e))
      assert.equal(e.code, 'SessionTerminated', e.message)
      assert.match(e.message, /the sandbox ended|the channel to the sandbox’s executor closed|the session ended/)
      return true
    })
    for (let i = 0; i < 50 && s.status === 'ready'; i++) await new Promise((r) => setTimeout(r, 100))
    assert.equal(s.status, 'terminated')
    assert.equal(s.endReason, 'sandbox-exited')
  })

  it('the whole sandbox killed mid-call (every process of it): SessionTerminated, the session ends', async () => {
    const s = await manager.start({ preload: [] })
    const call = s.runCommand('sleep 0.5; kill -KILL -1; sleep 30', { timeoutMs: 20_000 })
    await bystanderUntouched(call.catch(() => undefined))
    await assert.rejects(call, (e: unknown) => e instanceof CodeboxError && e.code === 'SessionTerminated')
    for (let i = 0; i < 50 && s.status === 'ready'; i++) await new Promise((r) => setTimeout(r, 100))
    assert.equal(s.endReason, 'sandbox-exited')
    await assert.rejects(py(s, 'print(1)'), (e: unknown) => e instanceof CodeboxError && e.code === 'SessionTerminated')
  })
})

describe('a sandbox that never becomes ready (a machine too busy to boot it)', () => {
  it('the start fails with 503 Unavailable and Retry-After, and nothing of the sandbox is left', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'codebox-slow-'))
    t.after(() => rmSync(dir, { recursive: true, force: true }))
    // Stands in for an executor that never gets the CPU to say ready: it only records its pid.
    const script = path.join(dir, 'silent-executor.py')
    writeFileSync(script, `import os, time\nopen(${JSON.stringify(path.join(dir, 'pid'))}, "w").write(str(os.getpid()))\ntime.sleep(600)\n`)
    const manager = new SessionManager({ driver: new FakeDriver({ executorScript: script }), poolSize: 0, startTimeoutMs: 1_000 })
    t.after(() => manager.close())
    const err = await manager.start({ preload: [] }).then(
      () => undefined,
      (e: unknown) => e,
    )
    assert.ok(err instanceof CodeboxError, String(err))
    assert.equal(err.code, 'Unavailable')
    assert.equal(err.status, 503)
    assert.match(err.message, /not ready within 1000 ms; the machine may be overloaded/)
    assert.equal(err.details.retryAfterSeconds, 5)
    const pid = Number(readFileSync(path.join(dir, 'pid'), 'utf8'))
    assert.equal(existsSync(`/proc/${pid}`), false, 'the silent executor was ended')
    assert.equal(manager.list().length, 0)
  })
})
