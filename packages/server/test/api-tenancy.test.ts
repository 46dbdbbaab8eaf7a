/** Tenancy and quotas: API keys, a foreign session is the same 404 as an unknown one, 429s per tenant. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { expectError, expectJson, invoke, startSession, testServer } from './fixtures.ts'

test('without keys a loopback server is open; once a key exists every /v1 call needs one', async (t) => {
  const s = await testServer(t)
  await startSession(s)
  const { secret } = await s.store.keys.create({ tenant: 'acme' })
  await expectError(s.call('GET', '/v1/sessions'), 401, 'Unauthorized')
  await expectError(s.call('GET', '/v1/sessions', { headers: { authorization: 'Basic abc' } }), 401, 'Unauthorized')
  await expectError(s.call('GET', '/v1/sessions', { key: 'cbx_wrong' }), 401, 'Unauthorized')
  const page = await expectJson<{ items: unknown[] }>(s.call('GET', '/v1/sessions', { key: secret }), 200)
  assert.deepEqual(page.items, [], 'the open-mode session belongs to tenant default, not acme')
  // Health and metrics stay reachable for probes.
  await expectJson(s.call('GET', '/ping'), 200)
  assert.equal((await s.call('GET', '/metrics')).status, 200)
  await s.store.keys.revoke((await s.store.keys.list('acme'))[0]!.keyId)
  await expectError(s.call('GET', '/v1/sessions', { key: secret }), 401, 'Unauthorized')
})

test('a server bound beyond loopback without keys refuses every /v1 call', async (t) => {
  const s = await testServer(t, { loopbackOnly: false })
  const e = await expectError(s.call('POST', '/v1/sessions', { json: {} }), 401, 'Unauthorized')
  assert.match(e.message, /keys create/)
})

test('a tenant cannot see or touch another tenant’s session: the same 404 as an unknown id', async (t) => {
  const s = await testServer(t)
  const a = (await s.store.keys.create({ tenant: 'acme' })).secret
  const b = (await s.store.keys.create({ tenant: 'globex' })).secret
  const id = await startSession(s, {}, a)
  await expectJson(invoke(s, id, 'writeFiles', { content: [{ path: 'secret.txt', text: 'acme only' }] }, a), 200)
  const unknown = await expectError(s.call('GET', '/v1/sessions/zzzzzzzzzzzzzzzzzzzzzzzzzz', { key: b }), 404, 'NotFound')
  const foreign = await expectError(s.call('GET', `/v1/sessions/${id}`, { key: b }), 404, 'NotFound')
  assert.equal(foreign.message.replace(id, 'ID'), unknown.message.replace('zzzzzzzzzzzzzzzzzzzzzzzzzz', 'ID'))
  await expectError(invoke(s, id, 'readFiles', { paths: ['secret.txt'] }, b), 404, 'NotFound')
  await expectError(s.call('GET', `/v1/sessions/${id}/files/secret.txt`, { key: b }), 404, 'NotFound')
  await expectError(s.call('PUT', `/v1/sessions/${id}/files/x`, { key: b, body: 'x' }), 404, 'NotFound')
  await expectError(s.call('DELETE', `/v1/sessions/${id}`, { key: b }), 404, 'NotFound')
  assert.deepEqual((await expectJson<{ items: unknown[] }>(s.call('GET', '/v1/sessions', { key: b }), 200)).items, [])
  // globex's audit log shows its own refused attempts, nothing of acme's.
  const attempts = (await expectJson<{ items: { tenant: string; outcome: string }[] }>(s.call('GET', '/v1/audit', { key: b }), 200)).items
  assert.ok(attempts.length >= 3 && attempts.every((e) => e.tenant === 'globex' && e.outcome === 'rejected'), JSON.stringify(attempts))
  const audit = await expectJson<{ items: { action: string; tenant: string; keyId?: string }[] }>(s.call('GET', `/v1/audit?sessionId=${id}`, { key: a }), 200)
  assert.deepEqual(
    audit.items.map((e) => e.action),
    ['startSession', 'writeFiles'],
  )
  assert.ok(audit.items.every((e) => e.tenant === 'acme' && e.keyId?.startsWith('key_')))
  // Still alive and untouched for its owner.
  const r = await expectJson<{ content: { resource: { text: string } }[] }>(invoke(s, id, 'readFiles', { paths: ['secret.txt'] }, a), 200)
  assert.equal(r.content[0]!.resource.text, 'acme only')
})

test('per-tenant quotas: concurrent sessions and invoke rate answer 429 with Retry-After; other tenants are unaffected', async (t) => {
  const s = await testServer(t, { env: { CODEBOX_TENANT_MAX_SESSIONS: '2', CODEBOX_TENANT_INVOKES_PER_SECOND: '2' } })
  const a = (await s.store.keys.create({ tenant: 'acme' })).secret
  const b = (await s.store.keys.create({ tenant: 'globex' })).secret
  const first = await startSession(s, {}, a)
  await startSession(s, {}, a)
  const res = await s.call('POST', '/v1/sessions', { json: {}, key: a })
  assert.equal(res.headers.get('retry-after'), '10')
  await expectError(res, 429, 'QuotaExceeded')
  const other = await startSession(s, {}, b)
  await expectJson(s.call('DELETE', `/v1/sessions/${first}`, { key: a }), 200)
  await startSession(s, {}, a)

  // Bursts of twice the rate pass, then 429 until a token comes back.
  const results = []
  for (let i = 0; i < 6; i++) results.push(await invoke(s, other, 'executeCommand', { command: 'true' }, b))
  const statuses = results.map((r) => r.status)
  assert.ok(statuses.includes(429), `expected a 429 among ${statuses}`)
  const limited = results.find((r) => r.status === 429)!
  assert.ok(Number(limited.headers.get('retry-after')) >= 1)
  await expectError(limited, 429, 'RateLimited')
  // Tenant acme still has its own budget.
  const ids = await expectJson<{ items: { sessionId: string }[] }>(s.call('GET', '/v1/sessions?status=READY', { key: a }), 200)
  await expectJson(invoke(s, ids.items[0]!.sessionId, 'executeCommand', { command: 'true' }, a), 200)
  // A per-tenant override wins over the server default.
  await s.store.tenants.setQuotas('globex', { maxSessions: 1 })
  await expectError(s.call('POST', '/v1/sessions', { json: {}, key: b }), 429, 'QuotaExceeded')
})

test('starts begun in the same instant stay within the session quota, and one clientToken starts one session', async (t) => {
  const s = await testServer(t, { env: { CODEBOX_TENANT_MAX_SESSIONS: '3' } })
  const caller = { tenant: 'acme' }
  // Called together, every start reads the store before any has stored its record.
  const starts = await Promise.allSettled(Array.from({ length: 8 }, () => s.sessions.start(caller, { interpreterId: 'codebox.v1' })))
  const refused = starts.filter((r) => r.status === 'rejected').map((r) => (r.reason as { code?: string }).code)
  assert.equal(starts.length - refused.length, 3, JSON.stringify(refused))
  assert.deepEqual(new Set(refused), new Set(['QuotaExceeded']))
  assert.equal(await s.store.sessions.countActive('acme'), 3)
  assert.equal(s.sessions.starting, 0, 'every start gave its slot back')

  const retries = await Promise.all(
    Array.from({ length: 5 }, () => s.sessions.start({ tenant: 'globex' }, { interpreterId: 'codebox.v1', clientToken: 'once' })),
  )
  assert.equal(new Set(retries.map((r) => r.info.sessionId)).size, 1)
  assert.deepEqual(
    retries.map((r) => r.created),
    [true, false, false, false, false],
  )
  assert.equal(await s.store.sessions.countActive('globex'), 1)
})

test('interpreters: built-in codebox.v1, a tenant’s own with default limits, isolated by tenant', async (t) => {
  const s = await testServer(t)
  const a = (await s.store.keys.create({ tenant: 'acme' })).secret
  const b = (await s.store.keys.create({ tenant: 'globex' })).secret
  const list = await expectJson<{ items: { interpreterId: string; type: string }[] }>(s.call('GET', '/v1/interpreters', { key: a }), 200)
  assert.deepEqual(
    list.items.map((i) => `${i.interpreterId}:${i.type}`),
    ['codebox.v1:SYSTEM'],
  )
  const created = await expectJson<{ interpreterId: string; limits: { memoryBytes: number } }>(
    s.call('POST', '/v1/interpreters', { key: a, json: { name: 'small', limits: { memoryBytes: 256 * 1024 ** 2, callTimeoutMs: 5000 } } }),
    201,
  )
  assert.match(created.interpreterId, /^small-[0-9a-zA-Z]{10}$/)
  await expectError(s.call('POST', '/v1/interpreters', { key: a, json: { name: 'small' } }), 409, 'Conflict')
  await expectError(s.call('POST', '/v1/interpreters', { key: a, json: { name: 'bad-name' } }), 400, 'ValidationError')
  await expectError(s.call('POST', '/v1/interpreters', { key: a, json: { name: 'huge', limits: { memoryBytes: 1e15 } } }), 400, 'ValidationError')
  const session = await expectJson<{ limits: { memoryBytes: number; callTimeoutMs: number }; interpreterId: string }>(
    s.call('POST', '/v1/sessions', { key: a, json: { interpreterId: created.interpreterId } }),
    201,
  )
  assert.equal(session.limits.memoryBytes, 256 * 1024 ** 2)
  assert.equal(session.limits.callTimeoutMs, 5000)
  await expectError(s.call('POST', '/v1/sessions', { key: b, json: { interpreterId: created.interpreterId } }), 404, 'NotFound')
  await expectError(s.call('DELETE', `/v1/interpreters/${created.interpreterId}`, { key: b }), 404, 'NotFound')
  await expectError(s.call('DELETE', '/v1/interpreters/codebox.v1', { key: a }), 409, 'Conflict')
  assert.equal((await expectJson<{ status: string }>(s.call('DELETE', `/v1/interpreters/${created.interpreterId}`, { key: a }), 200)).status, 'DELETED')
  await expectError(s.call('GET', `/v1/interpreters/${created.interpreterId}`, { key: a }), 404, 'NotFound')
})
