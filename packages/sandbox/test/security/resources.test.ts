/**
 * Attack catalogue, group "Resources" (SECURITY.md): sandbox code tries to exhaust pids, threads,
 * memory, disk, inodes, fds, output and CPU, and to leave processes behind. Each attack must hit
 * the session's own limit, the session must say so (limitsExceeded / a clear error), and the host,
 * other sessions and (where it can recover) the session itself must keep working.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import { CodeboxError } from '@codebox/core'
import type { SessionManager } from '@codebox/sandbox'
import { bwrapManager, bwrapUnavailable, py, withSession } from '../fixtures.ts'
import { cell, cgroupDirs, hostProcessesOfUid, hostView, hostViewUnavailable, pyCommand, pyJson, runPy, sh } from './probe.ts'

const MiB = 1024 * 1024
const EMFILE = 24
const ENOSPC = 28

const unavailable = await bwrapUnavailable()

describe('resources', { skip: unavailable ?? false }, () => {
  let m: SessionManager
  before(async () => {
    m = await bwrapManager({ poolSize: 0 })
  })
  after(async () => {
    await m?.close()
  })

  test('fork bomb: stopped at the pids limit and reported; the host, another session and the session itself keep working', async () => {
    await withSession(
      m,
      async (a) => {
        await withSession(m, async (b) => {
          const bomb = a.commands.run(
            pyCommand(`
import time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.005)`),
            { timeoutMs: 2500 },
          )
          await new Promise((r) => setTimeout(r, 1000))
          // While the bomb runs: another session answers, and the host can start processes.
          assert.equal(await py(b, 'print(6 * 7)'), '42\n')
          assert.equal(spawnSync('true').status, 0)
          const r = await bomb
          assert.deepEqual(r.structuredContent.limitsExceeded, ['TIMEOUT', 'PIDS'])
          assert.equal(r.isError, true)
          assert.match(r.structuredContent.stderr, /PIDS: the session reached its process limit/)
        })
        assert.equal(await py(a, 'print(1)'), '1\n')
        const ps = await a.commands.run('ps -e -o comm= | grep -c python3')
        assert.equal(ps.structuredContent.stdout.trim(), '2', 'bomb processes survived the timeout') // executor + kernel
      },
      { pids: 64, memoryBytes: 512 * MiB },
    )
  })

  test('thread bomb: thread creation fails at the pids limit, reported as PIDS', async () => {
    await withSession(
      m,
      async (s) => {
        const r = await runPy(
          s,
          `
import threading
stop = threading.Event()
n = 0
try:
    while True:
        threading.Thread(target=stop.wait, daemon=True).start()
        n += 1
except RuntimeError as e:
    error = str(e)
stop.set()
print(json.dumps({'threads': n, 'error': error}))`,
        )
        assert.equal(r.exitCode, 0, r.stderr)
        const out = JSON.parse(r.stdout) as { threads: number; error: string }
        assert.equal(out.error, "can't start new thread")
        assert.ok(out.threads > 10 && out.threads < 64, `${out.threads} threads`)
        assert.deepEqual(r.result.structuredContent.limitsExceeded, ['PIDS'])
        assert.equal(await py(s, 'print(1)'), '1\n')
      },
      { pids: 64 },
    )
  })

  test('memory bomb: the cell is OOM-killed and told so; the next cell runs in a fresh kernel', async () => {
    await withSession(
      m,
      async (s) => {
        await py(s, 'kept = 1')
        const r = await cell(s, 'x = b"a" * (400 << 20)\nprint(len(x))', 30_000)
        assert.equal(r.isError, true)
        assert.deepEqual(r.structuredContent.limitsExceeded, ['OOM'])
        assert.match(r.structuredContent.stderr, /OOM: the session ran out of memory/)
        assert.equal(r.structuredContent.stdout, '')
        assert.equal(await py(s, 'print("kept" in globals(), "x" in globals())'), 'False False\n')
      },
      { memoryBytes: 256 * MiB },
    )
  })

  test('/tmp and /dev/shm fill: ENOSPC at their size', async () => {
    await withSession(
      m,
      async (s) => {
        const r = await pyJson<Record<string, [number, number]>>(
          s,
          `
def fill(d):
    total, i = 0, 0
    chunk = b'x' * (1 << 20)
    try:
        while True:
            with open('%s/fill%d' % (d, i), 'wb') as f:
                i += 1
                for _ in range(4):
                    f.write(chunk)
                    f.flush()
                    total += len(chunk)
    except OSError as e:
        return [e.errno, total]
    return [0, total]
print(json.dumps({'/tmp': fill('/tmp'), '/dev/shm': fill('/dev/shm')}))`,
        )
        for (const [dir, [err, total]] of Object.entries(r)) {
          assert.equal(err, ENOSPC, `${dir}: ${err}`)
          assert.ok(total <= 8 * MiB && total >= 6 * MiB, `${dir} took ${total} bytes`)
        }
        assert.equal(await py(s, 'print(1)'), '1\n')
      },
      { tmpBytes: 8 * MiB },
    )
  })

  test('workspace fill: ENOSPC at workspaceBytes, files.write over the free space is LimitExceeded, removal recovers', async () => {
    await withSession(
      m,
      async (s) => {
        const [err, total] = await pyJson<[number, number]>(
          s,
          `
total, i = 0, 0
chunk = b'x' * (1 << 20)
try:
    while True:
        with open('/workspace/fill%d' % i, 'wb') as f:
            i += 1
            f.write(chunk)
            total += len(chunk)
except OSError as e:
    print(json.dumps([e.errno, total]))`,
        )
        assert.equal(err, ENOSPC)
        assert.ok(total <= 8 * MiB && total >= 6 * MiB, `the workspace took ${total} bytes`)
        await assert.rejects(s.files.write('big.bin', Buffer.alloc(2 * MiB, 1)), (e: unknown) => e instanceof CodeboxError && e.code === 'LimitExceeded')
        assert.ok(!(await s.files.list()).some((e) => e.name === 'big.bin' || e.name.startsWith('.codebox-write')))
        await s.commands.run('rm -f /workspace/fill*')
        assert.deepEqual(await s.files.write('big.bin', Buffer.alloc(2 * MiB, 1)), { size: 2 * MiB })
      },
      { workspaceBytes: 8 * MiB },
    )
  })

  test('inode fill: creating empty files stops with an error; the session and host survive', async () => {
    await withSession(
      m,
      async (s) => {
        const r = await pyJson<Record<string, [number, number]>>(
          s,
          `
def fill(d):
    os.makedirs(d, exist_ok=True)
    n = 0
    try:
        while True:
            os.close(os.open('%s/%d' % (d, n), os.O_CREAT | os.O_WRONLY, 0o644))
            n += 1
    except OSError as e:
        return [e.errno, n]
print(json.dumps({'/workspace': fill('/workspace/many'), '/tmp': fill('/tmp/many')}))`,
          { timeoutMs: 60_000 },
        )
        for (const [dir, [err, n]] of Object.entries(r)) {
          assert.equal(err, ENOSPC, `${dir}: errno ${err} after ${n} files`)
          assert.ok(n > 1000, `${dir}: only ${n} files`)
        }
        assert.equal(await py(s, 'print(1)'), '1\n')
        assert.equal((await s.commands.run('rm -rf /workspace/many /tmp/many && echo ok')).structuredContent.stdout, 'ok\n')
        assert.deepEqual(await s.files.write('after.txt', 'ok'), { size: 2 })
      },
      { memoryBytes: 128 * MiB },
    )
    assert.equal(spawnSync('true').status, 0)
  })

  test('fd exhaustion: EMFILE at openFiles, and the limit cannot be raised', async () => {
    await withSession(
      m,
      async (s) => {
        const r = await pyJson<{ err: number; open: number; raise: string }>(
          s,
          `
import resource
fds = []
try:
    while True:
        fds.append(os.open('/dev/null', os.O_RDONLY))
except OSError as e:
    err = e.errno
try:
    resource.setrlimit(resource.RLIMIT_NOFILE, (65536, 65536))
    raised = 'raised'
except (ValueError, OSError) as e:
    raised = type(e).__name__
print(json.dumps({'err': err, 'open': len(fds), 'raise': raised}))`,
        )
        assert.equal(r.err, EMFILE)
        assert.ok(r.open < 64 && r.open > 50, `${r.open} fds opened`)
        assert.equal(r.raise, 'ValueError')
      },
      { openFiles: 64 },
    )
  })

  test('200 MB of stdout: truncated at outputBytes, the host process stays flat', async () => {
    await withSession(
      m,
      async (s) => {
        const base = process.memoryUsage().rss
        let peak = base
        const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 10)
        try {
          const shell = await sh(s, 'yes | head -c 200000000', 60_000)
          const python = await cell(s, 'import sys\nfor _ in range(200):\n    sys.stdout.write("y" * 1000000)', 60_000)
          for (const r of [shell.result, python]) {
            assert.deepEqual(r.structuredContent.limitsExceeded, ['OUTPUT_TRUNCATED'])
            assert.ok(r.structuredContent.stdout.length <= 64 * 1024, `${r.structuredContent.stdout.length} bytes kept`)
            assert.ok(r.structuredContent.stdout.length >= 60 * 1024)
            assert.equal(r.structuredContent.exitCode, 0)
          }
        } finally {
          clearInterval(sampler)
        }
        assert.ok(peak - base < 50 * MiB, `the host process grew by ${((peak - base) / MiB).toFixed(1)} MiB`)
      },
      { outputBytes: 64 * 1024 },
    )
  })

  test('CPU burn: two busy processes get at most ~cpuCores of CPU time', async () => {
    await withSession(
      m,
      async (s) => {
        const r = await cell(
          s,
          `
import time
def burn():
    t = time.monotonic()
    while time.monotonic() - t < 2:
        pass
pid = os.fork()
if pid == 0:
    burn()
    os._exit(0)
w0, c0 = time.monotonic(), os.times()
burn()
os.waitpid(pid, 0)
w1, c1 = time.monotonic(), os.times()
cpu = sum(c1[i] - c0[i] for i in range(4))
print(json.dumps({'cpu': cpu, 'wall': w1 - w0}))`,
          30_000,
        )
        assert.equal(r.isError, false, r.structuredContent.stderr)
        const { cpu, wall } = JSON.parse(r.structuredContent.stdout) as { cpu: number; wall: number }
        const cores = cpu / wall
        assert.ok(cores <= 0.6, `${cores.toFixed(2)} cores used with cpuCores 0.5`)
        assert.ok(cores > 0.1, `${cores.toFixed(2)} cores: the burn did not run`)
      },
      { cpuCores: 0.5 },
    )
  })

  test('orphans and daemons: a double-forked setsid daemon is gone after stop, with the cgroups', { skip: hostViewUnavailable() ?? false }, async () => {
    const marker = `1000.${Math.floor(Math.random() * 1e6)}`
    let uid = 0
    let cgroupId = ''
    let daemon: number | undefined
    await withSession(m, async (s) => {
      const r = await sh(s, `(setsid nohup sleep ${marker} >/dev/null 2>&1 &) ; echo started`)
      assert.equal(r.stdout, 'started\n')
      // The command returns once it forked; the daemon's exec of sleep may come a moment later.
      for (const until = Date.now() + 5000; daemon === undefined && Date.now() < until; await sleep(50)) {
        const view = await hostView(s)
        uid = view.uid
        cgroupId = view.cgroupId
        daemon = view.pids.find((p) => {
          try {
            return readFileSync(`/proc/${p}/cmdline`, 'utf8') === `sleep\0${marker}\0`
          } catch {
            return false
          }
        })
      }
      assert.ok(daemon, 'the daemon is not running 5 s after its command returned')
      const ps = await s.commands.run(`ps -o sid=,pgid=,comm= -p $(pgrep -f 'sleep ${marker}')`)
      assert.match(ps.structuredContent.stdout, /sleep/)
    })
    assert.deepEqual(hostProcessesOfUid(uid), [], `processes of the session's uid ${uid} survive`)
    assert.equal(existsSync(`/proc/${daemon}/cmdline`) && readFileSync(`/proc/${daemon}/cmdline`, 'utf8').includes(marker), false)
    for (const dir of cgroupDirs(cgroupId)) assert.equal(existsSync(dir), false, `${dir} is left`)
  })
})
