/**
 * An interpreter's sandbox driver: named at creation (checked then: registered, and able to run
 * here), shown on every interpreter, and used by its sessions; the others keep the server's.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { gvisorUnavailable } from '../../sandbox/test/gvisor-fixtures.ts'
import { expectError, expectJson, realServer, testServer } from './fixtures.ts'

test('a driver nobody registered is a 400 naming the field and the registered ones; every interpreter shows its driver', async (t) => {
  const s = await testServer(t)
  const bad = await expectError(s.call('POST', '/v1/interpreters', { json: { name: 'strong', driver: 'firecracker' } }), 400, 'ValidationError')
  assert.match(bad.message, /body\.driver: must be one of bwrap, gvisor, fake.*, got "firecracker"/)
  await expectError(s.call('POST', '/v1/interpreters', { json: { name: 'strong', driver: 'Not A Name' } }), 400, 'ValidationError')
  const builtIn = await expectJson<{ driver: string }>(s.call('GET', '/v1/interpreters/codebox.v1'), 200)
  assert.equal(builtIn.driver, 'fake', 'the server’s driver')
  const same = await expectJson<{ interpreterId: string; driver: string }>(s.call('POST', '/v1/interpreters', { json: { name: 'same', driver: 'fake' } }), 201)
  assert.equal(same.driver, 'fake')
  const started = await expectJson<{ sessionId: string }>(s.call('POST', '/v1/sessions', { json: { interpreterId: same.interpreterId } }), 201)
  assert.ok(started.sessionId)
})

const skip = (await bwrapUnavailable()) ?? (await gvisorUnavailable())

test('an interpreter with driver gvisor runs its sessions under gVisor on a bwrap server', { skip }, async (t) => {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-drivers-'))
  const server = await realServer(parent, { CODEBOX_POOL_SIZE: '0' })
  t.after(async () => {
    await server.close()
    fs.rmSync(parent, { recursive: true, force: true })
  })
  const post = (p: string, body: unknown): Promise<Response> =>
    fetch(server.url + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const strong = await expectJson<{ interpreterId: string; driver: string }>(post('/v1/interpreters', { name: 'strong', driver: 'gvisor', preload: [] }), 201)
  assert.equal(strong.driver, 'gvisor')
  const kernelOf = async (interpreterId: string): Promise<string> => {
    const { sessionId } = await expectJson<{ sessionId: string }>(post('/v1/sessions', { interpreterId }), 201)
    const r = await expectJson<{ structuredContent: { stdout: string } }>(
      post(`/v1/sessions/${sessionId}/invoke`, { name: 'executeCommand', arguments: { command: 'cat /proc/version' } }),
      200,
    )
    return r.structuredContent.stdout
  }
  const underGvisor = await kernelOf(strong.interpreterId)
  const underBwrap = await kernelOf('codebox.v1')
  // gVisor's sentry presents its own kernel, not the host's.
  assert.notEqual(underGvisor, underBwrap)
  assert.equal(underBwrap, fs.readFileSync('/proc/version', 'utf8'))
})
