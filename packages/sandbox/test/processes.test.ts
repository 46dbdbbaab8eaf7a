/**
 * Interactive processes (session.tasks.spawn, connect, sendInput, closeStdin, signal, list) and
 * the file operations E2B's envd needs (session.files.stat, makeDir, move, list with depth and
 * details, watch), on the fake driver and on the real bwrap driver.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CodeboxError, type ErrorCode, type WatchEvent } from '@codebox/core'
import { SessionManager, type FileWatch, type ProcessEvent, type ProcessStream, type Session } from '@codebox/sandbox'
import { bwrapDriver, bwrapManager, bwrapUnavailable, fakeManager, sharedSession } from './fixtures.ts'

const unavailable = await bwrapUnavailable()

const isError =
  (code: ErrorCode, field?: string) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof CodeboxError, `expected a CodeboxError, got ${String(e)}`)
    assert.equal(e.code, code, e.message)
    if (field) assert.match(e.message, new RegExp(`^${field}\\b`), e.message)
    return true
  }

/** Reads a stream's events until `until` says enough (or the stream ends), failing after `ms`. */
async function collect(stream: ProcessStream, until: (events: ProcessEvent[]) => boolean, ms = 20_000): Promise<ProcessEvent[]> {
  const events: ProcessEvent[] = []
  const it = stream.events[Symbol.asyncIterator]()
  const deadline = Date.now() + ms
  while (!until(events)) {
    const left = deadline - Date.now()
    let timer: NodeJS.Timeout | undefined
    const next = await Promise.race([it.next(), new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), Math.max(left, 0))))])
    clearTimeout(timer)
    if (next === 'late') assert.fail(`stream of ${stream.taskId} did not give what was awaited in ${ms} ms; got ${JSON.stringify(show(events))}`)
    if (next.done) break
    events.push(next.value)
  }
  return events
}

const show = (events: ProcessEvent[]): unknown[] =>
  events.map((e) => (e.type === 'stdout' || e.type === 'stderr' ? `${e.type}:${e.data.toString()}` : { ...e }))
const text = (events: ProcessEvent[], stream: 'stdout' | 'stderr' = 'stdout'): string =>
  Buffer.concat(events.flatMap((e) => (e.type === stream ? [e.data] : []))).toString()
const ended = (events: ProcessEvent[]): boolean => events.some((e) => e.type === 'end')
const endOf = (events: ProcessEvent[]): Extract<ProcessEvent, { type: 'end' }> => {
  const end = events.find((e) => e.type === 'end')
  assert.ok(end, `no end event in ${JSON.stringify(show(events))}`)
  return end as Extract<ProcessEvent, { type: 'end' }>
}

/** Reads a watch's events until one matches, failing after `ms`. */
async function waitForEvent(watch: FileWatch, seen: WatchEvent[], match: (e: WatchEvent) => boolean, ms = 10_000): Promise<void> {
  const it = watch.events[Symbol.asyncIterator]()
  const deadline = Date.now() + ms
  while (!seen.some(match)) {
    let timer: NodeJS.Timeout | undefined
    const next = await Promise.race([it.next(), new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), Math.max(deadline - Date.now(), 0))))])
    clearTimeout(timer)
    if (next === 'late') assert.fail(`the awaited watch event did not come in ${ms} ms; got ${JSON.stringify(seen)}`)
    if (next.done) assert.fail(`the watch ended (${watch.ended}) before the awaited event; got ${JSON.stringify(seen)}`)
    seen.push(next.value)
  }
}

function suite(name: string, skip: string | undefined, makeManager: () => Promise<SessionManager>): void {
  describe(`processes and file operations (${name})`, { skip }, () => {
    let session: Session
    sharedSession(makeManager, (s) => (session = s))

    describe('processes', () => {
      it('echoes what is sent to stdin, and ends when stdin is closed', async () => {
        const p = await session.tasks.spawn({ cmd: 'cat', stdin: true })
        assert.match(p.taskId, /^task-\d+$/)
        assert.ok(p.pid > 1)
        await session.tasks.sendInput({ pid: p.pid }, 'hello\n')
        const first = await collect(p, (ev) => text(ev).includes('hello\n'))
        await session.tasks.sendInput({ taskId: p.taskId }, Buffer.from('bytes \u00e9\n'))
        await session.tasks.closeStdin({ taskId: p.taskId })
        const rest = await collect(p, ended)
        assert.equal(text([...first, ...rest]), 'hello\nbytes \u00e9\n')
        const end = endOf(rest)
        assert.deepEqual([end.status, end.exitCode, end.signal], ['completed', 0, null])
        await assert.rejects(session.tasks.sendInput({ taskId: p.taskId }, 'late'), isError('Conflict'))
        // A process that closed its stdin and runs on: its reader is gone (EPIPE), the executor lives on.
        const closer = await session.tasks.spawn({ command: 'exec 0<&-; echo closed; exec sleep 600', stdin: true })
        await collect(closer, (ev) => text(ev).includes('closed'))
        await assert.rejects(
          session.tasks.sendInput({ taskId: closer.taskId }, 'anyone?'),
          (e: unknown) => isError('Conflict')(e) && /no longer reads/.test(String(e)),
        )
        await session.tasks.signal({ taskId: closer.taskId }, 'SIGKILL')
        assert.equal(endOf(await collect(closer, ended)).signal, 'SIGKILL')
        assert.equal((await session.runCommand('echo alive')).structuredContent.stdout, 'alive\n')
      })

      it('ends a process with the signal sent, and reports it', async () => {
        for (const [signal, code] of [
          ['SIGTERM', 143],
          ['SIGKILL', 137],
        ] as const) {
          const p = await session.tasks.spawn({ command: 'echo up; exec sleep 600' })
          await collect(p, (ev) => text(ev).includes('up'))
          await session.tasks.signal({ taskId: p.taskId }, signal)
          const end = endOf(await collect(p, ended))
          assert.deepEqual([end.exitCode, end.signal, end.status], [code, signal, 'failed'], signal)
          await assert.rejects(session.tasks.signal({ taskId: p.taskId }, 'SIGTERM'), isError('Conflict'))
        }
        await assert.rejects(session.tasks.signal({ taskId: 'task-1' }, 'SIGWHAT' as never), isError('ValidationError', 'signal'))
      })

      it('reports exit codes, and refuses a program that is not there', async () => {
        const p = await session.tasks.spawn({ command: 'echo out; echo err >&2; exit 3' })
        const events = await collect(p, ended)
        assert.equal(text(events), 'out\n')
        assert.equal(text(events, 'stderr'), 'err\n')
        assert.deepEqual([endOf(events).exitCode, endOf(events).status], [3, 'failed'])
        const args = await session.tasks.spawn({
          cmd: 'printf',
          args: ['%s|', 'a b', '$HOME', ''],
          env: { X: '1' },
          cwd: 'sub-dir-missing'.slice(0, 0) || '/tmp',
        })
        const argEvents = await collect(args, ended)
        assert.equal(text(argEvents), 'a b|$HOME||', 'arguments pass through without a shell')
        await assert.rejects(session.tasks.spawn({ cmd: 'no-such-program-here' }), isError('ValidationError', 'argv'))
        await assert.rejects(session.tasks.spawn({ cmd: 'ls', command: 'ls' }), isError('ValidationError', 'command'))
        await assert.rejects(session.tasks.spawn({ command: 'true', cwd: '/no/such/dir' }), isError('ValidationError', 'cwd'))
      })

      it('streams stdout and stderr in the order they were written', async () => {
        const p = await session.tasks.spawn({ command: 'for i in 1 2 3 4 5; do echo out$i; sleep 0.05; echo err$i >&2; sleep 0.05; done' })
        const events = await collect(p, ended)
        const order = events.flatMap((e) => (e.type === 'stdout' || e.type === 'stderr' ? e.data.toString().trim().split('\n') : []))
        assert.deepEqual(order, ['out1', 'err1', 'out2', 'err2', 'out3', 'err3', 'out4', 'err4', 'out5', 'err5'])
        let next = 0
        for (const e of events) {
          if (e.type !== 'stdout') continue
          assert.equal(e.offset, next, 'offsets count every byte of the stream')
          next += e.data.length
        }
      })

      it('lists running processes and connects to one again', async () => {
        const p = await session.tasks.spawn({ command: 'echo first; read x; echo second $x', stdin: true, tag: 'srv', env: { GREETING: 'hi' }, cwd: '/tmp' })
        await collect(p, (ev) => text(ev).includes('first\n'))
        await p.close()
        const listed = await session.tasks.list({ running: true })
        const info = listed.find((t) => t.taskId === p.taskId)
        assert.ok(info, `${p.taskId} is not listed: ${JSON.stringify(listed)}`)
        assert.deepEqual(
          { pid: info.pid, tag: info.tag, cwd: info.cwd, env: info.env, stdin: info.stdin, status: info.status, command: info.command },
          { pid: p.pid, tag: 'srv', cwd: '/tmp', env: { GREETING: 'hi' }, stdin: true, status: 'working', command: 'echo first; read x; echo second $x' },
        )
        assert.deepEqual(info.argv.slice(0, 2), ['/bin/sh', '-c'])
        // Again from now on (by tag): only what comes after.
        const again = await session.tasks.connect({ tag: 'srv' })
        assert.deepEqual([again.taskId, again.pid], [p.taskId, p.pid])
        // And from the beginning (by pid): what was kept, then the rest.
        const replay = await session.tasks.connect({ pid: p.pid }, { stdoutOffset: 0 })
        await session.tasks.sendInput({ tag: 'srv' }, 'go\n')
        const later = await collect(again, ended)
        assert.equal(text(later), 'second go\n')
        assert.equal(endOf(later).exitCode, 0)
        assert.equal(text(await collect(replay, ended)), 'first\nsecond go\n')
        // A process that has ended: connecting gives what it kept and its end.
        const done = await collect(await session.tasks.connect({ taskId: p.taskId }, { stdoutOffset: 6 }), ended)
        assert.equal(text(done), 'second go\n')
        assert.ok(!(await session.tasks.list({ running: true })).some((t) => t.taskId === p.taskId), 'an ended task is not listed as running')
        assert.equal((await session.tasks.list()).find((t) => t.taskId === p.taskId)?.status, 'completed')
        await assert.rejects(session.tasks.connect({ pid: 999_999 }), isError('NotFound'))
        await assert.rejects(session.tasks.connect({ pid: 1, tag: 'x' } as never), isError('ValidationError', 'selector'))
      })

      it('refuses what is over its limits with a clear error', async () => {
        await assert.rejects(session.tasks.sendInput({ taskId: 'task-1' }, Buffer.alloc(1024 * 1024 + 1)), isError('LimitExceeded'))
        const quiet = await session.tasks.spawn({ cmd: 'sleep', args: ['600'] })
        await assert.rejects(session.tasks.sendInput({ taskId: quiet.taskId }, 'x'), /started without stdin/)
        // At most 8 streams of one process.
        const streams = [quiet]
        for (let i = 0; i < 7; i++) streams.push(await session.tasks.connect({ taskId: quiet.taskId }))
        await assert.rejects(session.tasks.connect({ taskId: quiet.taskId }), isError('LimitExceeded'))
        await Promise.all(streams.map((s) => s.close()))
        // At most 64 running.
        const running = (await session.tasks.list({ running: true })).length
        const started: string[] = []
        for (let i = running; i < 64; i++) started.push((await session.tasks.start('exec sleep 600')).structuredContent.taskId!)
        await assert.rejects(
          session.tasks.spawn({ cmd: 'sleep', args: ['1'] }),
          (e: unknown) => isError('LimitExceeded')(e) && /64 background tasks/.test(String(e)),
        )
        await Promise.all([quiet.taskId, ...started].map((t) => session.tasks.stop(t)))
        if (name === 'fake') {
          // A process that does not read its stdin: the input waits 10 s, then fails saying so.
          const deaf = await session.tasks.spawn({ cmd: 'sleep', args: ['600'], stdin: true })
          await assert.rejects(
            session.tasks.sendInput({ taskId: deaf.taskId }, Buffer.alloc(1024 * 1024)),
            (e: unknown) => isError('Timeout')(e) && /did not read its stdin/.test(String(e)),
          )
          await session.tasks.stop(deaf.taskId)
          await deaf.close()
        }
        const after = await session.tasks.spawn({ command: 'echo room again' })
        assert.equal(text(await collect(after, ended)), 'room again\n')
      })
    })

    describe('file operations', () => {
      // The workspace as the sandbox's processes see it: /workspace, or a host directory on the fake driver.
      let workspace: string
      before(async () => {
        workspace = (await session.runCommand('pwd')).structuredContent.stdout.trim()
        await session.files.write('fs/a.txt', 'hello')
        const r = await session.runCommand('ln -s /etc fs/etc-link && ln -s a.txt fs/a-link && mkdir -p fs/d1/d2 && chmod 640 fs/a.txt')
        assert.equal(r.structuredContent.exitCode, 0, r.structuredContent.stderr)
      })

      it('stats files, directories and symlinks, never following a link', async () => {
        const a = await session.files.stat('fs/a.txt')
        assert.deepEqual([a.type, a.size, a.mode, a.permissions, a.name, a.path], ['file', 5, 0o640, '-rw-r-----', 'a.txt', 'fs/a.txt'])
        assert.ok(typeof a.owner === 'string' && a.owner !== '' && typeof a.group === 'string')
        assert.ok(!Number.isNaN(Date.parse(a.modifiedAt)))
        const abs = await session.files.stat(`${workspace}/fs/a.txt`)
        assert.equal(abs.path, 'fs/a.txt', 'an absolute path under /workspace is the same file')
        const dir = await session.files.stat('fs/d1')
        assert.equal(dir.type, 'directory')
        assert.match(dir.permissions, /^d/)
        const link = await session.files.stat('fs/etc-link')
        assert.deepEqual([link.type, link.symlinkTarget, link.permissions[0]], ['symlink', '/etc', 'l'])
        assert.equal((await session.files.stat('')).type, 'directory', 'the workspace itself')
        await assert.rejects(session.files.stat('fs/nothing'), isError('NotFound'))
        await assert.rejects(session.files.stat('/etc/passwd'), isError('ValidationError'))
        await assert.rejects(session.files.stat('../etc/passwd'), isError('ValidationError'))
        await assert.rejects(session.files.stat('fs/etc-link/passwd'), isError('ValidationError'))
      })

      it('makes directories, with their parents, and tells whether one was there', async () => {
        const made = await session.files.makeDir('fs/new/deep/er')
        assert.deepEqual([made.created, made.entry.type, made.entry.path], [true, 'directory', 'fs/new/deep/er'])
        assert.equal((await session.files.makeDir('fs/new/deep/er')).created, false)
        await assert.rejects(session.files.makeDir('fs/a.txt'), isError('Conflict'))
        await assert.rejects(session.files.makeDir('fs/missing/child', { parents: false }), isError('NotFound'))
        await assert.rejects(session.files.makeDir('fs/etc-link/x'), isError('ValidationError'))
        await assert.rejects(session.files.makeDir('/tmp/made-outside'), isError('ValidationError'))
        assert.equal((await session.runCommand('test -e /etc/x || test -e /tmp/made-outside || echo no')).structuredContent.stdout, 'no\n')
      })

      it('moves files and directories inside the workspace only', async () => {
        await session.files.write('fs/m.txt', 'move me')
        const moved = await session.files.move('fs/m.txt', 'fs/into/new/m2.txt')
        assert.deepEqual([moved.path, moved.type, moved.size], ['fs/into/new/m2.txt', 'file', 7])
        assert.equal((await session.files.read('fs/into/new/m2.txt')).toString(), 'move me')
        await assert.rejects(session.files.stat('fs/m.txt'), isError('NotFound'))
        const link = await session.files.move('fs/a-link', 'fs/b-link')
        assert.deepEqual([link.type, link.symlinkTarget], ['symlink', 'a.txt'], 'a symlink moves as the link')
        await assert.rejects(session.files.move('fs/into', 'fs/into/sub'), isError('ValidationError', 'to'))
        await assert.rejects(session.files.move('fs/into/new/m2.txt', '/tmp/out.txt'), isError('ValidationError', 'to'))
        await assert.rejects(session.files.move('fs/into/new/m2.txt', 'fs/etc-link/out.txt'), isError('ValidationError'))
        await assert.rejects(session.files.move('/etc/hostname', 'fs/h'), isError('ValidationError'))
        await assert.rejects(session.files.move('fs/none', 'fs/h'), isError('NotFound'))
        await session.files.makeDir('fs/full/x')
        await assert.rejects(session.files.move('fs/d1', 'fs/full'), isError('Conflict'))
      })

      it('lists to a depth, with details', async () => {
        const one = await session.files.list('fs')
        assert.ok(
          one.every((e) => e.path.split('/').length === 2),
          JSON.stringify(one.map((e) => e.path)),
        )
        const two = await session.files.list('fs', { depth: 2 })
        assert.ok(two.some((e) => e.path === 'fs/d1/d2'))
        assert.ok(!two.some((e) => e.path.split('/').length > 3))
        const details = await session.files.list('fs', { details: true })
        const link = details.find((e) => e.path === 'fs/etc-link')!
        assert.deepEqual([link.type, link.symlinkTarget], ['symlink', '/etc'])
        assert.ok(!details.some((e) => e.path.startsWith('fs/etc-link/')), 'a symlink is not walked into')
        await assert.rejects(session.files.list('fs', { depth: 0 }), isError('ValidationError', 'depth'))
      })

      it('watches a directory for changes until stopped', async () => {
        await session.files.makeDir('w/sub')
        const watch = await session.files.watch('w')
        assert.equal(watch.mode, 'inotify', 'this machine has inotify; polling is for sandboxes without it')
        const seen: WatchEvent[] = []
        await session.files.write('w/f.txt', 'one')
        await waitForEvent(watch, seen, (e) => e.name === 'f.txt' && e.type === 'write')
        assert.deepEqual(
          seen.filter((e) => e.name === 'f.txt').map((e) => e.type),
          ['create', 'write'],
          'a new file written through the files API is created, then written (as a plain write)',
        )
        await session.files.write('w/f.txt', 'two')
        await waitForEvent(watch, seen, (e) => e.name === 'f.txt' && e.type === 'write' && seen.filter((x) => x.name === 'f.txt').length > 2)
        assert.deepEqual(
          seen.filter((e) => e.name === 'f.txt').map((e) => e.type),
          ['create', 'write', 'write'],
          'a replaced one is written',
        )
        await session.files.move('w/f.txt', 'w/g.txt')
        await waitForEvent(watch, seen, (e) => e.name === 'g.txt' && e.type === 'create')
        await session.runCommand('chmod 600 w/g.txt')
        await waitForEvent(watch, seen, (e) => e.name === 'g.txt' && e.type === 'chmod')
        await session.files.remove('w/g.txt')
        await waitForEvent(watch, seen, (e) => e.name === 'g.txt' && e.type === 'remove')
        if (watch.mode === 'inotify')
          assert.ok(
            seen.some((e) => e.name === 'f.txt' && e.type === 'rename'),
            JSON.stringify(seen),
          )
        // Not recursive: a change in a subdirectory is not an event of this watch.
        await session.files.write('w/sub/deep.txt', 'x')
        await session.files.write('w/marker', 'x')
        await waitForEvent(watch, seen, (e) => e.name === 'marker' && e.type === 'write')
        assert.ok(!seen.some((e) => e.name.includes('deep')), JSON.stringify(seen))
        await watch.stop()
        assert.equal(watch.ended, 'stopped')
        const after: WatchEvent[] = []
        for await (const e of watch.events) after.push(e)
        assert.deepEqual(after, [], 'no events after stop')

        const deep = await session.files.watch(`${workspace}/w`, { recursive: true })
        const deepSeen: WatchEvent[] = []
        await session.files.write('w/sub/deep2.txt', 'x')
        await waitForEvent(deep, deepSeen, (e) => e.name === 'sub/deep2.txt' && e.type === 'write')
        await session.files.makeDir('w/later/made')
        await session.files.write('w/later/made/z.txt', 'x')
        await waitForEvent(deep, deepSeen, (e) => e.name === 'later/made/z.txt')
        await deep.stop()
      })

      it('refuses watches outside the workspace, through symlinks, and past its limit', async () => {
        await assert.rejects(session.files.watch('/etc'), isError('ValidationError'))
        await assert.rejects(session.files.watch('fs/etc-link'), isError('ValidationError'))
        await assert.rejects(session.files.watch('no-such-dir'), isError('NotFound'))
        const watches: FileWatch[] = []
        try {
          for (let i = 0; i < 16; i++) watches.push(await session.files.watch('fs'))
          await assert.rejects(session.files.watch('fs'), isError('LimitExceeded'))
        } finally {
          await Promise.all(watches.map((w) => w.stop()))
        }
        const again = await session.files.watch('fs')
        await again.stop()
      })
    })
  })
}

suite('fake', undefined, async () => fakeManager())
suite('bwrap', unavailable, bwrapManager)

describe('processes across a server restart (bwrap)', { skip: unavailable }, () => {
  it('a process started by one server is followed, fed and ended by the next', async () => {
    const first = new SessionManager({ driver: await bwrapDriver(), poolSize: 0 })
    const s = await first.start()
    const record = { sessionId: s.id, sandboxId: s.sandboxId, limits: { ...s.limits }, createdAt: s.createdAt }
    const p = await s.tasks.spawn({ command: 'echo before; cat', stdin: true, tag: 'kept' })
    await collect(p, (ev) => text(ev).includes('before'))
    await first.close({ detach: true })
    const second = new SessionManager({ driver: await bwrapDriver(), poolSize: 0 })
    try {
      const outcome = await second.adopt([record])
      assert.deepEqual(outcome.failed, [])
      const again = outcome.adopted[0]!
      const listed = await again.tasks.list({ running: true })
      assert.deepEqual(
        listed.map((t) => [t.taskId, t.pid, t.tag]),
        [[p.taskId, p.pid, 'kept']],
      )
      const followed = await again.tasks.connect({ tag: 'kept' }, { stdoutOffset: 0 })
      await again.tasks.sendInput({ pid: p.pid }, 'after\n')
      await again.tasks.closeStdin({ pid: p.pid })
      const events = await collect(followed, ended)
      assert.equal(text(events), 'before\nafter\n')
      assert.equal(endOf(events).exitCode, 0)
    } finally {
      await second.close()
    }
  })
})
