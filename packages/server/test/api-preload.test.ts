/**
 * An interpreter's preload through the native API (fake driver, the host's Python): validated
 * with the bad entry named, stored and shown, given to the kernel of its sessions, and a module
 * that cannot be imported recorded in the start's audit entry instead of failing the start.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { expectError, expectJson, invoke, startSession, testServer } from './fixtures.ts'

interface View {
  interpreterId: string
  preload: string[]
}

const inSysModules = async (s: Awaited<ReturnType<typeof testServer>>, id: string, module: string): Promise<string> => {
  const r = await expectJson<{ structuredContent: { stdout: string } }>(
    invoke(s, id, 'executeCode', { code: `import sys\nprint(${JSON.stringify(module)} in sys.modules)` }),
    200,
  )
  return r.structuredContent.stdout.trim()
}

test('a preload entry that is not a module name is a ValidationError naming it', async (t) => {
  const s = await testServer(t)
  const bad = await expectError(s.call('POST', '/v1/interpreters', { json: { name: 'bad', preload: ['numpy', 'os; import shutil'] } }), 400, 'ValidationError')
  assert.match(bad.message, /^body\.preload\.1: "os; import shutil" is not a Python module name/)
  const many = await expectError(
    s.call('POST', '/v1/interpreters', { json: { name: 'many', preload: Array.from({ length: 33 }, (_, i) => `m${i}`) } }),
    400,
    'ValidationError',
  )
  assert.match(many.message, /body\.preload/)
  await expectError(s.call('POST', '/v1/interpreters', { json: { name: 'typed', preload: 'numpy' } }), 400, 'ValidationError')
})

test('an interpreter’s preload is stored, shown, and imported by its sessions’ kernel before hand-over', async (t) => {
  const s = await testServer(t)
  const created = await expectJson<View>(s.call('POST', '/v1/interpreters', { json: { name: 'fractional', preload: ['fractions', 'fractions'] } }), 201)
  assert.deepEqual(created.preload, ['fractions'], 'duplicates dropped')
  const got = await expectJson<View>(s.call('GET', `/v1/interpreters/${created.interpreterId}`), 200)
  assert.deepEqual(got.preload, ['fractions'])
  const lean = await expectJson<View>(s.call('POST', '/v1/interpreters', { json: { name: 'lean', preload: [] } }), 201)
  assert.deepEqual(lean.preload, [])
  // The built-in interpreter shows the server's default (this test engine's: none).
  const builtIn = await expectJson<View>(s.call('GET', '/v1/interpreters/codebox.v1'), 200)
  assert.deepEqual(builtIn.preload, [...s.engine.preload])

  const preloaded = await startSession(s, { interpreterId: created.interpreterId })
  assert.equal(await inSysModules(s, preloaded, 'fractions'), 'True')
  const plain = await startSession(s, { interpreterId: lean.interpreterId })
  assert.equal(await inSysModules(s, plain, 'fractions'), 'False')
})

test('a module that cannot be imported does not fail the start; the audit entry of the start names it', async (t) => {
  const s = await testServer(t)
  const created = await expectJson<View>(
    s.call('POST', '/v1/interpreters', { json: { name: 'broken', preload: ['codebox_no_such_module', 'fractions'] } }),
    201,
  )
  const id = await startSession(s, { interpreterId: created.interpreterId })
  assert.equal(await inSysModules(s, id, 'fractions'), 'True', 'the rest of the preload was imported')
  const audit = await expectJson<{ items: { action: string; outcome: string; detail?: string }[] }>(s.call('GET', `/v1/audit?sessionId=${id}`), 200)
  const start = audit.items.find((e) => e.action === 'startSession')
  assert.equal(start?.outcome, 'ok')
  assert.match(start?.detail ?? '', /preload failed: codebox_no_such_module \(ModuleNotFoundError: No module named 'codebox_no_such_module'\)/)
})
