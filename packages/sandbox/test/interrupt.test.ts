/**
 * Cancelling a cell keeps its kernel (issue 11, "cancel keeps state"), on the bwrap driver: a
 * cancelled Python cell ends with KeyboardInterrupt and the kernel keeps its variables, whether it
 * was busy, asleep or waiting for a child process; one that swallows the interrupt is killed after
 * the grace and says its state is lost. JavaScript and TypeScript cells in the Node kernel are
 * interrupted while they await, loop, or loop after an await; the Deno kernel ends a cell that
 * awaits and kills one that loops.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Language, ToolResult } from '@codebox/core'
import { defaultRecipe, type JsRuntime, type Session } from '@codebox/sandbox'
import { bwrapUnavailable, cancelRunning, py, sharedBwrapSession, withSession, type Cancelled } from './fixtures.ts'

const unavailable = await bwrapUnavailable()
const denoUnavailable = unavailable ?? (defaultRecipe().denoBinary ? undefined : 'npm installed no Deno binary for this platform, so the image has none')

/** The executor's grace between the interrupt and the kill (executor.py INTERRUPT_GRACE_S), ms. */
const GRACE_MS = 2000

function assertInterrupted({ result, afterCancelMs }: Cancelled, error: RegExp): void {
  const { stderr, exitCode } = result.structuredContent
  assert.equal(result.isError, true)
  assert.equal(exitCode, 130, stderr)
  assert.match(stderr, error)
  assert.match(stderr, /\[codebox\] the cell was interrupted; the kernel and its variables are kept\.\n/)
  assert.match(stderr, /\[codebox\] the call was cancelled\.\n/)
  assert.doesNotMatch(stderr, /restarted/)
  assert.ok(afterCancelMs < GRACE_MS, `the interrupted cell took ${afterCancelMs.toFixed(0)} ms to end`)
}

/** Asserts the cancelled cell ignored its interrupt and was killed after the grace, its state lost. */
function assertKilledAfterGrace({ result, afterCancelMs }: Cancelled): void {
  const { stderr, exitCode } = result.structuredContent
  assert.equal(result.isError, true)
  assert.equal(exitCode, 137, stderr)
  assert.match(stderr, /\[codebox\] the cell did not stop when interrupted, so its kernel was restarted; variables and imports of earlier cells are lost\.\n/)
  assert.match(stderr, /\[codebox\] the call was cancelled\.\n/)
  assert.ok(afterCancelMs >= GRACE_MS - 100, `killed after only ${afterCancelMs.toFixed(0)} ms`)
  assert.ok(afterCancelMs < GRACE_MS + 8000, `killed only after ${afterCancelMs.toFixed(0)} ms`)
}

/** Runs a shell command in the session and returns its stdout. */
async function sh(session: Session, command: string): Promise<string> {
  const r = await session.commands.run(command)
  assert.equal(r.structuredContent.exitCode, 0, r.structuredContent.stderr)
  return r.structuredContent.stdout
}

/** Runs a JavaScript or TypeScript cell and returns its stdout; fails the test if the cell failed. */
async function js(session: Session, code: string, options: { language?: Language; runtime?: JsRuntime } = {}): Promise<string> {
  const r = await session.runCode({ code, language: options.language ?? 'javascript', runtime: options.runtime })
  assert.equal(r.isError, false, `cell failed: ${r.structuredContent.stderr}`)
  return r.structuredContent.stdout
}

describe('cancelling a Python cell keeps the kernel (bwrap)', { skip: unavailable }, () => {
  const shared = sharedBwrapSession()

  it('interrupts a busy loop with KeyboardInterrupt; the variables stay', async () => {
    await py(shared.session, 'x = 1')
    const cancelled = await cancelRunning(shared.session, 'print("GO", flush=True)\nwhile True:\n    pass')
    assertInterrupted(cancelled, /Traceback \(most recent call last\):[\s\S]*KeyboardInterrupt\n/)
    assert.equal(cancelled.result.structuredContent.stdout, 'GO\n')
    assert.equal(await py(shared.session, 'print(x)'), '1\n')
  })

  it('interrupts time.sleep and a top-level await; the event loop still serves later cells', async () => {
    await py(shared.session, 'import asyncio, time\nnaps = 2')
    assertInterrupted(await cancelRunning(shared.session, 'print("GO", flush=True)\ntime.sleep(100)'), /KeyboardInterrupt\n/)
    assertInterrupted(await cancelRunning(shared.session, 'print("GO", flush=True)\nawait asyncio.sleep(100)'), /KeyboardInterrupt/)
    // The interrupted cell's task was cancelled: none is left pending in the kernel's loop.
    assert.equal(await py(shared.session, 'await asyncio.sleep(0.05)\nprint(naps, len(asyncio.all_tasks(asyncio.get_event_loop())))'), '2 0\n')
  })

  it('stops a child the cell waits for, and leaves alone a server an earlier cell started', async () => {
    await py(shared.session, 'import subprocess\nserver = subprocess.Popen(["sleep", "1234"])')
    // GO comes from the child, so the cancel comes while the cell waits for it.
    const cancelled = await cancelRunning(shared.session, 'subprocess.run(["sh", "-c", "echo GO; exec sleep 4321"])')
    assertInterrupted(cancelled, /KeyboardInterrupt/)
    assert.equal(await sh(shared.session, 'ps -eo args | grep -c "^sleep 4321" || true'), '0\n', 'the cell’s child was stopped')
    assert.equal(await py(shared.session, 'print(server.poll())'), 'None\n', 'the earlier cell’s server still runs')
    await py(shared.session, 'server.kill(); server.wait()')
  })

  it('stops a shell pipeline the cell waits for', async () => {
    const cancelled = await cancelRunning(shared.session, 'import os\nstatus = os.system("echo GO; sleep 4322 | cat")')
    // os.system ignores SIGINT while it waits, as C's system() does: its children are interrupted, then the cell goes on.
    assert.equal(cancelled.result.structuredContent.exitCode, 130)
    assert.ok(cancelled.afterCancelMs < GRACE_MS)
    assert.equal(await sh(shared.session, 'ps -eo args | grep -c "^sleep 4322" || true'), '0\n')
    assert.equal(await py(shared.session, 'print(status != 0)'), 'True\n')
  })

  it('kills a cell that swallows KeyboardInterrupt after the grace; the next call works, its state lost', async () => {
    await withSession(shared.manager, async (s) => {
      await py(s, 'import time\nkept = "before"')
      const code =
        'print("GO", flush=True)\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        print("swallowed", flush=True)'
      const cancelled = await cancelRunning(s, code)
      assertKilledAfterGrace(cancelled)
      // Ctrl-C, then a second one halfway through the grace: both swallowed.
      assert.equal(cancelled.result.structuredContent.stdout, 'GO\nswallowed\nswallowed\n')
      const gone = await s.runCode({ code: 'print(kept)' })
      assert.equal(gone.isError, true)
      assert.match(gone.structuredContent.stderr, /NameError: name 'kept' is not defined/)
      assert.equal(await py(s, 'print("fresh kernel")'), 'fresh kernel\n')
    })
  })

  it('a cell cancelled while it waits for the kernel never runs, and the running cell is not touched', async () => {
    const first = shared.session.runCode({ code: 'import time\ntime.sleep(1)\nqueued = "first ran"' })
    const abort = new AbortController()
    const second = shared.session.runCode({ code: 'queued = "second ran"', signal: abort.signal })
    await new Promise((resolve) => setTimeout(resolve, 300))
    abort.abort()
    const cancelled = await second
    assert.equal(cancelled.structuredContent.exitCode, 130)
    assert.match(cancelled.structuredContent.stderr, /the cell was interrupted; the kernel and its variables are kept/)
    assert.equal((await first).isError, false)
    assert.equal(await py(shared.session, 'print(queued)'), 'first ran\n')
  })

  it('a cancelled command is still killed with its process tree', async () => {
    const abort = new AbortController()
    const it = shared.session.streamCommand('echo GO; sleep 4323 & sleep 4324; echo not-cancelled', { signal: abort.signal })
    let next = await it.next()
    while (!next.done) {
      if (next.value.type === 'stdout' && next.value.text.includes('GO')) abort.abort()
      next = await it.next()
    }
    assert.equal(next.value.structuredContent.exitCode, 137)
    assert.equal(next.value.structuredContent.stdout, 'GO\n')
    assert.equal(await sh(shared.session, 'ps -eo args | grep -c "^sleep 432[34]" || true'), '0\n')
  })

  it('a consumer that walks away from a running cell (no signal) interrupts it: the call ends, the kernel is kept', async () => {
    await py(shared.session, 'left = "kept"')
    const it = shared.session.executeCode({ code: 'import time\nprint("GO", flush=True)\ntime.sleep(60)', timeoutMs: 60_000 })
    for (let next = await it.next(); !next.done; next = await it.next()) if (next.value.type === 'stdout' && next.value.text.includes('GO')) break
    await it.return(undefined as never)
    assert.equal(shared.session.active, 0, 'the call is no longer in flight')
    const started = performance.now()
    assert.equal(await py(shared.session, 'print(left)'), 'kept\n')
    assert.ok(performance.now() - started < 10_000, 'the next cell did not wait for the abandoned one')
  })

  it('a timed-out cell still kills its kernel', async () => {
    await withSession(shared.manager, async (s) => {
      await py(s, 'kept = 1')
      const r = await s.runCode({ code: 'import time\ntime.sleep(30)', timeoutMs: 500 })
      assert.equal(r.structuredContent.exitCode, 137)
      assert.match(r.structuredContent.stderr, /the kernel was restarted/)
      assert.equal((await s.runCode({ code: 'kept' })).isError, true)
    })
  })
})

describe('cancelling a JavaScript or TypeScript cell in the Node kernel keeps it (bwrap)', { skip: unavailable }, () => {
  const shared = sharedBwrapSession()

  it('abandons a pending await; the variables stay', async () => {
    await js(shared.session, 'let kept = 41')
    const cancelled = await cancelRunning(shared.session, 'console.log("GO"); await new Promise((r) => setTimeout(r, 1e6))', { language: 'javascript' })
    assertInterrupted(cancelled, /Interrupted: the cell was interrupted/)
    assert.equal(await js(shared.session, 'console.log(kept + 1)'), '42\n')
  })

  it('interrupts a busy loop, in the cell’s first part and after an await', async () => {
    await js(shared.session, 'const loops = []')
    const javascript = { language: 'javascript' } as const
    assertInterrupted(await cancelRunning(shared.session, 'console.log("GO"); loops.push(1); for (;;) {}', javascript), /Interrupted/)
    assertInterrupted(await cancelRunning(shared.session, 'await null; console.log("GO"); loops.push(2); while (true) {}', javascript), /Interrupted/)
    assert.equal(await js(shared.session, 'console.log(loops.join(","))'), '1,2\n')
    // The kernel is whole: timers, promises and output work as before.
    assert.equal(await js(shared.session, 'await new Promise((r) => setTimeout(r, 20)); console.log("after")'), 'after\n')
  })

  it('interrupts a TypeScript cell and keeps its typed state', async () => {
    await js(shared.session, 'const total: number = 7', { language: 'typescript' })
    const code = 'console.log("GO")\nlet spins: number = 0\nwhile (true) { spins++ }'
    assertInterrupted(await cancelRunning(shared.session, code, { language: 'typescript' }), /Interrupted/)
    assert.equal(await js(shared.session, 'console.log(total * 6)', { language: 'typescript' }), '42\n')
  })
})

describe('cancelling a cell in the Deno kernel (bwrap)', { skip: denoUnavailable }, () => {
  const shared = sharedBwrapSession()
  const deno = { language: 'javascript', runtime: 'deno' } as const

  it('abandons a pending await; the variables stay', async () => {
    await js(shared.session, 'let kept = 41', deno)
    assertInterrupted(await cancelRunning(shared.session, 'console.log("GO"); await new Promise((r) => setTimeout(r, 1e6))', deno), /Interrupted/)
    assert.equal(await js(shared.session, 'console.log(kept + 1)', deno), '42\n')
  })

  it('cannot interrupt a busy loop: the kernel is killed after the grace and the next cell works', async () => {
    await js(shared.session, 'let lost = 1', deno)
    assertKilledAfterGrace(await cancelRunning(shared.session, 'console.log("GO"); for (;;) {}', deno))
    const r = await shared.session.runCode({ code: 'lost', ...deno })
    assert.equal(r.isError, true)
    assert.match(r.structuredContent.stderr, /lost is not defined/)
  })
})
