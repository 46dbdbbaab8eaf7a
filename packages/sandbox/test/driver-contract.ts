/**
 * The contract every SandboxDriver passes (STYLE.md): a sandbox starts and its executor says
 * ready, runs Python and commands, keeps state, moves files, ends on destroy() (idempotently),
 * stays independent of its neighbours, and a call whose sandbox is destroyed fails with
 * SessionTerminated instead of hanging. Each driver's test file calls defineDriverTests.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { CodeboxError, defaultLimits, type Sandbox, type SandboxDriver, type SandboxSpec } from '@codebox/core'
import { SessionManager } from '@codebox/sandbox'
import { ExecutorClient } from '../src/executor-client.ts'
import { py, recordingDriver, withSession, type RecordedSandbox } from './fixtures.ts'

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
export function defineDriverTests(name: string, makeDriver: () => Promise<SandboxDriver | { skip: string }>): void {
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

    const test = (title: string, fn: (f: Fixture) => Promise<void>): void => {
      it(title, async (t) => {
        if (!fixture) return t.skip(skip ?? 'the driver was not created')
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
  })
}
