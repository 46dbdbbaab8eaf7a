/**
 * What only the PostgreSQL store has (store.test.ts runs the common suite on it): several
 * replicas (store instances, and servers) on one database seeing each other's writes, concurrent
 * idempotent writes from two replicas giving one result, replicas migrating together, a lock held
 * by another connection and a server that goes away (503s naming the cause, then recovery), text
 * PostgreSQL cannot hold, the CODEBOX_DB and sealing key settings, and a real server serving
 * sessions from PostgreSQL. Against a private PostgreSQL server (postgres-fixtures.ts).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, it, type TestContext } from 'node:test'
import pg from 'pg'
import { CodeboxError, defaultLimits, type ErrorCode } from '@codebox/core'
import { loadServerConfig } from '@codebox/server'
import { builtInInterpreterId, latestSchemaVersion, PgStore, storeConfigFromEnv, type SessionRecord } from '../src/store/index.ts'
import { expectJson, realServer, testServer } from './fixtures.ts'
import { postgresSkip, startPostgres, type PostgresServer } from './postgres-fixtures.ts'

const isError =
  (code: ErrorCode, message?: RegExp, reason?: string) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof CodeboxError, `expected a CodeboxError, got ${String(e)}`)
    assert.equal(e.code, code, e.message)
    if (message) assert.match(e.message, message)
    if (reason) assert.equal(e.details.reason, reason)
    return true
  }

const sealingKey = randomBytes(32)

function session(sessionId: string, tenant: string, extra: Partial<SessionRecord> = {}): SessionRecord {
  const now = new Date().toISOString()
  return {
    sessionId,
    tenant,
    interpreterId: builtInInterpreterId,
    name: `s-${sessionId}`,
    status: 'READY',
    createdAt: now,
    lastUpdatedAt: now,
    timeoutSeconds: 900,
    limits: { ...defaultLimits },
    ...extra,
  }
}

const settings = {
  entrypoint: 'index.js',
  language: 'node' as const,
  protocol: 'HTTP' as const,
  network: { mode: 'SANDBOX' as const },
  idleTimeoutSeconds: 900,
  maxLifetimeSeconds: 28800,
  limits: {},
}

describe('the PostgreSQL store', { skip: postgresSkip }, () => {
  let server: PostgresServer
  before(async () => {
    server = await startPostgres()
  })
  after(() => server?.stop())

  /** `n` store instances ("replicas") on one new database, closed when the test ends. */
  async function replicas(t: TestContext, n = 2, options: { busyWaitMs?: number } = {}): Promise<{ uri: string; stores: PgStore[] }> {
    const uri = await server.database('replicas')
    const stores: PgStore[] = []
    for (let i = 0; i < n; i++) stores.push(await PgStore.open(uri, { sealingKey, ...options }))
    t.after(() => Promise.all(stores.map((s) => s.close())))
    return { uri, stores }
  }

  it("two replicas on one database see each other's writes, secrets included", async (t) => {
    const {
      stores: [a, b],
    } = await replicas(t)
    const { secret } = await a!.keys.create({ tenant: 'acme', name: 'ci' })
    assert.equal((await b!.keys.authenticate(secret))?.tenant, 'acme')
    const aws = await b!.awsKeys.create({ tenant: 'acme' })
    assert.equal((await a!.awsKeys.lookup(aws.accessKeyId))?.secretAccessKey, aws.secretAccessKey, 'one sealing key, shared')
    assert.deepEqual(a!.deriveKey('e2b envd access token v1'), b!.deriveKey('e2b envd access token v1'))

    await a!.tenants.setQuotas('acme', { maxSessions: 7 })
    assert.equal((await b!.tenants.get('acme'))?.maxSessions, 7)
    const interpreter = await a!.interpreters.create({ tenant: 'acme', name: 'big', image: 'default', limits: { cpuCores: 2 } })
    assert.deepEqual(await b!.interpreters.get(interpreter.interpreterId, 'acme'), interpreter)

    await a!.sessions.insert(session('s1', 'acme', { clientToken: 'tok' }))
    assert.equal((await b!.sessions.findByClientToken('acme', 'tok'))?.sessionId, 's1')
    assert.equal(await b!.sessions.countActive('acme'), 1)
    await b!.sessions.setLifetime('s1', 60_000)
    assert.equal((await a!.sessions.get('s1', 'acme'))?.limits.maxLifetimeMs, 60_000)
    await b!.sessions.markTerminated('s1', 'stopped')
    assert.equal((await a!.sessions.get('s1', 'acme'))?.endReason, 'stopped')
    await a!.audit.record({ at: new Date().toISOString(), tenant: 'acme', sessionId: 's1', action: 'executeCode', durationMs: 3, outcome: 'ok' })
    assert.equal((await b!.audit.list({ tenant: 'acme', limit: 5 })).items.length, 1)

    // Conversation memory: one replica's turn is the other's history.
    const now = new Date()
    await a!.conversations.create({
      tenant: 'acme',
      conversationId: 'c1',
      actor: 'ana',
      title: 'hello',
      createdAt: now,
      expiresAt: new Date(now.getTime() + 3_600_000),
    })
    const turn = await b!.conversations.appendTurn(
      {
        tenant: 'acme',
        conversationId: 'c1',
        role: 'answer',
        prompt: 'what is 6 * 7?',
        text: '42',
        outcome: 'ok',
        model: 'm',
        skipped: [],
        usage: { inputTokens: 3, outputTokens: 1 },
        events: [],
        createdAt: new Date().toISOString(),
      },
      new Date(now.getTime() + 7_200_000),
    )
    assert.ok(turn)
    assert.deepEqual(await a!.conversations.turns('acme', 'c1'), [turn])
    assert.equal((await a!.conversations.get('acme', 'c1'))?.turns, 1)
    assert.deepEqual(
      (await b!.conversations.list({ tenant: 'acme', limit: 5 })).items.map((c) => c.conversationId),
      ['c1'],
    )

    // A hosted agent's bundle uploaded through one replica is deployed and read through the other.
    const bundleId = await a!.runtimes.beginBundle('acme')
    await a!.runtimes.appendBundleChunk(bundleId, 0, Buffer.from('bundle-bytes'))
    await a!.runtimes.finishBundle(bundleId, 'acme', 'f'.repeat(64), 12)
    const { runtime } = await b!.runtimes.deploy({ tenant: 'acme', name: 'agent', bundleId, settings })
    assert.equal(Buffer.from((await a!.runtimes.readBundleChunk(bundleId, 0))!).toString(), 'bundle-bytes')
    await a!.runtimes.putSecret(runtime.runtimeId, 'TOKEN', 'value-1')
    assert.deepEqual(await b!.runtimes.secretValues(runtime.runtimeId), { TOKEN: 'value-1' })
    await b!.runtimeLogs.openLog({ tenant: 'acme', runtimeId: runtime.runtimeId, runtimeSessionId: 'rs1', sessionId: 's1', version: '1' })
    await a!.runtimeLogs.appendLog('s1', 'hello from the agent\n', { maxBytes: 1024 })
    assert.equal((await b!.runtimeLogs.listLogs({ tenant: 'acme', runtimeId: runtime.runtimeId, limit: 5 }))[0]?.text, 'hello from the agent\n')
  })

  it('replicas starting together on a new database migrate it once', async (t) => {
    const uri = await server.database('together')
    const stores = await Promise.all(Array.from({ length: 4 }, () => PgStore.open(uri, { sealingKey })))
    t.after(() => Promise.all(stores.map((s) => s.close())))
    assert.deepEqual(
      stores.map((s) => s.schemaVersion),
      [latestSchemaVersion, latestSchemaVersion, latestSchemaVersion, latestSchemaVersion],
    )
    assert.deepEqual(
      (await stores[0]!.interpreters.list('acme')).map((i) => i.interpreterId),
      [builtInInterpreterId],
    )
  })

  it('concurrent idempotent writes from two replicas give one result', async (t) => {
    const {
      stores: [a, b],
    } = await replicas(t)
    // Two replicas store a session for one clientToken at once: the unique index lets one in.
    for (let round = 0; round < 5; round++) {
      const token = `tok-${round}`
      const results = await Promise.allSettled([
        a!.sessions.insert(session(`a${round}`, 'acme', { clientToken: token })),
        b!.sessions.insert(session(`b${round}`, 'acme', { clientToken: token })),
      ])
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, `round ${round}`)
      for (const r of results) if (r.status === 'rejected') isError('Conflict')(r.reason)
      const [fromA, fromB] = await Promise.all([a!.sessions.findByClientToken('acme', token), b!.sessions.findByClientToken('acme', token)])
      assert.ok(fromA)
      assert.deepEqual(fromA, fromB)
    }
    // An interpreter created with one token from both replicas at once is one interpreter.
    const created = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? a! : b!).interpreters.create({ tenant: 'acme', name: 'once', image: 'default', limits: {}, clientToken: 'ct' }),
      ),
    )
    assert.equal(new Set(created.map((c) => c.interpreterId)).size, 1)
    // Deploys of one new runtime from both replicas: one runtime, versions 1 and 2.
    const bundle = async (s: PgStore) => {
      const id = await s.runtimes.beginBundle('acme')
      await s.runtimes.appendBundleChunk(id, 0, Buffer.from('x'))
      return (await s.runtimes.finishBundle(id, 'acme', 'e'.repeat(64), 1)).bundleId
    }
    const [b1, b2] = await Promise.all([bundle(a!), bundle(b!)])
    const deploys = await Promise.all([
      a!.runtimes.deploy({ tenant: 'acme', name: 'twice', bundleId: b1, settings }),
      b!.runtimes.deploy({ tenant: 'acme', name: 'twice', bundleId: b2, settings }),
    ])
    assert.equal(new Set(deploys.map((d) => d.runtime.runtimeId)).size, 1)
    assert.deepEqual(deploys.map((d) => d.version.version).sort(), [1, 2])
    // Appends to one log from both replicas keep it within its bound, its size counted exactly.
    const runtimeId = deploys[0]!.runtime.runtimeId
    await a!.runtimeLogs.openLog({ tenant: 'acme', runtimeId, runtimeSessionId: 'rs', sessionId: 'log1', version: '1' })
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        (i % 2 ? a! : b!).runtimeLogs.appendLog('log1', `${String(i).padStart(2, '0')}-${'x'.repeat(60)}\n`, { maxBytes: 1000 }),
      ),
    )
    const [log] = await a!.runtimeLogs.listLogs({ tenant: 'acme', runtimeId, limit: 1 })
    assert.ok(log!.text.length <= 1000 && log!.text.length > 900, `${log!.text.length} bytes kept`)
    assert.equal(Buffer.byteLength(log!.text) + log!.droppedBytes, 40 * 64, 'what was kept and what was dropped add up to what was written')
  })

  it('concurrent idempotent starts through two servers sharing the store give one session', async (t) => {
    const {
      stores: [a, b],
    } = await replicas(t)
    const one = await testServer(t, { store: a })
    const two = await testServer(t, { store: b })
    for (let round = 0; round < 3; round++) {
      const clientToken = `start-${round}`
      const [first, second] = await Promise.all(
        [one, two].map((s) =>
          s.call('POST', '/v1/sessions', { json: { clientToken } }).then(async (r) => ({ status: r.status, body: (await r.json()) as { sessionId: string } })),
        ),
      )
      assert.deepEqual([first!.status, second!.status].sort(), [200, 201], 'one created it, the other found it')
      assert.equal(first!.body.sessionId, second!.body.sessionId, 'both servers answer with the one session')
    }
    const listed = (await a!.sessions.list({ tenant: 'default', status: 'READY', limit: 100 })).items
    assert.equal(listed.length, 3, 'one session per clientToken')
    // Each session is served by the server that started it; the other stopped its own sandbox.
    assert.equal(one.engine.list().length + two.engine.list().length, 3)
    // The servers stop before their stores close (the ends of their sessions are recorded).
    await Promise.all([one.close(), two.close()])
    assert.equal(await a!.sessions.countActive('default'), 0)
  })

  it('stores text with NUL characters, which PostgreSQL text cannot hold, as U+FFFD', async (t) => {
    const {
      stores: [a],
    } = await replicas(t, 1)
    await a!.sessions.insert(session('nul', 'acme', { name: 'a\u0000b' }))
    assert.equal((await a!.sessions.get('nul', 'acme'))?.name, 'a\uFFFDb')
    const bundleId = await a!.runtimes.beginBundle('acme')
    await a!.runtimes.appendBundleChunk(bundleId, 0, Buffer.from([0, 1, 2]))
    await a!.runtimes.finishBundle(bundleId, 'acme', 'd'.repeat(64), 3)
    assert.deepEqual([...(await a!.runtimes.readBundleChunk(bundleId, 0))!], [0, 1, 2], 'bytes stay bytes')
    const { runtime } = await a!.runtimes.deploy({ tenant: 'acme', name: 'nul', bundleId, settings })
    await a!.runtimeLogs.openLog({ tenant: 'acme', runtimeId: runtime.runtimeId, runtimeSessionId: 'rs', sessionId: 'nul', version: '1' })
    await a!.runtimeLogs.appendLog('nul', 'x\u0000y', { maxBytes: 4 })
    const [log] = await a!.runtimeLogs.listLogs({ tenant: 'acme', runtimeId: runtime.runtimeId, limit: 1 })
    assert.deepEqual({ text: log!.text, dropped: log!.droppedBytes }, { text: '\uFFFDy', dropped: 1 }, 'counted as stored: 5 bytes, the first dropped')
  })

  it('a lock another connection holds: writes fail after the wait with 503 StoreBusy, reads go on, all works once it is released', async (t) => {
    const {
      uri,
      stores: [a],
    } = await replicas(t, 1, { busyWaitMs: 500 })
    await a!.tenants.ensure('acme')
    const holder = new pg.Client({ connectionString: uri })
    await holder.connect()
    t.after(() => holder.end())
    await holder.query('BEGIN')
    await holder.query(`SELECT * FROM tenants WHERE id = 'acme' FOR UPDATE`)
    const started = Date.now()
    await assert.rejects(
      a!.tenants.setQuotas('acme', { maxSessions: 3 }),
      isError('Unavailable', /the store is busy: another connection holds a lock/, 'StoreBusy'),
    )
    assert.ok(Date.now() - started < 3000, `refused after ${Date.now() - started} ms`)
    assert.equal((await a!.tenants.get('acme'))?.id, 'acme', 'reads do not wait for the lock')
    await holder.query('ROLLBACK')
    assert.equal((await a!.tenants.setQuotas('acme', { maxSessions: 3 })).maxSessions, 3)
  })

  it('a server that goes away: calls fail with 503 StoreUnreachable, and work again once it is back', async (t) => {
    const own = await startPostgres()
    t.after(() => own.stop())
    const uri = await own.database('away')
    const store = await PgStore.open(uri, { sealingKey, busyWaitMs: 300 })
    t.after(() => store.close())
    const { secret } = await store.keys.create({ tenant: 'acme' })
    await own.halt()
    await assert.rejects(store.keys.create({ tenant: 'acme' }), isError('Unavailable', /cannot be reached/, 'StoreUnreachable'))
    await assert.rejects(store.sessions.countActive('acme'), isError('Unavailable', /cannot be reached/, 'StoreUnreachable'))
    await own.resume()
    assert.equal((await store.keys.authenticate(secret))?.tenant, 'acme')
    assert.equal(await store.sessions.countActive('acme'), 0)
  })

  it("replicas take from one rate bucket, and their concurrent quota-checked inserts never pass a tenant's quota", async (t) => {
    const {
      stores: [a, b],
    } = await replicas(t)
    const spec = { perSecond: 3 / 60, burst: 3 }
    const takes = await Promise.all([a!, b!, a!, b!, a!, b!, a!, b!].map((s) => s.rates.take('start:acme', spec)))
    assert.equal(takes.filter((r) => r.taken).length, 3, 'a burst of 3 across both replicas, not 3 each')
    assert.ok(takes.every((r) => r.tokens < 1 || r.taken))
    assert.equal((await a!.rates.take('start:other', spec)).taken, true, 'buckets are per key')
    // A bucket refills at its rate on the database's clock.
    const fast = { perSecond: 2, burst: 1 }
    assert.equal((await a!.rates.take('invoke:acme', fast)).taken, true)
    assert.equal((await b!.rates.take('invoke:acme', fast)).taken, false)
    await new Promise((r) => setTimeout(r, 600))
    assert.equal((await b!.rates.take('invoke:acme', fast)).taken, true)

    const inserts = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => (i % 2 ? a! : b!).sessions.insert(session(`q${i}`, 'quota'), { maxActive: 3 })),
    )
    assert.equal(inserts.filter((r) => r.status === 'fulfilled').length, 3)
    for (const r of inserts) if (r.status === 'rejected') isError('QuotaExceeded', /has 3 sessions running/)(r.reason)
    assert.equal(await b!.sessions.countActive('quota'), 3)
  })

  it('of replicas launching one runtime session at once, one stores its session (exclusiveHosted), also at the quota', async (t) => {
    const {
      stores: [a, b],
    } = await replicas(t)
    const hosted = (id: string): SessionRecord =>
      session(id, 'acme', { runtimeId: 'rt-1', hosted: { runtimeSessionId: 'k'.repeat(33), version: 1, network: { mode: 'SANDBOX' } } })
    // A quota of one: the losers are told of the winner's session (to attach it), never of the quota.
    const inserts = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) => (i % 2 ? a! : b!).sessions.insert(hosted(`h${i}`), { exclusiveHosted: true, maxActive: 1 })),
    )
    assert.equal(inserts.filter((r) => r.status === 'fulfilled').length, 1)
    for (const r of inserts) if (r.status === 'rejected') isError('Conflict', /is served by session h\d already/)(r.reason)
    assert.equal((await b!.sessions.listActiveHosted('acme')).length, 1)
  })

  it('a store that cannot be opened names it without its password', async () => {
    const missing = `postgresql://codebox:hunter2-secret@/codebox?host=${encodeURIComponent(path.join(server.dir, 'nothing-here'))}`
    await assert.rejects(PgStore.open(missing, { sealingKey, busyWaitMs: 200 }), (e: unknown) => {
      isError('Unavailable', /cannot be reached/, 'StoreUnreachable')(e)
      assert.doesNotMatch((e as Error).message, /hunter2/)
      assert.match((e as Error).message, /codebox:\*\*\*@/)
      return true
    })
  })

  it('a real server serves from PostgreSQL: starts, creates a session, runs code, stops; no server.pid lock', async (t) => {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-pg-server-'))
    t.after(() => fs.rmSync(parent, { recursive: true, force: true }))
    const uri = await server.database('served')
    const s = await realServer(parent, { CODEBOX_DB: uri, CODEBOX_SEALING_KEY: sealingKey.toString('base64') })
    let closed = false
    t.after(() => (closed ? undefined : s.close()))
    assert.equal(s.store.kind, 'postgres')
    assert.equal(fs.existsSync(path.join(parent, 'state', 'server.pid')), false, 'replicas sharing PostgreSQL take no lock')
    const { sessionId } = await expectJson<{ sessionId: string }>(
      fetch(`${s.url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }),
      201,
    )
    const ran = await expectJson<{ structuredContent: { stdout: string; exitCode: number } }>(
      fetch(`${s.url}/v1/sessions/${sessionId}/invoke`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'executeCode', arguments: { language: 'python', code: 'print(6 * 7)' } }),
      }),
      200,
    )
    assert.equal(ran.structuredContent.stdout, '42\n')
    await s.close()
    closed = true
    const rows = await server.sql<{ status: string; end_reason: string }>(
      new URL(uri).pathname.slice(1),
      'SELECT status, end_reason FROM sessions WHERE session_id = $1',
      [sessionId],
    )
    assert.deepEqual(rows, [{ status: 'TERMINATED', end_reason: 'shutdown' }], 'the record of the session is in PostgreSQL')
    const audit = await server.sql<{ action: string }>(new URL(uri).pathname.slice(1), 'SELECT action FROM audit WHERE session_id = $1 ORDER BY id', [
      sessionId,
    ])
    assert.ok(
      audit.some((r) => r.action === 'executeCode'),
      JSON.stringify(audit),
    )
  })
})

describe('CODEBOX_DB and the sealing key', () => {
  const key = randomBytes(32).toString('base64')
  const stateDir = '/var/lib/codebox'

  it('is a file path for SQLite (the default one in the state dir) and a postgres URI for PostgreSQL', () => {
    assert.deepEqual(storeConfigFromEnv({}, stateDir), { kind: 'sqlite', path: '/var/lib/codebox/codebox.db' })
    assert.deepEqual(storeConfigFromEnv({ CODEBOX_DB: '/data/x.db' }, stateDir), { kind: 'sqlite', path: '/data/x.db' })
    const socket = storeConfigFromEnv({ CODEBOX_DB: 'postgresql:///codebox?host=/var/run/postgresql', CODEBOX_SEALING_KEY: key }, stateDir)
    assert.equal(socket.kind, 'postgres')
    const tcp = storeConfigFromEnv({ CODEBOX_DB: 'postgres://codebox:pw@db.internal:5432/codebox', CODEBOX_SEALING_KEY_FILE: 'keys/sealing.key' }, stateDir)
    assert.ok(tcp.kind === 'postgres')
    assert.equal(tcp.where, 'postgres://codebox:***@db.internal:5432/codebox')
    assert.deepEqual(tcp.sealingKey, { variable: 'CODEBOX_SEALING_KEY_FILE', file: path.resolve('keys/sealing.key') })
    assert.equal(loadServerConfig({ CODEBOX_DB: 'postgresql://h/db', CODEBOX_SEALING_KEY: key }).store.kind, 'postgres')
  })

  it('refuses PostgreSQL without a sealing key, and malformed or doubled keys, each naming the variable', () => {
    const refuses = (env: Record<string, string>, field: string, message: RegExp) =>
      assert.throws(
        () => storeConfigFromEnv(env, stateDir),
        (e: unknown) => {
          isError('ValidationError', message)(e)
          assert.equal((e as CodeboxError).details.field, field)
          return true
        },
      )
    refuses({ CODEBOX_DB: 'postgresql://h/db' }, 'CODEBOX_SEALING_KEY', /required with a PostgreSQL store/)
    refuses({ CODEBOX_DB: 'postgresql://h/db', CODEBOX_SEALING_KEY: 'c2hvcnQ=' }, 'CODEBOX_SEALING_KEY', /32 random bytes in base64/)
    refuses({ CODEBOX_DB: 'postgresql://h/db', CODEBOX_SEALING_KEY: key, CODEBOX_SEALING_KEY_FILE: '/k' }, 'CODEBOX_SEALING_KEY', /both set/)
    refuses({ CODEBOX_DB: 'postgresql://h', CODEBOX_SEALING_KEY: key }, 'CODEBOX_DB', /names no database/)
    refuses({ CODEBOX_DB: 'mysql://h/db' }, 'CODEBOX_DB', /file path \(SQLite\) or a postgres/)
    refuses({ CODEBOX_SEALING_KEY: key }, 'CODEBOX_SEALING_KEY', /PostgreSQL store only/)
  })

  it('reads a key file when the store opens, naming it when it is unusable', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-sealing-'))
    after(() => fs.rmSync(dir, { recursive: true, force: true }))
    const { readSealingKey } = await import('../src/store/index.ts')
    const file = path.join(dir, 'sealing.key')
    fs.writeFileSync(file, `${key}\n`)
    assert.equal(readSealingKey({ variable: 'CODEBOX_SEALING_KEY_FILE', file }).toString('base64'), key)
    fs.writeFileSync(file, 'not a key')
    assert.throws(() => readSealingKey({ variable: 'CODEBOX_SEALING_KEY_FILE', file }), isError('ValidationError', /sealing\.key.*32 random bytes/))
    assert.throws(() => readSealingKey({ variable: 'CODEBOX_SEALING_KEY_FILE', file: path.join(dir, 'missing') }), isError('ValidationError', /cannot read/))
  })
})
