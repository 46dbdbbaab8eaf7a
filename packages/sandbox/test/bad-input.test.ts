/**
 * Bad input, on the fake driver: every mistake is a CodeboxError with the right code and a
 * message naming what was wrong, oversized input is refused before it reaches the sandbox, and
 * neither the session nor its neighbours suffer from it.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CodeboxError, type ErrorCode } from '@codebox/core'
import { FakeDriver, SessionManager, type Session } from '@codebox/sandbox'
import { py, recordingDriver, withSession, type RecordedSandbox } from './fixtures.ts'

/** Asserts `call` fails with a CodeboxError of `code` whose message matches `message`. */
async function refused(call: () => Promise<unknown>, code: ErrorCode, message: RegExp): Promise<CodeboxError> {
  let caught: unknown
  await assert.rejects(call(), (e) => ((caught = e), true))
  assert.ok(caught instanceof CodeboxError, `expected a CodeboxError, got ${String(caught)}`)
  assert.equal(caught.code, code, caught.message)
  assert.match(caught.message, message)
  return caught
}

const wrong = <T>(value: unknown): T => value as T

describe('bad input (fake driver)', () => {
  let manager: SessionManager
  let created: RecordedSandbox[]
  let session: Session
  let record: RecordedSandbox

  before(async () => {
    const recorded = recordingDriver(new FakeDriver())
    created = recorded.created
    manager = new SessionManager({ driver: recorded.driver, poolSize: 0 })
    session = await manager.start()
    record = created.find((c) => c.sandbox.id === session.sandboxId)!
  })
  after(async () => {
    await manager?.close()
  })

  it('an unknown language names the languages there are', async () => {
    const e = await refused(
      () => session.runCode({ code: 'puts 1', language: wrong('ruby') }),
      'ValidationError',
      /^language: must be one of python, javascript, typescript, bash, got "ruby"$/,
    )
    assert.equal(e.details.field, 'language')
    assert.equal(e.status, 400)
  })

  it('empty code is refused', async () => {
    for (const code of ['', '  \n\t']) await refused(() => session.runCode({ code }), 'ValidationError', /^code: is empty$/)
    await refused(() => session.commands.run(''), 'ValidationError', /^command: is empty$/)
  })

  it('100 MB of code is refused at once, without reaching the sandbox', async () => {
    const code = `x = "${'a'.repeat(100_000_000)}"`
    const sent = record.bytesSent
    const started = performance.now()
    const e = await refused(
      () => session.runCode({ code }),
      'LimitExceeded',
      /^code is 100000006 bytes, over the 4194304-byte limit; write large data to a file instead$/,
    )
    await refused(() => session.commands.run(code), 'LimitExceeded', /^command is 100000006 bytes/)
    await refused(() => session.tasks.start(code), 'LimitExceeded', /^command is 100000006 bytes/)
    const took = performance.now() - started
    assert.ok(took < 1_000, `refusing took ${took.toFixed(0)} ms`)
    assert.equal(record.bytesSent, sent, 'nothing was sent to the sandbox')
    assert.equal(e.status, 413)
    assert.deepEqual(e.details, { field: 'code', limit: 4194304 })
  })

  it('paths that leave the workspace, hold NUL, or are too long are refused by name', async () => {
    const cases: [string, RegExp][] = [
      ['../escape.txt', /'\.\.\/escape\.txt' contains '\.\.'; paths must stay inside the workspace/],
      ['a/../../escape.txt', /contains '\.\.'/],
      ['a\0b.txt', /^path contains a NUL byte$/],
      ['x'.repeat(5000), /^path is longer than 4096 bytes$/],
      [`${'d/'.repeat(2100)}f`, /^path is longer than 4096 bytes$/],
      [`${'n'.repeat(300)}.txt`, /a name in '.*' is longer than 255 bytes/],
      ['/etc/passwd', /'\/etc\/passwd' is outside the workspace .*; use a relative path/],
    ]
    for (const [path, message] of cases) {
      await refused(() => session.files.write(path, 'data'), 'ValidationError', message)
      await refused(() => session.files.read(path), 'ValidationError', message)
      await refused(() => session.files.remove(path), 'ValidationError', message)
    }
    await refused(() => session.files.list('../'), 'ValidationError', /contains '\.\.'/)
    await refused(() => session.files.write('', 'data'), 'ValidationError', /path is empty/)
    assert.deepEqual(await session.files.list('', { recursive: true }), [], 'nothing was written anywhere')
  })

  it('a file over the limit is refused before it is sent', async () => {
    await withSession(
      manager,
      async (s) => {
        const sandbox = created.find((c) => c.sandbox.id === s.sandboxId)!
        const sent = sandbox.bytesSent
        const e = await refused(() => s.files.write('big.bin', Buffer.alloc(4097)), 'LimitExceeded', /^file is 4097 bytes, over the 4096-byte file limit$/)
        assert.deepEqual(e.details, { limit: 4096 })
        assert.equal(sandbox.bytesSent, sent)

        await py(s, 'open("made-by-code.bin", "wb").write(b"x" * 5000)')
        await refused(() => s.files.read('made-by-code.bin'), 'LimitExceeded', /'made-by-code\.bin' is 5000 bytes, over the 4096-byte read limit/)
      },
      { fileBytes: 4096 },
    )
  })

  it('timeouts out of range are refused, naming timeoutMs', async () => {
    for (const timeoutMs of [0, -1, 1.5, 1e12, Number.NaN]) {
      const e = await refused(
        () => session.runCode({ code: 'print(1)', timeoutMs }),
        'ValidationError',
        /^timeoutMs: must be a whole number of milliseconds from 1 to 900000, got /,
      )
      assert.equal(e.details.field, 'timeoutMs')
    }
    await refused(() => session.commands.run('true', { timeoutMs: 1e12 }), 'ValidationError', /^timeoutMs: .* got 1000000000000$/)
  })

  it('a stopped session refuses every call with SessionTerminated', async () => {
    const s = await manager.start()
    await s.stop()
    const ended = new RegExp(`^session ${s.id} has ended \\(stopped\\); start a new session$`)
    for (const call of [
      () => s.runCode({ code: 'print(1)' }),
      () => s.commands.run('true'),
      () => s.tasks.start('true'),
      () => s.tasks.get('task-1'),
      () => s.files.write('a.txt', 'a'),
      () => s.files.read('a.txt'),
      () => s.files.list(),
      () => s.files.remove('a.txt'),
    ]) {
      const e = await refused(call, 'SessionTerminated', ended)
      assert.equal(e.status, 410)
    }
    await refused(async () => manager.get(s.id), 'NotFound', new RegExp(`no session "${s.id}"`))
  })

  it('an unknown task id is NotFound; a malformed one a ValidationError', async () => {
    await refused(() => session.tasks.get('task-999'), 'NotFound', /no task 'task-999' in this session/)
    await refused(() => session.tasks.stop('task-999'), 'NotFound', /task-999/)
    await refused(() => session.tasks.get('../../etc'), 'ValidationError', /^taskId: must look like task-<number>, got "..\/..\/etc"$/)
    await refused(async () => manager.get('no-such-session'), 'NotFound', /no session "no-such-session"/)
  })

  it('wrong types are ValidationErrors naming the field', async () => {
    await refused(() => session.runCode({ code: wrong(42) }), 'ValidationError', /^code: must be a string$/)
    await refused(() => session.runCode({ code: wrong(null) }), 'ValidationError', /^code: must be a string$/)
    await refused(() => session.runCode({ code: 'print(1)', language: wrong(42) }), 'ValidationError', /^language: .*got 42$/)
    await refused(() => session.runCode({ code: 'print(1)', timeoutMs: wrong('1000') }), 'ValidationError', /^timeoutMs: .*got 1000$/)
    await refused(() => session.commands.run(wrong(['ls'])), 'ValidationError', /^command: must be a string$/)
    await refused(() => session.files.write('f.txt', wrong(42)), 'ValidationError', /^data: must be a string, a Uint8Array or an async iterable/)
    await refused(() => session.files.write('f.txt', wrong({ text: 'hi' })), 'ValidationError', /^data: /)
    await refused(() => session.files.read(wrong(42)), 'ValidationError', /^path: must be a string or \{pathBase64\}$/)
    await refused(() => session.files.list(wrong(42)), 'ValidationError', /path must be a string/)
    await refused(() => session.tasks.get(wrong(7)), 'ValidationError', /^taskId: .*got 7$/)
    await refused(() => manager.start({ limits: { memoryBytes: wrong('2G') } }), 'ValidationError', /^limits\.memoryBytes: must be a finite number, got "2G"$/)
    assert.deepEqual(await session.files.list(), [], 'no call left a file behind')
  })

  it('after all of that, the session and a second one work', async () => {
    await Promise.allSettled([
      session.runCode({ code: wrong(42) }),
      session.files.write('../x', 'x'),
      session.tasks.get('task-12345'),
      session.runCode({ code: 'print(1)', timeoutMs: 0 }),
    ])
    assert.equal(await py(session, 'print("first still works")'), 'first still works\n')
    await withSession(manager, async (second) => {
      assert.equal(await py(second, 'print("second works")'), 'second works\n')
      await second.files.write('ok.txt', 'fine')
      assert.equal((await second.files.read('ok.txt')).toString(), 'fine')
    })
  })
})
