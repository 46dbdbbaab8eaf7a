/**
 * Kernel contexts (session.contexts) and what E2B's code interpreter needs of a cell: a context's
 * own state and working directory, its cap, restart and remove; per-cell environment variables;
 * the last expression's display marked `executeResult`; onCellEnd with the error and the count.
 * On the fake driver (the real executor and kernels) and once on the real bwrap driver.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CodeboxError, type ErrorCode, type ExecutionEvent, type ToolResult } from '@codebox/core'
import { MAX_CONTEXTS, type CellEnd, type ExecuteCodeOptions, type Session, type SessionManager } from '@codebox/sandbox'
import { bwrapManager, bwrapUnavailable, fakeManager } from './fixtures.ts'

const unavailable = await bwrapUnavailable()

const isError =
  (code: ErrorCode) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof CodeboxError, `expected a CodeboxError, got ${String(e)}`)
    assert.equal(e.code, code, e.message)
    return true
  }

async function run(session: Session, options: ExecuteCodeOptions): Promise<{ events: ExecutionEvent[]; result: ToolResult; end?: CellEnd }> {
  const events: ExecutionEvent[] = []
  let end: CellEnd | undefined
  const it = session.executeCode({ ...options, onCellEnd: (e) => (end = e) })
  for (;;) {
    const n = await it.next()
    if (n.done) return { events, result: n.value, ...(end ? { end } : {}) }
    events.push(n.value)
  }
}

const stdout = (r: ToolResult): string => r.structuredContent.stdout

function contextSuite(name: string, manager: () => Promise<SessionManager>, skip?: string): void {
  describe(name, { skip }, () => {
    let engine: SessionManager
    let session: Session
    before(async () => {
      engine = await manager()
      session = await engine.start()
    })
    after(async () => {
      await engine?.close()
    })

    it('a context has its own state and working directory; the default kernel is untouched', async () => {
      // The workspace is /workspace in a sandbox, a temporary directory on the fake driver.
      const workspace = stdout(await session.runCode({ code: 'import os\nos.makedirs("sub", exist_ok=True)\nx = "default"\nprint(os.getcwd())' })).trim()
      const sub = `${workspace}/sub`
      const info = await session.contexts.create({ id: 'c1', language: 'python', cwd: 'sub' })
      assert.deepEqual(info, { id: 'c1', language: 'python', runtime: 'python', cwd: sub, running: false, executionCount: 0 })
      const r = await session.runCode({ code: 'import os\nprint(os.getcwd(), "x" in globals())\nx = "c1"', context: 'c1' })
      assert.equal(stdout(r), `${sub} False\n`, r.structuredContent.stderr)
      assert.equal(stdout(await session.runCode({ code: 'print(x)', context: 'c1' })), 'c1\n')
      assert.equal(stdout(await session.runCode({ code: 'print(x)' })), 'default\n')
      const [listed] = await session.contexts.list()
      assert.deepEqual(listed, { id: 'c1', language: 'python', runtime: 'python', cwd: sub, running: true, executionCount: 2 })
    })

    it('javascript and typescript contexts, each with its own state', async () => {
      await session.contexts.create({ id: 'js1', language: 'javascript' })
      await session.contexts.create({ id: 'ts1', language: 'typescript' })
      await session.runCode({ code: 'globalThis.who = "js1"', language: 'javascript', context: 'js1' })
      const r = await session.runCode({ code: 'const n: number = 2\nconsole.log(typeof globalThis.who, n)', language: 'typescript', context: 'ts1' })
      assert.equal(stdout(r), 'undefined 2\n', r.structuredContent.stderr)
      assert.equal(stdout(await session.runCode({ code: 'console.log(who)', language: 'javascript', context: 'js1' })), 'js1\n')
      await assert.rejects(session.runCode({ code: '1', language: 'python', context: 'js1' }), isError('ValidationError'))
      await session.contexts.remove('js1')
      await session.contexts.remove('ts1')
    })

    it('restart drops a context’s state; remove forgets it; unknown ones are NotFound', async () => {
      await session.contexts.create({ id: 'r1', language: 'python' })
      await session.runCode({ code: 'y = 1', context: 'r1' })
      await session.contexts.restart({ context: 'r1' })
      const r = await session.runCode({ code: 'print("y" in globals())', context: 'r1' })
      assert.equal(stdout(r), 'False\n')
      await session.contexts.remove('r1')
      await assert.rejects(session.runCode({ code: '1', context: 'r1' }), isError('NotFound'))
      await assert.rejects(session.contexts.remove('r1'), isError('NotFound'))
      await assert.rejects(session.contexts.restart({ context: 'nope' }), isError('NotFound'))
      await assert.rejects(session.contexts.create({ id: 'c1', language: 'python' }), isError('Conflict'))
      await assert.rejects(session.contexts.create({ id: 'bad id', language: 'python' }), isError('ValidationError'))
      await assert.rejects(session.contexts.create({ id: 'c9', language: 'python', cwd: 'no/such/dir' }), isError('ValidationError'))
    })

    it(`at most ${MAX_CONTEXTS} contexts; the next is LimitExceeded`, async () => {
      const before = (await session.contexts.list()).length
      const made: string[] = []
      for (let i = before; i < MAX_CONTEXTS; i++) {
        made.push(`cap${i}`)
        await session.contexts.create({ id: `cap${i}`, language: 'python' })
      }
      await assert.rejects(session.contexts.create({ id: 'one-too-many', language: 'python' }), isError('LimitExceeded'))
      for (const id of made) await session.contexts.remove(id)
    })

    it('env is set for one cell only, in python and javascript', async () => {
      const code = 'import os\nprint(os.environ.get("E2B_T"), os.environ.get("HOME") is not None)'
      const r = await session.runCode({ code, env: { E2B_T: 'on', HOME: '/elsewhere' } })
      assert.equal(stdout(r), 'on True\n')
      assert.equal(stdout(await session.runCode({ code: 'import os\nprint(os.environ.get("E2B_T"), os.environ["HOME"] != "/elsewhere")' })), 'None True\n')
      const js = await session.runCode({ code: 'console.log(process.env.E2B_T)', language: 'javascript', env: { E2B_T: 'js' } })
      assert.equal(stdout(js), 'js\n')
      assert.equal(stdout(await session.runCode({ code: 'console.log(process.env.E2B_T)', language: 'javascript' })), 'undefined\n')
      await assert.rejects(session.runCode({ code: '1', env: { 'A=B': 'x' } }), isError('ValidationError'))
      await assert.rejects(session.runCode({ code: '1', env: { A: 1 as unknown as string } }), isError('ValidationError'))
    })

    it('the last expression is marked executeResult; display() is not', async () => {
      const { events } = await run(session, { code: 'display(1)\n40 + 2' })
      const displays = events.filter((e) => e.type === 'display')
      assert.deepEqual(displays, [
        { type: 'display', data: { 'text/plain': '1' } },
        { type: 'display', data: { 'text/plain': '42' }, executeResult: true },
      ])
    })

    it('onCellEnd has the error and the count; the traceback is then not in stderr', async () => {
      await session.contexts.create({ id: 'err', language: 'python' })
      const ok = await run(session, { code: 'a = 1', context: 'err' })
      assert.deepEqual(ok.end, { executionCount: 1 })
      const { result, end } = await run(session, { code: 'def f():\n    raise ValueError("bad value")\nf()', context: 'err' })
      assert.equal(end?.executionCount, 2)
      assert.equal(end?.error?.name, 'ValueError')
      assert.equal(end?.error?.message, 'bad value')
      assert.match(end?.error?.traceback ?? '', /Traceback[\s\S]*line 2, in f[\s\S]*ValueError: bad value/)
      assert.doesNotMatch(result.structuredContent.stderr, /ValueError/)
      assert.equal(result.isError, true)
      const js = await run(session, { code: 'throw new TypeError("nope")', language: 'javascript' })
      assert.equal(js.end?.error?.name, 'TypeError')
      assert.doesNotMatch(js.result.structuredContent.stderr, /nope/)
      // Without onCellEnd the traceback is in stderr, as before.
      const plain = await session.runCode({ code: 'raise KeyError("k")' })
      assert.match(plain.structuredContent.stderr, /KeyError: 'k'/)
      await session.contexts.remove('err')
    })
  })
}

contextSuite('contexts on the fake driver', async () => fakeManager())
contextSuite('contexts on the bwrap driver', bwrapManager, unavailable)
