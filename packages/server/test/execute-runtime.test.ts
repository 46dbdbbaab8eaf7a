/**
 * executeCode's `runtime` argument through the native API (fake driver, whose sandboxes have no
 * Deno): a runtime that cannot run the cell is a ValidationError on `arguments.runtime` saying
 * why, before anything runs; never a silent fallback to another runtime.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { expectError, expectJson, invoke, startSession, testServer } from './fixtures.ts'

type Result = { structuredContent: { stdout: string; stderr: string }; isError: boolean }

test('runtime deno is refused with the reason when the sandbox image has no Deno', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s)
  assert.deepEqual(s.engine.get(id).runtimes, ['python', 'nodejs'], 'the fake driver offers no deno')

  for (const args of [
    { code: 'globalThis.ran = 1', language: 'javascript', runtime: 'deno' },
    { code: 'const ran: number = 1', language: 'typescript', runtime: 'deno' },
    { code: 'globalThis.ran = 1', runtime: 'deno' },
  ]) {
    const error = await expectError(invoke(s, id, 'executeCode', args), 400, 'ValidationError')
    assert.equal(error.details.field, 'arguments.runtime', JSON.stringify(args))
    assert.match(error.message, /deno is not available: this codebox sandbox image was built without Deno; use nodejs/)
  }
  const node = await expectJson<Result>(invoke(s, id, 'executeCode', { code: 'console.log(typeof globalThis.ran)', runtime: 'nodejs' }), 200)
  assert.equal(node.structuredContent.stdout, 'undefined\n', 'no refused cell ran in Node instead')
})

test('a runtime that cannot run the language is a ValidationError naming both', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s)
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ code: 'print(1)', language: 'python', runtime: 'deno' }, /deno cannot run python; use runtime python/],
    [{ code: 'print(1)', language: 'python', runtime: 'nodejs' }, /nodejs cannot run python; use runtime python/],
    [{ code: '1', language: 'typescript', runtime: 'python' }, /python cannot run typescript; use nodejs or deno/],
  ]
  for (const [args, message] of cases) {
    const error = await expectError(invoke(s, id, 'executeCode', args), 400, 'ValidationError')
    assert.equal(error.details.field, 'arguments.runtime')
    assert.match(error.message, message)
  }
  const python = await expectJson<Result>(invoke(s, id, 'executeCode', { code: 'print("python")', runtime: 'python' }), 200)
  assert.equal(python.structuredContent.stdout, 'python\n')
})
