/**
 * Hostile output from cells in real bwrap sandboxes: a display that is NaN, display data far over
 * the per-call limit, a 5 MB exception, SystemExit statuses, display values of the wrong type,
 * and a cell that stops its own executor. Each ends in a result (or a clear error for the stopped
 * executor), the result fits the schema, and the manager keeps serving other sessions.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CodeboxError, defaultLimits, toolResultSchema, type ToolResult } from '@codebox/core'
import type { SessionManager } from '@codebox/sandbox'
import { bwrapManager, bwrapUnavailable, py, withSession } from './fixtures.ts'

const unavailable = await bwrapUnavailable()

const valid = (r: ToolResult): ToolResult => {
  const parsed = toolResultSchema.safeParse(r)
  assert.ok(parsed.success, parsed.success ? '' : parsed.error.message)
  return r
}

describe('hostile cell output in a bwrap sandbox', { skip: unavailable }, () => {
  let manager: SessionManager
  before(async () => {
    manager = await bwrapManager()
  })
  after(async () => {
    await manager?.close()
  })

  it('a _repr_html_ that returns NaN gives a result; the manager keeps serving another session', async () => {
    await withSession(manager, async (s) => {
      const r = valid(await s.runCode({ code: 'class X:\n    def _repr_html_(self): return float("nan")\nX()', language: 'python' }))
      assert.equal(r.isError, false, r.structuredContent.stderr)
      assert.ok(r.content.some((c) => c.type === 'text' && c.text.startsWith('<__main__.X object')))
      const nan = valid(await s.runCode({ code: 'float("nan")', language: 'python' }))
      assert.ok(nan.content.some((c) => c.type === 'text' && c.text === 'nan'))
      assert.equal(await py(s, 'print(1 + 1)'), '2\n')
    })
    await withSession(manager, async (s) => assert.equal(await py(s, 'print("other")'), 'other\n'))
  })

  it('40 displays of 2 MB are cut at the per-call output limit and reported', async () => {
    await withSession(manager, async (s) => {
      const code = [
        'class Big:',
        '    def __init__(self, i): self.i = i',
        '    def _repr_html_(self): return "<p>" + "x" * (2 * 1024 * 1024) + "</p>"',
        '    def __repr__(self): return "Big(%d)" % self.i',
        'for i in range(40): display(Big(i))',
        'print("after")',
      ].join('\n')
      const r = valid(await s.runCode({ code, language: 'python' }))
      const kept = r.content.reduce((n, c) => n + JSON.stringify(c).length, 0)
      assert.ok(kept <= defaultLimits.outputBytes + 64 * 1024, `kept ${kept} bytes`)
      assert.deepEqual(r.structuredContent.limitsExceeded, ['OUTPUT_TRUNCATED'])
      assert.match(r.structuredContent.stderr, /OUTPUT_TRUNCATED/)
      assert.equal(await py(s, 'print("still here")'), 'still here\n')
    })
  })

  it('a 5 MB exception message is cut, and the session keeps working', async () => {
    await withSession(manager, async (s) => {
      const r = valid(await s.runCode({ code: 'raise ValueError("m" * (5 * 1024 * 1024))', language: 'python' }))
      assert.equal(r.isError, true)
      assert.match(r.structuredContent.stderr, /ValueError: mmmm/)
      assert.ok(r.structuredContent.stderr.length <= defaultLimits.outputBytes + 64 * 1024)
      const js = valid(await s.runCode({ code: 'throw new Error("j".repeat(5 * 1024 * 1024))', language: 'javascript' }))
      assert.equal(js.isError, true)
      assert.ok(js.structuredContent.stderr.length <= defaultLimits.outputBytes + 64 * 1024)
      assert.equal(await py(s, 'print("alive")'), 'alive\n')
      assert.equal(s.status, 'ready')
    })
  })

  it('SystemExit reports its status as python does', async () => {
    await withSession(manager, async (s) => {
      const exit = async (code: string) => valid(await s.runCode({ code, language: 'python' })).structuredContent
      assert.equal((await exit('raise SystemExit(3)')).exitCode, 3)
      assert.equal((await exit('import sys; sys.exit(42)')).exitCode, 42)
      const msg = await exit('raise SystemExit("bye now")')
      assert.equal(msg.exitCode, 1)
      assert.equal(msg.stderr, 'bye now\n')
      const ok = await exit('raise SystemExit(0)')
      assert.equal(ok.exitCode, 0)
      assert.equal((await exit('raise SystemExit(None)')).exitCode, 0)
    })
  })

  it('display values that are not strings never reach the result', async () => {
    await withSession(manager, async (s) => {
      const code = [
        'class A:',
        '    def _repr_png_(self): return 12345',
        '    def _repr_html_(self): return {"a": 1}',
        '    def _repr_svg_(self): return b"<svg/>"',
        'class B:',
        '    def _repr_png_(self): return b"\\x89PNG\\r\\n"',
        'display(A()); display(B())',
      ].join('\n')
      const r = valid(await s.runCode({ code, language: 'python' }))
      assert.equal(r.isError, false, r.structuredContent.stderr)
      const images = r.content.filter((c) => c.type === 'image')
      assert.deepEqual(images, [{ type: 'image', data: 'iVBORw0K', mimeType: 'image/png' }])
      assert.ok(!r.content.some((c) => c.type === 'resource'))
      const js = valid(
        await s.runCode({
          code: '({ [Symbol.for("Jupyter.display")]() { return { "text/html": 5, "image/png": { a: 1 }, "text/plain": "shown" } } })',
          language: 'javascript',
        }),
      )
      assert.equal(js.isError, false, js.structuredContent.stderr)
    })
  })

  for (const [name, run] of [
    [
      'a Python cell',
      (s: Parameters<Parameters<typeof withSession>[1]>[0]) =>
        s.runCode({ code: 'import os, signal\nos.kill(os.getppid(), signal.SIGSTOP)', language: 'python', timeoutMs: 2000 }),
    ],
    ['a command', (s: Parameters<Parameters<typeof withSession>[1]>[0]) => s.runCommand('kill -STOP $PPID; sleep 60', { timeoutMs: 2000 })],
  ] as const) {
    it(`${name} that stops its executor ends within timeout and grace; the session ends`, async () => {
      await withSession(manager, async (s) => {
        const started = Date.now()
        // What came back when no error did, so that a rare pass-through says what it was.
        const outcome = await run(s).then(
          (r) => ({ resolved: r }),
          (e: unknown) => ({ rejected: e }),
        )
        assert.ok('rejected' in outcome, `the call came back without an error: ${JSON.stringify('resolved' in outcome ? outcome.resolved : null)}`)
        const e = outcome.rejected
        assert.ok(e instanceof CodeboxError, String(e))
        assert.equal(e.code, 'SandboxFailure', e.message)
        assert.match(e.message, /the executor stopped answering/)
        const took = Date.now() - started
        assert.ok(took < 2000 + 2 * 5000 + 5000, `ended after ${took} ms`)
        assert.equal(s.status, 'terminated')
        assert.equal(s.active, 0)
        await assert.rejects(py(s, 'print(1)'), (e: unknown) => e instanceof CodeboxError && e.code === 'SessionTerminated')
      })
      await withSession(manager, async (other) => assert.equal(await py(other, 'print("served")'), 'served\n'))
    })
  }
})
