/**
 * `codebox store migrate`: a populated SQLite store (keys, SigV4 keys, quotas, interpreters,
 * sessions, audit, conversation memory, runtimes with versions, bundles, secrets and logs) copied
 * into an empty PostgreSQL database by the CLI, row for row; then a server on PostgreSQL serves
 * it (keys still authenticate, sealed secrets still unseal with the shared key). A non-empty
 * target and a different sealing key are refused, leaving PostgreSQL as it was. Also `codebox
 * keys` and `codebox tenants` on PostgreSQL.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { defaultLimits } from '@codebox/core'
import { loadServerConfig, PgStore, startServer, Store, type StoreApi } from '@codebox/server'
import { postgresSkip, startPostgres, type PostgresServer } from '../../server/test/postgres-fixtures.ts'

const repo = fileURLToPath(new URL('../../../', import.meta.url))
const bin = path.join(repo, 'packages/cli/bin/codebox')

function codebox(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(bin, args, { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

const settings = {
  entrypoint: 'main.py',
  language: 'python' as const,
  protocol: 'HTTP' as const,
  network: { mode: 'SANDBOX' as const },
  idleTimeoutSeconds: 900,
  maxLifetimeSeconds: 28800,
  limits: {},
}

/** Fills a SQLite store with a row or more of every table; returns what the checks need. */
async function populate(store: Store): Promise<{ apiKey: string; accessKeyId: string; secretAccessKey: string; runtimeId: string; bundleId: string }> {
  const { secret: apiKey } = await store.keys.create({ tenant: 'acme', name: 'ci' })
  const revoked = await store.keys.create({ tenant: 'globex' })
  await store.keys.revoke(revoked.record.keyId)
  const { accessKeyId, secretAccessKey } = await store.awsKeys.create({ tenant: 'acme', name: 'agents' })
  await store.tenants.setQuotas('acme', { maxSessions: 9, invokesPerSecond: 2.5 })
  const interpreter = await store.interpreters.create({
    tenant: 'acme',
    name: 'data',
    image: 'default',
    limits: { cpuCores: 2 },
    network: { mode: 'VPC', allow: ['example.com:443'] },
    tags: { team: 'x' },
    preload: ['numpy'],
    clientToken: 'itok',
  })
  const now = Date.now()
  for (let i = 0; i < 3; i++) {
    const at = new Date(now - (3 - i) * 60_000).toISOString()
    await store.sessions.insert({
      sessionId: `sess${i}`,
      tenant: 'acme',
      interpreterId: i === 0 ? interpreter.interpreterId : 'codebox.v1',
      name: `s${i}`,
      status: 'READY',
      createdAt: at,
      lastUpdatedAt: at,
      timeoutSeconds: 900,
      limits: { ...defaultLimits },
      clientToken: `tok${i}`,
      e2b: { template: 'base', metadata: { n: String(i) } },
    })
    await store.audit.record({ at, tenant: 'acme', sessionId: `sess${i}`, action: 'executeCode', durationMs: i + 0.5, outcome: 'ok', codeBytes: 10 })
  }
  await store.sessions.markTerminated('sess0', 'stopped')
  const created = new Date(now - 1000)
  await store.conversations.create({
    tenant: 'acme',
    conversationId: 'conv1',
    actor: 'ana',
    title: 'sums',
    createdAt: created,
    expiresAt: new Date(now + 86_400_000),
  })
  for (const prompt of ['1 + 1?', '2 + 2?']) {
    await store.conversations.appendTurn(
      {
        tenant: 'acme',
        conversationId: 'conv1',
        role: 'answer',
        prompt,
        text: 'ok',
        outcome: 'ok',
        skipped: [],
        usage: { inputTokens: 1, outputTokens: 1 },
        events: [{ type: 'text', delta: 'ok' }],
        createdAt: new Date().toISOString(),
      },
      new Date(now + 86_400_000),
    )
  }
  const bundleId = await store.runtimes.beginBundle('acme')
  await store.runtimes.appendBundleChunk(bundleId, 0, randomBytes(1000))
  await store.runtimes.appendBundleChunk(bundleId, 1, Buffer.from([0, 255, 0]))
  await store.runtimes.finishBundle(bundleId, 'acme', 'a'.repeat(64), 1003)
  const { runtime } = await store.runtimes.deploy({ tenant: 'acme', name: 'agent', bundleId, settings })
  await store.runtimes.deploy({ tenant: 'acme', name: 'agent', bundleId, settings: { ...settings, idleTimeoutSeconds: 60 } })
  await store.runtimes.rollback('acme', runtime.runtimeId, 1)
  await store.runtimes.putSecret(runtime.runtimeId, 'API_TOKEN', 'sealed-value')
  for (const sessionId of ['log-a', 'log-b']) {
    await store.runtimeLogs.openLog({ tenant: 'acme', runtimeId: runtime.runtimeId, runtimeSessionId: 'rs1', sessionId, version: '1' }, new Date(now))
    await store.runtimeLogs.appendLog(sessionId, `printed by ${sessionId}\n`, { maxBytes: 4096 })
  }
  await store.runtimeLogs.endLog('log-a', 'stopped')
  return { apiKey, accessKeyId, secretAccessKey, runtimeId: runtime.runtimeId, bundleId }
}

/** Everything a store answers about the populated data, to compare the two backends. */
async function snapshot(store: StoreApi, runtimeId: string, bundleId: string): Promise<unknown> {
  return {
    tenants: await store.tenants.list(),
    keys: await store.keys.list(),
    awsKeys: await store.awsKeys.list(),
    interpreters: await store.interpreters.list('acme'),
    sessions: await store.sessions.list({ tenant: 'acme', limit: 100 }),
    audit: await store.audit.list({ tenant: 'acme', limit: 100 }),
    conversations: await store.conversations.list({ tenant: 'acme', limit: 10 }),
    turns: await store.conversations.turns('acme', 'conv1'),
    runtimes: await store.runtimes.list('acme'),
    versions: await store.runtimes.versions(runtimeId),
    chunks: [await store.runtimes.readBundleChunk(bundleId, 0), await store.runtimes.readBundleChunk(bundleId, 1)].map((c) => Buffer.from(c!).toString('hex')),
    secrets: await store.runtimes.secretValues(runtimeId),
    logs: await store.runtimeLogs.listLogs({ tenant: 'acme', runtimeId, limit: 10 }),
    derived: store.deriveKey('e2b sandbox envs v1').toString('hex'),
  }
}

describe('codebox store migrate', { skip: postgresSkip }, () => {
  let server: PostgresServer
  let dir: string
  before(async () => {
    server = await startPostgres()
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-migrate-'))
  })
  after(async () => {
    await server?.stop()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  it('copies every table of a SQLite store; a server then serves from PostgreSQL with the same keys and secrets', async (t) => {
    const file = path.join(dir, 'state', 'codebox.db')
    const sqlite = Store.open(file)
    const made = await populate(sqlite)
    const before = await snapshot(sqlite, made.runtimeId, made.bundleId)
    sqlite.close()
    const uri = await server.database('target')
    const keyEnv = { CODEBOX_SEALING_KEY_FILE: `${file}.key` }

    const copied = await codebox(['store', 'migrate', '--from', file, '--to', uri, '--json'], keyEnv)
    assert.equal(copied.code, 0, copied.stderr)
    assert.deepEqual(JSON.parse(copied.stdout), {
      tenants: 2,
      api_keys: 2,
      aws_keys: 1,
      interpreters: 2,
      sessions: 3,
      audit: 3,
      conversations: 1,
      conversation_turns: 2,
      runtime_bundles: 1,
      runtime_bundle_chunks: 2,
      runtimes: 1,
      runtime_versions: 2,
      runtime_secrets: 1,
      runtime_logs: 2,
      runtime_log_chunks: 2,
    })

    const sealingKey = Buffer.from(fs.readFileSync(`${file}.key`, 'utf8').trim(), 'base64')
    const pg = await PgStore.open(uri, { sealingKey })
    t.after(() => pg.close())
    assert.deepEqual(await snapshot(pg, made.runtimeId, made.bundleId), before, 'PostgreSQL answers as SQLite did')
    assert.equal((await pg.awsKeys.lookup(made.accessKeyId))?.secretAccessKey, made.secretAccessKey)
    // Ids go on after the copied ones; the token of a copied interpreter still answers.
    const nextAudit = await pg.audit.record({ at: new Date().toISOString(), tenant: 'acme', action: 'executeCode', durationMs: 1, outcome: 'ok' })
    assert.ok(nextAudit > Math.max(...(before as { audit: { items: { id: number }[] } }).audit.items.map((e) => e.id)))
    const again = await pg.interpreters.create({ tenant: 'acme', name: 'data', image: 'default', limits: {}, clientToken: 'itok' })
    assert.equal(again.name, 'data')
    assert.equal((await pg.interpreters.list('acme')).length, 2)

    // A server on PostgreSQL: the migrated key authenticates, a request without it is refused.
    const stateDir = path.join(dir, 'replica')
    const s = await startServer(
      loadServerConfig({
        CODEBOX_DRIVER: 'fake',
        CODEBOX_STATE_DIR: stateDir,
        CODEBOX_LOG_LEVEL: 'silent',
        CODEBOX_PORT: '0',
        CODEBOX_POOL_SIZE: '0',
        CODEBOX_DB: uri,
        ...keyEnv,
      }),
      { lastResort: false },
    )
    t.after(() => s.close())
    assert.equal((await fetch(`${s.url}/v1/sessions`)).status, 401)
    const listed = await fetch(`${s.url}/v1/sessions?limit=10`, { headers: { authorization: `Bearer ${made.apiKey}` } })
    assert.equal(listed.status, 200)
    const ids = ((await listed.json()) as { items: { sessionId: string }[] }).items.map((x) => x.sessionId)
    assert.deepEqual(ids.sort(), ['sess0', 'sess1', 'sess2'])
    assert.equal((await s.store.awsKeys.lookup(made.accessKeyId))?.secretAccessKey, made.secretAccessKey)

    // The target is not empty any more: a second copy is refused and changes nothing.
    const twice = await codebox(['store', 'migrate', '--from', file, '--to', uri], keyEnv)
    assert.notEqual(twice.code, 0)
    assert.match(twice.stderr, /is not empty \(2 in tenants, 2 in api_keys/)
    assert.equal((await pg.keys.list()).length, 2)
  })

  it('refuses a sealing key other than the SQLite store’s, or none, before writing anything', async () => {
    const file = path.join(dir, 'other', 'codebox.db')
    const sqlite = Store.open(file)
    await sqlite.awsKeys.create({ tenant: 'acme' })
    sqlite.close()
    const uri = await server.database('refused')
    const wrong = await codebox(['store', 'migrate', '--from', file, '--to', uri], { CODEBOX_SEALING_KEY: randomBytes(32).toString('base64') })
    assert.equal(wrong.code, 64, wrong.stderr)
    assert.match(wrong.stderr, new RegExp(`not the one the secrets in .* are sealed with.*CODEBOX_SEALING_KEY_FILE=${file.replaceAll('/', '\\/')}\\.key`))
    const none = await codebox(['store', 'migrate', '--from', file, '--to', uri], {})
    assert.equal(none.code, 64)
    assert.match(none.stderr, /CODEBOX_SEALING_KEY: or CODEBOX_SEALING_KEY_FILE is required/)
    const bad = await codebox(['store', 'migrate', '--from', file, '--to', 'mysql://x/y'], { CODEBOX_SEALING_KEY_FILE: `${file}.key` })
    assert.equal(bad.code, 64)
    assert.match(bad.stderr, /--to: is required: a postgres:\/\/ or postgresql:\/\/ URI/)
    assert.deepEqual(
      await server.sql(new URL(uri).pathname.slice(1), `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`),
      [],
      'the target was not touched',
    )
  })

  it('codebox keys and codebox tenants work on PostgreSQL', async () => {
    const uri = await server.database('cli')
    const env = { CODEBOX_DB: uri, CODEBOX_SEALING_KEY: randomBytes(32).toString('base64'), CODEBOX_STATE_DIR: path.join(dir, 'cli-state') }
    const created = await codebox(['keys', 'create', '--tenant', 'acme', '--json'], env)
    assert.equal(created.code, 0, created.stderr)
    const { key, keyId } = JSON.parse(created.stdout) as { key: string; keyId: string }
    const aws = await codebox(['keys', 'create', '--tenant', 'acme', '--aws', '--json'], env)
    assert.equal(aws.code, 0, aws.stderr)
    const listed = JSON.parse((await codebox(['keys', 'ls', '--json'], env)).stdout) as { kind: string; tenant: string }[]
    assert.deepEqual(listed.map((k) => [k.kind, k.tenant]).sort(), [
      ['api', 'acme'],
      ['aws', 'acme'],
    ])
    const quota = await codebox(['tenants', 'set', 'acme', '--max-sessions', '4', '--json'], env)
    assert.equal(quota.code, 0, quota.stderr)
    assert.equal((JSON.parse(quota.stdout) as { maxSessions: number }).maxSessions, 4)
    assert.equal((await codebox(['keys', 'revoke', keyId], env)).code, 0)
    const pg = await PgStore.open(uri, { sealingKey: Buffer.from(env.CODEBOX_SEALING_KEY, 'base64') })
    try {
      assert.equal(await pg.keys.authenticate(key), undefined, 'revoked through the CLI')
      assert.equal((await pg.tenants.get('acme'))?.maxSessions, 4)
    } finally {
      await pg.close()
    }
    const missing = await codebox(['keys', 'ls'], { CODEBOX_DB: uri, CODEBOX_STATE_DIR: env.CODEBOX_STATE_DIR })
    assert.equal(missing.code, 64)
    assert.match(missing.stderr, /CODEBOX_SEALING_KEY: is required with a PostgreSQL store/)
  })
})
