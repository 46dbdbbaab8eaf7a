/** PATCH /v1/sessions/{id}: a session's lifetime end moves while it lives, clamped to its interpreter's maximum, recorded and audited. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { CodeboxClient } from '@codebox/sdk'
import { expectError, expectJson, startSession, testServer, waitUntil } from './fixtures.ts'

type Info = { sessionId: string; status: string; createdAt: string; endsAt?: string; expiresAt?: string; endReason?: string; limits: { maxLifetimeMs: number } }

test('a session’s end moves earlier and later; the engine, the record and the answer agree', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s)
  const before = await expectJson<Info>(s.call('GET', `/v1/sessions/${id}`), 200)
  assert.equal(Date.parse(before.endsAt!), Date.parse(before.createdAt) + 8 * 3600_000, 'the interpreter’s lifetime, 8 h')

  const asked = Date.now() + 120_000
  const moved = await expectJson<Info>(s.call('PATCH', `/v1/sessions/${id}`, { json: { endsInSeconds: 120 } }), 200)
  assert.ok(Math.abs(Date.parse(moved.endsAt!) - asked) < 2000, `endsAt ${moved.endsAt} is two minutes from now`)
  assert.equal(moved.limits.maxLifetimeMs, Date.parse(moved.endsAt!) - Date.parse(moved.createdAt))
  assert.equal(Date.parse(moved.expiresAt!), Date.parse(moved.endsAt!), 'the lifetime now ends before the idle timeout would')
  assert.equal(s.engine.find(id)!.endsAt.toISOString(), moved.endsAt, 'the engine’s timer is at the new end')
  assert.equal((await s.store.sessions.get(id, 'default'))!.limits.maxLifetimeMs, moved.limits.maxLifetimeMs, 'recorded for a restarted server')

  const at = new Date(Date.now() + 3600_000).toISOString()
  const later = await expectJson<Info>(s.call('PATCH', `/v1/sessions/${id}`, { json: { endsAt: at } }), 200)
  assert.ok(Math.abs(Date.parse(later.endsAt!) - Date.parse(at)) < 2, 'moved later again')

  // Beyond the interpreter's maximum (8 h from the start): clamped there.
  const far = await expectJson<Info>(s.call('PATCH', `/v1/sessions/${id}`, { json: { endsInSeconds: 8 * 3600 } }), 200)
  assert.equal(Date.parse(far.endsAt!), Date.parse(far.createdAt) + 8 * 3600_000)

  const audit = await s.store.audit.list({ tenant: 'default', sessionId: id, limit: 50 })
  assert.equal(audit.items.filter((e) => e.action === 'setDeadline').length, 3)
})

test('an end already reached stops the session (max-lifetime); a shorter end than the idle timeout ends it on time', async (t) => {
  const s = await testServer(t)
  const now = await startSession(s)
  await expectJson(s.call('PATCH', `/v1/sessions/${now}`, { json: { endsInSeconds: 0 } }), 200)
  await waitUntil(async () => (await s.store.sessions.get(now, 'default'))?.status === 'TERMINATED', 'the session to end')
  assert.equal((await s.store.sessions.get(now, 'default'))!.endReason, 'max-lifetime')
  await expectError(s.call('PATCH', `/v1/sessions/${now}`, { json: { endsInSeconds: 60 } }), 410, 'SessionTerminated')

  const soon = await startSession(s)
  const started = Date.now()
  await expectJson(s.call('PATCH', `/v1/sessions/${soon}`, { json: { endsInSeconds: 1 } }), 200)
  await waitUntil(async () => (await s.store.sessions.get(soon, 'default'))?.status === 'TERMINATED', 'the session to end at its new end', 5000)
  assert.ok(Date.now() - started >= 900, 'not before its end')
  assert.equal((await s.store.sessions.get(soon, 'default'))!.endReason, 'max-lifetime')
})

test('bad bodies name the field; another tenant’s session is NotFound; the SDK and an interpreter maximum', async (t) => {
  const s = await testServer(t)
  const a = (await s.store.keys.create({ tenant: 'acme' })).secret
  const b = (await s.store.keys.create({ tenant: 'globex' })).secret
  const id = await startSession(s, {}, a)
  const both = await expectError(
    s.call('PATCH', `/v1/sessions/${id}`, { key: a, json: { endsInSeconds: 5, endsAt: new Date().toISOString() } }),
    400,
    'ValidationError',
  )
  assert.match(both.message, /exactly one of endsInSeconds and endsAt/)
  await expectError(s.call('PATCH', `/v1/sessions/${id}`, { key: a, json: {} }), 400, 'ValidationError')
  const neg = await expectError(s.call('PATCH', `/v1/sessions/${id}`, { key: a, json: { endsInSeconds: -1 } }), 400, 'ValidationError')
  assert.match(neg.message, /endsInSeconds/)
  await expectError(s.call('PATCH', `/v1/sessions/${id}`, { key: a, json: { endsAt: 'tomorrow' } }), 400, 'ValidationError')
  await expectError(s.call('PATCH', `/v1/sessions/${id}`, { key: b, json: { endsInSeconds: 5 } }), 404, 'NotFound')

  // An interpreter with a lifetime of its own caps the end there, through the SDK.
  const interpreter = await s.store.interpreters.create({ tenant: 'acme', name: 'short', image: 'default', limits: { maxLifetimeMs: 600_000 } })
  const client = new CodeboxClient({ baseUrl: s.url, apiKey: a })
  const short = await client.sessions.start({ interpreterId: interpreter.interpreterId })
  const info = await client.sessions.setDeadline(short.sessionId, { endsInSeconds: 3600 })
  assert.equal(Date.parse(info.endsAt!), Date.parse(info.createdAt) + 600_000, 'clamped to the interpreter’s 10 minutes')
})
