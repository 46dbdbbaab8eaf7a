/**
 * The driver contract on the fake driver (the executor as a plain host process), in its own mode
 * and its shared mode, plus what only the fake can show from the host: that destroy() leaves none
 * of the sandbox's processes behind, and that managers on one shared directory serve each other's
 * sessions.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { CodeboxError } from '@codebox/core'
import { FakeDriver, SessionManager } from '@codebox/sandbox'
import { defineDriverTests } from '@codebox/sandbox/testing'
import { py } from './fixtures.ts'

defineDriverTests('fake', async () => new FakeDriver(), {
  skips: {
    oom: 'the fake driver sets no memory limit (no isolation at all)',
    pids: 'the fake driver sets no process limit (no isolation at all)',
    image: 'the fake driver runs on the host, not in the sandbox image: there is no /home/user leading to its workspace',
  },
})

const sharedDir = mkdtempSync(path.join(tmpdir(), 'codebox-fake-shared-'))
after(() => rmSync(sharedDir, { recursive: true, force: true }))

defineDriverTests('fake (shared)', async () => new FakeDriver({ sharedDir }), {
  skips: {
    oom: 'the fake driver sets no memory limit (no isolation at all)',
    pids: 'the fake driver sets no process limit (no isolation at all)',
    image: 'the fake driver runs on the host, not in the sandbox image: there is no /home/user leading to its workspace',
  },
})

/** True while the process exists and is not a zombie. */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  return stat !== '' && !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3))
}

describe('fake driver', () => {
  it('destroy() kills the kernel and the processes it started in sessions of their own', async () => {
    await using manager = new SessionManager({ driver: new FakeDriver(), poolSize: 0 })
    const session = await manager.start()
    let pids: number[] = []
    try {
      // The fake has no pid namespace, so the pids a cell sees are host pids.
      const out = await py(session, 'import os, subprocess\nchild = subprocess.Popen(["sleep", "60"], start_new_session=True)\nprint(os.getpid(), child.pid)')
      pids = out.trim().split(' ').map(Number)
      assert.equal(pids.length, 2)
      for (const pid of pids) assert.ok(await running(pid), `process ${pid} runs before the stop`)
    } finally {
      await session.stop()
    }
    // SIGKILL is sent by the time destroy() resolves; dying takes the kernel a moment more.
    const deadline = Date.now() + 2_000
    for (const pid of pids) {
      while ((await running(pid)) && Date.now() < deadline) await delay(10)
      assert.equal(await running(pid), false, `process ${pid} outlived its sandbox`)
    }
  })

  it('in shared mode, a manager attaches a session another one started; one that shuts down lets go of it', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'codebox-fake-replicas-'))
    try {
      const a = new SessionManager({ driver: new FakeDriver({ sharedDir: dir }), poolSize: 0, hostBudget: false })
      await using b = new SessionManager({ driver: new FakeDriver({ sharedDir: dir }), poolSize: 0, hostBudget: false })
      assert.equal(await a.sharesSandboxes(), true)
      assert.equal(await new SessionManager({ driver: new FakeDriver(), poolSize: 0, hostBudget: false }).sharesSandboxes(), false)
      const session = await a.start()
      assert.equal(await py(session, 'x = 7\nprint(x)'), '7\n')
      await a.close()
      assert.equal(session.status, 'terminated')
      assert.deepEqual(await new FakeDriver({ sharedDir: dir }).list!(), [session.sandboxId], 'the sandbox lives on')
      const record = { sessionId: session.id, sandboxId: session.sandboxId, limits: session.limits, createdAt: session.createdAt }
      const [one, two] = await Promise.all([b.attach(record), b.attach(record)])
      assert.equal(one, two, 'concurrent attaches of one session share one')
      assert.equal(await py(one, 'print(x * 6)'), '42\n')
      // Let go of, not ended: a third manager attaches it again.
      await b.release(session.id)
      assert.equal(b.find(session.id), undefined)
      await using c = new SessionManager({ driver: new FakeDriver({ sharedDir: dir }), poolSize: 0, hostBudget: false })
      const again = await c.attach(record)
      assert.equal(await py(again, 'print(x)'), '7\n')
      await again.stop()
      assert.deepEqual(await new FakeDriver({ sharedDir: dir }).list!(), [], 'stopped: the sandbox is gone')
      await assert.rejects(c.attach(record), (e: unknown) => e instanceof CodeboxError && e.code === 'SessionTerminated')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('in shared mode, the idle timeout counts calls on other servers, and an end recorded elsewhere lets the session go', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'codebox-fake-idle-'))
    try {
      // What the store would say: calls elsewhere until `ended`.
      let ended = false
      const asked: string[] = []
      await using manager = new SessionManager({
        driver: new FakeDriver({ sharedDir: dir }),
        poolSize: 0,
        hostBudget: false,
        recordedActivity: async (id) => (asked.push(id), { ended, lastActivityAt: Date.now() }),
      })
      const session = await manager.start({ limits: { idleTimeoutMs: 1000 } })
      await delay(2500)
      assert.equal(session.status, 'ready', 'used elsewhere: not idle')
      assert.ok(asked.length >= 1 && asked.every((id) => id === session.id))
      ended = true
      const deadline = Date.now() + 3000
      while (manager.find(session.id) && Date.now() < deadline) await delay(50)
      assert.equal(manager.find(session.id), undefined, 'let go once its end is recorded elsewhere')
      assert.equal(session.endReason, undefined, 'not ended here')
      assert.deepEqual(await new FakeDriver({ sharedDir: dir }).list!(), [session.sandboxId], 'its sandbox was not destroyed here')
      await (await new FakeDriver({ sharedDir: dir }).attach!(session.sandboxId)).destroy()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('in shared mode, a deadline moved on another server holds here, and the session ends there', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'codebox-fake-lifetime-'))
    try {
      let maxLifetimeMs = 2500
      await using manager = new SessionManager({
        driver: new FakeDriver({ sharedDir: dir }),
        poolSize: 0,
        hostBudget: false,
        recordedActivity: async () => ({ ended: false, lastActivityAt: Date.now(), maxLifetimeMs }),
      })
      const session = await manager.start({ limits: { maxLifetimeMs: 1000 } })
      await delay(1800)
      assert.equal(session.status, 'ready', 'its deadline was moved elsewhere')
      assert.equal(session.limits.maxLifetimeMs, 2500)
      maxLifetimeMs = 1000
      const deadline = Date.now() + 3000
      while (session.status === 'ready' && Date.now() < deadline) await delay(50)
      assert.equal(session.endReason, 'max-lifetime')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("holds at most MAX_CONTROL_LINE of a kernel's unended control line: a longer one is dropped unread", async () => {
    await using manager = new SessionManager({ driver: new FakeDriver(), poolSize: 0 })
    const session = await manager.start()
    // The fake's executor is a host process, the kernel's parent: its peak memory can be read here.
    const executor = Number((await py(session, 'import os\nprint(os.getppid())')).trim())
    const peak = async (): Promise<number> => Number(/VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${executor}/status`, 'utf8'))?.[1]) * 1024
    const before = await peak()
    const code =
      'import __main__, os\nchunk = b"x" * (1 << 20)\nfor _ in range(1024):\n    os.write(__main__._ctl_out, chunk)\nos.write(__main__._ctl_out, b"\\n")\nprint("wrote")'
    const r = await session.runCode({ code, timeoutMs: 120_000 })
    assert.equal(r.structuredContent.stdout, 'wrote\n', JSON.stringify(r.structuredContent))
    const grown = (await peak()) - before
    assert.ok(grown < 300 * 2 ** 20, `the executor's peak memory grew by ${Math.round(grown / 2 ** 20)} MiB for a 1 GiB line`)
  })
})
