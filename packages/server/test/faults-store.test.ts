/**
 * Store faults (issue 13): the SQLite store locked by another process (python3's sqlite3 holding
 * an exclusive transaction) and the state directory's disk full (a small tmpfs as the state dir,
 * filled up). Requests that need the store fail fast with a 503 that names the cause, the event
 * loop stays responsive (/ping answers meanwhile), nothing crashes or is half-written, and all
 * works again once the lock is released or space is freed. A real server (`startServer`, the
 * serve path) on the fake driver, with the last-resort handlers off so a stray rejection fails.
 * The same faults where they apply to PostgreSQL: a lock another connection holds, and the
 * database server going away and coming back.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { after, before, describe, test, type TestContext } from 'node:test'
import { loadServerConfig, startServer, type RunningServer } from '@codebox/server'
import pg from 'pg'
import { captureLogger, expectError, expectJson, type LogRecord } from './fixtures.ts'
import { postgresSkip, startPostgres, type PostgresServer } from './postgres-fixtures.ts'

/** Longest a request needing a locked store may take to be refused. */
const failFastMs = 6000
/** Longest /ping (no store) may take while other requests wait on the lock. */
const pingMs = 500

const python = spawnSync('python3', ['-c', 'import sqlite3'], { stdio: 'ignore' }).status === 0

async function server(
  t: TestContext,
  stateDir: string,
  logs: LogRecord[],
  env: Record<string, string> = {},
): Promise<RunningServer & { call: (m: string, p: string, json?: unknown) => Promise<Response> }> {
  const s = await startServer(
    loadServerConfig({
      CODEBOX_DRIVER: 'fake',
      CODEBOX_STATE_DIR: stateDir,
      CODEBOX_LOG_LEVEL: 'silent',
      CODEBOX_PORT: '0',
      CODEBOX_POOL_SIZE: '0',
      ...env,
    }),
    { lastResort: false, logger: captureLogger(logs) },
  )
  t.after(() => s.close())
  const call = (method: string, p: string, json?: unknown): Promise<Response> =>
    fetch(s.url + p, { method, ...(json !== undefined ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(json) } : {}) })
  return Object.assign(s, { call })
}

/**
 * Another process holding the store: an exclusive transaction with a write in it. Writers are
 * refused; readers go on (WAL mode: while the server has the database open, no other process can
 * take a lock that stops readers).
 */
async function holdLock(dbPath: string): Promise<{ release: () => Promise<void> }> {
  const script = [
    'import sqlite3, sys',
    `c = sqlite3.connect(${JSON.stringify(dbPath)}, isolation_level=None)`,
    "c.execute('BEGIN EXCLUSIVE')",
    "c.execute(\"INSERT INTO tenants (id, created_at) VALUES ('lock-holder', '2026-01-01T00:00:00.000Z')\")",
    "print('locked', flush=True)",
    'sys.stdin.read()',
    "c.execute('ROLLBACK')",
  ].join('\n')
  const child: ChildProcess = spawn('python3', ['-c', script], { stdio: ['pipe', 'pipe', 'inherit'] })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve())
    child.once('exit', (code) => reject(new Error(`the lock holder exited with ${code} before locking`)))
  })
  return {
    release: async () => {
      child.stdin!.end()
      await exited
    },
  }
}

/** A request's status, body and how long it took. */
async function timed(p: Promise<Response>): Promise<{ status: number; body: Record<string, unknown>; ms: number; headers: Headers }> {
  const started = performance.now()
  const res = await p
  const text = await res.text()
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown>, ms: performance.now() - started, headers: res.headers }
}

/** Pings every 50 ms until `done` settles; returns the slowest answer. */
async function pingWhile(s: { call: (m: string, p: string) => Promise<Response> }, done: Promise<unknown>): Promise<number> {
  let settled = false
  void done.finally(() => (settled = true))
  let slowest = 0
  while (!settled) {
    const r = await timed(s.call('GET', '/ping'))
    assert.equal(r.status, 200)
    slowest = Math.max(slowest, r.ms)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return slowest
}

const storeBusy = (r: { status: number; body: Record<string, unknown>; ms: number; headers: Headers }, what: string): void => {
  const e = r.body.error as { code: string; message: string; details: { reason: string } }
  assert.equal(r.status, 503, `${what}: ${JSON.stringify(r.body)}`)
  assert.equal(e.code, 'Unavailable', what)
  assert.equal(e.details.reason, 'StoreBusy', what)
  assert.match(e.message, /the store is busy: another process holds a lock on .*codebox\.db/, what)
  assert.equal(r.headers.get('retry-after'), '1', what)
  assert.ok(r.ms < failFastMs, `${what} took ${Math.round(r.ms)} ms`)
}

describe('store faults', { skip: python ? false : 'python3 with its sqlite3 module is needed to hold the lock' }, () => {
  test('a store whose writes another process locks: writes fail fast with 503, reads and runs go on, the loop stays free', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-faults-'))
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
    const logs: LogRecord[] = []
    const s = await server(t, dir, logs)
    const { sessionId } = await expectJson<{ sessionId: string }>(s.call('POST', '/v1/sessions', {}), 201)
    const sandboxes = s.engine.list().length

    const lock = await holdLock(path.join(dir, 'codebox.db'))
    const delay = monitorEventLoopDelay({ resolution: 10 })
    delay.enable()
    const writes = Promise.all([
      timed(s.call('POST', '/v1/sessions', {})),
      timed(s.call('POST', '/v1/interpreters', { name: 'locked' })),
      timed(s.call('PUT', '/code-interpreters/aws.codeinterpreter.v1/sessions/start', {})),
    ])
    const slowestPing = await pingWhile(s, writes)
    const [start, interpreter, awsStart] = await writes
    delay.disable()
    storeBusy(start, 'POST /v1/sessions')
    storeBusy(interpreter, 'POST /v1/interpreters')
    // The AgentCore API says the same in AWS's shape: a 503 the AWS SDKs retry, not an InternalServerException.
    assert.equal(awsStart.status, 503)
    assert.equal(awsStart.headers.get('x-amzn-errortype'), 'ServiceUnavailableException')
    assert.match(String(awsStart.body.message), /the store is busy/)
    assert.ok(slowestPing < pingMs, `/ping took ${Math.round(slowestPing)} ms while the store was locked`)
    assert.ok(delay.max / 1e6 < pingMs, `the event loop was blocked for ${Math.round(delay.max / 1e6)} ms`)
    // Nothing half-made: the refused start left no sandbox behind.
    assert.equal(s.engine.list().length, sandboxes)

    // Reads go on (WAL), and a cell runs: its audit record is what is lost, and the log says so.
    await expectJson(s.call('GET', `/v1/sessions/${sessionId}`), 200)
    const run = await expectJson<{ structuredContent: { stdout: string } }>(
      s.call('POST', `/v1/sessions/${sessionId}/invoke`, { name: 'executeCode', arguments: { code: 'print(6*7)' } }),
      200,
    )
    assert.equal(run.structuredContent.stdout, '42\n')
    assert.ok(
      logs.some((l) => l.msg === 'audit record lost: the store could not be written' && l.sessionId === sessionId),
      'the lost audit record is logged',
    )

    await lock.release()
    const again = await expectJson<{ sessionId: string }>(s.call('POST', '/v1/sessions', {}), 201)
    await expectJson(s.call('POST', `/v1/sessions/${again.sessionId}/invoke`, { name: 'executeCode', arguments: { code: 'print(1)' } }), 200)
    await expectJson(s.call('POST', '/v1/interpreters', { name: 'unlocked' }), 201)
    // Every error the server logged is the store's refusal, named as such: no Internal error, no crash.
    const errors = logs.filter((l) => l.level === 'error')
    assert.ok(errors.length > 0)
    for (const l of errors) assert.equal((l.err as { code?: string } | undefined)?.code, 'Unavailable', JSON.stringify(l))
  })

  test('a lock held for a moment: the write waits for it without blocking the loop, and succeeds', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-faults-'))
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
    const s = await server(t, dir, [])
    const lock = await holdLock(path.join(dir, 'codebox.db'))
    const start = timed(s.call('POST', '/v1/sessions', {}))
    const released = new Promise((resolve) => setTimeout(resolve, 600)).then(() => lock.release())
    const slowestPing = await pingWhile(s, Promise.all([start, released]))
    const r = await start
    assert.equal(r.status, 201, JSON.stringify(r.body))
    assert.ok(r.ms >= 500, `answered in ${Math.round(r.ms)} ms, before the lock was released`)
    assert.ok(slowestPing < pingMs, `/ping took ${Math.round(slowestPing)} ms`)
  })
})

/** Mounts a `sizeMb` tmpfs at a new directory; the reason instead where mounting is not allowed. */
function smallDisk(sizeMb: number): { dir: string; unmount: () => void } | string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-full-'))
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0700`, 'tmpfs', dir], { encoding: 'utf8' })
  if (r.status !== 0) {
    fs.rmdirSync(dir)
    return `cannot mount a tmpfs as the state directory (${(r.stderr || r.error?.message || '').trim() || `exit ${r.status}`}); needs root`
  }
  return {
    dir,
    unmount: () => {
      spawnSync('umount', [dir])
      fs.rmdirSync(dir)
    },
  }
}

/** Fills the file system of `dir` with one file until it refuses more; returns the file. */
function fill(dir: string): string {
  const file = path.join(dir, 'filler')
  const fd = fs.openSync(file, 'w')
  // Whole chunks while they fit, then small ones, down to the last bytes.
  const chunk = Buffer.alloc(64 * 1024, 1)
  try {
    for (;;) fs.writeSync(fd, chunk)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e
  }
  try {
    for (;;) fs.writeSync(fd, chunk.subarray(0, 512))
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e
  } finally {
    fs.closeSync(fd)
  }
  return file
}

test('the state directory’s disk full: writes fail with a clear 503, nothing is half-written, all recovers when space is freed', async (t) => {
  const disk = smallDisk(8)
  if (typeof disk === 'string') return t.skip(disk)
  const logs: LogRecord[] = []
  let s: Awaited<ReturnType<typeof server>>
  try {
    s = await server(t, disk.dir, logs)
  } finally {
    // After the server's own close (hooks run in the order they were added).
    t.after(disk.unmount)
  }
  const { sessionId } = await expectJson<{ sessionId: string }>(s.call('POST', '/v1/sessions', {}), 201)
  const before = await expectJson<{ items: unknown[] }>(s.call('GET', '/v1/sessions'), 200)
  const sandboxes = s.engine.list().length
  const filler = fill(disk.dir)

  // Writes that need new space in the store are refused, saying why, within the bound.
  const refused: string[] = []
  for (let i = 0; i < 40 && refused.length === 0; i++) {
    const r = await timed(s.call('POST', '/v1/interpreters', { name: `full${i}`, description: 'x'.repeat(4000) }))
    assert.ok(r.status === 201 || r.status === 503, JSON.stringify(r.body))
    assert.ok(r.ms < failFastMs, `took ${Math.round(r.ms)} ms`)
    if (r.status === 503) refused.push(JSON.stringify(r.body))
  }
  assert.equal(refused.length, 1, 'a write on a full disk is refused')
  const e = await expectError(s.call('POST', '/v1/sessions', {}), 503, 'Unavailable')
  assert.match(e.message, /the store cannot write to .*codebox\.db: (the disk is full|the file system refused the write)/)
  assert.match(String(e.details.reason), /^Store(DiskFull|WriteFailed)$/)
  // Nothing half-made: no sandbox left from the refused start, no record of it.
  assert.equal(s.engine.list().length, sandboxes)
  const during = await expectJson<{ items: unknown[] }>(s.call('GET', '/v1/sessions'), 200)
  assert.equal(during.items.length, before.items.length)
  // Reads and running cells go on.
  await expectJson(s.call('GET', `/v1/sessions/${sessionId}`), 200)
  await expectJson(s.call('POST', `/v1/sessions/${sessionId}/invoke`, { name: 'executeCode', arguments: { code: 'print(1)' } }), 200)
  await expectJson(s.call('GET', '/ping'), 200)

  fs.rmSync(filler)
  const again = await expectJson<{ sessionId: string }>(s.call('POST', '/v1/sessions', {}), 201)
  await expectJson(s.call('POST', `/v1/sessions/${again.sessionId}/invoke`, { name: 'executeCode', arguments: { code: 'print(2)' } }), 200)
  await expectJson(s.call('POST', '/v1/interpreters', { name: 'afterfull' }), 201)
  // The database came through whole.
  const check = spawnSync(
    'python3',
    ['-c', `import sqlite3; print(sqlite3.connect(${JSON.stringify(path.join(disk.dir, 'codebox.db'))}).execute('PRAGMA integrity_check').fetchone()[0])`],
    {
      encoding: 'utf8',
    },
  )
  if (check.status === 0) assert.equal(check.stdout.trim(), 'ok')
})

describe('store faults on PostgreSQL', { skip: postgresSkip }, () => {
  let db: PostgresServer
  before(async () => {
    db = await startPostgres()
  })
  after(() => db?.stop())
  const sealing = { CODEBOX_SEALING_KEY: randomBytes(32).toString('base64') }

  test('a lock another connection holds: writes fail fast with 503 StoreBusy, reads and runs go on, the loop stays free', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-faults-pg-'))
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
    const uri = await db.database('locked')
    const logs: LogRecord[] = []
    const s = await server(t, dir, logs, { CODEBOX_DB: uri, ...sealing })
    const { sessionId } = await expectJson<{ sessionId: string }>(s.call('POST', '/v1/sessions', {}), 201)
    const sandboxes = s.engine.list().length

    const holder = new pg.Client({ connectionString: uri })
    await holder.connect()
    t.after(() => holder.end())
    await holder.query('BEGIN')
    await holder.query('LOCK TABLE tenants IN EXCLUSIVE MODE')
    const delay = monitorEventLoopDelay({ resolution: 10 })
    delay.enable()
    const writes = Promise.all([timed(s.call('POST', '/v1/sessions', {})), timed(s.call('POST', '/v1/interpreters', { name: 'locked' }))])
    const slowestPing = await pingWhile(s, writes)
    delay.disable()
    for (const [r, what] of (await writes).map((r, i) => [r, ['POST /v1/sessions', 'POST /v1/interpreters'][i]!] as const)) {
      const e = r.body.error as { code: string; message: string; details: { reason: string } }
      assert.equal(r.status, 503, `${what}: ${JSON.stringify(r.body)}`)
      assert.equal(e.details.reason, 'StoreBusy', what)
      assert.match(e.message, /the store is busy: another connection holds a lock in the PostgreSQL database postgresql:\/\/\/locked_/, what)
      assert.equal(r.headers.get('retry-after'), '1', what)
      assert.ok(r.ms < failFastMs, `${what} took ${Math.round(r.ms)} ms`)
    }
    assert.ok(slowestPing < pingMs, `/ping took ${Math.round(slowestPing)} ms while the store was locked`)
    assert.ok(delay.max / 1e6 < pingMs, `the event loop was blocked for ${Math.round(delay.max / 1e6)} ms`)
    assert.equal(s.engine.list().length, sandboxes, 'the refused start left no sandbox behind')
    await expectJson(s.call('GET', `/v1/sessions/${sessionId}`), 200)
    const run = await expectJson<{ structuredContent: { stdout: string } }>(
      s.call('POST', `/v1/sessions/${sessionId}/invoke`, { name: 'executeCode', arguments: { code: 'print(6*7)' } }),
      200,
    )
    assert.equal(run.structuredContent.stdout, '42\n')

    await holder.query('ROLLBACK')
    await expectJson(s.call('POST', '/v1/sessions', {}), 201)
    await expectJson(s.call('POST', '/v1/interpreters', { name: 'unlocked' }), 201)
    for (const l of logs.filter((x) => x.level === 'error')) assert.equal((l.err as { code?: string } | undefined)?.code, 'Unavailable', JSON.stringify(l))
  })

  test('the database server goes away: requests needing it fail with 503 StoreUnreachable, /ping answers, all works once it is back', async (t) => {
    const own = await startPostgres()
    t.after(() => own.stop())
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-faults-pg-'))
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
    const s = await server(t, dir, [], { CODEBOX_DB: await own.database('away'), ...sealing })
    const { sessionId } = await expectJson<{ sessionId: string }>(s.call('POST', '/v1/sessions', {}), 201)
    await own.halt()
    const r = await timed(s.call('POST', '/v1/sessions', {}))
    assert.equal(r.status, 503, JSON.stringify(r.body))
    const e = r.body.error as { message: string; details: { reason: string } }
    assert.equal(e.details.reason, 'StoreUnreachable')
    assert.match(e.message, /the PostgreSQL store postgresql:\/\/\/away_.* cannot be reached/)
    assert.ok(r.ms < failFastMs, `took ${Math.round(r.ms)} ms`)
    await expectJson(s.call('GET', '/ping'), 200)
    await expectError(s.call('GET', `/v1/sessions/${sessionId}`), 503, 'Unavailable')
    await own.resume()
    await expectJson(s.call('GET', `/v1/sessions/${sessionId}`), 200)
    await expectJson(s.call('POST', '/v1/sessions', {}), 201)
  })
})
