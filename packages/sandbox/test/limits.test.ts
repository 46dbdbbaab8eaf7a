/**
 * Per-session limits: the defaults of DESIGN.md, the ValidationErrors of out-of-range requests,
 * and, on the bwrap driver, each limit tripping and being reported in the result (or as a
 * LimitExceeded error) rather than as a silent death.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { CodeboxError, defaultLimits, resolveLimits, type ErrorCode, type SessionLimits, type ToolResult } from '@codebox/core'
import { FakeDriver, SessionManager } from '@codebox/sandbox'
import { bwrapDriver, bwrapUnavailable, py, recordingDriver, sandboxCgroups, withSession, type RecordedSandbox } from './fixtures.ts'

const unavailable = await bwrapUnavailable()
const MiB = 1024 ** 2
const GiB = 1024 ** 3

function rejectsWith(code: ErrorCode, message: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof CodeboxError, `expected a CodeboxError, got ${String(e)}`)
    assert.equal(e.code, code, e.message)
    assert.match(e.message, message)
    return true
  }
}

const limitsOf = (r: ToolResult): string[] => r.structuredContent.limitsExceeded ?? []

describe('limit defaults and validation', () => {
  it('defaults are those of DESIGN.md', () => {
    assert.deepEqual(
      {
        memoryBytes: defaultLimits.memoryBytes,
        cpuCores: defaultLimits.cpuCores,
        pids: defaultLimits.pids,
        workspaceBytes: defaultLimits.workspaceBytes,
        outputBytes: defaultLimits.outputBytes,
        callTimeoutMs: defaultLimits.callTimeoutMs,
        idleTimeoutMs: defaultLimits.idleTimeoutMs,
        maxLifetimeMs: defaultLimits.maxLifetimeMs,
      },
      {
        memoryBytes: 2 * GiB,
        cpuCores: 1,
        pids: 512,
        workspaceBytes: 1 * GiB,
        outputBytes: 1 * MiB,
        callTimeoutMs: 300_000,
        idleTimeoutMs: 900_000,
        maxLifetimeMs: 8 * 3600_000,
      },
    )
    assert.ok(Object.isFrozen(defaultLimits))
    assert.deepEqual(resolveLimits(), { ...defaultLimits })
  })

  it('takes values in range and keeps the rest at their defaults', () => {
    const limits = resolveLimits({ memoryBytes: 256 * MiB, cpuCores: 0.5, pids: 100.7, idleTimeoutMs: undefined })
    assert.deepEqual(limits, { ...defaultLimits, memoryBytes: 256 * MiB, cpuCores: 0.5, pids: 100 })
  })

  it('refuses out-of-range, non-numeric and unknown limits, naming the field', () => {
    const bad: [string, unknown, RegExp][] = [
      ['memoryBytes', 32 * MiB, /between 67108864 and 17179869184, got 33554432/],
      ['memoryBytes', 17 * GiB, /between/],
      ['pids', 0, /between 16 and 4096, got 0/],
      ['cpuCores', 3, /between 0.05 and 2, got 3/],
      ['outputBytes', 10, /between/],
      ['callTimeoutMs', 16 * 60_000, /between 1 and 900000/],
      ['workspaceBytes', Number.NaN, /finite number, got null/],
      ['maxLifetimeMs', Number.POSITIVE_INFINITY, /finite number/],
      ['openFiles', '1024', /finite number, got "1024"/],
      ['gpus', 1, /unknown limit/],
    ]
    for (const [field, value, message] of bad) {
      assert.throws(
        () => resolveLimits({ [field]: value } as Partial<SessionLimits>),
        (e: unknown) => {
          rejectsWith('ValidationError', new RegExp(`^limits\\.${field}: .*${message.source}`))(e)
          assert.equal((e as CodeboxError).details.field, `limits.${field}`)
          return true
        },
        `${field} = ${String(value)}`,
      )
    }
  })

  it('a session asking for limits out of range is refused before any sandbox starts', async () => {
    const { driver, created } = recordingDriver(new FakeDriver())
    await using manager = new SessionManager({ driver, poolSize: 0 })
    await assert.rejects(manager.start({ limits: { pids: 1 } }), rejectsWith('ValidationError', /^limits\.pids: must be between 16/))
    await assert.rejects(manager.start({ limits: { memoryBytes: '2G' as unknown as number } }), rejectsWith('ValidationError', /^limits\.memoryBytes/))
    assert.equal(created.length, 0)
  })
})

describe('limits on the bwrap driver', { skip: unavailable }, () => {
  let manager: SessionManager
  let created: RecordedSandbox[]

  before(async () => {
    const recorded = recordingDriver(await bwrapDriver())
    created = recorded.created
    manager = new SessionManager({ driver: recorded.driver, poolSize: 0 })
  })
  after(async () => {
    await manager?.close()
  })

  it('a session without limits gets the defaults, applied to its sandbox', async () => {
    await withSession(manager, async (s) => {
      assert.deepEqual({ ...s.limits }, { ...defaultLimits })
      const cgroups = sandboxCgroups(s.sandboxId)
      assert.equal((await readFile(cgroups.pidsMax, 'utf8')).trim(), '512')
      assert.equal((await readFile(cgroups.memoryMax, 'utf8')).trim(), String(2 * GiB))
      const r = await s.commands.run('ulimit -n; df -B1 --output=size /workspace | tail -1')
      assert.deepEqual(
        r.structuredContent.stdout.split('\n').map((l) => l.trim()),
        ['1024', String(1 * GiB), ''],
      )
    })
  })

  it('a call over its time limit returns promptly with TIMEOUT, and the next cell works', async () => {
    await withSession(
      manager,
      async (s) => {
        await py(s, 'state = "set"')
        const started = performance.now()
        const r = await s.runCode({ code: 'import time\nprint("working", flush=True)\ntime.sleep(30)' })
        const took = performance.now() - started
        assert.ok(took >= 900 && took < 5_000, `the call took ${took.toFixed(0)} ms against a 1000 ms limit`)
        assert.deepEqual(limitsOf(r), ['TIMEOUT'])
        assert.equal(r.isError, true)
        assert.equal(r.structuredContent.stdout, 'working\n', 'output from before the timeout is kept')
        assert.match(r.structuredContent.stderr, /TIMEOUT: the call ran past its time limit/)
        assert.match(r.structuredContent.stderr, /variables and imports of earlier cells are lost/)

        assert.equal(await py(s, 'print("alive")'), 'alive\n')
        const gone = await s.runCode({ code: 'state' })
        assert.match(gone.structuredContent.stderr, /NameError/, 'the note told the truth: the state is gone')

        const command = await s.commands.run('sleep 30 & sleep 30', { timeoutMs: 500 })
        assert.deepEqual(limitsOf(command), ['TIMEOUT'])
        assert.equal((await s.commands.run('ps -e -o comm= | grep -c sleep')).structuredContent.stdout, '0\n', 'every process of the command died')
      },
      { callTimeoutMs: 1000 },
    )
  })

  it('a cell that runs out of memory is reported as OOM, and the next cell works', async () => {
    await withSession(
      manager,
      async (s) => {
        assert.equal(await py(s, 'small = bytearray(100 * 2**20)\nprint(len(small) // 2**20)'), '100\n', '100 MiB fits in 256 MiB')
        const r = await s.runCode({ code: 'big = bytearray(600 * 2**20)\nprint("survived")' })
        assert.ok(limitsOf(r).includes('OOM'), JSON.stringify(r.structuredContent))
        assert.equal(r.isError, true)
        assert.equal(r.structuredContent.stdout, '')
        assert.match(r.structuredContent.stderr, /OOM: the session ran out of memory/)
        assert.equal(await py(s, 'print("alive")'), 'alive\n')
      },
      { memoryBytes: 256 * MiB },
    )
  })

  it('output over the cap is truncated and flagged', async () => {
    await withSession(
      manager,
      async (s) => {
        const r = await s.runCode({ code: 'for i in range(2000):\n    print(f"line {i:05d} " + "x" * 40)' })
        assert.deepEqual(limitsOf(r), ['OUTPUT_TRUNCATED'])
        assert.equal(r.isError, false)
        const bytes = Buffer.byteLength(r.structuredContent.stdout)
        assert.ok(bytes <= 10_000 && bytes > 9_000, `stdout is ${bytes} bytes`)
        assert.ok(r.structuredContent.stdout.startsWith('line 00000 xxx'))
        assert.match(r.structuredContent.stderr, /OUTPUT_TRUNCATED/)

        const command = await s.commands.run('yes | head -c 100000')
        assert.deepEqual(limitsOf(command), ['OUTPUT_TRUNCATED'])
        assert.ok(Buffer.byteLength(command.structuredContent.stdout) <= 10_000)
      },
      { outputBytes: 10_000 },
    )
  })

  it('forks over the pids limit are refused and reported as PIDS', async () => {
    await withSession(
      manager,
      async (s) => {
        const spawn =
          'import errno, subprocess\nchildren = []\ntry:\n    for _ in range(200):\n        children.append(subprocess.Popen(["sleep", "30"]))\nexcept OSError as e:\n    print("refused:", errno.errorcode[e.errno])\n'
        const r = await s.runCode({ code: `${spawn}for c in children:\n    c.kill()\n    c.wait()\nprint("started", len(children))` })
        assert.match(r.structuredContent.stdout, /^refused: EAGAIN\nstarted \d+\n$/)
        assert.ok(Number(/started (\d+)/.exec(r.structuredContent.stdout)?.[1]) < 64)
        assert.ok(limitsOf(r).includes('PIDS'), JSON.stringify(r.structuredContent))
        assert.match(r.structuredContent.stderr, /PIDS: the session reached its process limit/)

        // While the cell's children hold every pid, a command cannot start: a clear error, not a crash.
        await py(s, spawn)
        await assert.rejects(s.commands.run('echo hi'), rejectsWith('LimitExceeded', /process limit/))
        // The executor serves each request on a thread, itself a pid: until the refused request's
        // thread has exited, the next one may be refused too. Trying again, as the message says, works.
        for (let attempt = 1; ; attempt++) {
          try {
            await py(s, 'for c in children:\n    c.kill()\n    c.wait()')
            break
          } catch (e) {
            if (attempt === 5) throw e
            rejectsWith('LimitExceeded', /process limit/)(e)
            await delay(50)
          }
        }
        assert.equal((await s.commands.run('echo hi')).structuredContent.stdout, 'hi\n')
        assert.equal(s.status, 'ready', 'the session survived its process limit')
      },
      { pids: 64 },
    )
  })

  it('the workspace cannot grow past its size, from code or from the file API', async () => {
    await withSession(
      manager,
      async (s) => {
        const r = await s.runCode({ code: 'with open("big.bin", "wb") as f:\n    f.write(b"x" * 20_000_000)' })
        assert.equal(r.isError, true)
        assert.match(r.structuredContent.stderr, /OSError: \[Errno \d+\] (File too large|No space left on device)/)
        await s.files.remove('big.bin')

        await assert.rejects(
          s.files.write('upload.bin', Buffer.alloc(20_000_000)),
          rejectsWith('LimitExceeded', /'upload\.bin' failed: the file reached the workspace size limit/),
        )
        await s.files.write('a.bin', Buffer.alloc(3 * MiB))
        await s.files.write('b.bin', Buffer.alloc(3 * MiB))
        await assert.rejects(s.files.write('c.bin', Buffer.alloc(3 * MiB)), rejectsWith('LimitExceeded', /'c\.bin' failed: the workspace is full/))
        assert.deepEqual((await s.commands.run('ls -A')).structuredContent.stdout, 'a.bin\nb.bin\n', 'a failed write leaves nothing behind')
        await s.files.remove('a.bin')
        await s.files.write('c.bin', Buffer.alloc(3 * MiB))
      },
      { workspaceBytes: 8 * MiB },
    )
  })

  it('a file over limits.fileBytes is refused before anything is sent', async () => {
    await withSession(
      manager,
      async (s) => {
        const record = created.find((c) => c.sandbox.id === s.sandboxId)
        assert.ok(record)
        const sent = record.bytesSent
        await assert.rejects(s.files.write('f.bin', Buffer.alloc(1001)), rejectsWith('LimitExceeded', /1001 bytes, over the 1000-byte file limit/))
        await assert.rejects(s.files.write('f.txt', 'é'.repeat(501)), rejectsWith('LimitExceeded', /1002 bytes/))
        assert.equal(record.bytesSent, sent)

        async function* chunks(): AsyncGenerator<Uint8Array> {
          yield Buffer.alloc(600)
          yield Buffer.alloc(600)
        }
        await assert.rejects(s.files.write('streamed.bin', chunks()), rejectsWith('LimitExceeded', /over the 1000-byte file limit/))
        assert.deepEqual(await s.files.list(), [])
        assert.deepEqual(await s.files.write('exact.bin', Buffer.alloc(1000)), { size: 1000 })
      },
      { fileBytes: 1000 },
    )
  })

  it('open files are capped per process', async () => {
    await withSession(
      manager,
      async (s) => {
        const r = await s.runCode({
          code: 'files = []\ntry:\n    for _ in range(200):\n        files.append(open("/dev/null"))\nexcept OSError as e:\n    print("refused after", len(files), e.strerror)\nfor f in files:\n    f.close()',
        })
        const match = /^refused after (\d+) Too many open files\n$/.exec(r.structuredContent.stdout)
        assert.ok(match, JSON.stringify(r.structuredContent))
        assert.ok(Number(match[1]) < 64)
        assert.equal((await s.commands.run('ulimit -n')).structuredContent.stdout, '64\n')
      },
      { openFiles: 64 },
    )
  })
})
