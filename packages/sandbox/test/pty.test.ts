/**
 * Processes in a terminal (session.tasks.spawn with `pty`, sendInput, resize, connect): an
 * interactive shell with job control, the terminal's size and SIGWINCH, every byte of output up to
 * the end, and the refusals, on the fake, bwrap and gVisor drivers.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CodeboxError, type ErrorCode } from '@codebox/core'
import type { ProcessEnd, ProcessStream, Session, SessionManager } from '@codebox/sandbox'
import { bwrapManager, bwrapUnavailable, fakeManager, sharedSession } from './fixtures.ts'
import { gvisorManager, gvisorUnavailable } from './gvisor-fixtures.ts'

const isError =
  (code: ErrorCode, pattern?: RegExp) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof CodeboxError, `expected a CodeboxError, got ${String(e)}`)
    assert.equal(e.code, code, e.message)
    if (pattern) assert.match(e.message, pattern)
    return true
  }

/** A terminal's output read as it comes, to wait for what the screen shows. */
class Screen {
  text = ''
  end: ProcessEnd | undefined
  /** Why reading failed (the stream broke, or sent stderr), kept until a test asks. */
  failure: unknown
  private readonly done: Promise<void>

  constructor(stream: ProcessStream) {
    this.done = (async () => {
      for await (const e of stream.events) {
        if (e.type === 'stdout') this.text += e.data.toString()
        else if (e.type === 'stderr') assert.fail(`a terminal has no stderr; got ${JSON.stringify(e.data.toString())}`)
        else if (e.type === 'end') this.end = e
      }
    })().catch((e: unknown) => {
      this.failure = e
    })
  }

  /** Waits until the output after `from` matches, and returns the match. */
  async waitFor(pattern: RegExp, from = 0, ms = 20_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + ms
    for (;;) {
      const m = pattern.exec(this.text.slice(from))
      if (m) return m
      if (this.failure !== undefined) throw this.failure
      if (this.end) assert.fail(`the process ended (${JSON.stringify(this.end)}) before ${pattern} showed; the screen: ${JSON.stringify(this.text)}`)
      if (Date.now() > deadline) assert.fail(`${pattern} did not show in ${ms} ms; the screen: ${JSON.stringify(this.text)}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }

  /** Waits for the stream to end (the process ended and every byte came). */
  async ended(ms = 20_000): Promise<ProcessEnd> {
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), ms)))
    const outcome = await Promise.race([this.done, late])
    clearTimeout(timer)
    if (outcome === 'late') assert.fail(`the process did not end in ${ms} ms; the screen: ${JSON.stringify(this.text)}`)
    if (this.failure !== undefined) throw this.failure
    assert.ok(this.end, 'the stream ended without an end event')
    return this.end
  }
}

const shell = { cmd: 'bash', args: ['--norc', '--noprofile', '-i'], env: { PS1: '$ ' } }

interface DriverTraits {
  /** Whether the sandbox has a devpts of its own (its first terminal is pts/0). */
  freshDevpts: boolean
  /** Why the terminal makes no signal of Ctrl-C and no end of file of Ctrl-D, when it does not. */
  noLineSignals?: string
}

function suite(name: string, skip: string | undefined, makeManager: () => Promise<SessionManager>, traits: DriverTraits): void {
  describe(`processes in a terminal (${name})`, { skip }, () => {
    let session: Session
    sharedSession(makeManager, (s) => (session = s))

    it('runs an interactive shell in a terminal of the given size, resized on request', async () => {
      const p = await session.tasks.spawn({ ...shell, pty: { cols: 80, rows: 24 } })
      assert.equal(p.pty, true)
      const screen = new Screen(p)
      let mark = screen.text.length
      await session.tasks.sendInput({ pid: p.pid }, 'echo $((6*7))\n', { target: 'pty' })
      await screen.waitFor(/^42\r$/m, mark)
      mark = screen.text.length
      await session.tasks.sendInput(
        { pid: p.pid },
        'stty size; tty; echo "term=$TERM ${CODEBOX_TTY_SIGWINCH-unset}"; [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo all-tty\n',
      )
      await screen.waitFor(/^24 80\r$/m, mark)
      const tty = (await screen.waitFor(/^(\/dev\/pts\/\d+)\r$/m, mark))[1]
      if (traits.freshDevpts) assert.equal(tty, '/dev/pts/0', 'the sandbox has a devpts of its own: its first terminal is pts/0')
      await screen.waitFor(/^term=xterm-256color unset\r$/m, mark) // the executor's own variable is not passed on
      await screen.waitFor(/^all-tty\r$/m, mark)

      await session.tasks.resize({ pid: p.pid }, { cols: 132, rows: 43 })
      mark = screen.text.length
      await session.tasks.sendInput({ pid: p.pid }, 'stty size\n')
      await screen.waitFor(/^43 132\r$/m, mark)
      const listed = (await session.tasks.list({ running: true })).find((t) => t.pid === p.pid)
      assert.deepEqual(listed?.pty, { cols: 132, rows: 43 })
      assert.equal(listed?.stdin, false)

      // Job control: the foreground job has a process group of its own.
      mark = screen.text.length
      await session.tasks.sendInput({ pid: p.pid }, 'python3 -c "import os; print(\'fg\', os.getpgrp() == os.tcgetpgrp(0) != os.getsid(0))"\n')
      await screen.waitFor(/^fg True\r$/m, mark)

      await session.tasks.sendInput({ pid: p.pid }, 'exit 3\n')
      const end = await screen.ended()
      assert.equal(end.exitCode, 3)
      assert.equal(end.status, 'failed')
    })

    it('sends SIGWINCH to the foreground job when the terminal is resized', async () => {
      const p = await session.tasks.spawn({ ...shell, pty: { cols: 20, rows: 10 } })
      const screen = new Screen(p)
      await session.tasks.sendInput({ pid: p.pid }, `bash -c 'trap "echo winch \\$(stty size)" WINCH; echo ready; while :; do sleep 0.05; done'\n`)
      await screen.waitFor(/^ready\r$/m)
      await session.tasks.resize({ pid: p.pid }, { cols: 1000, rows: 1 })
      await screen.waitFor(/^winch 1 1000\r$/m)
      await session.tasks.signal({ pid: p.pid }, 'SIGKILL')
      const end = await screen.ended()
      assert.equal(end.signal, 'SIGKILL')
    })

    it('makes SIGINT of Ctrl-C and an end of file of Ctrl-D', { skip: traits.noLineSignals }, async () => {
      const p = await session.tasks.spawn({ ...shell, pty: { cols: 80, rows: 24 } })
      const screen = new Screen(p)
      await session.tasks.sendInput({ pid: p.pid }, 'sleep 100\n')
      await new Promise((r) => setTimeout(r, 300))
      await session.tasks.sendInput({ pid: p.pid }, '\x03')
      const mark = screen.text.length
      await session.tasks.sendInput({ pid: p.pid }, 'echo "after $?"\n')
      await screen.waitFor(/^after 130\r$/m, mark)
      const cat = await session.tasks.spawn({ cmd: 'cat', pty: { cols: 80, rows: 24 } })
      const catScreen = new Screen(cat)
      await session.tasks.sendInput({ pid: cat.pid }, 'typed\n\x04')
      assert.equal((await catScreen.ended()).exitCode, 0)
      assert.match(catScreen.text, /typed\r\ntyped\r\n/, 'echoed by the terminal, then written back by cat')
      await session.tasks.signal({ pid: p.pid }, 'SIGKILL')
      await screen.ended()
    })

    it('keeps every byte written before the process ended, and a caller-set TERM', async () => {
      const p = await session.tasks.spawn({
        command: 'head -c 300000 /dev/zero | tr "\\0" x; echo "<$TERM>"',
        env: { TERM: 'vt100' },
        pty: { cols: 80, rows: 24 },
      })
      const screen = new Screen(p)
      const end = await screen.ended()
      assert.equal(end.exitCode, 0)
      assert.equal(screen.text.replace(/[^x]/g, '').length, 300_000)
      assert.match(screen.text, /<vt100>\r\n$/)
      // Reconnecting replays what is kept, from the start, as terminal output.
      const again = await session.tasks.connect({ taskId: p.taskId }, { stdoutOffset: 0 })
      assert.equal(again.pty, true)
      const replay = new Screen(again)
      await replay.ended()
      assert.equal(replay.text, screen.text)
    })

    it('follows a running terminal again with connect', async () => {
      const p = await session.tasks.spawn({ ...shell, pty: { cols: 80, rows: 24 }, tag: 'term' })
      const first = new Screen(p)
      await session.tasks.sendInput({ pid: p.pid }, 'echo one\n')
      await first.waitFor(/^one\r$/m)
      await p.close()
      const again = await session.tasks.connect({ tag: 'term' })
      assert.equal(again.pty, true)
      const second = new Screen(again)
      await session.tasks.sendInput({ tag: 'term' }, 'echo two\n')
      await second.waitFor(/^two\r$/m)
      await session.tasks.signal({ tag: 'term' }, 'SIGKILL')
      assert.equal((await second.ended()).signal, 'SIGKILL')
    })

    it('refuses bad sizes, and what a process with or without a terminal does not have', async () => {
      for (const pty of [{ cols: 0, rows: 24 }, { cols: 80, rows: 1001 }, { cols: 1.5, rows: 24 }, { cols: 80 }, null]) {
        await assert.rejects(
          session.tasks.spawn({ cmd: 'true', pty: pty as { cols: number; rows: number } }),
          isError('ValidationError', /^pty\b/),
          JSON.stringify(pty),
        )
      }
      await assert.rejects(session.tasks.spawn({ cmd: 'true', pty: { cols: 80, rows: 24 }, stdin: true }), isError('ValidationError', /^stdin\b/))

      const term = await session.tasks.spawn({ command: 'read line; echo "got $line"', pty: { cols: 80, rows: 24 } })
      const screen = new Screen(term)
      await assert.rejects(session.tasks.resize({ pid: term.pid }, { cols: 80, rows: 0 }), isError('ValidationError', /^size\.rows\b/))
      await assert.rejects(session.tasks.sendInput({ pid: term.pid }, 'x', { target: 'stdin' }), isError('Conflict', /runs in a terminal/))
      await assert.rejects(session.tasks.closeStdin({ pid: term.pid }), isError('Conflict', /Ctrl-D/))
      await session.tasks.sendInput({ pid: term.pid }, 'typed\n')
      assert.equal((await screen.ended()).exitCode, 0)
      assert.match(screen.text, /typed\r\ngot typed\r\n/, 'echoed by the terminal, then written by the process')
      await assert.rejects(session.tasks.resize({ pid: term.pid }, { cols: 80, rows: 24 }), isError('Conflict', /has ended/))
      await assert.rejects(session.tasks.sendInput({ pid: term.pid }, 'late\n'), isError('Conflict', /has ended/))

      const piped = await session.tasks.spawn({ cmd: 'cat', stdin: true })
      assert.equal(piped.pty, false)
      await assert.rejects(session.tasks.resize({ pid: piped.pid }, { cols: 80, rows: 24 }), isError('Conflict', /without a terminal/))
      await assert.rejects(session.tasks.sendInput({ pid: piped.pid }, 'x', { target: 'pty' }), isError('Conflict', /without a terminal/))
      assert.equal((await session.tasks.list()).find((t) => t.pid === piped.pid)?.pty, null)
      await session.tasks.signal({ pid: piped.pid }, 'SIGKILL')
      await piped.close()
    })
  })
}

suite('fake', undefined, async () => fakeManager(), { freshDevpts: false })
suite('bwrap', await bwrapUnavailable(), bwrapManager, { freshDevpts: true })
suite('gvisor', await gvisorUnavailable(), gvisorManager, {
  freshDevpts: true,
  noLineSignals: 'gVisor’s line discipline (runsc 2022) makes no signal of Ctrl-C and no end of file of Ctrl-D',
})
