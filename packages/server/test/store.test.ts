/**
 * The store, on both backends: the embedded SQLite store and PostgreSQL (a private server started
 * for this file, postgres-fixtures.ts; skipped with the reason when it is not installed). One suite
 * (`storeSuite`) runs against each: migrations, API keys (the secret never reaches the database),
 * tenant isolation of every repository, idempotency tokens, paging and session reconciliation.
 * What only SQLite has (file modes, WAL, its synchronous transaction helper) is tested on SQLite.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { DatabaseSync } from 'node:sqlite'
import { after, before, describe, it } from 'node:test'
import { CodeboxError, defaultLimits, type ErrorCode } from '@codebox/core'
import {
  builtInInterpreterId,
  latestSchemaVersion,
  migrate,
  migratePg,
  migrations,
  PgStore,
  pgMigrations,
  Store,
  type OpenStore,
  type SessionRecord,
} from '../src/store/index.ts'
import { Db } from '../src/store/postgres/db.ts'
import { transaction } from '../src/store/sql.ts'
import { postgresSkip, startPostgres, type PostgresServer } from './postgres-fixtures.ts'

let dir: string
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'codebox-store-'))
})
after(() => rmSync(dir, { recursive: true, force: true }))

const isError =
  (code: ErrorCode, message?: RegExp) =>
  (e: unknown): boolean => {
    assert.ok(e instanceof CodeboxError, `expected a CodeboxError, got ${String(e)}`)
    assert.equal(e.code, code, e.message)
    if (message) assert.match(e.message, message)
    return true
  }

type Closer = { after(fn: () => unknown): void }

/** One store backend as the suite drives it. */
interface Backend {
  name: 'sqlite' | 'postgres'
  /** A new, empty store closed when the test ends. */
  fresh(t: Closer): Promise<OpenStore>
  /** A new place for a store that can be opened again (a file; a database). */
  location(name: string): Promise<string>
  /** Opens the store at `location`; with `sealingKey`, sealed with that key instead of the store's own. */
  open(location: string, sealingKey?: Buffer): Promise<OpenStore>
  /** Every row of `table` as text, straight from the database (not through the store). */
  rawRows(location: string, table: string): Promise<string[]>
  /** The schema version the database records. */
  rawVersion(location: string): Promise<number>
  /** Sets the recorded schema version, as a newer codebox would leave it. */
  setRawVersion(location: string, version: number): Promise<void>
  /** The tables of the database, by name. */
  rawTables(location: string): Promise<string[]>
  /** Runs the backend's migrations plus one broken one on a fresh database; returns the version and whether `half` exists after. */
  migrateBroken(): Promise<{ error: unknown; version: number; half: boolean }>
}

/** The tables of both backends' schemas. */
const storeTables = [
  'api_keys',
  'audit',
  'aws_keys',
  'conversation_turns',
  'conversations',
  'interpreters',
  'runtime_bundle_chunks',
  'runtime_bundles',
  'runtime_log_chunks',
  'runtime_logs',
  'runtime_secrets',
  'runtime_versions',
  'runtimes',
  'sessions',
  'tenants',
]

const sqlite: Backend = {
  name: 'sqlite',
  fresh: async (t) => {
    const store = Store.open(':memory:')
    t.after(() => store.close())
    return store
  },
  location: async (name) => join(mkdtempSync(join(dir, `${name}-`)), 'codebox.db'),
  open: async (file, sealingKey) => {
    if (sealingKey) writeFileSync(`${file}.key`, sealingKey.toString('base64'))
    return Store.open(file)
  },
  rawRows: async (file, table) => {
    const raw = new DatabaseSync(file)
    try {
      return (raw.prepare(`SELECT * FROM ${table}`).all() as Record<string, unknown>[]).map((r) => JSON.stringify(r))
    } finally {
      raw.close()
    }
  },
  rawVersion: async (file) => {
    const raw = new DatabaseSync(file)
    try {
      return (raw.prepare('PRAGMA user_version').get() as { user_version: number }).user_version
    } finally {
      raw.close()
    }
  },
  setRawVersion: async (file, version) => {
    const raw = new DatabaseSync(file)
    raw.exec(`PRAGMA user_version = ${version}`)
    raw.close()
  },
  rawTables: async (file) => {
    const raw = new DatabaseSync(file)
    try {
      return (raw.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all() as { name: string }[]).map((r) => r.name)
    } finally {
      raw.close()
    }
  },
  migrateBroken: async () => {
    const db = new DatabaseSync(':memory:')
    const broken = [...migrations, { version: migrations.length + 1, description: 'broken', sql: 'CREATE TABLE half (a); SELECT * FROM missing;' }]
    let error: unknown
    try {
      migrate(db, broken)
    } catch (e) {
      error = e
    }
    const version = (db.prepare('PRAGMA user_version').get() as { user_version: number }).user_version
    const half = db.prepare(`SELECT count(*) AS n FROM sqlite_master WHERE name = 'half'`).get()?.n === 1
    db.close()
    return { error, version, half }
  },
}

let pgServer: PostgresServer | undefined
const server = (): PostgresServer => {
  assert.ok(pgServer, 'the PostgreSQL server is started by the suite')
  return pgServer
}
/** The database name in one of the fixture's URIs. */
const dbName = (uri: string): string => new URL(uri).pathname.slice(1)
const pgKey = randomBytes(32)

const postgres: Backend = {
  name: 'postgres',
  fresh: async (t) => {
    const store = await PgStore.open(await server().database('fresh'), { sealingKey: pgKey })
    t.after(() => store.close())
    return store
  },
  location: async (name) => server().database(name),
  open: (uri, sealingKey) => PgStore.open(uri, { sealingKey: sealingKey ?? pgKey }),
  rawRows: async (uri, table) => (await server().sql<{ r: string }>(dbName(uri), `SELECT row_to_json(t)::text AS r FROM ${table} t`)).map((x) => x.r),
  rawVersion: async (uri) => (await server().sql<{ version: number }>(dbName(uri), 'SELECT version FROM codebox_schema'))[0]!.version,
  setRawVersion: async (uri, version) => {
    await server().sql(dbName(uri), `CREATE TABLE codebox_schema (one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one), version INTEGER NOT NULL)`)
    await server().sql(dbName(uri), 'INSERT INTO codebox_schema (version) VALUES ($1)', [version])
  },
  rawTables: async (uri) =>
    (await server().sql<{ name: string }>(dbName(uri), `SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`)).map(
      (r) => r.name,
    ),
  migrateBroken: async () => {
    const uri = await server().database('broken')
    const db = new Db(uri, { busyWaitMs: 2000 })
    const broken = [...pgMigrations, { version: pgMigrations.length + 1, description: 'broken', sql: 'CREATE TABLE half (a int); SELECT * FROM missing;' }]
    let error: unknown
    try {
      await migratePg(db, broken)
    } catch (e) {
      error = e
    }
    const version = (await db.query<{ version: number }>('SELECT version FROM codebox_schema')).rows[0]!.version
    const half = (await db.query<{ t: string | null }>(`SELECT to_regclass('half')::text AS t`)).rows[0]!.t !== null
    await db.close()
    return { error, version, half }
  },
}

const t0 = Date.parse('2030-01-01T00:00:00.000Z')
const at = (ms: number) => new Date(t0 + ms).toISOString()

function session(sessionId: string, tenant: string, extra: Partial<SessionRecord> = {}): SessionRecord {
  return {
    sessionId,
    tenant,
    interpreterId: builtInInterpreterId,
    name: `s-${sessionId}`,
    status: 'READY',
    createdAt: at(0),
    lastUpdatedAt: at(0),
    timeoutSeconds: 900,
    limits: { ...defaultLimits },
    ...extra,
  }
}

/** The suite every backend passes. */
function storeSuite(b: Backend): void {
  describe('migrations', () => {
    it('migrates an empty store to the latest version, and re-opening changes nothing', async () => {
      const location = await b.location('fresh')
      const first = await b.open(location)
      assert.equal(first.schemaVersion, latestSchemaVersion)
      assert.equal(latestSchemaVersion, migrations.length)
      const { secret } = await first.keys.create({ tenant: 'acme' })
      await first.close()
      await first.close()

      const again = await b.open(location)
      assert.equal(again.schemaVersion, latestSchemaVersion)
      assert.equal((await again.keys.authenticate(secret))?.tenant, 'acme', 'data survives a re-open')
      assert.deepEqual(
        (await again.interpreters.list('acme')).map((i) => i.interpreterId),
        [builtInInterpreterId],
        'the built-in interpreter is inserted once',
      )
      await again.close()

      assert.equal(await b.rawVersion(location), latestSchemaVersion)
      assert.deepEqual(
        await b.rawTables(location),
        b.name === 'sqlite' ? [...storeTables, 'sqlite_sequence'].sort() : [...storeTables, 'codebox_schema', 'rate_buckets'].sort(),
      )
    })

    it('refuses a database from a newer codebox and leaves it untouched', async () => {
      const location = await b.location('newer')
      if (b.name === 'sqlite') writeFileSync(location, '')
      await b.setRawVersion(location, latestSchemaVersion + 1)
      await assert.rejects(b.open(location), isError('Unavailable', /newer codebox/))
      assert.equal(await b.rawVersion(location), latestSchemaVersion + 1)
      assert.deepEqual(await b.rawTables(location), b.name === 'sqlite' ? [] : ['codebox_schema'])
    })

    it('rolls a failing migration back entirely, keeping the earlier ones', async () => {
      const { error, version, half } = await b.migrateBroken()
      assert.match(String(error), /no such table: missing|relation "missing" does not exist/)
      assert.equal(version, latestSchemaVersion)
      assert.equal(half, false)
    })
  })

  describe('the asynchronous interface', () => {
    it('answers every call with a promise, bad input included, and keeps concurrent transactions apart', async (t) => {
      const store = await b.fresh(t)
      // A refusal is a rejection, never a throw at the call: callers of any backend await and catch alike.
      const bad = store.tenants.ensure('Not A Tenant')
      assert.ok(bad instanceof Promise)
      await assert.rejects(bad, isError('ValidationError', /^tenant:/))
      const unknown = store.keys.revoke('key_unknown')
      assert.ok(unknown instanceof Promise)
      await assert.rejects(unknown, isError('NotFound'))

      // Started together: each create runs its transaction whole, so exactly one takes the name.
      const creates = await Promise.allSettled(
        Array.from({ length: 10 }, () => store.interpreters.create({ tenant: 'acme', name: 'same', image: 'default', limits: {} })),
      )
      assert.equal(creates.filter((r) => r.status === 'fulfilled').length, 1)
      for (const r of creates) if (r.status === 'rejected') isError('Conflict')(r.reason)
      const keys = await Promise.all(Array.from({ length: 20 }, (_, i) => store.keys.create({ tenant: `t${i % 4}` })))
      assert.equal(new Set(keys.map((k) => k.record.keyId)).size, 20)
      assert.deepEqual(
        (await store.tenants.list()).map((x) => x.id),
        ['acme', 't0', 't1', 't2', 't3'],
      )
      assert.equal(await store.keys.activeCount(), 20)
    })
  })

  describe('interpreters', () => {
    it('has the built-in codebox.v1 for every tenant, which cannot be deleted', async (t) => {
      const store = await b.fresh(t)
      const builtIn = await store.interpreters.get(builtInInterpreterId, 'anyone')
      assert.deepEqual(
        { ...builtIn, createdAt: undefined, lastUpdatedAt: undefined },
        {
          interpreterId: 'codebox.v1',
          name: 'codebox',
          description: 'The built-in interpreter: Python, JavaScript and TypeScript with the data stack',
          image: 'default',
          limits: {},
          network: { mode: 'SANDBOX' },
          tags: {},
          status: 'READY',
          createdAt: undefined,
          lastUpdatedAt: undefined,
        },
      )
      assert.equal('tenant' in builtIn!, false)
      assert.match(builtIn!.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/)
      await assert.rejects(store.interpreters.delete(builtInInterpreterId, 'anyone'), isError('Conflict', /built-in/))
    })

    it('keeps custom interpreters to their tenant and names unique among live ones', async (t) => {
      const store = await b.fresh(t)
      const mine = await store.interpreters.create({ tenant: 'acme', name: 'big', description: 'more memory', image: 'default', limits: { cpuCores: 2 } })
      assert.match(mine.interpreterId, /^big-[0-9A-Za-z]{10}$/)
      assert.deepEqual(await store.interpreters.get(mine.interpreterId, 'acme'), mine)
      assert.equal(await store.interpreters.get(mine.interpreterId, 'other'), undefined)
      assert.deepEqual(
        (await store.interpreters.list('acme')).map((i) => i.interpreterId),
        [builtInInterpreterId, mine.interpreterId],
      )
      assert.deepEqual(
        (await store.interpreters.list('other')).map((i) => i.interpreterId),
        [builtInInterpreterId],
      )
      await assert.rejects(store.interpreters.create({ tenant: 'acme', name: 'big', image: 'default', limits: {} }), isError('Conflict'))
      assert.equal((await store.interpreters.create({ tenant: 'other', name: 'big', image: 'default', limits: {} })).tenant, 'other')

      await assert.rejects(store.interpreters.delete(mine.interpreterId, 'other'), isError('NotFound'))
      assert.equal((await store.interpreters.delete(mine.interpreterId, 'acme')).status, 'DELETED')
      assert.equal(await store.interpreters.get(mine.interpreterId, 'acme'), undefined)
      await assert.rejects(store.interpreters.delete(mine.interpreterId, 'acme'), isError('NotFound'))
      assert.notEqual((await store.interpreters.create({ tenant: 'acme', name: 'big', image: 'default', limits: {} })).interpreterId, mine.interpreterId)
    })

    it('keeps network settings and tags, and returns the first interpreter for a reused clientToken', async (t) => {
      const store = await b.fresh(t)
      const network = { mode: 'VPC' as const, allow: ['example.com:443'], vpcConfig: { securityGroups: ['sg-1'], subnets: ['subnet-1'] } }
      const first = await store.interpreters.create({
        tenant: 'acme',
        name: 'net',
        image: 'default',
        limits: {},
        network,
        tags: { team: 'data' },
        clientToken: 'tok1',
      })
      assert.deepEqual(first.network, network)
      assert.deepEqual(first.tags, { team: 'data' })
      const retried = await store.interpreters.create({ tenant: 'acme', name: 'net', image: 'default', limits: {}, network, clientToken: 'tok1' })
      assert.deepEqual(retried, first)
      // The same token of another tenant is another interpreter.
      assert.notEqual(
        (await store.interpreters.create({ tenant: 'other', name: 'net', image: 'default', limits: {}, clientToken: 'tok1' })).interpreterId,
        first.interpreterId,
      )
    })

    it('keeps a preload list, an empty one included, and none for an interpreter that gave none (the server default)', async (t) => {
      const store = await b.fresh(t)
      const data = await store.interpreters.create({ tenant: 'acme', name: 'data', image: 'default', limits: {}, preload: ['numpy', 'matplotlib.pyplot'] })
      const lean = await store.interpreters.create({ tenant: 'acme', name: 'lean', image: 'default', limits: {}, preload: [] })
      const plain = await store.interpreters.create({ tenant: 'acme', name: 'plain', image: 'default', limits: {} })
      assert.deepEqual((await store.interpreters.get(data.interpreterId, 'acme'))?.preload, ['numpy', 'matplotlib.pyplot'])
      assert.deepEqual((await store.interpreters.get(lean.interpreterId, 'acme'))?.preload, [])
      assert.equal((await store.interpreters.get(plain.interpreterId, 'acme'))?.preload, undefined)
      assert.equal((await store.interpreters.get('codebox.v1', 'acme'))?.preload, undefined, 'the built-in one follows the server default')
    })
  })

  describe('SigV4 access keys', () => {
    it('seals the secret, finds it by access key id until revoked, and counts as a created key', async (t) => {
      const location = await b.location('awskeys')
      const store = await b.open(location)
      assert.equal(await store.keys.anyCreated(), false)
      const { accessKeyId, secretAccessKey, record } = await store.awsKeys.create({ tenant: 'acme', name: 'agents' })
      assert.match(accessKeyId, /^CBXA[A-Z2-7]{16}$/)
      assert.match(secretAccessKey, /^[0-9A-Za-z]{40}$/)
      assert.equal(record.tenant, 'acme')
      assert.equal(await store.keys.anyCreated(), true, 'an access key closes an open server too')
      await store.close()
      if (b.name === 'sqlite') assert.equal(statSync(`${location}.key`).mode & 0o777, 0o600)
      const rows = await b.rawRows(location, 'aws_keys')
      assert.equal(rows.length, 1)
      assert.ok(!rows[0]!.includes(secretAccessKey), 'the database holds no plain secret')

      const again = await b.open(location)
      t.after(() => again.close())
      assert.equal((await again.awsKeys.lookup(accessKeyId))?.secretAccessKey, secretAccessKey)
      assert.equal(await again.awsKeys.lookup('CBXAAAAAAAAAAAAAAAAA'), undefined)
      assert.equal(await again.awsKeys.lookup('not a key id'), undefined)
      await again.awsKeys.revoke(accessKeyId)
      assert.equal(await again.awsKeys.lookup(accessKeyId), undefined)
      assert.ok((await again.awsKeys.list('acme'))[0]!.revokedAt)
      await assert.rejects(again.awsKeys.revoke('CBXAAAAAAAAAAAAAAAAA'), isError('NotFound'))
    })

    it('refuses to unseal with another sealing key', async (t) => {
      const location = await b.location('awskeys')
      const store = await b.open(location)
      const { accessKeyId } = await store.awsKeys.create({ tenant: 'acme' })
      await store.close()
      const again = await b.open(location, randomBytes(32))
      t.after(() => again.close())
      await assert.rejects(again.awsKeys.lookup(accessKeyId), isError('Internal', /sealing key/))
    })
  })

  describe('tenants and API keys', () => {
    it('validates tenant ids and resets quotas with null', async (t) => {
      const store = await b.fresh(t)
      await assert.rejects(store.tenants.ensure('Acme Corp'), isError('ValidationError', /^tenant:/))
      await assert.rejects(store.tenants.setQuotas('ghost', { maxSessions: 1 }), isError('NotFound'))
      const created = await store.tenants.ensure('acme')
      assert.deepEqual(await store.tenants.ensure('acme'), created)
      assert.deepEqual(await store.tenants.setQuotas('acme', { maxSessions: 3, invokesPerSecond: 2.5 }), { ...created, maxSessions: 3, invokesPerSecond: 2.5 })
      assert.deepEqual(await store.tenants.setQuotas('acme', { maxSessions: null, startsPerMinute: 10 }), {
        ...created,
        startsPerMinute: 10,
        invokesPerSecond: 2.5,
      })
      await assert.rejects(store.tenants.setQuotas('acme', { maxSessions: 1.5 }), isError('ValidationError', /^maxSessions:/))
      assert.equal((await store.tenants.setQuotas('acme', { agentTurnsPerMinute: 5 })).agentTurnsPerMinute, 5)
      assert.equal((await store.tenants.setQuotas('acme', { agentTurnsPerMinute: null })).agentTurnsPerMinute, undefined)
      assert.deepEqual(
        (await store.tenants.list()).map((x) => x.id),
        ['acme'],
      )
    })

    it('authenticates a key until it is revoked, and never stores the secret', async (t) => {
      const location = await b.location('keys')
      const store = await b.open(location)
      t.after(() => store.close())
      const { secret, record } = await store.keys.create({ tenant: 'acme', name: 'ci' })
      assert.match(secret, /^cbx_[0-9A-Za-z]{40}$/)
      assert.match(record.keyId, /^key_[0-9A-Za-z]{12}$/)
      assert.deepEqual(record, { keyId: record.keyId, tenant: 'acme', name: 'ci', prefix: secret.slice(0, 12), createdAt: record.createdAt })
      assert.equal((await store.tenants.get('acme'))?.id, 'acme', 'creating a key creates its tenant')
      assert.equal(await store.keys.activeCount(), 1)

      assert.equal((await store.keys.authenticate(secret, new Date(t0)))?.lastUsedAt, at(0))
      assert.equal((await store.keys.authenticate(secret, new Date(t0 + 30_000)))?.lastUsedAt, at(0), 'written at most once a minute')
      assert.equal((await store.keys.authenticate(secret, new Date(t0 + 61_000)))?.lastUsedAt, at(61_000))
      assert.equal(await store.keys.authenticate(`${secret.slice(0, -1)}${secret.endsWith('a') ? 'b' : 'a'}`), undefined)
      assert.equal(await store.keys.authenticate('not a key'), undefined)

      const revoked = await store.keys.revoke(record.keyId)
      assert.ok(revoked.revokedAt)
      assert.equal(await store.keys.authenticate(secret), undefined)
      assert.equal((await store.keys.revoke(record.keyId)).revokedAt, revoked.revokedAt, 'revoking again keeps the first time')
      await assert.rejects(store.keys.revoke('key_unknown'), isError('NotFound'))
      assert.equal(await store.keys.activeCount(), 0)
      await store.keys.create({ tenant: 'other' })
      assert.deepEqual(
        (await store.keys.list('acme')).map((k) => k.keyId),
        [record.keyId],
      )
      assert.equal((await store.keys.list()).length, 2)

      await store.close()
      // Everything the database holds: the files of SQLite (WAL included), every row of PostgreSQL.
      const bytes =
        b.name === 'sqlite'
          ? Buffer.concat(
              readdirSync(dirname(location))
                .filter((f) => f.startsWith('codebox.db'))
                .map((f) => readFileSync(join(dirname(location), f))),
            )
          : Buffer.from((await Promise.all(storeTables.map((table) => b.rawRows(location, table)))).flat().join('\n'))
      assert.ok(bytes.includes(record.keyId), 'the search does see the key row')
      assert.equal(bytes.includes(secret), false, 'the secret is in the database files')
      assert.equal(bytes.includes(secret.slice(12)), false, 'the secret beyond its prefix is in the database files')
    })
  })

  describe('sessions', () => {
    it('keeps sessions to their tenant and finds them by client token', async (t) => {
      const store = await b.fresh(t)
      await store.sessions.insert(session('a1', 'acme', { clientToken: 'tok', keyId: 'key_x' }))
      await store.sessions.insert(session('b1', 'other', { clientToken: 'tok' }))
      assert.equal((await store.sessions.get('a1', 'acme'))?.keyId, 'key_x')
      assert.deepEqual(await store.sessions.get('a1', 'acme'), session('a1', 'acme', { clientToken: 'tok', keyId: 'key_x' }))
      assert.equal(await store.sessions.get('a1', 'other'), undefined)
      assert.equal((await store.sessions.findByClientToken('acme', 'tok'))?.sessionId, 'a1')
      assert.equal((await store.sessions.findByClientToken('other', 'tok'))?.sessionId, 'b1')
      assert.equal(await store.sessions.findByClientToken('acme', 'nope'), undefined)
      await assert.rejects(store.sessions.insert(session('a2', 'acme', { clientToken: 'tok' })), isError('Conflict'))
      await assert.rejects(store.sessions.insert(session('a1', 'other')), isError('Conflict'))
      assert.deepEqual(
        (await store.sessions.list({ tenant: 'other', limit: 10 })).items.map((s) => s.sessionId),
        ['b1'],
      )
      assert.equal(await store.sessions.countActive('acme'), 1)
    })

    it('pages newest first across 3 pages without duplicates or gaps', async (t) => {
      const store = await b.fresh(t)
      // Three share a createdAt, so the session id decides their order.
      const ids = ['s1', 's2', 's3', 's4', 's5', 's6', 's7']
      for (const [i, id] of ids.entries()) await store.sessions.insert(session(id, 'acme', { createdAt: at(i < 3 ? 0 : i * 1000) }))
      await store.sessions.insert(session('x1', 'other', { createdAt: at(5000) }))
      const seen: string[] = []
      let nextToken: string | undefined
      let pages = 0
      do {
        const page = await store.sessions.list({ tenant: 'acme', limit: 3, ...(nextToken ? { nextToken } : {}) })
        seen.push(...page.items.map((s) => s.sessionId))
        nextToken = page.nextToken
        pages++
      } while (nextToken)
      assert.equal(pages, 3)
      assert.deepEqual(seen, ['s7', 's6', 's5', 's4', 's3', 's2', 's1'])
      await store.sessions.markTerminated('s6', 'stopped')
      assert.deepEqual(
        await store.sessions.list({ tenant: 'acme', status: 'TERMINATED', limit: 3 }),
        { items: [await store.sessions.get('s6', 'acme')] },
        'no token after the last page',
      )
    })

    it('refuses a nextToken it did not issue', async (t) => {
      const store = await b.fresh(t)
      await store.audit.record({ at: at(0), tenant: 'acme', action: 'executeCode', durationMs: 1, outcome: 'ok' })
      await store.audit.record({ at: at(0), tenant: 'acme', action: 'executeCode', durationMs: 1, outcome: 'ok' })
      const auditToken = (await store.audit.list({ tenant: 'acme', limit: 1 })).nextToken!
      const forged = Buffer.from(JSON.stringify({ k: 'sessions', c: 1 })).toString('base64url')
      for (const nextToken of ['not a token!', 'e30', auditToken, forged]) {
        await assert.rejects(
          store.sessions.list({ tenant: 'acme', limit: 5, nextToken }),
          isError('ValidationError', /^nextToken: is not a token this server issued/),
        )
      }
      await assert.rejects(store.audit.list({ tenant: 'acme', sessionId: 'a1', limit: 5, nextToken: auditToken }), isError('ValidationError', /^nextToken/))
    })

    it('keeps the first end reason, and touch only moves lastUpdatedAt', async (t) => {
      const store = await b.fresh(t)
      await store.sessions.insert(session('a1', 'acme'))
      await store.sessions.touch('a1', new Date(t0 + 5000))
      assert.equal((await store.sessions.get('a1', 'acme'))?.lastUpdatedAt, at(5000))
      const ended = await store.sessions.markTerminated('a1', 'idle-timeout', new Date(t0 + 9000))
      assert.deepEqual(ended, { ...session('a1', 'acme'), status: 'TERMINATED', lastUpdatedAt: at(9000), endedAt: at(9000), endReason: 'idle-timeout' })
      assert.deepEqual(await store.sessions.markTerminated('a1', 'stopped', new Date(t0 + 20_000)), ended)
      await store.sessions.touch('a1', new Date(t0 + 30_000))
      assert.deepEqual(await store.sessions.get('a1', 'acme'), ended)
      assert.equal(await store.sessions.markTerminated('ghost', 'stopped'), undefined)
    })

    it('keeps the replica that started a session, and refuses an insert past the tenant quota it is given', async (t) => {
      const store = await b.fresh(t)
      await store.sessions.insert(session('r1', 'acme', { replicaId: 'replica-a' }), { maxActive: 2 })
      assert.equal((await store.sessions.get('r1', 'acme'))?.replicaId, 'replica-a')
      await store.sessions.insert(session('r2', 'acme'), { maxActive: 2 })
      assert.equal((await store.sessions.get('r2', 'acme'))?.replicaId, undefined)
      await assert.rejects(store.sessions.insert(session('r3', 'acme'), { maxActive: 2 }), (e: unknown) => {
        isError('QuotaExceeded', /tenant acme has 2 sessions running/)(e)
        assert.deepEqual((e as CodeboxError).details, { quota: 'maxSessions', limit: 2, retryAfterSeconds: 10 })
        return true
      })
      assert.equal(await store.sessions.get('r3', 'acme'), undefined, 'nothing was stored')
      await store.sessions.insert(session('o1', 'other'), { maxActive: 2 })
      await store.sessions.markTerminated('r1', 'stopped')
      await store.sessions.insert(session('r3', 'acme'), { maxActive: 2 })
      assert.equal(await store.sessions.countActive('acme'), 2)
    })

    it("finds a runtime session's READY session, lists a tenant's, and lets one launch of a runtime session win with exclusiveHosted", async (t) => {
      const store = await b.fresh(t)
      const network = { mode: 'SANDBOX' as const }
      const hosted = (id: string, runtimeSessionId: string, extra: Partial<SessionRecord> = {}): SessionRecord =>
        session(id, 'acme', { runtimeId: 'rt-1', hosted: { runtimeSessionId, version: 1, network }, ...extra })
      await store.sessions.insert(hosted('h1', 'x'.repeat(33)), { maxActive: 10, exclusiveHosted: true })
      await store.sessions.insert(session('plain', 'acme'), { maxActive: 10, exclusiveHosted: true })
      await assert.rejects(store.sessions.insert(hosted('h2', 'x'.repeat(33)), { maxActive: 10, exclusiveHosted: true }), (e: unknown) => {
        isError('Conflict', /is served by session h1 already/)(e)
        assert.deepEqual((e as CodeboxError).details, { sessionId: 'h1', hostedTaken: true })
        return true
      })
      // At the tenant's quota (h1 and plain make 2), the loser still learns of the winner's session, to attach it.
      await assert.rejects(store.sessions.insert(hosted('h2', 'x'.repeat(33)), { maxActive: 2, exclusiveHosted: true }), (e: unknown) => {
        isError('Conflict', /is served by session h1 already/)(e)
        assert.deepEqual((e as CodeboxError).details, { sessionId: 'h1', hostedTaken: true })
        return true
      })
      await assert.rejects(store.sessions.insert(hosted('h2', 'w'.repeat(33)), { maxActive: 2, exclusiveHosted: true }), isError('QuotaExceeded'))
      assert.equal(await store.sessions.get('h2', 'acme'), undefined, 'the loser was not stored')
      // Another runtime session, runtime or tenant is another key; without exclusiveHosted nothing is checked (one server per store).
      await store.sessions.insert(hosted('h3', 'y'.repeat(33)), { exclusiveHosted: true })
      await store.sessions.insert(hosted('h4', 'x'.repeat(33), { runtimeId: 'rt-2' }), { exclusiveHosted: true })
      await store.sessions.insert(session('h5', 'other', { runtimeId: 'rt-1', hosted: { runtimeSessionId: 'x'.repeat(33), version: 1, network } }), {
        exclusiveHosted: true,
      })
      await store.sessions.setHostedTask('h1', 'task-1')
      assert.deepEqual((await store.sessions.activeHosted('acme', 'rt-1', 'x'.repeat(33)))?.hosted, {
        runtimeSessionId: 'x'.repeat(33),
        version: 1,
        network,
        taskId: 'task-1',
      })
      assert.equal(await store.sessions.activeHosted('acme', 'rt-1', 'z'.repeat(33)), undefined)
      assert.deepEqual(
        (await store.sessions.listActiveHosted('acme', 'rt-1')).map((r) => r.sessionId),
        ['h1', 'h3'],
      )
      assert.deepEqual(
        (await store.sessions.listActiveHosted('acme')).map((r) => r.sessionId),
        ['h1', 'h3', 'h4'],
      )
      // Once it ended, the runtime session may be launched again.
      await store.sessions.markTerminated('h1', 'stopped')
      assert.equal(await store.sessions.activeHosted('acme', 'rt-1', 'x'.repeat(33)), undefined)
      await store.sessions.insert(hosted('h6', 'x'.repeat(33)), { exclusiveHosted: true })
      assert.equal((await store.sessions.activeHosted('acme', 'rt-1', 'x'.repeat(33)))?.sessionId, 'h6')
      assert.deepEqual(
        (await store.sessions.listActiveHosted('acme', 'rt-1')).map((r) => r.sessionId),
        ['h3', 'h6'],
      )
    })

    it('terminateAllActive ends every READY session of every tenant, once', async (t) => {
      const store = await b.fresh(t)
      for (const [id, tenant] of [
        ['a1', 'acme'],
        ['a2', 'acme'],
        ['b1', 'other'],
        ['a3', 'acme'],
      ] as const)
        await store.sessions.insert(session(id, tenant))
      await store.sessions.markTerminated('a3', 'stopped')
      assert.deepEqual((await store.sessions.terminateAllActive('server-restart')).sort(), ['a1', 'a2', 'b1'])
      assert.equal((await store.sessions.get('b1', 'other'))?.endReason, 'server-restart')
      assert.equal((await store.sessions.get('a3', 'acme'))?.endReason, 'stopped')
      assert.equal((await store.sessions.countActive('acme')) + (await store.sessions.countActive('other')), 0)
      assert.deepEqual(await store.sessions.terminateAllActive('server-restart'), [])
    })
  })

  describe('audit', () => {
    it('lists a tenant newest first and a session oldest first, paging without gaps, never across tenants', async (t) => {
      const store = await b.fresh(t)
      const ids: number[] = []
      for (let i = 0; i < 7; i++) {
        ids.push(
          await store.audit.record({ at: at(i), tenant: 'acme', sessionId: i % 2 ? 'odd' : 'even', action: 'executeCode', durationMs: i, outcome: 'ok' }),
        )
        await store.audit.record({ at: at(i), tenant: 'other', sessionId: 'odd', action: 'executeCommand', durationMs: 1.5, outcome: 'error', exitCode: 1 })
      }
      const all = async (sessionId?: string) => {
        const out: number[] = []
        let nextToken: string | undefined
        do {
          const page = await store.audit.list({ tenant: 'acme', limit: 3, ...(sessionId ? { sessionId } : {}), ...(nextToken ? { nextToken } : {}) })
          assert.ok(page.items.every((e) => e.tenant === 'acme'))
          out.push(...page.items.map((e) => e.id))
          nextToken = page.nextToken
        } while (nextToken)
        return out
      }
      assert.deepEqual(await all(), [...ids].reverse())
      assert.deepEqual(await all('odd'), [ids[1], ids[3], ids[5]])
      const [first] = (await store.audit.list({ tenant: 'other', sessionId: 'odd', limit: 1 })).items
      assert.deepEqual(first, {
        id: ids[0]! + 1,
        at: at(0),
        tenant: 'other',
        sessionId: 'odd',
        action: 'executeCommand',
        durationMs: 1.5,
        outcome: 'error',
        exitCode: 1,
      })
      assert.deepEqual(await store.audit.list({ tenant: 'nobody', limit: 5 }), { items: [] })
    })
  })

  describe('runtimes in the store', () => {
    const settings = {
      entrypoint: 'index.js',
      language: 'node' as const,
      protocol: 'HTTP' as const,
      network: { mode: 'SANDBOX' as const },
      idleTimeoutSeconds: 900,
      maxLifetimeSeconds: 28800,
      limits: {},
    }

    it('bundles in chunks, versions, the DEFAULT pin, sealed secrets, and delete removing it all', async () => {
      const location = await b.location('runtimes')
      const store = await b.open(location)
      const bundle = async (text: string) => {
        const id = await store.runtimes.beginBundle('acme')
        await store.runtimes.appendBundleChunk(id, 0, Buffer.from(text.slice(0, 3)))
        await store.runtimes.appendBundleChunk(id, 1, Buffer.from(text.slice(3)))
        return store.runtimes.finishBundle(id, 'acme', 'f'.repeat(64), text.length)
      }
      const b1 = await bundle('first-bundle')
      assert.equal(await store.runtimes.getBundle(b1.bundleId, 'globex'), undefined, 'another tenant cannot see it')
      assert.equal(Buffer.from((await store.runtimes.readBundleChunk(b1.bundleId, 1))!).toString(), 'st-bundle')
      const one = await store.runtimes.deploy({ tenant: 'acme', name: 'agent', bundleId: b1.bundleId, settings })
      assert.match(one.runtime.runtimeId, /^agent-[0-9A-Za-z]{10}$/)
      assert.equal(one.runtime.defaultVersion, 1)
      const two = await store.runtimes.deploy({
        tenant: 'acme',
        name: 'agent',
        bundleId: (await bundle('second')).bundleId,
        settings: { ...settings, protocol: 'MCP' },
      })
      assert.equal(two.version.version, 2)
      assert.equal(two.runtime.defaultVersion, 2)
      assert.equal((await store.runtimes.version(one.runtime.runtimeId, 1))?.settings.protocol, 'HTTP', 'versions are immutable')
      assert.equal((await store.runtimes.rollback('acme', one.runtime.runtimeId, 1)).defaultVersion, 1)
      await assert.rejects(store.runtimes.rollback('globex', one.runtime.runtimeId, 1), /no runtime/)
      assert.equal(await store.runtimes.get('globex', 'agent'), undefined)
      await store.runtimes.putSecret(one.runtime.runtimeId, 'API_KEY', 'plaintext-never-stored')
      assert.deepEqual(await store.runtimes.secretValues(one.runtime.runtimeId), { API_KEY: 'plaintext-never-stored' })
      await store.close()

      const sealed = await b.rawRows(location, 'runtime_secrets')
      assert.equal(sealed.length, 1)
      assert.doesNotMatch(sealed[0]!, /plaintext/)

      const again = await b.open(location)
      assert.deepEqual(await again.runtimes.secretValues(one.runtime.runtimeId), { API_KEY: 'plaintext-never-stored' })
      await again.runtimes.delete('acme', one.runtime.runtimeId)
      assert.equal(await again.runtimes.get('acme', 'agent'), undefined)
      assert.equal(await again.runtimes.getBundle(b1.bundleId, 'acme'), undefined)
      assert.equal(await again.runtimes.readBundleChunk(b1.bundleId, 0), undefined)
      assert.deepEqual(await again.runtimes.secretValues(one.runtime.runtimeId), {})
      await again.close()
    })

    it("lets one collector at a time write a running agent's log, and another take it over once its lease lapsed", async (t) => {
      const store = await b.fresh(t)
      const logs = store.runtimeLogs
      const bundleId = await store.runtimes.beginBundle('acme')
      await store.runtimes.appendBundleChunk(bundleId, 0, Buffer.from('code'))
      await store.runtimes.finishBundle(bundleId, 'acme', 'f'.repeat(64), 4)
      const { runtime } = await store.runtimes.deploy({ tenant: 'acme', name: 'agent', bundleId, settings })
      await logs.openLog({ tenant: 'acme', runtimeId: runtime.runtimeId, runtimeSessionId: 'x'.repeat(33), sessionId: 's1', version: '1' })
      assert.deepEqual(await logs.claimLog('s1', 'replica-a', { staleMs: 60_000 }), { stdout: 0, stderr: 0 })
      assert.equal(await logs.claimLog('s1', 'replica-b', { staleMs: 60_000 }), undefined, 'a live collector keeps it')
      assert.equal(await logs.appendLog('s1', 'from b\n', { maxBytes: 1024, collector: 'replica-b', offsets: { stdout: 7, stderr: 0 } }), false)
      assert.equal(await logs.appendLog('s1', 'from a\n', { maxBytes: 1024, collector: 'replica-a', offsets: { stdout: 7, stderr: 2 } }), true)
      assert.equal(await logs.appendLog('s1', '', { maxBytes: 1024, collector: 'replica-a' }), true, 'a renewal')
      assert.deepEqual(await logs.claimLog('s1', 'replica-a', { staleMs: 60_000 }), { stdout: 7, stderr: 2 }, 'its own again, offsets kept')
      await new Promise((r) => setTimeout(r, 20))
      // A's lease lapsed (its replica is gone): B goes on from where the log ended, and A writes no more.
      assert.deepEqual(await logs.claimLog('s1', 'replica-b', { staleMs: 10 }), { stdout: 7, stderr: 2 })
      assert.equal(await logs.appendLog('s1', 'late from a\n', { maxBytes: 1024, collector: 'replica-a', offsets: { stdout: 20, stderr: 2 } }), false)
      assert.equal(await logs.appendLog('s1', 'more\n', { maxBytes: 1024, collector: 'replica-b', offsets: { stdout: 12, stderr: 2 } }), true)
      assert.equal(await logs.appendLog('s1', 'plain\n', { maxBytes: 1024 }), true, 'without a collector (one server per store), as before')
      const [log] = await logs.listLogs({ tenant: 'acme', runtimeId: runtime.runtimeId, limit: 5 })
      assert.equal(log?.text, 'from a\nmore\nplain\n')
      await logs.endLog('s1', 'its process exited with code 0')
      assert.equal(await logs.claimLog('s1', 'replica-a', { staleMs: 0, force: true }), undefined, 'an ended log is collected by no one')
      assert.equal(await logs.claimLog('nope', 'replica-a', { staleMs: 0, force: true }), undefined)
    })
  })
}

describe('sqlite', () => {
  storeSuite(sqlite)

  describe('the database file', () => {
    it('is in WAL mode', () => {
      const file = join(dir, 'wal', 'codebox.db')
      Store.open(file).close()
      const raw = new DatabaseSync(file)
      assert.equal((raw.prepare('PRAGMA journal_mode').get() as { journal_mode: string }).journal_mode, 'wal')
      raw.close()
    })

    it('creates the file 0600 in a new 0700 directory, and tightens a loose existing file', async () => {
      const file = join(dir, 'private', 'codebox.db')
      const store = Store.open(file)
      await store.keys.create({ tenant: 'acme' })
      assert.equal(statSync(file).mode & 0o777, 0o600)
      assert.equal(statSync(join(dir, 'private')).mode & 0o777, 0o700)
      assert.equal(statSync(`${file}-wal`).mode & 0o777, 0o600, 'the WAL holds the same data')
      store.close()

      const loose = join(dir, 'loose.db')
      writeFileSync(loose, '', { mode: 0o644 })
      Store.open(loose).close()
      assert.equal(statSync(loose).mode & 0o777, 0o600)
    })
  })

  describe('its synchronous transactions', () => {
    it('refuses an asynchronous transaction body and rolls back what it wrote', () => {
      const db = new DatabaseSync(':memory:')
      db.exec('CREATE TABLE t (a)')
      assert.throws(
        () =>
          transaction(db, async () => {
            db.exec('INSERT INTO t VALUES (1)')
            await Promise.resolve()
          }),
        /must be synchronous/,
      )
      assert.equal(db.isTransaction, false)
      assert.equal(db.prepare('SELECT count(*) AS n FROM t').get()?.n, 0)
      db.close()
    })
  })
})

describe('postgres', { skip: postgresSkip }, () => {
  before(async () => {
    pgServer = await startPostgres()
  })
  after(() => pgServer?.stop())

  storeSuite(postgres)

  it("has a migration for each of SQLite's, with the same version and purpose", () => {
    assert.deepEqual(
      pgMigrations.map((m) => [m.version, m.description]),
      migrations.map((m) => [m.version, m.description]),
    )
  })
})
