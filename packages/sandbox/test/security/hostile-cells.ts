/**
 * The hostile-cell half of the "Hostile sandbox -> host" group (hostile-sandbox.test.ts): cells
 * that send the host hostile content or attack their own executor, run in real sandboxes of a
 * given driver while a control session keeps answering. Each driver's test file calls
 * defineHostileCellSuite with its driver and the guard that tells its sandboxes apart.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { defaultLimits, type SandboxDriver } from '@codebox/core'
import { SessionManager, type Session } from '@codebox/sandbox'
import * as h from './hostile-fuzz.ts'

/** How long past its own timeout a call may take to end when its executor stops answering. */
const GRACE_MS = 15_000
/** How long stopping a session may take (ample on a loaded 2-core machine; a hang never ends). */
const STOP_MS = 30_000
const RSS_BOUND = 300 * 1024 * 1024
const MiB = 1024 * 1024

export interface HostileCellSuiteOptions {
  driverName: string
  /** Why the driver cannot run here; the suite skips with it. */
  unavailable: string | undefined
  makeDriver: () => Promise<SandboxDriver>
  /** Python prepended to every cell: exits unless it runs inside a sandbox of this driver. */
  guard: string
  seed: number
}

/** Hostile cells: content the real executor forwards, and attacks on the executor itself. */
export const cells: { name: string; code: string; timeoutMs?: number; sessionSurvives?: boolean }[] = [
  { name: 'a _repr_html_ that returns NaN (issue 10)', code: 'class X:\n    def _repr_html_(self): return float("nan")\nX()' },
  {
    name: 'Infinity and a 4000-digit number in reprs',
    code: 'class X:\n    def _repr_html_(self): return float("inf")\n    def _repr_latex_(self): return 10**4000\nX()',
  },
  {
    name: 'NaN written straight to the kernel channel',
    code: 'import __main__, os\nos.write(__main__._ctl_out, (\'{"id": %d, "type": "display", "data": {"text/plain": NaN}}\\n\' % __main__._current["id"]).encode())',
  },
  {
    name: 'nesting 100k deep on the kernel channel',
    code: 'import __main__, os\nos.write(__main__._ctl_out, (\'{"id": %d, "type": "display", "data": \' % __main__._current["id"] + "[" * 100000 + "]" * 100000 + "}\\n").encode())',
  },
  {
    name: 'garbage and a forged done on the kernel channel',
    code: 'import __main__, os\nos.write(__main__._ctl_out, b\'garbage\\n{"id": 99999, "type": "done", "ok": true}\\n\')',
  },
  {
    // Past MAX_CONTROL_LINE the executor drops the line unread: without that bound it would hold
    // all of it, past the sandbox's memory (2 GiB). Its end lets the cell's own `done` through.
    name: 'a line of 3 GiB on the kernel channel',
    code: 'import __main__, os\nchunk = b"x" * (1 << 20)\nfor _ in range(3072):\n    os.write(__main__._ctl_out, chunk)\nos.write(__main__._ctl_out, b"\\n")',
    timeoutMs: 30_000,
    sessionSurvives: true,
  },
  { name: '100 MB of stdout', code: 'import sys\nsys.stdout.write("x" * (100 << 20))', sessionSurvives: true },
  { name: 'invalid UTF-8 on stdout', code: 'import os\nos.write(1, bytes(range(128, 256)) * 1000)', sessionSurvives: true },
  { name: '40 displays of 2 MB', code: 'class H:\n    def _repr_html_(self): return "h" * (2 << 20)\nfor _ in range(40): display(H())' },
  { name: 'a 5 MB exception message', code: 'raise ValueError("e" * 5_000_000)', timeoutMs: 15_000, sessionSurvives: true },
  { name: 'display values that are not strings', code: 'class P:\n    def _repr_png_(self): return 12345\n    def _repr_svg_(self): return {"x": 1}\nP()' },
  { name: 'an image that is not base64', code: 'class P:\n    def _repr_png_(self): return "!!! not base64 ***"\nP()' },
  { name: 'a __repr__ that raises', code: 'class R:\n    def __repr__(self): raise RuntimeError("no repr")\nR()' },
  { name: 'a _repr_html_ that hangs', code: 'class S:\n    def _repr_html_(self):\n        while True: pass\nS()' },
  { name: 'SIGSTOP of its executor', code: 'import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)\nimport time; time.sleep(60)' },
  { name: 'SIGKILL of its executor', code: 'import os, signal\nos.kill(os.getppid(), signal.SIGKILL)' },
  {
    name: 'SIGSTOP of every process it can signal',
    code: 'import os, signal\nfor p in os.listdir("/proc"):\n    if p.isdigit() and int(p) != os.getpid():\n        try: os.kill(int(p), signal.SIGSTOP)\n        except OSError: pass\nimport time; time.sleep(60)',
  },
]

export function defineHostileCellSuite(options: HostileCellSuiteOptions): void {
  const { driverName, unavailable, makeDriver, guard, seed: SEED } = options
  describe(`hostile sandbox -> host: hostile cells in ${driverName} sandboxes (seed ${SEED})`, { skip: unavailable ?? false }, () => {
    let watch: ReturnType<typeof h.watchHost> | undefined
    let m: SessionManager
    const stopControl = new AbortController()
    let controlRun: Promise<number>
    before(async () => {
      watch = h.watchHost()
      m = new SessionManager({ driver: await makeDriver(), poolSize: 0, defaults: defaultLimits })
      controlRun = m.start().then((s) => h.controlLoop(s, SEED + 1, stopControl.signal))
      controlRun.catch(() => {})
    })
    after(async () => {
      stopControl.abort()
      watch?.stop()
      if (m && !(await h.within(m.close(), 30_000))) console.log(`[seed ${SEED}] the host could not close the ${driverName} sessions in 30 s`)
    })

    describe('cells', { concurrency: 3 }, () => {
      for (const c of cells) {
        test(c.name, async () => {
          const label = `[seed ${SEED}] ${c.name}`
          const session: Session = await m.start()
          try {
            const timeoutMs = c.timeoutMs ?? 3_000
            const call = session.runCode({ code: `${guard}\n${c.code}`, timeoutMs })
            await h.endsCleanly(label, call, timeoutMs + GRACE_MS)
            if (c.sessionSurvives) {
              const again = await h.endsCleanly(`${label} (next cell)`, session.runCode({ code: 'print(6 * 7)', timeoutMs }), timeoutMs + GRACE_MS)
              assert.ok('result' in again && again.result.structuredContent.stdout === '42\n', `${label}: the session did not answer the next cell`)
            }
          } finally {
            await h.stopsInTime(label, session, STOP_MS)
          }
        })
      }
    })

    test('the host survived: no uncaught error, bounded memory, the control session always right, new sessions start', async () => {
      stopControl.abort()
      const answers = await controlRun
      assert.ok(answers > 0, `[seed ${SEED}] the control session never answered`)
      assert.ok(watch)
      assert.deepEqual(watch.uncaught.map(String), [], `[seed ${SEED}] the host had uncaught errors`)
      const grown = watch.peakRss() - watch.baseRss
      assert.ok(grown < RSS_BOUND, `[seed ${SEED}] host RSS grew by ${Math.round(grown / MiB)} MiB (bound ${RSS_BOUND / MiB} MiB)`)
      const fresh = await m.start()
      assert.equal((await fresh.runCode({ code: 'print(6 * 7)' })).structuredContent.stdout, '42\n')
    })
  })
}
