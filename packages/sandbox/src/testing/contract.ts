/**
 * `@codebox/sandbox/testing`: the contract every SandboxDriver passes (STYLE.md), for the drivers
 * in this package and for a driver in another one: a sandbox starts and its executor says ready,
 * runs Python and commands, keeps state, moves files, ends on destroy() (idempotently), stays
 * independent of its neighbours, a call whose sandbox is destroyed fails with SessionTerminated
 * instead of hanging, a server the session runs on its loopback is reached through openPort (or
 * the driver says clearly that it cannot), and the limits hold (a call's timeout, memory, output, processes). Each
 * driver's test file calls defineDriverTests; a case a driver cannot meet on a host is skipped
 * with the reason it gives (`skips`), never silently.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { CodeboxError, defaultLimits, type Sandbox, type SandboxDriver, type SandboxSpec } from '@codebox/core'
import type { SessionLimits, ToolResult } from '@codebox/core'
import { ExecutorClient } from '../executor-client.ts'
import { SessionManager } from '../session-manager.ts'

/** The host's client of the executor protocol, for a driver's own tests of what its sandboxes say. */
export { ExecutorClient }
import type { Session } from '../session.ts'

/** A sandbox a recording driver created, and the bytes the host sent it. */
export interface RecordedSandbox {
  sandbox: Sandbox
  bytesSent: number
}

/** Wraps a driver to remember every sandbox it creates and count the bytes sent to each. */
export function recordingDriver(inner: SandboxDriver): { driver: SandboxDriver; created: RecordedSandbox[] } {
  const created: RecordedSandbox[] = []
  const driver: SandboxDriver = {
    name: inner.name,
    check: () => inner.check(),
    create: async (spec, options) => {
      const sandbox = await inner.create(spec, options)
      const record: RecordedSandbox = { sandbox, bytesSent: 0 }
      const write = sandbox.input.write.bind(sandbox.input) as (chunk: Buffer) => boolean
      sandbox.input.write = ((chunk: Buffer) => ((record.bytesSent += chunk.length), write(chunk))) as typeof sandbox.input.write
      created.push(record)
      return sandbox
    },
  }
  return { driver, created }
}

/** Starts a lean session (no preload), runs `fn`, and always stops it. */
async function withSession<T>(manager: SessionManager, fn: (s: Session) => Promise<T>, limits?: Partial<SessionLimits>): Promise<T> {
  const session = await manager.start({ ...(limits ? { limits } : {}), preload: [] })
  try {
    return await fn(session)
  } catch (e) {
    if (e instanceof Error) e.message = `[session ${session.id}] ${e.message}`
    throw e
  } finally {
    await session.stop()
  }
}

/** Runs Python and returns its stdout; a failed cell throws with its stderr. */
async function py(session: Session, code: string): Promise<string> {
  const r = await session.runCode({ code, language: 'python' })
  if (r.isError) throw new Error(`cell failed: ${r.structuredContent.stderr}`)
  return r.structuredContent.stdout
}

const limitsOf = (r: ToolResult): string[] => r.structuredContent.limitsExceeded ?? []
const MiB = 1024 ** 2

/** The cases of the contract, by id: a driver names the ones it cannot meet in `skips`, with the reason. */
export type ContractCase = 'timeout' | 'oom' | 'output' | 'pids' | 'image'

export interface DriverTestOptions {
  /** Cases this driver skips on this host, each with its reason (shown in the test report). */
  skips?: Partial<Record<ContractCase, string>>
}

interface Fixture {
  driver: SandboxDriver
  manager: SessionManager
  /** Every sandbox the manager's driver created, newest last. */
  created: RecordedSandbox[]
}

/** Resolves like `promise`, or rejects naming `what` once `ms` have passed. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} (waited ${ms} ms)`)), ms)))
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

/** A TCP port nothing on the host listens on now. */
export async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as net.AddressInfo
  await new Promise((res) => server.close(res))
  return port
}

const isSessionTerminated = (e: unknown): boolean => {
  assert.ok(e instanceof CodeboxError, `expected a CodeboxError, got ${String(e)}`)
  assert.equal(e.code, 'SessionTerminated', e.message)
  return true
}

const newSpec = (): SandboxSpec => ({ id: `contract-${randomBytes(6).toString('hex')}`, limits: { ...defaultLimits }, network: { mode: 'none' } })

/** Creates a sandbox straight on the driver, waits for ready, and always destroys it. */
async function withSandbox(driver: SandboxDriver, fn: (sandbox: Sandbox, client: ExecutorClient, spec: SandboxSpec) => Promise<void>): Promise<void> {
  const spec = newSpec()
  const sandbox = await driver.create(spec)
  try {
    const client = new ExecutorClient(sandbox)
    await within(client.ready, 30_000, `sandbox ${spec.id} did not say ready: ${sandbox.diagnostics()}`)
    await fn(sandbox, client, spec)
  } finally {
    await sandbox.destroy()
  }
}

/**
 * Defines the contract suite for one driver. `makeDriver` returns the driver, or `{skip}` with
 * the reason it cannot run on this host; every test then skips with that reason.
 */
export function defineDriverTests(name: string, makeDriver: () => Promise<SandboxDriver | { skip: string }>, options: DriverTestOptions = {}): void {
  describe(`SandboxDriver contract: ${name}`, () => {
    let fixture: Fixture | undefined
    let skip: string | undefined

    before(async () => {
      const made = await makeDriver()
      if ('skip' in made) {
        skip = made.skip
        return
      }
      await made.check()
      const { driver, created } = recordingDriver(made)
      fixture = { driver: made, manager: new SessionManager({ driver, poolSize: 0 }), created }
    })

    after(async () => {
      await fixture?.manager.close()
    })

    const test = (title: string, fn: (f: Fixture) => Promise<void>, id?: ContractCase): void => {
      it(title, async (t) => {
        if (!fixture) return t.skip(skip ?? 'the driver was not created')
        const reason = id && options.skips?.[id]
        if (reason) return t.skip(reason)
        await fn(fixture)
      })
    }

    test('starts a sandbox whose executor says ready', async ({ driver }) => {
      await withSandbox(driver, async (sandbox, client, spec) => {
        assert.equal(sandbox.id, spec.id)
        const done = await client.call('ping', {})
        assert.equal(typeof done.pid, 'number')
        const counters = await sandbox.counters()
        assert.deepEqual(Object.keys(counters).sort(), ['oomKills', 'pidsLimitHits'])
        assert.ok((await sandbox.memoryUsage()) >= 0)
      })
    })

    test('runs Python and returns what it printed', async ({ manager }) => {
      await withSession(manager, async (s) => {
        const r = await s.runCode({ code: 'print("hello", 6 * 7)' })
        assert.deepEqual(r.content, [{ type: 'text', text: 'hello 42\n' }])
        assert.equal(r.structuredContent.stdout, 'hello 42\n')
        assert.equal(r.structuredContent.stderr, '')
        assert.equal(r.structuredContent.exitCode, 0)
        assert.equal(r.isError, false)
      })
    })

    test('keeps Python state between calls', async ({ manager }) => {
      await withSession(manager, async (s) => {
        await py(s, 'total = 40\ndef bump(n):\n    return n + 1')
        await py(s, 'total = bump(total) + 1')
        assert.equal(await py(s, 'print(total)'), '42\n')
      })
    })

    test('reports a Python exception as data, not as a thrown error', async ({ manager }) => {
      await withSession(manager, async (s) => {
        const r = await s.runCode({ code: 'raise KeyError("missing-key")' })
        assert.equal(r.isError, true)
        assert.equal(r.structuredContent.exitCode, 1)
        assert.match(r.structuredContent.stderr, /KeyError: 'missing-key'/)
        assert.equal(await py(s, 'print("still here")'), 'still here\n')
      })
    })

    test('runs commands and reports their exit codes', async ({ manager }) => {
      await withSession(manager, async (s) => {
        const ok = await s.commands.run('echo out; echo err >&2')
        assert.equal(ok.structuredContent.stdout, 'out\n')
        assert.equal(ok.structuredContent.stderr, 'err\n')
        assert.equal(ok.structuredContent.exitCode, 0)
        assert.equal(ok.isError, false)

        const failed = await s.commands.run('echo partial; exit 3')
        assert.equal(failed.structuredContent.stdout, 'partial\n')
        assert.equal(failed.structuredContent.exitCode, 3)
        assert.equal(failed.isError, true)

        const missing = await s.commands.run('no-such-command-codebox')
        assert.equal(missing.structuredContent.exitCode, 127)
        assert.match(missing.structuredContent.stderr, /not found/)
      })
    })

    test('writes, reads, lists and removes files, as the code sees them', async ({ manager }) => {
      await withSession(manager, async (s) => {
        const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
        assert.deepEqual(await s.files.write('data/in.txt', 'hello\n'), { size: 6 })
        await s.files.write('data/bytes.bin', bytes)
        assert.equal((await s.files.read('data/in.txt')).toString(), 'hello\n')
        assert.deepEqual(await s.files.read('data/bytes.bin'), bytes)

        assert.equal(await py(s, 'print(open("data/in.txt").read().upper(), end="")\nopen("data/out.txt", "w").write("from code")'), 'HELLO\n')
        assert.equal((await s.commands.run('cat data/out.txt')).structuredContent.stdout, 'from code')
        assert.equal((await s.files.read('data/out.txt')).toString(), 'from code')

        const listed = (await s.files.list('data')).map((e) => [e.path, e.type, e.size])
        assert.deepEqual(listed, [
          ['data/bytes.bin', 'file', 256],
          ['data/in.txt', 'file', 6],
          ['data/out.txt', 'file', 9],
        ])
        assert.ok((await s.files.list()).some((e) => e.path === 'data' && e.type === 'directory'))
        assert.ok((await s.files.list('', { recursive: true })).some((e) => e.path === 'data/in.txt'))

        await s.files.write('data/in.txt', 'replaced')
        assert.equal((await s.files.read('data/in.txt')).toString(), 'replaced')
        await s.files.remove('data/in.txt')
        await assert.rejects(s.files.read('data/in.txt'), { code: 'NotFound' })
        await assert.rejects(s.files.remove('data'), { code: 'Conflict' })
        await s.files.remove('data', { recursive: true })
        assert.ok(!(await s.files.list()).some((e) => e.path === 'data'))
        assert.equal(await py(s, 'import os\nprint(os.path.exists("data"))'), 'False\n')
      })
    })

    test(
      "the image's /home/user (E2B's home, named literally by code written for E2B) is the workspace",
      async ({ manager }) => {
        await withSession(manager, async (s) => {
          const run = await s.commands.run('readlink -f /home/user && echo hi > /home/user/home.txt && cat /workspace/home.txt')
          assert.equal(run.structuredContent.stdout, '/workspace\nhi\n', run.structuredContent.stderr)
          assert.equal((await s.files.read('home.txt')).toString(), 'hi\n')
        })
      },
      'image',
    )

    test('destroy() ends the sandbox, resolves exited, and is idempotent', async ({ driver }) => {
      const sandbox = await driver.create(newSpec())
      try {
        const client = new ExecutorClient(sandbox)
        await within(client.ready, 30_000, 'the executor did not say ready')
        await Promise.all([sandbox.destroy(), sandbox.destroy()])
        const exit = await within(sandbox.exited, 5_000, 'exited did not resolve after destroy()')
        assert.ok(exit.code !== 0 || exit.signal !== null, `a destroyed sandbox exited cleanly: ${JSON.stringify(exit)}`)
        await within(sandbox.destroy(), 5_000, 'a second destroy() hung')
        await assert.rejects(client.call('ping', {}), isSessionTerminated)
      } finally {
        await sandbox.destroy()
      }
    })

    test('two sandboxes are independent', async ({ manager }) => {
      await withSession(manager, (a) =>
        withSession(manager, async (b) => {
          assert.notEqual(a.sandboxId, b.sandboxId)
          await py(a, 'who = "a"')
          await py(b, 'who = "b"')
          await a.files.write('only-a.txt', 'a')
          assert.equal(await py(a, 'print(who)'), 'a\n')
          assert.equal(await py(b, 'print(who)'), 'b\n')
          await assert.rejects(b.files.read('only-a.txt'), { code: 'NotFound' })
          assert.equal((await b.commands.run('ls')).structuredContent.stdout, '')

          await a.stop()
          assert.equal(await py(b, 'print(who)'), 'b\n')
        }),
      )
    })

    test('a call fails with SessionTerminated when its sandbox is destroyed mid-call', async ({ manager, created }) => {
      await withSession(manager, async (s) => {
        const sandbox = created.find((r) => r.sandbox.id === s.sandboxId)?.sandbox
        assert.ok(sandbox, 'the session runs on a sandbox this driver created')
        const events = s.executeCode({ code: 'import time\nprint("started", flush=True)\ntime.sleep(60)' })
        assert.deepEqual((await within(events.next(), 30_000, 'the cell did not start')).value, { type: 'stdout', text: 'started\n' })

        const destroyed = sandbox.destroy()
        await assert.rejects(within(events.next(), 10_000, 'the call hung after its sandbox was destroyed'), isSessionTerminated)
        await destroyed
        assert.equal(s.status, 'terminated')
        assert.equal(s.endReason, 'sandbox-exited')
        await assert.rejects(s.runCode({ code: 'print(1)' }), isSessionTerminated)
        await assert.rejects(s.commands.run('true'), isSessionTerminated)
      })
    })

    test('a command fails with SessionTerminated when its sandbox is destroyed mid-call', async ({ manager, created }) => {
      await withSession(manager, async (s) => {
        const sandbox = created.find((r) => r.sandbox.id === s.sandboxId)?.sandbox
        assert.ok(sandbox)
        const events = s.streamCommand('echo started; sleep 60')
        assert.deepEqual((await within(events.next(), 30_000, 'the command did not start')).value, { type: 'stdout', text: 'started\n' })
        void sandbox.destroy()
        await assert.rejects(within(events.next(), 10_000, 'the command hung after its sandbox was destroyed'), isSessionTerminated)
      })
    })

    test("openPort reaches a server on the sandbox's loopback, byte for byte, or is Unavailable on a driver without connectPort", async ({
      manager,
      created,
    }) => {
      await withSession(manager, async (s) => {
        const sandbox = created.find((r) => r.sandbox.id === s.sandboxId)?.sandbox
        assert.ok(sandbox)
        if (!sandbox.connectPort) {
          await assert.rejects(s.openPort(8080), { code: 'Unavailable', message: /cannot reach ports/ })
          return
        }
        // A port free on the host too: the fake driver's "sandbox" shares the host's loopback.
        const port = await freePort()
        const echo = `import socket\ns = socket.socket()\ns.bind(("127.0.0.1", ${port}))\ns.listen(4)\nprint("up", flush=True)\nwhile True:\n    c, _ = s.accept()\n    while (d := c.recv(65536)):\n        c.sendall(d.upper())\n    c.close()`
        await s.files.write('echo.py', echo)
        const t = await s.tasks.start('exec python3 -u echo.py')
        const taskId = t.structuredContent.taskId!
        for (let i = 0; (await s.tasks.read(taskId)).stdout !== 'up\n'; i++) {
          assert.ok(i < 300, 'the echo server did not start')
          await new Promise((res) => setTimeout(res, 50))
        }
        const stream = await s.openPort(port)
        const chunks: Buffer[] = []
        stream.on('data', (c: Buffer) => chunks.push(c))
        const closed = new Promise((res) => stream.on('close', res))
        stream.end('hello through the relay')
        await within(closed, 10_000, 'the echo did not end')
        assert.equal(Buffer.concat(chunks).toString(), 'HELLO THROUGH THE RELAY')
        await s.tasks.stop(taskId)
        await assert.rejects(s.openPort(await freePort()), { code: 'Unavailable', message: /nothing listens on port \d+ in the sandbox/ })
      })
    })

    test(
      'a call past its time limit ends promptly with TIMEOUT; the session takes the next call',
      async ({ manager }) => {
        await withSession(
          manager,
          async (s) => {
            const started = performance.now()
            const r = await s.runCode({ code: 'import time\nprint("working", flush=True)\ntime.sleep(300)' })
            const took = performance.now() - started
            // Far below the cell's 300 s: the limit cut it (generous, as a loaded host is slow to start the cell at all).
            assert.ok(took >= 900 && took < 120_000, `the call took ${took.toFixed(0)} ms against a 1000 ms limit`)
            assert.deepEqual(limitsOf(r), ['TIMEOUT'])
            assert.equal(r.isError, true)
            assert.equal(r.structuredContent.stdout, 'working\n')
            assert.equal(await py(s, 'print("alive")'), 'alive\n')
          },
          { callTimeoutMs: 1000 },
        )
      },
      'timeout',
    )

    test(
      'a cell over the memory limit is stopped and reported as OOM (or ends its sandbox), never the host',
      async ({ manager }) => {
        await withSession(
          manager,
          async (s) => {
            assert.equal(await py(s, 'small = bytearray(64 * 2**20)\nprint(len(small) // 2**20)'), '64\n')
            let r: ToolResult | undefined
            try {
              r = await s.runCode({ code: 'big = bytearray(900 * 2**20)\nbig2 = bytearray(900 * 2**20)\nprint("survived")' })
            } catch (e) {
              // A driver whose memory limit ends the whole sandbox (gVisor): the session ends, clearly.
              assert.ok(e instanceof CodeboxError && e.code === 'SessionTerminated', String(e))
              return
            }
            assert.ok(limitsOf(r).includes('OOM'), JSON.stringify(r.structuredContent))
            assert.equal(r.isError, true)
            assert.doesNotMatch(r.structuredContent.stdout, /survived/)
            assert.equal(await py(s, 'print("alive")'), 'alive\n')
          },
          { memoryBytes: 256 * MiB },
        )
      },
      'oom',
    )

    test(
      'output over the cap is cut and flagged OUTPUT_TRUNCATED',
      async ({ manager }) => {
        await withSession(
          manager,
          async (s) => {
            const r = await s.runCode({ code: 'for i in range(2000):\n    print(f"line {i:05d} " + "x" * 40)' })
            assert.deepEqual(limitsOf(r), ['OUTPUT_TRUNCATED'])
            const bytes = Buffer.byteLength(r.structuredContent.stdout)
            assert.ok(bytes <= 10_000 && bytes > 9_000, `stdout is ${bytes} bytes`)
            const command = await s.commands.run('yes | head -c 100000')
            assert.deepEqual(limitsOf(command), ['OUTPUT_TRUNCATED'])
          },
          { outputBytes: 10_000 },
        )
      },
      'output',
    )

    test(
      'forks past the pids limit are refused; the session lives on',
      async ({ manager }) => {
        await withSession(
          manager,
          async (s) => {
            const r = await s.runCode({
              code: 'import subprocess\nchildren = []\ntry:\n    for _ in range(300):\n        children.append(subprocess.Popen(["sleep", "30"]))\nexcept OSError as e:\n    print("refused")\nfor c in children:\n    c.kill()\n    c.wait()\nprint("started", len(children))',
            })
            assert.match(r.structuredContent.stdout, /^refused\nstarted \d+\n$/, JSON.stringify(r.structuredContent))
            assert.ok(Number(/started (\d+)/.exec(r.structuredContent.stdout)?.[1]) < 128)
            for (let attempt = 1; ; attempt++) {
              try {
                assert.equal((await s.commands.run('echo hi')).structuredContent.stdout, 'hi\n')
                break
              } catch (e) {
                if (attempt === 10) throw e
                await new Promise((res) => setTimeout(res, 100))
              }
            }
            assert.equal(s.status, 'ready')
          },
          { pids: 128 },
        )
      },
      'pids',
    )
  })
}
