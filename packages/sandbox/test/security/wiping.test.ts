/**
 * Attack catalogue, group "Time and wiping" (SECURITY.md): process trees that ignore TERM or are
 * stopped die at their call's timeout; idle and lifetime limits end sessions by themselves; and a
 * finished session leaves nothing behind — no process of its host uid, no cgroup, no files, no
 * SysV IPC.
 */
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { CodeboxError } from '@codebox/core'
import type { Session, SessionManager } from '@codebox/sandbox'
import { bwrapManager, bwrapUnavailable, py, withSession } from '../fixtures.ts'
import { cell, cgroupDirs, eventually, hostProcessesOfUid, hostView, hostViewUnavailable, sh, token, type HostView } from './probe.ts'

const unavailable = await bwrapUnavailable()
const noHostView = hostViewUnavailable()

/** Names of the processes in the session, from inside. */
async function processNames(s: Session): Promise<string[]> {
  const r = await s.commands.run('ps -e -o comm=')
  return r.structuredContent.stdout.split('\n').filter(Boolean)
}

/** Asserts that nothing of a finished session is left on the host. */
function assertWiped(view: HostView): void {
  // At once: when stop() has resolved, every process must be dead and reaped (no zombie either).
  assert.deepEqual(hostProcessesOfUid(view.uid), [], `processes of host uid ${view.uid} are left`)
  for (const dir of cgroupDirs(view.cgroupId)) assert.equal(existsSync(dir), false, `${dir} is left`)
}

describe('time and wiping', { skip: unavailable ?? false }, () => {
  let m: SessionManager
  before(async () => {
    m = await bwrapManager({ poolSize: 0 })
  })
  after(async () => {
    await m?.close()
  })

  test('a TERM-ignoring process tree is killed at its timeout, with no survivor', async () => {
    await withSession(m, async (s) => {
      const started = Date.now()
      const r = await sh(s, `trap '' TERM; sleep 1000 & sleep 1000 & (trap '' TERM; sleep 1000) & wait`, 1000)
      const took = Date.now() - started
      assert.deepEqual(r.result.structuredContent.limitsExceeded, ['TIMEOUT'])
      assert.equal(r.result.isError, true)
      assert.ok(took < 4000, `the call took ${took} ms to time out`)
      assert.ok(!(await processNames(s)).includes('sleep'), 'a sleep survived the timeout')
    })
  })

  test('a SIGSTOPped tree is killed at its timeout, in a command and in a kernel cell', async () => {
    await withSession(m, async (s) => {
      const r = await sh(s, 'sleep 1000 & sleep 1000 & kill -STOP $!; kill -STOP $$', 1000)
      assert.deepEqual(r.result.structuredContent.limitsExceeded, ['TIMEOUT'])
      assert.ok(!(await processNames(s)).includes('sleep'), 'a sleep survived the timeout')
      const c = await cell(s, "import signal, subprocess\nsubprocess.Popen(['sleep', '1000'])\nos.kill(os.getpid(), signal.SIGSTOP)", 1000)
      assert.deepEqual(c.structuredContent.limitsExceeded, ['TIMEOUT'])
      assert.ok(!(await processNames(s)).includes('sleep'), "the cell's sleep survived the timeout")
      assert.equal(await py(s, 'print(1)'), '1\n')
    })
  })

  test('idle timeout ends a session by itself, and wipes it', { skip: noHostView ?? false }, async () => {
    const idle = await bwrapManager({ poolSize: 0, defaults: { idleTimeoutMs: 1500 } })
    try {
      const s = await idle.start()
      const view = await hostView(s)
      const lastCall = Date.now()
      assert.ok(await eventually(() => !idle.list().includes(s), 5000), 'the idle session is still alive after 5 s')
      const after = Date.now() - lastCall
      assert.ok(after >= 1400 && after < 3500, `ended ${after} ms after the last call`)
      assert.throws(
        () => idle.get(s.id),
        (e: unknown) => e instanceof CodeboxError && e.code === 'NotFound',
      )
      assert.equal(s.endReason, 'idle-timeout')
      await assert.rejects(s.runCode({ code: 'print(1)' }), (e: unknown) => e instanceof CodeboxError && e.code === 'SessionTerminated')
      assertWiped(view)
    } finally {
      await idle.close()
    }
  })

  test('max lifetime ends a busy session, and wipes it', { skip: noHostView ?? false }, async () => {
    const s = await m.start({ limits: { maxLifetimeMs: 2000 } })
    const born = Date.now()
    try {
      const view = await hostView(s)
      // Busy the whole time: a call in flight does not keep the session past its lifetime.
      const call = s.commands.run('sleep 30', { timeoutMs: 30_000 })
      await assert.rejects(call, (e: unknown) => e instanceof CodeboxError && e.code === 'SessionTerminated')
      assert.ok(await eventually(() => !m.list().includes(s), 3000))
      const lived = Date.now() - born
      assert.ok(lived >= 1900 && lived < 4000, `lived ${lived} ms`)
      assert.throws(
        () => m.get(s.id),
        (e: unknown) => e instanceof CodeboxError && e.code === 'NotFound',
      )
      assert.equal(s.endReason, 'max-lifetime')
      assertWiped(view)
    } finally {
      await s.stop()
    }
  })

  test('a stopped session leaves no process, cgroup, file or SysV IPC object on the host', { skip: noHostView ?? false }, async () => {
    const name = `codebox-wipe-${token()}`
    const key = 0x5eb00000 + Math.floor(Math.random() * 0xfffff)
    const tmpBefore = new Set(readdirSync('/tmp'))
    let view: HostView | undefined
    await withSession(m, async (s) => {
      await s.files.write(`${name}.txt`, 'workspace data')
      const r = await sh(
        s,
        `printf data > /tmp/${name}; printf data > /dev/shm/${name}; mkdir /tmp/${name}.d
python3 -c "import ctypes; print(ctypes.CDLL(None).shmget(${key}, 4096, 0o1600))"
(setsid sleep 1000 &)`,
      )
      assert.ok(Number(r.stdout.trim()) >= 0, `shmget: ${r.stdout}`)
      view = await hostView(s)
      assert.ok(readFileSync('/proc/sysvipc/shm', 'utf8').length > 0)
    })
    assertWiped(view!)
    // No file of the session on the host's disk: nothing named after it, nothing owned by its uid.
    const owned: string[] = []
    const walk = (dir: string, depth: number): void => {
      let names: string[]
      try {
        names = readdirSync(dir)
      } catch {
        return
      }
      for (const n of names) {
        const p = path.join(dir, n)
        let st
        try {
          st = statSync(p, { throwIfNoEntry: false })
        } catch {
          continue
        }
        if (!st) continue
        if (n.includes(name) || st.uid === view!.uid) owned.push(p)
        if (st.isDirectory() && depth < 3) walk(p, depth + 1)
      }
    }
    for (const dir of ['/tmp', '/var/tmp', '/dev/shm', '/run']) walk(dir, 0)
    assert.deepEqual(owned, [])
    const newInTmp = readdirSync('/tmp').filter((n) => !tmpBefore.has(n) && n.includes('codebox') && statSync(path.join('/tmp', n)).uid === view!.uid)
    assert.deepEqual(newInTmp, [])
    // SysV IPC lived in the sandbox's IPC namespace, which is gone with it.
    const shm = readFileSync('/proc/sysvipc/shm', 'utf8')
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/)[0])
    assert.ok(!shm.includes(String(key)), "the session's SysV segment is on the host")
  })
})
