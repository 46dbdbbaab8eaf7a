/**
 * Replicas: real servers sharing one PostgreSQL store. A starting replica leaves the others'
 * sessions alone; on a shared driver (the fake driver's shared mode: sandboxes any replica
 * attaches by id) any replica answers for any session, a replica that goes away loses none, and a
 * session ended on one replica is ended for all; on a driver that is not shared, a call reaching
 * the wrong replica says which one serves the session. Against a private PostgreSQL server.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, it, type TestContext } from 'node:test'
import { CodeboxError, defaultLimits } from '@codebox/core'
import { drivers, FakeDriver } from '@codebox/sandbox'
import { loadServerConfig, type RunningServer } from '@codebox/server'
import { expectError, expectJson, realServer } from './fixtures.ts'
import { postgresSkip, startPostgres, type PostgresServer } from './postgres-fixtures.ts'

const sealingKey = randomBytes(32).toString('base64')

/** The directory the shared fake driver's sandboxes live in, for every replica of this file. */
const sharedDir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-shared-'))
drivers.register({
  name: 'fake-shared',
  description: 'the fake driver in shared mode (tests of replicas)',
  create: async () => new FakeDriver({ sharedDir }),
})

describe('replicas sharing one PostgreSQL store', { skip: postgresSkip }, () => {
  let pgServer: PostgresServer
  before(async () => {
    pgServer = await startPostgres()
  })
  after(async () => {
    await pgServer?.stop()
    // Whatever a failed test left running.
    const left = new FakeDriver({ sharedDir })
    for (const id of await left.list!()) await (await left.attach!(id).catch(() => undefined))?.destroy()
    fs.rmSync(sharedDir, { recursive: true, force: true })
  })

  /** A replica on `uri`: its own state dir, closed when the test ends. */
  async function replica(t: TestContext, uri: string, replicaId: string, driver: string): Promise<RunningServer> {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), `codebox-replica-${replicaId}-`))
    const s = await realServer(parent, {
      CODEBOX_DB: uri,
      CODEBOX_SEALING_KEY: sealingKey,
      CODEBOX_DRIVER: driver,
      CODEBOX_PRELOAD: '',
      CODEBOX_POOL_SIZE: '0',
      CODEBOX_REPLICA_ID: replicaId,
    })
    t.after(async () => {
      await s.close()
      fs.rmSync(parent, { recursive: true, force: true })
    })
    return s
  }

  const post = (s: RunningServer, p: string, body: unknown): Promise<Response> =>
    fetch(`${s.url}${p}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const startSession = async (s: RunningServer): Promise<string> => (await expectJson<{ sessionId: string }>(post(s, '/v1/sessions', {}), 201)).sessionId
  const python = (s: RunningServer, sessionId: string, code: string): Promise<Response> =>
    post(s, `/v1/sessions/${sessionId}/invoke`, { name: 'executeCode', arguments: { language: 'python', code } })
  const stdout = async (res: Promise<Response>): Promise<string> =>
    (await expectJson<{ structuredContent: { stdout: string } }>(res, 200)).structuredContent.stdout
  const row = async (uri: string, sessionId: string): Promise<{ status: string; end_reason: string | null; replica_id: string | null }> => {
    const [r] = await pgServer.sql<{ status: string; end_reason: string | null; replica_id: string | null }>(
      new URL(uri).pathname.slice(1),
      'SELECT status, end_reason, replica_id FROM sessions WHERE session_id = $1',
      [sessionId],
    )
    assert.ok(r, `no record of session ${sessionId}`)
    return r
  }

  it("a starting replica leaves another replica's sessions running; the wrong replica names the right one", async (t) => {
    const uri = await pgServer.database('replicas')
    const a = await replica(t, uri, 'replica-a', 'fake')
    const sessionId = await startSession(a)
    assert.equal((await row(uri, sessionId)).replica_id, 'replica-a')
    const b = await replica(t, uri, 'replica-b', 'fake')
    assert.deepEqual([b.adopted, b.reconciled], [[], []], 'replica b takes nothing of replica a at start-up')
    assert.equal((await row(uri, sessionId)).status, 'READY')
    assert.equal(await stdout(python(a, sessionId, 'print(6 * 7)')), '42\n', 'replica a still serves its session')
    // The fake driver's sandboxes are reached only by the server that started them.
    const wrong = await expectError(python(b, sessionId, 'print(1)'), 503, 'Unavailable')
    assert.match(wrong.message, /served by another codebox replica \(replica-a\)/)
    assert.equal(wrong.details.replicaId, 'replica-a')
    // Stopping works from any replica: the record ends.
    await expectJson(fetch(`${b.url}/v1/sessions/${sessionId}`, { method: 'DELETE' }), 200)
    assert.equal((await row(uri, sessionId)).status, 'TERMINATED')
    await expectError(python(a, sessionId, 'print(1)'), 410, 'SessionTerminated')
    assert.equal(a.engine.find(sessionId), undefined, 'replica a, the one that could reach it, destroyed its sandbox')
  })

  it('a restarting replica re-adopts or ends its own sessions only', async (t) => {
    const uri = await pgServer.database('restart')
    const db = new URL(uri).pathname.slice(1)
    // Sessions two replicas left READY (their sandboxes gone: the fake driver's end with their server).
    const first = await replica(t, uri, 'replica-a', 'fake') // migrates the database
    await first.store.tenants.ensure('default')
    await first.close()
    const now = new Date().toISOString()
    for (const [id, replicaId] of [
      ['ownsession1', 'replica-a'],
      ['othersession1', 'replica-b'],
      ['oldsession1', null],
    ] as const)
      await pgServer.sql(
        db,
        `INSERT INTO sessions (session_id, tenant, interpreter_id, name, status, created_at, last_updated_at, timeout_seconds, limits, sandbox_id, replica_id)
         VALUES ($1, 'default', 'codebox.v1', '', 'READY', $2, $2, 900, $3, 'deadbeef', $4)`,
        [id, now, JSON.stringify(defaultLimits), replicaId],
      )
    const restarted = await replica(t, uri, 'replica-a', 'fake')
    assert.deepEqual(restarted.reconciled, ['ownsession1'], 'its own session, whose sandbox is gone, is ended; no other')
    assert.equal((await row(uri, 'ownsession1')).end_reason, 'server-restart')
    assert.equal((await row(uri, 'othersession1')).status, 'READY', "another replica's session is left alone")
    assert.equal((await row(uri, 'oldsession1')).status, 'READY', 'a session recorded without a replica is left alone')
  })

  it('on a shared driver any replica answers for any session, and one going away loses none', async (t) => {
    const uri = await pgServer.database('shared')
    const a = await replica(t, uri, 'replica-a', 'fake-shared')
    const b = await replica(t, uri, 'replica-b', 'fake-shared')
    const sessionId = await startSession(a)
    assert.equal(await stdout(python(a, sessionId, 'x = 41\nprint("set")')), 'set\n')
    // Replica a shuts down: its sessions on a shared driver are let go of, not ended.
    await a.close()
    assert.equal((await row(uri, sessionId)).status, 'READY', 'a replica that shuts down ends none of its shared sessions')
    // Replica b attaches the session on its first calls (two at once share one attach) and has its state.
    const [one, two] = await Promise.all([stdout(python(b, sessionId, 'x += 1\nprint(x)')), stdout(python(b, sessionId, 'print("here")'))])
    assert.deepEqual([one, two].sort(), ['42\n', 'here\n'])
    assert.ok(b.engine.find(sessionId), 'replica b holds the session now')
    // A new replica starting touches nothing of the others' sessions.
    const c = await replica(t, uri, 'replica-c', 'fake-shared')
    assert.deepEqual([c.adopted, c.reconciled], [[], []])
    assert.equal(await stdout(python(b, sessionId, 'print(x)')), '42\n')
    // Stopped on b: the sandbox goes, and every replica sees the session ended.
    await expectJson(fetch(`${b.url}/v1/sessions/${sessionId}`, { method: 'DELETE' }), 200)
    assert.deepEqual(await row(uri, sessionId), { status: 'TERMINATED', end_reason: 'stopped', replica_id: 'replica-a' })
    assert.deepEqual(await new FakeDriver({ sharedDir }).list!(), [], 'the sandbox was removed')
    const ended = await expectError(python(c, sessionId, 'print(x)'), 410, 'SessionTerminated')
    assert.match(ended.message, /has ended \(stopped\)/)
  })

  it("a tenant's start rate and session quota hold across replicas", async (t) => {
    const uri = await pgServer.database('quotas')
    const a = await replica(t, uri, 'replica-a', 'fake')
    const b = await replica(t, uri, 'replica-b', 'fake')
    await a.store.tenants.ensure('default')
    await a.store.tenants.setQuotas('default', { startsPerMinute: 3, maxSessions: 100 })
    const started = await Promise.all([a, b, a, b, a, b, a, b].map((s) => post(s, '/v1/sessions', {})))
    const statuses = started.map((r) => r.status).sort()
    assert.deepEqual(statuses, [201, 201, 201, 429, 429, 429, 429, 429], 'three starts a minute across both replicas, not three each')
    const refused = await expectError(Promise.resolve(started.find((r) => r.status === 429)!), 429, 'RateLimited')
    assert.ok(Number(refused.details.retryAfterSeconds) >= 1)
    for (const r of started) if (r.status === 201) await r.body?.cancel()

    // Two running sessions at most, whichever replica the concurrent starts reach.
    await a.store.tenants.ensure('acme')
    await a.store.tenants.setQuotas('acme', { startsPerMinute: 1000, maxSessions: 2 })
    const { secret } = await a.store.keys.create({ tenant: 'acme', name: 'quota' })
    const startAs = (s: RunningServer): Promise<Response> =>
      fetch(`${s.url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` }, body: '{}' })
    const quota = await Promise.all([a, b, a, b, a, b].map(startAs))
    assert.deepEqual(quota.map((r) => r.status).sort(), [201, 201, 429, 429, 429, 429], 'two sessions of tenant acme run, however the starts were spread')
    for (const r of quota) {
      if (r.status === 201) await r.body?.cancel()
      else assert.equal((await expectError(Promise.resolve(r), 429, 'QuotaExceeded')).details.limit, 2)
    }
    assert.equal(await a.store.sessions.countActive('acme'), 2)
  })

  it('a replica lets go of a session another replica ended, and a session whose sandbox is gone is ended', async (t) => {
    const uri = await pgServer.database('ended')
    const a = await replica(t, uri, 'replica-a', 'fake-shared')
    const b = await replica(t, uri, 'replica-b', 'fake-shared')
    const db = new URL(uri).pathname.slice(1)
    const held = await startSession(a)
    assert.equal(await stdout(python(a, held, 'print(1)')), '1\n')
    // Another replica's stop ends the record first: the holder finds it ended and lets go, without destroying the sandbox (not its to remove).
    await pgServer.sql(db, `UPDATE sessions SET status = 'TERMINATED', end_reason = 'stopped', ended_at = last_updated_at WHERE session_id = $1`, [held])
    await expectError(python(a, held, 'print(2)'), 410, 'SessionTerminated')
    assert.equal(a.engine.find(held), undefined, 'replica a let go of its handle')
    const sandboxId = (await pgServer.sql<{ sandbox_id: string }>(db, 'SELECT sandbox_id FROM sessions WHERE session_id = $1', [held]))[0]!.sandbox_id
    assert.deepEqual(await new FakeDriver({ sharedDir }).list!(), [sandboxId], 'the sandbox was released, not destroyed')
    await (await new FakeDriver({ sharedDir }).attach!(sandboxId)).destroy()

    // A session whose sandbox ended while no replica held it: the first call that attaches it ends its record.
    const lost = await startSession(a)
    await a.close()
    const lostSandbox = (await pgServer.sql<{ sandbox_id: string }>(db, 'SELECT sandbox_id FROM sessions WHERE session_id = $1', [lost]))[0]!.sandbox_id
    await (await new FakeDriver({ sharedDir }).attach!(lostSandbox)).destroy()
    const gone = await expectError(python(b, lost, 'print(1)'), 410, 'SessionTerminated')
    assert.match(gone.message, /its sandbox is gone/)
    assert.deepEqual(await row(uri, lost), { status: 'TERMINATED', end_reason: 'sandbox-exited', replica_id: 'replica-a' })
  })
})

describe('CODEBOX_REPLICA_ID', () => {
  it('defaults to the host name and state dir, and takes 1-200 printable characters', () => {
    const env = { CODEBOX_STATE_DIR: '/var/lib/codebox' }
    assert.equal(loadServerConfig(env, {}, 'api-7').replicaId, 'api-7:/var/lib/codebox')
    assert.equal(loadServerConfig({ ...env, CODEBOX_STATE_DIR: '/srv/two' }, {}, 'api-7').replicaId, 'api-7:/srv/two', 'a second server on the host differs')
    assert.equal(loadServerConfig({ ...env, CODEBOX_REPLICA_ID: 'codebox-0' }, {}, 'api-7').replicaId, 'codebox-0')
    assert.equal(loadServerConfig({ ...env, CODEBOX_REPLICA_ID: 'x'.repeat(200) }).replicaId.length, 200)
    for (const bad of [' lead', 'trail ', 'new\nline', 'x'.repeat(201), 'caf\u00e9'])
      assert.throws(
        () => loadServerConfig({ ...env, CODEBOX_REPLICA_ID: bad }),
        (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError' && /CODEBOX_REPLICA_ID/.test(e.message),
        JSON.stringify(bad),
      )
  })
})
