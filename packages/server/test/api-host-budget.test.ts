/**
 * Host budgets and bounded reads through the API (fake driver): a start the machine cannot hold
 * is `503 HostCapacity` with what was asked and what is left (and AWS's quota exception), and
 * one readFiles call returns at most the file limit in all.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test, type TestContext } from 'node:test'
import { CodeboxError } from '@codebox/core'
import { FakeDriver, SessionManager, type HostProbe } from '@codebox/sandbox'
import { buildApp, loadServerConfig, Store } from '@codebox/server'
import { toAwsError } from '../src/agentcore/errors.ts'
import { expectError, expectJson } from './fixtures.ts'

const GiB = 1024 ** 3

/** The app on loopback over a manager whose host is `probe`; closed when the test ends. */
async function budgetServer(t: TestContext, probe: HostProbe): Promise<{ call: (method: string, p: string, json?: unknown) => Promise<Response> }> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-budget-test-'))
  const config = loadServerConfig({ CODEBOX_DRIVER: 'fake', CODEBOX_STATE_DIR: stateDir, CODEBOX_LOG_LEVEL: 'silent' })
  const store = Store.open(':memory:')
  const hostBudget = { memoryOvercommit: 1, reserveBytes: 0, pidsShare: 1, pidsOvercommit: 1, floorBytes: 0 }
  let onEnd: ((s: Parameters<NonNullable<ConstructorParameters<typeof SessionManager>[0]['onSessionEnd']>>[0]) => void) | undefined
  const engine = new SessionManager({ driver: new FakeDriver(), poolSize: 0, hostBudget, hostProbe: probe, onSessionEnd: (s) => onEnd?.(s) })
  const app = await buildApp({ config, engine, store, loopbackOnly: true })
  onEnd = (s) => void app.sessions.onSessionEnd(s)
  await app.app.listen({ host: '127.0.0.1', port: 0 })
  const url = `http://127.0.0.1:${(app.app.server.address() as { port: number }).port}`
  t.after(async () => {
    await app.app.close()
    await engine.close()
    store.close()
    fs.rmSync(stateDir, { recursive: true, force: true })
  })
  return {
    call: (method, p, json) =>
      fetch(url + p, {
        method,
        headers: json === undefined ? {} : { 'content-type': 'application/json' },
        body: json === undefined ? undefined : JSON.stringify(json),
      }),
  }
}

test('a start the host cannot hold is 503 HostCapacity with what was asked and what is left; the session before it keeps working', async (t) => {
  const probe: HostProbe = { totalMemoryBytes: 4 * GiB, totalPids: 100_000, sample: async () => ({ usedMemoryBytes: 0, usedPids: 0 }) }
  const s = await budgetServer(t, probe)
  const first = await expectJson<{ sessionId: string }>(s.call('POST', '/v1/sessions', { limits: { memoryBytes: 3 * GiB } }), 201)
  const error = await expectError(s.call('POST', '/v1/sessions', { limits: { memoryBytes: 2 * GiB } }), 503, 'HostCapacity')
  const details = error.details as { asked: { memoryBytes: number }; left: { memoryBytes: number } }
  assert.equal(details.asked.memoryBytes, 2 * GiB)
  assert.equal(details.left.memoryBytes, 1 * GiB)
  assert.match(error.message, /no room/)
  const run = await expectJson<{ structuredContent: { stdout: string } }>(
    s.call('POST', `/v1/sessions/${first.sessionId}/invoke`, { name: 'executeCode', arguments: { code: 'print(1 + 1)' } }),
    200,
  )
  assert.equal(run.structuredContent.stdout, '2\n')
  // The smaller start that fits is admitted.
  await expectJson(s.call('POST', '/v1/sessions', { limits: { memoryBytes: 1 * GiB } }), 201)
})

test('AgentCore reports HostCapacity as ServiceQuotaExceededException, which AWS SDKs do not retry', () => {
  const { error } = toAwsError(new CodeboxError('HostCapacity', 'the host has no room'))
  assert.equal(error.name, 'ServiceQuotaExceededException')
  assert.equal(error.status, 402)
})

test('readFiles returns at most the file limit in all, naming the path that would cross it', async (t) => {
  const probe: HostProbe = { totalMemoryBytes: 64 * GiB, totalPids: 100_000, sample: async () => ({ usedMemoryBytes: 0, usedPids: 0 }) }
  const s = await budgetServer(t, probe)
  const { sessionId } = await expectJson<{ sessionId: string }>(s.call('POST', '/v1/sessions', { limits: { fileBytes: 1000 } }), 201)
  const text = 'x'.repeat(400)
  await expectJson(
    s.call('POST', `/v1/sessions/${sessionId}/invoke`, { name: 'writeFiles', arguments: { content: ['a', 'b', 'c'].map((p) => ({ path: p, text })) } }),
    200,
  )
  const two = await expectJson<{ content: unknown[] }>(
    s.call('POST', `/v1/sessions/${sessionId}/invoke`, { name: 'readFiles', arguments: { paths: ['a', 'b'] } }),
    200,
  )
  assert.equal(two.content.length, 2)
  const error = await expectError(
    s.call('POST', `/v1/sessions/${sessionId}/invoke`, { name: 'readFiles', arguments: { paths: ['a', 'b', 'c'] } }),
    413,
    'LimitExceeded',
  )
  assert.match(error.message, /at most 1000 bytes in all: c \(400 bytes\)/)
  assert.deepEqual({ ...error.details, requestId: undefined }, { limit: 1000, path: 'c', size: 400, total: 800, requestId: undefined })
})
