/**
 * The bash kernel (executor/kernel_bash.py): one shell per session (and per bash context) whose
 * variables, functions, working directory and exports carry from cell to cell; env for one cell;
 * a non-zero status as the cell's error; `exit` ending the shell and the next cell getting a new
 * one; an interrupt that stops the command and keeps the shell; output streamed as it comes; stdin
 * at end of file. On the fake driver (the real executor and kernel) and on the bwrap driver.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CodeboxError, type ToolResult } from '@codebox/core'
import type { CellEnd, ExecuteCodeOptions, Session, SessionManager } from '@codebox/sandbox'
import { bwrapManager, bwrapUnavailable, cancelRunning, fakeManager, sharedSession } from './fixtures.ts'

const unavailable = await bwrapUnavailable()

/** Runs a bash cell; the result, and its end as onCellEnd saw it. */
async function bash(session: Session, code: string, options: Partial<ExecuteCodeOptions> = {}): Promise<{ result: ToolResult; end: CellEnd }> {
  let end: CellEnd = {}
  const result = await session.runCode({ code, language: 'bash', timeoutMs: 30_000, ...options, onCellEnd: (e) => (end = e) })
  return { result, end }
}

/** A bash cell's stdout; fails the test (with stderr) when the cell failed. */
async function out(session: Session, code: string, options: Partial<ExecuteCodeOptions> = {}): Promise<string> {
  const { result } = await bash(session, code, options)
  assert.equal(result.isError, false, `cell failed (${result.structuredContent.exitCode}): ${result.structuredContent.stderr}`)
  return result.structuredContent.stdout
}

function assertInterrupted({ result, afterCancelMs }: { result: ToolResult; afterCancelMs: number }): void {
  const { stderr, exitCode } = result.structuredContent
  assert.equal(exitCode, 130, stderr)
  assert.match(stderr, /\[codebox\] the cell was interrupted; the kernel and its variables are kept\.\n/)
  assert.doesNotMatch(stderr, /restarted/)
  assert.ok(afterCancelMs < 1000, `the interrupted cell took ${afterCancelMs.toFixed(0)} ms to end`)
}

function bashSuite(name: string, manager: () => Promise<SessionManager>, skip?: string): void {
  describe(name, { skip }, () => {
    let session: Session
    sharedSession(manager, (s) => (session = s))

    it('keeps variables, functions, the working directory and exports across cells', async () => {
      const workspace = (await out(session, 'pwd')).trim()
      await out(session, 'X=1\ngreet() { echo "hello $1"; }\nmkdir -p sub && cd sub\nexport SHARED=exported\nset -- a b')
      const r = await out(session, 'echo "$X"; greet you; pwd; sh -c \'echo "$SHARED"\'; echo "$#"')
      assert.equal(r, `1\nhello you\n${workspace}/sub\nexported\n2\n`)
      await out(session, `cd ${workspace}`)
    })

    it('sets env for one cell, quoted as it is, and puts back what was there', async () => {
      await out(session, 'KEEP=mine; unset GONE')
      const value = `it's "q" $HOME \\ \n;$(false)`
      const r = await out(session, 'printf "%s|" "$GREETING"; sh -c \'printf "%s|%s\\n" "$KEEP" "$GONE"\'', {
        env: { GREETING: value, KEEP: 'cell', GONE: 'here' },
      })
      assert.equal(r, `${value}|cell|here\n`)
      // KEEP is the shell's own again (and not exported); GONE is unset again.
      assert.equal(await out(session, 'echo "$KEEP ${GONE-unset}"; sh -c \'echo "${KEEP-unexported}"\''), 'mine unset\nunexported\n')
      await assert.rejects(
        session.runCode({ code: 'true', language: 'bash', env: { 'NOT-A-NAME': 'x' } }),
        (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError' && /NOT-A-NAME/.test(e.message),
      )
    })

    it('a non-zero status is the cell’s error; the shell and its state live on', async () => {
      await out(session, 'STATE=on')
      const failed = await bash(session, 'echo before\n(exit 3)')
      assert.equal(failed.result.isError, true)
      assert.equal(failed.result.structuredContent.exitCode, 3)
      assert.equal(failed.result.structuredContent.stdout, 'before\n')
      assert.deepEqual(failed.end.error, { name: 'ExitCode', message: '3', traceback: '' })
      const missing = await bash(session, 'no-such-command-here')
      assert.equal(missing.result.structuredContent.exitCode, 127)
      assert.match(missing.result.structuredContent.stderr, /no-such-command-here: command not found/)
      const count = failed.end.executionCount ?? 0
      assert.equal(missing.end.executionCount, count + 1)
      assert.equal(await out(session, 'echo "$STATE"'), 'on\n')
    })

    it('exit ends the shell: the cell says so, and the next cell runs in a new one', async () => {
      await out(session, 'LOST=yes')
      const { result, end } = await bash(session, 'echo bye; exit 4')
      assert.equal(result.structuredContent.exitCode, 4)
      assert.equal(result.structuredContent.stdout, 'bye\n')
      assert.equal(end.error?.name, 'ShellExited')
      assert.match(end.error?.message ?? '', /^the shell exited with status 4; the next cell starts a new shell/)
      assert.equal(await out(session, 'echo "${LOST-gone}"'), 'gone\n')
      // Without onCellEnd the message is in stderr.
      const plain = await session.runCode({ code: 'exit 0', language: 'bash' })
      assert.equal(plain.isError, true)
      assert.match(plain.structuredContent.stderr, /the shell exited with status 0/)
      assert.equal(await out(session, 'echo fresh'), 'fresh\n')
    })

    it('an interrupt stops the running command; the shell keeps its variables', async () => {
      await out(session, 'KEPT=still-here; sleep 4712 &')
      const slept = await cancelRunning(session, 'echo GO; sleep 4711; echo not-reached', { language: 'bash' })
      assertInterrupted(slept)
      assert.equal(slept.result.structuredContent.stdout, 'GO\n')
      // The cell's sleep is gone; the earlier cell's background job is not.
      assert.equal(await out(session, "ps -eo args | grep '^sleep 471[12]' || true"), 'sleep 4712\n')
      assert.equal(await out(session, 'kill %1 && wait %1; echo "$?"'), '143\n')
      // A loop in the shell itself, after an interrupted child (bash's SIGINT handler must be back).
      assertInterrupted(await cancelRunning(session, 'echo GO; while :; do :; done', { language: 'bash' }))
      // The functions that run the interrupted command return, and so does the loop around them.
      const nested = await cancelRunning(session, 'nap() { sleep 100; }\ntwice() { nap; echo after-nap; }\necho GO\nfor i in 1 2; do twice; done\nexit 9', {
        language: 'bash',
      })
      assertInterrupted(nested)
      assert.equal(nested.result.structuredContent.stdout, 'GO\n')
      assert.equal(await out(session, 'echo "$KEPT"; type -t nap'), 'still-here\nfunction\n')
    })

    it('streams output while the cell runs', async () => {
      const started = performance.now()
      let firstAt = 0
      let stdout = ''
      const it = session.executeCode({ code: 'echo one; sleep 1.5; echo two >&2; echo three', language: 'bash' })
      for (;;) {
        const next = await it.next()
        if (next.done) break
        if (next.value.type === 'stdout') {
          firstAt ||= performance.now()
          stdout += next.value.text
        }
      }
      const ended = performance.now()
      assert.equal(stdout, 'one\nthree\n')
      assert.ok(ended - firstAt >= 1000, `first stdout ${(firstAt - started).toFixed(0)} ms after the start, the end after ${(ended - started).toFixed(0)} ms`)
    })

    it('a cell that reads stdin reads end of file', async () => {
      assert.equal(await out(session, 'read -r line; echo "read=$?"; cat; echo done', { timeoutMs: 10_000 }), 'read=1\ndone\n')
    })

    it('a bash context has a shell of its own, with its own directory; restart drops its state', async () => {
      await out(session, 'mkdir -p ctxdir; WHERE=default')
      const info = await session.contexts.create({ id: 'sh1', language: 'bash', cwd: 'ctxdir' })
      assert.equal(info.language, 'bash')
      assert.equal(info.runtime, 'bash')
      assert.match(await out(session, 'echo "${WHERE-none}"; pwd; WHERE=ctx', { context: 'sh1' }), /^none\n.*\/ctxdir\n$/)
      assert.equal(await out(session, 'echo "$WHERE"', { context: 'sh1' }), 'ctx\n')
      assert.equal(await out(session, 'echo "$WHERE"'), 'default\n')
      await session.contexts.restart({ context: 'sh1' })
      assert.equal(await out(session, 'echo "${WHERE-none}"', { context: 'sh1' }), 'none\n')
      await session.contexts.restart({ kernel: 'bash' })
      assert.equal(await out(session, 'echo "${WHERE-none}"'), 'none\n')
      await assert.rejects(
        session.runCode({ code: 'print(1)', language: 'python', context: 'sh1' }),
        (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError',
      )
      await session.contexts.remove('sh1')
    })
  })
}

bashSuite('bash kernel on the fake driver', async () => fakeManager())
bashSuite('bash kernel on the bwrap driver', bwrapManager, unavailable)
