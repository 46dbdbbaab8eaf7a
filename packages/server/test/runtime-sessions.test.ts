/**
 * The lifecycle of hosted agents' runtime sessions (services/runtime-sessions.ts) with agents on
 * loopback standing in for sandboxes: one agent per runtime session id, its memory kept across
 * invocations, concurrent first invocations launching once; an agent that crashes or never
 * becomes healthy failing with its output; HealthyBusy keeping a session past its idle timeout;
 * the maximum lifetime and StopRuntimeSession ending it; an agent that exits being replaced by the
 * next invocation. With a store shared by replicas (an in-memory one here): two RuntimeSessions
 * reach one agent, the idle timeout counts both, an end on one is a quiet let-go on the other, a
 * launch another replica left unfinished is taken over, close() lets go instead of ending, and an
 * agent another replica invoked lately is not ended for an unhealthy /ping where it is attached.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import { test, type TestContext } from 'node:test'
import { CodeboxError, type RuntimeProtocol } from '@codebox/core'
import { readBody } from '../src/services/runtime-http.ts'
import {
  RuntimeSessions,
  type LaunchedAgent,
  type Launcher,
  type RuntimeSessionEndReason,
  type RuntimeSessionKey,
  type RuntimeSessionSettings,
  type RuntimeSessionStore,
  type StoredRuntimeSession,
} from '../src/services/runtime-sessions.ts'

interface FakeAgentOptions {
  /** What /ping says; default Healthy. */
  status?: () => string
  /** /ping answers 503 for this long after the launch. */
  warmUpMs?: number
  /** The agent exits (prints, then its server closes) this long after the launch. */
  crashAfterMs?: number
  /** The protocol it serves (default HTTP); an MCP or A2A agent here has no /ping (it answers 404). */
  protocol?: RuntimeProtocol
}

const settings: RuntimeSessionSettings = { idleTimeoutMs: 60_000, maxLifetimeMs: 600_000, startTimeoutMs: 3_000, invokeTimeoutMs: 3_000 }

/** A launcher whose agents are HTTP servers in this process: each counts its invocations (its "memory"). */
function fakeLauncher(options: FakeAgentOptions = {}, overrides: Partial<RuntimeSessionSettings> = {}) {
  const launched: { key: RuntimeSessionKey; stopped?: RuntimeSessionEndReason }[] = []
  const launcher: Launcher = {
    async launch(key) {
      const record: (typeof launched)[number] = { key }
      launched.push(record)
      const n = launched.length
      const born = Date.now()
      let count = 0
      let log = `agent ${n} starting\n`
      let endAgent: (why: string) => void = () => {}
      const ended = new Promise<string>((resolve) => (endAgent = resolve))
      const server = http.createServer((req, res) => {
        if (req.url === '/ping' && (options.protocol ?? 'HTTP') !== 'HTTP') return void res.writeHead(404).end()
        if (req.url === '/ping') {
          if (Date.now() - born < (options.warmUpMs ?? 0)) return void res.writeHead(503).end()
          return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: options.status?.() ?? 'Healthy' }))
        }
        let body = ''
        req.on('data', (c: Buffer) => (body += c.toString()))
        req.on('end', () => {
          count++
          res.writeHead(200, { 'content-type': 'application/json' }).end(
            JSON.stringify({
              agent: n,
              count,
              got: body,
              session: req.headers['x-amzn-bedrock-agentcore-runtime-session-id'],
              ...(options.protocol ? { method: req.method, url: req.url } : {}),
            }),
          )
        })
      })
      // An upgrade to /ws is switched and echoed back byte for byte; another path is refused.
      server.on('upgrade', (req, socket: net.Socket) => {
        if (req.url !== '/ws') return void socket.end('HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\nno')
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nx-agent: ${n}\r\n\r\n`)
        socket.pipe(socket)
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      const port = (server.address() as AddressInfo).port
      const exit = (why: string): void => {
        server.closeAllConnections()
        server.close()
        endAgent(why)
      }
      if (options.crashAfterMs !== undefined)
        setTimeout(() => {
          log += 'Traceback: ValueError: boom\n'
          exit('exit code 1')
        }, options.crashAfterMs)
      const agent: LaunchedAgent = {
        connect: async () => net.connect(port, '127.0.0.1'),
        ended,
        logTail: async () => log,
        stop: async (reason) => {
          record.stopped ??= reason
          exit(`stopped (${reason})`)
        },
        sessionId: `sess-${n}`,
        version: '1',
        ...(options.protocol ? { protocol: options.protocol } : {}),
      }
      return { agent, settings: { ...settings, ...overrides } }
    },
  }
  return { launcher, launched }
}

/** Waits until `pred` holds (polled), failing after 5 s: timers on a loaded machine run late, never early. */
async function until(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5_000
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const key = (runtimeSessionId: string): RuntimeSessionKey => ({ tenant: 't', runtimeId: 'rt-1', runtimeSessionId })

async function call(
  sessions: RuntimeSessions,
  id: string,
  payload = '{"prompt": "hi"}',
): Promise<{ agent: number; count: number; got: string; session: string }> {
  const r = await sessions.invoke(key(id), {
    path: '/invocations',
    headers: { 'content-type': 'application/json', 'x-amzn-bedrock-agentcore-runtime-session-id': id },
    body: Buffer.from(payload),
  })
  return JSON.parse((await readBody(r.response, 1 << 20)).toString()) as { agent: number; count: number; got: string; session: string }
}

test('one agent per runtime session id: the same id reaches the same process, another id another one', async (t) => {
  const { launcher, launched } = fakeLauncher()
  const sessions = new RuntimeSessions({ launcher, pollMs: 10 })
  t.after(() => sessions.close())
  assert.deepEqual(await call(sessions, 'a'.repeat(33)), { agent: 1, count: 1, got: '{"prompt": "hi"}', session: 'a'.repeat(33) })
  assert.equal((await call(sessions, 'a'.repeat(33))).count, 2, 'the agent kept its state')
  const b = await call(sessions, 'b'.repeat(33))
  assert.deepEqual([b.agent, b.count], [2, 1])
  assert.equal(launched.length, 2)
  assert.deepEqual(
    sessions.list().map((s) => [s.runtimeSessionId[0], s.sessionId]),
    [
      ['a', 'sess-1'],
      ['b', 'sess-2'],
    ],
  )
})

test('concurrent first invocations of one id launch one agent, which waits until /ping is healthy', async (t) => {
  const { launcher, launched } = fakeLauncher({ warmUpMs: 300 })
  const sessions = new RuntimeSessions({ launcher, pollMs: 10 })
  t.after(() => sessions.close())
  const results = await Promise.all([1, 2, 3, 4].map(() => call(sessions, 'c'.repeat(33))))
  assert.equal(launched.length, 1)
  assert.deepEqual(results.map((r) => r.count).sort(), [1, 2, 3, 4])
})

test('an agent that crashes before it is healthy, or never becomes healthy: a RuntimeClientError with its output', async (t) => {
  const crash = fakeLauncher({ warmUpMs: 60_000, crashAfterMs: 100 })
  const s1 = new RuntimeSessions({ launcher: crash.launcher, pollMs: 10 })
  t.after(() => s1.close())
  await assert.rejects(call(s1, 'd'.repeat(33)), (e: unknown) => {
    assert.ok(e instanceof CodeboxError)
    assert.equal(e.details.aws, 'RuntimeClientError')
    assert.match(e.message, /the agent exited before it became healthy \(exit code 1\); its output ends with:\nagent 1 starting\nTraceback: ValueError: boom/)
    return true
  })
  assert.equal(crash.launched[0]!.stopped, 'unhealthy', 'what was left of it was stopped')

  const never = fakeLauncher({ warmUpMs: 60_000 }, { startTimeoutMs: 400 })
  const s2 = new RuntimeSessions({ launcher: never.launcher, pollMs: 10 })
  t.after(() => s2.close())
  const started = Date.now()
  await assert.rejects(call(s2, 'e'.repeat(33)), (e: unknown) => {
    assert.ok(e instanceof CodeboxError)
    assert.equal(e.code, 'Timeout')
    assert.equal(e.details.aws, 'RuntimeClientError')
    assert.match(e.message, /did not answer GET \/ping as healthy within 0.4 s \(last: GET \/ping answered 503\)/)
    return true
  })
  assert.ok(Date.now() - started < 3_000)
  assert.equal(s2.list().length, 0)
})

test('idle timeout ends a Healthy session; HealthyBusy keeps it alive past it', async (t) => {
  let busy = true
  const ends: [string, RuntimeSessionEndReason][] = []
  const { launcher } = fakeLauncher({ status: () => (busy ? 'HealthyBusy' : 'Healthy') }, { idleTimeoutMs: 200 })
  const sessions = new RuntimeSessions({ launcher, pollMs: 10, onEnd: (info, reason) => ends.push([info.runtimeSessionId[0]!, reason]) })
  t.after(() => sessions.close())
  await call(sessions, 'f'.repeat(33))
  await new Promise((r) => setTimeout(r, 700))
  assert.equal(sessions.list().length, 1, 'HealthyBusy kept it past three idle timeouts')
  busy = false
  await until(() => sessions.list().length === 0, 'the idle timeout')
  assert.deepEqual(ends, [['f', 'idle-timeout']])
  // The next invocation with the id starts a new agent: its memory is gone with the old one.
  assert.deepEqual([(await call(sessions, 'f'.repeat(33))).count], [1])
})

test('the maximum lifetime ends a session even while it is busy; stop ends it at once; an unknown id is NotFound', async (t) => {
  const ends: RuntimeSessionEndReason[] = []
  const { launcher } = fakeLauncher({ status: () => 'HealthyBusy' }, { maxLifetimeMs: 300 })
  const sessions = new RuntimeSessions({ launcher, pollMs: 10, onEnd: (_i, reason) => ends.push(reason) })
  t.after(() => sessions.close())
  await call(sessions, 'g'.repeat(33))
  await until(() => ends.length > 0, 'the maximum lifetime')
  assert.deepEqual(ends, ['max-lifetime'])

  const other = fakeLauncher()
  const s2 = new RuntimeSessions({ launcher: other.launcher, pollMs: 10, onEnd: (_i, reason) => ends.push(reason) })
  t.after(() => s2.close())
  await call(s2, 'h'.repeat(33))
  await s2.stop(key('h'.repeat(33)))
  assert.deepEqual(ends, ['max-lifetime', 'stopped'])
  assert.equal(other.launched[0]!.stopped, 'stopped')
  await assert.rejects(s2.stop(key('h'.repeat(33))), { code: 'NotFound' })
  await assert.rejects(s2.stop(key('z'.repeat(33))), { code: 'NotFound' })
})

test('an agent that exits after its start ends its session; the next invocation launches a new one', async (t) => {
  const ends: RuntimeSessionEndReason[] = []
  const { launcher, launched } = fakeLauncher({ crashAfterMs: 300 })
  const sessions = new RuntimeSessions({ launcher, pollMs: 10, onEnd: (_i, reason) => ends.push(reason) })
  t.after(() => sessions.close())
  assert.equal((await call(sessions, 'i'.repeat(33))).agent, 1)
  await until(() => ends.length > 0, 'the agent’s exit')
  assert.deepEqual(ends, ['agent-exited'])
  assert.equal((await call(sessions, 'i'.repeat(33))).agent, 2)
  assert.equal(launched.length, 2)
})

test('close() ends every session, and later invocations are refused', async (t) => {
  const ends: RuntimeSessionEndReason[] = []
  const { launcher } = fakeLauncher()
  const sessions = new RuntimeSessions({ launcher, pollMs: 10, onEnd: (_i, reason) => ends.push(reason) })
  t.after(() => sessions.close())
  await call(sessions, 'j'.repeat(33))
  await call(sessions, 'k'.repeat(33))
  await sessions.close()
  assert.deepEqual(ends, ['server-shutdown', 'server-shutdown'])
  await assert.rejects(call(sessions, 'j'.repeat(33)), { code: 'Unavailable' })
})

test('an MCP agent has no /ping: it is ready once its server answers; GET and DELETE reach it too', async (t) => {
  const { launcher, launched } = fakeLauncher({ protocol: 'MCP' })
  const sessions = new RuntimeSessions({ launcher, pollMs: 10 })
  t.after(() => sessions.close())
  const id = 'm'.repeat(33)
  const r = await sessions.invoke(key(id), { method: 'GET', path: '/mcp', headers: {} })
  const body = JSON.parse((await readBody(r.response, 1 << 20)).toString()) as { method: string; url: string }
  assert.deepEqual([body.method, body.url, r.info.protocol], ['GET', '/mcp', 'MCP'])
  assert.equal((await call(sessions, id)).count, 2, 'the same agent')
  assert.equal(launched.length, 1)
  // An HTTP agent's server answering is not enough: its /ping must say Healthy (here it answers 503).
  const http404 = fakeLauncher({ protocol: 'HTTP', warmUpMs: 60_000 }, { startTimeoutMs: 300 })
  const strict = new RuntimeSessions({ launcher: http404.launcher, pollMs: 10 })
  t.after(() => strict.close())
  await assert.rejects(call(strict, id), /did not answer GET \/ping as healthy/)
})

test('an upgrade is piped to the agent; while it is open the session is busy, and its idle timeout runs once it closes', async (t) => {
  const ends: RuntimeSessionEndReason[] = []
  const { launcher } = fakeLauncher({}, { idleTimeoutMs: 200 })
  const sessions = new RuntimeSessions({ launcher, pollMs: 10, onEnd: (_info, reason) => ends.push(reason) })
  t.after(() => sessions.close())
  const id = 'w'.repeat(33)
  const opened = await sessions.upgrade(key(id), { path: '/ws', headers: { connection: 'Upgrade', upgrade: 'websocket' } })
  assert.ok(opened.socket, 'switched')
  assert.equal(opened.response.headers['x-agent'], '1')
  const echoed = new Promise<string>((resolve) => opened.socket!.once('data', (c: Buffer) => resolve(c.toString())))
  opened.socket.write('ping over the pipe')
  assert.equal(await echoed, 'ping over the pipe')
  assert.equal(sessions.find(key(id))?.active, 1)
  await new Promise((r) => setTimeout(r, 700))
  assert.equal(sessions.list().length, 1, 'an open upgrade kept it past three idle timeouts')
  opened.socket.destroy()
  await until(() => sessions.list().length === 0, 'the idle timeout after the close')
  assert.deepEqual(ends, ['idle-timeout'])
  // A path the agent does not upgrade comes back as its answer, and the session is released.
  const refused = await sessions.upgrade(key(id), { path: '/nope', headers: { connection: 'Upgrade', upgrade: 'websocket' } })
  assert.equal(refused.socket, undefined)
  assert.equal(refused.response.statusCode, 404)
  refused.response.resume()
  await until(() => sessions.find(key(id))?.active === 0, 'the refused upgrade released')
})

test('restore: a re-adopted agent is served again with its memory and timers; one that cannot be is abandoned with why', async (t) => {
  const { launcher } = fakeLauncher({}, { idleTimeoutMs: 400, maxLifetimeMs: 60_000 })
  // A previous server's agent, with two invocations in its memory.
  const live = await launcher.launch(key('p'.repeat(33)), new AbortController().signal)
  const ends: RuntimeSessionEndReason[] = []
  const sessions = new RuntimeSessions({ launcher, pollMs: 10, onEnd: (_info, reason) => ends.push(reason) })
  t.after(async () => {
    await sessions.close()
    await live.agent.stop('stopped')
  })
  const abandoned: string[] = []
  const gone = (why: string) => async () => {
    throw new CodeboxError('NotFound', why)
  }
  const out = await sessions.restore([
    {
      key: key('p'.repeat(33)),
      startedAt: new Date(Date.now() - 1_000),
      lastActivity: new Date(),
      reattach: async () => live,
      abandon: async (why) => void abandoned.push(`p ${why}`),
    },
    {
      key: key('q'.repeat(33)),
      startedAt: new Date(),
      lastActivity: new Date(),
      reattach: gone('runtime rt-1 was deleted'),
      abandon: async (why) => void abandoned.push(`q ${why}`),
    },
  ])
  assert.deepEqual(
    out.restored.map((r) => [r.runtimeSessionId[0], r.sessionId]),
    [['p', live.agent.sessionId]],
  )
  assert.deepEqual(out.failed, [{ key: key('q'.repeat(33)), reason: 'runtime rt-1 was deleted' }])
  assert.deepEqual(abandoned, ['q runtime rt-1 was deleted'])
  // The same agent answers (its count goes on), and its idle timeout still ends it.
  const r = await call(sessions, 'p'.repeat(33))
  assert.deepEqual([r.agent, r.count], [1, 1])
  await until(() => sessions.list().length === 0, 'the idle timeout of the restored session')
  assert.deepEqual(ends, ['idle-timeout'])
})

/**
 * Replicas' shared store in memory: records by key, the first launch of a key wins (the others get
 * the store's Conflict), an agent attached on another replica is the same agent reached again.
 */
function sharedStore(options: FakeAgentOptions = {}, overrides: Partial<RuntimeSessionSettings> = {}) {
  interface Row {
    key: RuntimeSessionKey
    sessionId: string
    startedAt: Date
    lastActivityAt: number
    agent?: LaunchedAgent
    ended?: RuntimeSessionEndReason
  }
  const rows: Row[] = []
  const released: string[] = []
  /** Whether a replica attaching an agent reaches it (false: its connections fail, as to a pod this replica cannot reach). */
  const reach = { ok: true }
  const same = (a: RuntimeSessionKey, b: RuntimeSessionKey): boolean => JSON.stringify(a) === JSON.stringify(b)
  const active = (k: RuntimeSessionKey): Row | undefined => rows.find((r) => !r.ended && same(r.key, k))
  const inner = fakeLauncher(options, overrides)
  const launcher: Launcher = {
    async launch(k, signal, qualifier) {
      if (active(k)) throw new CodeboxError('Conflict', 'served already', { details: { hostedTaken: true } })
      const row: Row = { key: k, sessionId: `pending-${rows.length}`, startedAt: new Date(), lastActivityAt: Date.now() }
      rows.push(row)
      const got = await inner.launcher.launch(k, signal, qualifier)
      row.sessionId = got.agent.sessionId
      row.agent = got.agent
      return { agent: { ...got.agent, release: async () => void released.push(got.agent.sessionId) }, settings: got.settings }
    },
  }
  const stored = (row: Row): StoredRuntimeSession => ({
    sessionId: row.sessionId,
    version: '1',
    startedAt: row.startedAt,
    lastActivity: new Date(row.lastActivityAt),
    launched: row.agent !== undefined,
    attach: async () => ({
      agent: {
        ...row.agent!,
        ...(reach.ok ? {} : { connect: async () => Promise.reject(new Error('connect ECONNREFUSED')) }),
        release: async () => void released.push(row.sessionId),
      },
      settings: { ...settings, ...overrides },
    }),
    end: async (reason) => {
      row.ended ??= reason
      await row.agent?.stop(reason)
    },
  })
  const store: RuntimeSessionStore = {
    find: async (k) => {
      const row = active(k)
      return row && stored(row)
    },
    list: async (filter) => rows.filter((r) => !r.ended && r.key.tenant === filter.tenant).map((r) => ({ ...r.key, stored: stored(r) })),
    touch: async (sessionId) => {
      const row = rows.find((r) => r.sessionId === sessionId)
      if (row) row.lastActivityAt = Date.now()
    },
    recorded: async (sessionId) => {
      const row = rows.find((r) => r.sessionId === sessionId)
      return row && { ended: row.ended !== undefined, lastActivityAt: row.lastActivityAt }
    },
    ended: async (sessionId, reason) => {
      const row = rows.find((r) => r.sessionId === sessionId)
      if (row) row.ended ??= reason
    },
  }
  return { launcher, store, rows, released, reach, launched: inner.launched }
}

/** Two replicas' RuntimeSessions on `shared`'s store and launcher, closed after the test; `ends` records which ended what, and why. */
function twoReplicas(
  t: TestContext,
  shared: ReturnType<typeof sharedStore>,
): { a: RuntimeSessions; b: RuntimeSessions; ends: [string, RuntimeSessionEndReason][] } {
  const ends: [string, RuntimeSessionEndReason][] = []
  const replica = (name: string): RuntimeSessions =>
    new RuntimeSessions({ launcher: shared.launcher, store: shared.store, pollMs: 10, onEnd: (_info, reason) => ends.push([name, reason]) })
  const a = replica('a')
  const b = replica('b')
  t.after(() => Promise.all([a.close(), b.close()]))
  return { a, b, ends }
}

test('replicas on a shared store: one agent for both, the idle timeout counts both, an end on one is a let-go on the other', async (t) => {
  const shared = sharedStore({}, { idleTimeoutMs: 300 })
  const { a, b, ends } = twoReplicas(t, shared)
  // Concurrent first invocations on both replicas: one launch; the other attaches it.
  const first = await Promise.all([call(a, 'm'.repeat(33)), call(b, 'm'.repeat(33))])
  assert.deepEqual(first.map((r) => [r.agent, r.count]).sort(), [
    [1, 1],
    [1, 2],
  ])
  assert.equal(shared.launched.length, 1)
  // Invocations on b alone, for longer than the idle timeout: a's idle check finds them in the store.
  for (let i = 0; i < 6; i++) {
    await new Promise((r) => setTimeout(r, 100))
    await call(b, 'm'.repeat(33))
  }
  assert.equal(a.list().length, 1, 'replica a kept it: replica b invoked it within every idle timeout')
  assert.deepEqual(ends, [])
  // Idle on both: it ends once, and the other replica lets go of it quietly.
  await until(() => a.list().length === 0 && b.list().length === 0, 'the idle timeout on both replicas')
  assert.equal(ends.length, 1, `one end, on one replica: ${JSON.stringify(ends)}`)
  assert.equal(ends[0]![1], 'idle-timeout')
  assert.equal(shared.launched[0]!.stopped, 'idle-timeout')
  assert.equal(shared.released.length, 1, 'the other replica let go')

  // Stopped on one replica: ended there, let go of on the other; the next invocation launches anew.
  await call(a, 'n'.repeat(33))
  await call(b, 'n'.repeat(33))
  await b.stop(key('n'.repeat(33)))
  await until(() => a.list().length === 0, 'replica a letting go')
  assert.deepEqual(ends.slice(1), [['b', 'stopped']])
  assert.equal((await call(a, 'n'.repeat(33))).count, 1)

  // A stop on a replica that never held it ends it too; listAll shows what any replica holds.
  assert.deepEqual(
    (await b.listAll({ tenant: 't' })).map((i) => i.runtimeSessionId[0]),
    ['n'],
  )
  await b.stop(key('n'.repeat(33)))
  await until(() => a.list().length === 0, 'replica a letting go of the one b stopped without holding it')
  assert.deepEqual((await a.listAll({ tenant: 't' })).length, 0)
})

test('replicas on a shared store: a launch left unfinished is taken over after the grace; close() lets go instead of ending', async (t) => {
  const shared = sharedStore()
  // Another replica recorded a launch of this key and went away before its agent started.
  shared.rows.push({ key: key('o'.repeat(33)), sessionId: 'lost-1', startedAt: new Date(Date.now() - 10_000), lastActivityAt: Date.now() - 10_000 })
  const ends: RuntimeSessionEndReason[] = []
  const a = new RuntimeSessions({ launcher: shared.launcher, store: shared.store, pollMs: 10, launchGraceMs: 5_000, onEnd: (_i, r) => ends.push(r) })
  t.after(() => a.close())
  // The agents that outlive the replica (their sandboxes, in a real deployment) end with the test.
  t.after(() => Promise.all(shared.rows.flatMap((r) => (r.agent ? [r.agent.stop('stopped')] : []))))
  assert.equal((await call(a, 'o'.repeat(33))).count, 1)
  assert.equal(shared.rows[0]!.ended, 'unhealthy', 'the abandoned launch was ended')
  assert.equal(shared.launched.length, 1)
  await a.close()
  assert.deepEqual(ends, [], 'nothing ended at close')
  assert.equal(shared.launched[0]!.stopped, undefined, 'the agent runs on for the other replicas')
  assert.deepEqual(shared.released, ['sess-1'], 'it let go of the agent')
})

test('replicas on a shared store: an agent another replica invoked lately is not ended for an unhealthy /ping on attach', async (t) => {
  const shared = sharedStore({}, { startTimeoutMs: 300 })
  const { a, b, ends } = twoReplicas(t, shared)
  t.after(() => Promise.all(shared.rows.flatMap((r) => (r.agent ? [r.agent.stop('stopped')] : []))))
  assert.equal((await call(a, 'u'.repeat(33))).count, 1)
  // Replica b cannot reach the agent replica a serves: b's invocation fails, the runtime session goes on.
  shared.reach.ok = false
  await assert.rejects(call(b, 'u'.repeat(33)), (e: unknown) => {
    assert.ok(e instanceof CodeboxError)
    assert.equal(e.code, 'Unavailable')
    assert.match(
      e.message,
      /is served by another codebox replica \(invoked there \d+ s ago\), but its agent did not answer this replica: .*GET \/ping.*; it was not ended/,
    )
    return true
  })
  assert.equal(shared.rows[0]!.ended, undefined, 'the runtime session was not ended')
  assert.equal(shared.launched[0]!.stopped, undefined)
  assert.deepEqual(ends, [])
  assert.equal((await call(a, 'u'.repeat(33))).count, 2, 'replica a serves it on')
  // Not invoked anywhere within its idle timeout: an agent that does not answer is ended, as
  // before, and replica b launches a new one.
  await new Promise((r) => setTimeout(r, 50))
  shared.rows[0]!.lastActivityAt = Date.now() - settings.idleTimeoutMs - 1
  const fresh = await call(b, 'u'.repeat(33))
  assert.deepEqual([fresh.agent, fresh.count], [2, 1])
  assert.equal(shared.rows[0]!.ended, 'unhealthy')
})
