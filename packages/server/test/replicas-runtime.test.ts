/**
 * Hosted agents' runtime sessions across replicas: two servers sharing one PostgreSQL store and
 * the fake driver's shared mode (sandboxes any replica attaches by id, as the kubernetes driver's
 * pods). Any replica reaches the one agent of a runtime session (its state kept), first
 * invocations arriving at both at once make one agent, a stop on one ends it for the other, and a
 * replica killed with SIGKILL loses none. Replica A runs in a process of its own, so it can be
 * killed; replica B in this one.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, it, type TestContext } from 'node:test'
import { drivers, FakeDriver } from '@codebox/sandbox'
import { CodeboxClient } from '@codebox/sdk'
import type { RunningServer } from '@codebox/server'
import { imageStateDir, realServer } from './fixtures.ts'
import { pythonAgent } from './hosted-fixtures.ts'
import { postgresSkip, startPostgres, type PostgresServer } from './postgres-fixtures.ts'
import { rawTarGz } from './runtime-fixtures.ts'

const sealingKey = randomBytes(32).toString('base64')
const sharedDir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-rt-shared-'))
if (!drivers.has('fake-shared'))
  drivers.register({
    name: 'fake-shared',
    description: 'the fake driver in shared mode (tests of replicas)',
    create: async () => new FakeDriver({ sharedDir }),
  })

/** Counts its invocations in its memory; answers with the count and its pid. */
const agentPy = pythonAgent(String.raw`    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("content-length") or 0))
        count += 1
        print(f"invocation {count}", flush=True)
        self.reply(200, "application/json", json.dumps({"count": count, "pid": os.getpid()}).encode())`)

const sid = (c: string): string => `${c.repeat(8)}-runtime-session-across-replicas`

describe('runtime sessions across replicas sharing one PostgreSQL store and a shared driver', { skip: postgresSkip }, () => {
  let pgServer: PostgresServer
  before(async () => {
    pgServer = await startPostgres()
  })
  after(async () => {
    await pgServer?.stop()
    const left = new FakeDriver({ sharedDir })
    for (const id of await left.list!()) await (await left.attach!(id).catch(() => undefined))?.destroy()
    fs.rmSync(sharedDir, { recursive: true, force: true })
  })

  const env = (uri: string, replicaId: string): Record<string, string> => ({
    CODEBOX_DB: uri,
    CODEBOX_SEALING_KEY: sealingKey,
    CODEBOX_DRIVER: 'fake-shared',
    CODEBOX_PRELOAD: '',
    CODEBOX_POOL_SIZE: '0',
    CODEBOX_REPLICA_ID: replicaId,
    // A replica that dies loses the collection of its agents' output within a second.
    CODEBOX_RUNTIME_LOG_LEASE_SECONDS: '1',
    // One running session per tenant: a launch that loses to the other replica's attaches it, the quota notwithstanding.
    CODEBOX_TENANT_MAX_SESSIONS: '1',
  })

  /** A replica in this process, closed when the test ends. */
  async function replica(t: TestContext, uri: string, replicaId: string): Promise<RunningServer> {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), `codebox-rt-${replicaId}-`))
    const s = await realServer(parent, env(uri, replicaId))
    t.after(async () => {
      await s.close()
      fs.rmSync(parent, { recursive: true, force: true })
    })
    return s
  }

  /** A replica in a process of its own (serve-child.ts), killed when the test ends if it still runs. */
  async function childReplica(t: TestContext, uri: string, replicaId: string): Promise<{ proc: ChildProcess; url: string }> {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), `codebox-rt-${replicaId}-`))
    const stateDir = await imageStateDir(parent)
    const proc = spawn(
      process.execPath,
      ['--disable-warning=ExperimentalWarning', path.join(import.meta.dirname, 'serve-child.ts'), '--fake-shared', sharedDir],
      { env: { ...process.env, CODEBOX_STATE_DIR: stateDir, ...env(uri, replicaId) }, stdio: ['ignore', 'pipe', 'pipe'] },
    )
    t.after(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
      fs.rmSync(parent, { recursive: true, force: true })
    })
    let out = ''
    let err = ''
    proc.stderr!.on('data', (d: Buffer) => (err += d.toString()))
    const url = await new Promise<string>((resolve, reject) => {
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString()
        const m = /listening (\S+)/.exec(out)
        if (m) resolve(m[1]!)
      })
      proc.on('exit', (code) => reject(new Error(`replica ${replicaId} exited ${code}: ${err}`)))
    })
    return { proc, url }
  }

  const hostedRows = async (uri: string, runtimeSessionId: string): Promise<{ session_id: string; status: string; end_reason: string | null }[]> =>
    pgServer.sql(
      new URL(uri).pathname.slice(1),
      `SELECT session_id, status, end_reason FROM sessions WHERE hosted::jsonb ->> 'runtimeSessionId' = $1 ORDER BY created_at`,
      [runtimeSessionId],
    )

  it('any replica reaches the one agent of a runtime session; concurrent first invocations make one; a stop anywhere ends it; a killed replica loses none', async (t) => {
    const uri = await pgServer.database('runtimes')
    const b = await replica(t, uri, 'replica-b') // migrates the database first
    const a = await childReplica(t, uri, 'replica-a')
    const onA = new CodeboxClient({ baseUrl: a.url, maxRetries: 0 })
    const onB = new CodeboxClient({ baseUrl: b.url, maxRetries: 0 })
    const { bundleId } = await onB.runtimes.uploadBundle(rawTarGz([{ path: 'agent.py', body: agentPy }]))
    const { agentRuntimeId: id } = await onB.runtimes.deploy({ name: 'counter', bundleId, entrypoint: 'agent.py' })
    const invoke = async (on: CodeboxClient, session: string): Promise<{ count: number; pid: number }> =>
      (await (await on.runtimes.invoke(id, { prompt: 'count' }, { session })).json()) as { count: number; pid: number }
    /** Each of the agent's lines `invocation 1` … `invocation n` once in the runtime session's log (read on B), none twice, once `n` arrived. */
    const loggedOnce = async (session: string, n: number): Promise<string> => {
      const text = async (): Promise<string> => (await onB.runtimes.logs(id, session)).items.map((l) => l.text).join('')
      for (let i = 0; i < 100 && !(await text()).includes(`invocation ${n}\n`); i++) await new Promise((r) => setTimeout(r, 100))
      // Time for a second collector, if there were one, to have written its copy.
      await new Promise((r) => setTimeout(r, 1_500))
      const log = await text()
      const lines = log.split('\n').filter((l) => l.startsWith('invocation '))
      assert.deepEqual(
        lines,
        Array.from({ length: n }, (_, i) => `invocation ${i + 1}`),
        `one replica collects the agent's output:\n${log}`,
      )
      return log
    }

    // Started on A, reached on B and again on A: one agent, its memory kept.
    const first = await invoke(onA, sid('a'))
    assert.equal(first.count, 1)
    assert.deepEqual(await invoke(onB, sid('a')), { count: 2, pid: first.pid }, 'replica b reaches the agent replica a started')
    assert.deepEqual(await invoke(onA, sid('a')), { count: 3, pid: first.pid })
    await loggedOnce(sid('a'), 3)
    // Both replicas hold it; the one collecting its output (A, which launched it) counts it in its metrics.
    const counted = async (url: string): Promise<number> => {
      const m = new RegExp(`^codebox_runtime_sessions\\{runtime="${id}"\\} (\\d+)$`, 'm').exec(await (await fetch(`${url}/metrics`)).text())
      return m ? Number(m[1]) : 0
    }
    assert.deepEqual([await counted(a.url), await counted(b.url)], [1, 0], 'codebox_runtime_sessions sums to 1 over the replicas')
    const [row] = await hostedRows(uri, sid('a'))
    assert.equal((await hostedRows(uri, sid('a'))).length, 1, 'one session serves the runtime session')
    for (const on of [onA, onB]) {
      const listed = await on.runtimes.sessions(id)
      assert.deepEqual(
        listed.items.map((s) => [s.runtimeSessionId, s.sessionId]),
        [[sid('a'), row!.session_id]],
        'both replicas list it',
      )
    }

    // Stopped on B: ended for A too, which drops it and starts a new agent on the next invocation.
    await onB.runtimes.stopSession(id, sid('a'))
    assert.deepEqual(
      (await hostedRows(uri, sid('a'))).map((r) => [r.status, r.end_reason]),
      [['TERMINATED', 'stopped']],
    )
    for (let i = 0; i < 50 && (await onA.runtimes.sessions(id)).items.length > 0; i++) await new Promise((r) => setTimeout(r, 100))
    assert.deepEqual((await onA.runtimes.sessions(id)).items, [], 'replica a sees it ended')
    const fresh = await invoke(onA, sid('a'))
    assert.equal(fresh.count, 1, 'a new agent after the stop')
    assert.notEqual(fresh.pid, first.pid)
    await onA.runtimes.stopSession(id, sid('a'))

    // The first invocations of a new runtime session on both replicas at once: one agent (the
    // replica that lost attaches it, though the winner's session brought the tenant to its quota).
    const both = await Promise.all([invoke(onA, sid('c')), invoke(onB, sid('c'))])
    assert.deepEqual(both.map((r) => r.count).sort(), [1, 2])
    assert.equal(both[0].pid, both[1].pid, 'one agent answered both')
    assert.deepEqual(
      (await hostedRows(uri, sid('c'))).map((r) => r.status),
      ['READY'],
      'one session serves it',
    )

    await loggedOnce(sid('c'), 2)
    await onB.runtimes.stopSession(id, sid('c'))

    // Replica A is killed while it holds a runtime session and collects its agent's output (B holds
    // it too): B serves it on, with its state, and takes the collection over where A's log ended.
    const d = await invoke(onA, sid('d'))
    assert.equal(d.count, 1)
    assert.deepEqual(await invoke(onB, sid('d')), { count: 2, pid: d.pid })
    assert.equal((await invoke(onA, sid('d'))).count, 3)
    a.proc.kill('SIGKILL')
    await new Promise((r) => a.proc.once('exit', r))
    assert.deepEqual(await invoke(onB, sid('d')), { count: 4, pid: d.pid }, 'the same agent after replica a died')
    assert.match(await loggedOnce(sid('d'), 4), /another replica collects this output from here on/)
    assert.equal(await counted(b.url), 1, 'replica b counts the runtime session it took over')
    await onB.runtimes.stopSession(id, sid('d'))
    assert.deepEqual(await new FakeDriver({ sharedDir }).list!(), [], 'no sandbox is left')
  })
})
