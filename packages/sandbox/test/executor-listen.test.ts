/**
 * The executor's listen mode (docs/executor-protocol.md, "Listen mode"), as a Kubernetes pod runs
 * it: executor.py started directly with the host's python3 (as the fake driver does), listening on
 * a unix socket and on 127.0.0.1 TCP. A connection without the right auth frame first gets nothing
 * but a close; up to 16 authenticated hosts are served at once, each seeing only its own frames;
 * one that goes interrupts only its own cell; the token, the listen address and the rlimits reach
 * no cell; the session's deadline ends the executor only while no host is connected. An auth frame
 * with `tunnel` makes the connection a byte pipe to that port on the executor's loopback, after
 * one status byte (0 connected, 1 nothing listens, 2 too many), bounded apart from the 16 hosts.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import type { Sandbox, SandboxExit } from '@codebox/core'
import { boundedBuffer, executorDir, hostNodeModules } from '../src/drivers/shared.ts'
import { ExecutorClient, type ExecutorMessage } from '../src/executor-client.ts'
import { encodeFrame, encodeJson, FrameKind } from '../src/protocol.ts'
import { within } from '../src/testing/contract.ts'

const TOKEN = 'tok-listen-test-0123456789'
const PYTHON = '/usr/bin/python3'

interface Listening {
  child: ChildProcess
  exited: Promise<SandboxExit>
  /** Where a host connects: a unix socket path or 127.0.0.1 and a port. */
  address: net.NetConnectOpts
  stderr(): string
  stop(): Promise<void>
}

const cleanups: (() => Promise<void>)[] = []
after(async () => {
  for (const c of cleanups.reverse()) await c()
})

/** The executor's environment, as the fake driver gives it, plus `extra`. */
async function executorEnv(extra: Record<string, string>): Promise<{ env: Record<string, string>; dir: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'codebox-listen-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  return {
    dir,
    env: {
      PATH: '/usr/local/bin:/usr/bin:/bin',
      LANG: 'C.UTF-8',
      HOME: dir,
      MPLBACKEND: 'Agg',
      PYTHONDONTWRITEBYTECODE: '1',
      CODEBOX_WORKSPACE: dir,
      CODEBOX_NODE: process.execPath,
      CODEBOX_PYTHON: PYTHON,
      CODEBOX_DENO: '',
      NODE_PATH: hostNodeModules,
      ...extra,
    },
  }
}

/** Runs the executor with `env`; resolves with its exit and what it printed (for start-up failures). */
async function runToExit(extra: Record<string, string>): Promise<{ status: number | null; stderr: string }> {
  const { env } = await executorEnv(extra)
  const r = spawnSync(PYTHON, ['-s', path.join(executorDir, 'executor.py')], { env, encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'ignore', 'pipe'] })
  return { status: r.status, stderr: r.stderr }
}

/** Starts the executor listening on a unix socket or on 127.0.0.1 (any free port), and waits until it listens. */
async function listen(transport: 'unix' | 'tcp', extra: Record<string, string> = {}): Promise<Listening> {
  const { env, dir } = await executorEnv(extra)
  const socketPath = path.join(dir, '7070.sock')
  env.CODEBOX_LISTEN ??= transport === 'unix' ? `unix:${socketPath}` : '127.0.0.1:0'
  env.CODEBOX_EXECUTOR_TOKEN ??= TOKEN
  const child = spawn(PYTHON, ['-s', path.join(executorDir, 'executor.py')], { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] })
  const diagnostics = boundedBuffer(64 * 1024)
  child.stderr!.on('data', (c: Buffer) => diagnostics.push(c))
  const exited = new Promise<SandboxExit>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGTERM') // the executor's handler ends its kernels too
    const done = await Promise.race([exited, delay(5000).then(() => undefined)])
    if (!done) child.kill('SIGKILL')
    await exited
  }
  cleanups.push(stop)
  const deadline = Date.now() + 20_000
  let m: RegExpExecArray | null = null
  while (!(m = /listening on (\S+)/.exec(diagnostics.text()))) {
    if (child.exitCode !== null) assert.fail(`the executor exited (${child.exitCode}): ${diagnostics.text()}`)
    if (Date.now() > deadline) assert.fail(`the executor did not listen: ${diagnostics.text()}`)
    await delay(20)
  }
  const shown = m[1]!
  const address: net.NetConnectOpts = transport === 'unix' ? { path: socketPath } : { host: '127.0.0.1', port: Number(shown.split(':')[1]) }
  if (transport === 'unix') assert.equal(shown, `unix:${socketPath}`)
  return { child, exited, address, stderr: diagnostics.text, stop }
}

async function connect(address: net.NetConnectOpts): Promise<net.Socket> {
  const socket = net.connect(address)
  await once(socket, 'connect')
  return socket
}

/** Sends `bytes` (all at once, or nothing) and resolves with what came back once the executor closed the connection. */
async function answerTo(address: net.NetConnectOpts, bytes: Buffer | undefined): Promise<{ received: Buffer; ms: number }> {
  const socket = await connect(address)
  const started = Date.now()
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  // A close with unread bytes is a reset (ECONNRESET here): still not a byte sent back.
  socket.on('error', () => {})
  const closed = new Promise((resolve) => socket.once('close', resolve))
  if (bytes) socket.write(bytes)
  await closed
  return { received: Buffer.concat(chunks), ms: Date.now() - started }
}

interface Host {
  client: ExecutorClient
  socket: net.Socket
}

/** An authenticated host: an ExecutorClient over the connection, once `ready` came. */
async function host(l: Listening, token = TOKEN): Promise<Host> {
  const socket = await connect(l.address)
  socket.write(encodeJson(0, { op: 'auth', token }))
  const sandbox: Sandbox = {
    id: 'listen',
    input: socket,
    output: socket,
    diagnostics: l.stderr,
    exited: l.exited,
    counters: () => Promise.resolve({ oomKills: 0, pidsLimitHits: 0 }),
    memoryUsage: () => Promise.resolve(0),
    destroy: () => Promise.resolve(void socket.destroy()),
  }
  const client = new ExecutorClient(sandbox)
  await client.ready
  return { client, socket }
}

/** Runs a cell; returns its stdout and its `done`. */
async function run(h: Host, code: string, onEvent?: (e: ExecutorMessage) => void): Promise<{ stdout: string; done: Record<string, unknown> }> {
  let stdout = ''
  const it = h.client.request('exec', { language: 'python', code, timeoutMs: 60_000, outputBytes: 1 << 20, clearContext: false })
  for (;;) {
    const r = await it.next()
    if (r.done) return { stdout, done: r.value }
    onEvent?.(r.value)
    if (r.value.kind === 'event' && r.value.event.ev === 'stdout') stdout += String(r.value.event.text)
  }
}

/** Runs a command (sh -c); returns its stdout once it ended with exit code 0. */
async function commandOutput(h: Host, command: string): Promise<string> {
  let stdout = ''
  const it = h.client.request('command', { command, timeoutMs: 30_000, outputBytes: 1 << 20 })
  for (;;) {
    const r = await it.next()
    if (r.done) {
      assert.equal(r.value.exitCode, 0, `${command}: ${JSON.stringify(r.value)}`)
      return stdout
    }
    if (r.value.kind === 'event' && r.value.event.ev === 'stdout') stdout += String(r.value.event.text)
  }
}

const alive = (l: Listening): boolean => l.child.exitCode === null && l.child.signalCode === null

const authFrame = (payload: unknown): Buffer => encodeJson(0, payload)

for (const transport of ['unix', 'tcp'] as const) {
  describe(`executor listen mode over ${transport}`, () => {
    it('closes a connection without a byte unless its first frame is the right auth frame', async () => {
      const l = await listen(transport)
      const oversize = Buffer.alloc(9 + 5000, 0x20)
      oversize.writeUInt32BE(5 + 5000, 0)
      oversize.writeUInt32BE(0, 4)
      oversize.writeUInt8(FrameKind.Json, 8)
      const cases: [string, Buffer][] = [
        ['a wrong token', authFrame({ op: 'auth', token: TOKEN.slice(0, -1) + 'x' })],
        ['a longer token', authFrame({ op: 'auth', token: TOKEN + 'x' })],
        ['no token', authFrame({ op: 'auth' })],
        ['a token that is no string', authFrame({ op: 'auth', token: 12 })],
        ['another op first', authFrame({ op: 'ping' })],
        ['a request id other than 0', encodeJson(1, { op: 'auth', token: TOKEN })],
        ['a byte frame', encodeFrame(0, FrameKind.Bytes, Buffer.from(JSON.stringify({ op: 'auth', token: TOKEN })))],
        ['a payload over 4096 bytes', oversize],
        ['JSON that is no object', authFrame([TOKEN])],
        ['no JSON', encodeFrame(0, FrameKind.Json, Buffer.from('{"op":"auth","token":'))],
        ['deeply nested JSON', encodeFrame(0, FrameKind.Json, Buffer.from('['.repeat(4000)))],
        ['a length below a frame', Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0x4a])],
      ]
      const answers = await Promise.all(cases.map(([, bytes]) => answerTo(l.address, bytes)))
      for (const [i, [what]] of cases.entries()) assert.equal(answers[i]!.received.length, 0, `${what}: the executor sent ${answers[i]!.received.length} bytes`)
      // The right token still works, and nothing above disturbed the executor.
      const h = await host(l)
      assert.equal(h.client.hello?.pid, l.child.pid)
      assert.equal(h.client.hello?.session, false)
      assert.deepEqual(await run(h, 'print(6 * 7)').then((r) => r.stdout), '42\n')
    })

    it('closes a connection that sends nothing, or not all of its auth frame, after 10 seconds', async () => {
      const l = await listen(transport)
      const frame = authFrame({ op: 'auth', token: TOKEN })
      const [silent, partial] = await Promise.all([answerTo(l.address, undefined), answerTo(l.address, frame.subarray(0, frame.length - 1))])
      for (const [what, a] of [
        ['silent', silent],
        ['partial', partial],
      ] as const) {
        assert.equal(a.received.length, 0, what)
        assert.ok(a.ms >= 9000 && a.ms < 20_000, `${what}: closed after ${a.ms} ms`)
      }
      assert.ok(alive(l))
    })

    it('is not disturbed by connections that close without a word (readiness probes)', async () => {
      const l = await listen(transport)
      for (let i = 0; i < 40; i++) (await connect(l.address)).destroy()
      const h = await host(l)
      assert.equal((await run(h, 'print("after probes")')).stdout, 'after probes\n')
      assert.ok(alive(l))
    })

    it('serves two hosts at once, each getting only the frames of its own requests', async () => {
      const l = await listen(transport)
      const a = await host(l)
      const b = await host(l)
      // Both connections number their requests from 1: a frame sent to the wrong one would show up as the other's output.
      const [ra, rb] = await Promise.all([
        run(a, 'import time\nfor i in range(3):\n    print("from a", i, flush=True)\n    time.sleep(0.05)\nshared = "set by a"'),
        run(b, 'print("from b")'),
      ])
      assert.equal(ra.stdout, 'from a 0\nfrom a 1\nfrom a 2\n')
      assert.equal(rb.stdout, 'from b\n')
      // One session, one kernel: what one host's cell did, the other's sees.
      assert.equal((await run(b, 'print(shared)')).stdout, 'set by a\n')
      const [pa, pb] = await Promise.all([a.client.call('ping', {}), b.client.call('ping', {})])
      assert.equal(pa.pid, l.child.pid)
      assert.equal(pb.pid, l.child.pid)
    })

    it('interrupts only the cell of a host that goes; the other host and the kernel state stay', async () => {
      const l = await listen(transport)
      const a = await host(l)
      const b = await host(l)
      let started!: () => void
      const cellStarted = new Promise<void>((r) => (started = r))
      const cell = run(a, 'import time\nstate = "kept"\nprint("started", flush=True)\ntime.sleep(60)', (m) => {
        if (m.kind === 'event' && m.event.ev === 'stdout') started()
      })
      cell.catch(() => {})
      await cellStarted
      // b's command runs across a's departure.
      const command = b.client.call('command', { command: 'sleep 1; echo b-done', timeoutMs: 30_000, outputBytes: 4096 })
      a.socket.destroy()
      await assert.rejects(cell)
      const t0 = Date.now()
      // The kernel was interrupted, not killed: b's cell runs in it at once, with a's state.
      const r = await run(b, 'print(state)')
      assert.equal(r.stdout, 'kept\n')
      assert.ok(Date.now() - t0 < 10_000, `b waited ${Date.now() - t0} ms for the kernel`)
      assert.equal((await command).exitCode, 0)
      assert.ok(alive(l))
    })

    it('serves at most 16 connections at once and closes the 17th without a byte', async () => {
      const l = await listen(transport)
      const hosts = await Promise.all(Array.from({ length: 16 }, () => host(l)))
      const refused = await answerTo(l.address, authFrame({ op: 'auth', token: TOKEN }))
      assert.equal(refused.received.length, 0)
      assert.ok(refused.ms < 5000, `the 17th was closed after ${refused.ms} ms`)
      // Every one of the 16 is served.
      const pongs = await Promise.all(hosts.map((h) => h.client.call('ping', {})))
      assert.ok(pongs.every((p) => p.pid === l.child.pid))
      // One goes: a new one is served again.
      hosts[0]!.socket.destroy()
      let again: Host | undefined
      for (let i = 0; i < 50 && !again; i++) {
        again = await host(l).catch(() => undefined)
        if (!again) await delay(50)
      }
      assert.ok(again, 'no connection was served after one of the 16 closed')
      assert.equal((await again.client.call('ping', {})).pid, l.child.pid)
    })
  })
}

describe('executor listen mode: environment, rlimits, start-up and lifetime', () => {
  it('keeps the token, the listen address and the rlimits out of every cell and command', async () => {
    const l = await listen('tcp', { CODEBOX_RLIMITS: 'core=0' })
    const h = await host(l)
    const names = ['CODEBOX_EXECUTOR_TOKEN', 'CODEBOX_LISTEN', 'CODEBOX_RLIMITS']
    const r = await run(
      h,
      `import os\nprint([k for k in os.environ if k in ${JSON.stringify(names)}])\nprint(${JSON.stringify(TOKEN)} in open("/proc/self/environ").read())`,
    )
    assert.equal(r.stdout, '[]\nFalse\n')
    // A command's and a background task's environment: the executor's, without them.
    const command = await commandOutput(h, 'env')
    const task = await h.client.call('task.start', { command: 'env', outputBytes: 1 << 20 })
    let out: Record<string, unknown> = {}
    for (let i = 0; i < 200 && out.status !== 'completed'; i++) {
      if (i > 0) await delay(50)
      out = await h.client.call('task.get', { taskId: task.taskId })
    }
    assert.equal(out.status, 'completed')
    for (const text of [command, String(out.stdout)]) {
      assert.match(text, /^PATH=/m)
      for (const name of names) assert.doesNotMatch(text, new RegExp(`^${name}=`, 'm'))
      assert.ok(!text.includes(TOKEN))
    }
  })

  it('applies CODEBOX_RLIMITS to itself (soft and hard) before serving, so every cell has them', async () => {
    const hardNproc = spawnSync('sh', ['-c', 'ulimit -Hu'], { encoding: 'utf8' }).stdout.trim()
    const nproc = hardNproc === 'unlimited' ? 4096 : Math.min(4096, Number(hardNproc))
    const l = await listen('unix', { CODEBOX_RLIMITS: `nofile=300,nproc=${nproc},core=0,fsize=1048576` })
    const h = await host(l)
    const r = await run(h, 'import resource as r\nprint([r.getrlimit(x) for x in (r.RLIMIT_NOFILE, r.RLIMIT_NPROC, r.RLIMIT_CORE, r.RLIMIT_FSIZE)])')
    assert.equal(r.stdout, `[(300, 300), (${nproc}, ${nproc}), (0, 0), (1048576, 1048576)]\n`)
    const text = await commandOutput(h, 'ulimit -n; ulimit -Hn; ulimit -f')
    assert.equal(text, '300\n300\n2048\n') // sh counts fsize in 512-byte blocks
  })

  it('refuses to start, naming the variable, on a missing token, a bad address, bad rlimits or a bad gateway proxy', async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ CODEBOX_LISTEN: '127.0.0.1:0' }, /CODEBOX_EXECUTOR_TOKEN is required with CODEBOX_LISTEN/],
      [{ CODEBOX_LISTEN: '127.0.0.1:0', CODEBOX_EXECUTOR_TOKEN: '' }, /CODEBOX_EXECUTOR_TOKEN is required/],
      [{ CODEBOX_LISTEN: 'localhost:7070', CODEBOX_EXECUTOR_TOKEN: 't' }, /CODEBOX_LISTEN: 'localhost:7070' must be HOST:PORT/],
      [{ CODEBOX_LISTEN: '127.0.0.1:70000', CODEBOX_EXECUTOR_TOKEN: 't' }, /CODEBOX_LISTEN: '127.0.0.1:70000'/],
      [{ CODEBOX_LISTEN: 'unix:relative.sock', CODEBOX_EXECUTOR_TOKEN: 't' }, /CODEBOX_LISTEN: 'unix:relative.sock' must be unix:\/absolute\/path/],
      [
        { CODEBOX_LISTEN: '127.0.0.1:0', CODEBOX_EXECUTOR_TOKEN: 't', CODEBOX_CHANNEL_DIR: '/tmp' },
        /CODEBOX_LISTEN and CODEBOX_CHANNEL_DIR exclude each other/,
      ],
      [
        { CODEBOX_LISTEN: '127.0.0.1:0', CODEBOX_EXECUTOR_TOKEN: 't', CODEBOX_RLIMITS: 'nofile=lots' },
        /CODEBOX_RLIMITS: nofile must be a decimal number, got 'lots'/,
      ],
      [{ CODEBOX_RLIMITS: 'stack=1' }, /CODEBOX_RLIMITS: unknown limit 'stack'/],
      [{ CODEBOX_RLIMITS: 'core=0,core=0' }, /CODEBOX_RLIMITS: core is given twice/],
      [{ CODEBOX_RLIMITS: 'nofile=-1' }, /CODEBOX_RLIMITS: nofile must be a decimal number/],
      [
        { CODEBOX_GATEWAY_PORT: '3129', CODEBOX_GATEWAY_PROXY: 'http://pod:secret-token@egress-proxy:3128' },
        /CODEBOX_GATEWAY_PROXY: '<credentials>@egress-proxy:3128' must be http:\/\/\[user:password@\]<IP>:<port>/,
      ],
      [{ CODEBOX_GATEWAY_PROXY: 'http://10.0.0.7:3128' }, /CODEBOX_GATEWAY_PROXY needs CODEBOX_GATEWAY_PORT/],
    ]
    for (const [env, message] of cases) {
      const r = await runToExit(env)
      assert.notEqual(r.status, 0, JSON.stringify(env))
      assert.match(r.stderr, message)
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`)
      assert.doesNotMatch(r.stderr, /secret-token/, 'a proxy URL is shown without its credentials')
    }
  })

  it('ends at the session deadline only once no host is connected; a pool executor never ends on a close', async () => {
    const pool = await listen('unix')
    ;(await host(pool)).socket.destroy()
    const l = await listen('tcp')
    const h = await host(l)
    await h.client.configureSession(600_000, Date.now() + 1000)
    await delay(2500)
    assert.ok(alive(l), 'the executor ended past its deadline while a host was connected')
    h.socket.destroy()
    const exit = await Promise.race([l.exited, delay(10_000).then(() => undefined)])
    assert.deepEqual(exit, { code: 0, signal: null }, `it did not end once its host went: ${l.stderr()}`)
    assert.ok(alive(pool), 'a pool executor ended when its connection closed')
  })

  it('ends at the idle timeout, counted from its last request, once no host is connected', async () => {
    const l = await listen('unix')
    const h = await host(l)
    await h.client.configureSession(1500, Date.now() + 600_000)
    await run(h, 'print(1)')
    const left = Date.now()
    h.socket.destroy()
    const exit = await Promise.race([l.exited, delay(15_000).then(() => undefined)])
    assert.deepEqual(exit, { code: 0, signal: null }, `it did not end when idle: ${l.stderr()}`)
    assert.ok(Date.now() - left >= 1000, `it ended ${Date.now() - left} ms after its host went`)
  })
})

interface Tunnel {
  socket: net.Socket
  /** The executor's status byte (0 connected, 1 nothing listens, 2 too many tunnels); undefined: closed without one. */
  status: number | undefined
  /** Everything after the status byte, once the connection has ended. */
  rest: Promise<Buffer>
}

/** A tunnel connection: the auth frame with `tunnel` (or `first`, any frame), and its status byte. */
async function tunnel(l: Listening, port: number, first: Buffer = authFrame({ op: 'auth', token: TOKEN, tunnel: port })): Promise<Tunnel> {
  const socket = net.connect({ ...l.address, allowHalfOpen: true })
  socket.on('error', () => {})
  await once(socket, 'connect')
  const chunks: Buffer[] = []
  let got!: (status: number | undefined) => void
  const status = new Promise<number | undefined>((resolve) => (got = resolve))
  socket.on('data', (c: Buffer) => {
    chunks.push(c)
    got(chunks[0]![0])
  })
  const rest = new Promise<Buffer>((resolve) =>
    socket.once('end', () => {
      got(undefined)
      resolve(Buffer.concat(chunks).subarray(1))
    }),
  )
  socket.once('close', () => got(undefined))
  socket.write(first)
  return { socket, status: await status, rest }
}

/** A server on the host's loopback (the executor's, in these tests): what each connection sent, and how many came. */
async function loopbackServer(onConnection: (c: net.Socket) => void): Promise<{ port: number; received: Buffer[]; connections(): number }> {
  const received: Buffer[] = []
  const sockets = new Set<net.Socket>()
  let count = 0
  const server = net.createServer({ allowHalfOpen: true }, (c) => {
    count++
    sockets.add(c)
    c.once('close', () => sockets.delete(c))
    const i = received.push(Buffer.alloc(0)) - 1
    c.on('data', (d: Buffer) => (received[i] = Buffer.concat([received[i]!, d])))
    c.on('error', () => {})
    onConnection(c)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const c of sockets) c.destroy()
      }),
  )
  return { port: (server.address() as net.AddressInfo).port, received, connections: () => count }
}

/** A port on 127.0.0.1 nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = net.createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

describe('executor listen mode: tunnels to ports on its loopback', () => {
  for (const transport of ['unix', 'tcp'] as const) {
    it(`pipes bytes both ways over ${transport}, a megabyte and each side's half-close included`, async () => {
      const l = await listen(transport)
      // Greets, echoes upper-cased, and answers the client's end with its own last word.
      const echo = await loopbackServer((c) => {
        c.write('hi\n')
        c.on('data', (d: Buffer) => c.write(d.toString('latin1').toUpperCase(), 'latin1'))
        c.on('end', () => c.end('bye'))
      })
      const t = await tunnel(l, echo.port)
      assert.equal(t.status, 0)
      const big = Buffer.alloc(1 << 20, 'a')
      t.socket.end(Buffer.concat([Buffer.from('hello '), big]))
      const rest = await within(t.rest, 20_000, 'the echo did not end')
      assert.equal(rest.length, 3 + 6 + big.length + 3)
      assert.equal(rest.subarray(0, 9).toString(), 'hi\nHELLO ')
      assert.ok(rest.subarray(9, 9 + big.length).equals(Buffer.alloc(1 << 20, 'A')))
      assert.equal(rest.subarray(-3).toString(), 'bye')
      // The server ends first: what the client writes after that still reaches it.
      const first = await loopbackServer((c) => c.end('only this'))
      const u = await tunnel(l, first.port)
      assert.equal(u.status, 0)
      assert.equal((await within(u.rest, 10_000, 'the server’s end did not come through')).toString(), 'only this')
      u.socket.end('late words')
      await within(once(u.socket, 'close'), 10_000, 'the tunnel did not close')
      for (let i = 0; first.received[0]!.length < 10 && i < 100; i++) await delay(20)
      assert.equal(first.received[0]!.toString(), 'late words')
      // The channel is not disturbed.
      assert.equal((await (await host(l)).client.call('ping', {})).pid, l.child.pid)
    })
  }

  it('answers 1 and closes when nothing listens on the port', async () => {
    const l = await listen('tcp')
    const t = await tunnel(l, await closedPort())
    assert.equal(t.status, 1)
    assert.equal((await within(t.rest, 5000, 'the tunnel stayed open')).length, 0)
  })

  it('closes without a byte, reaching no port, unless the auth frame has the token and a port from 1 to 65535', async () => {
    const l = await listen('unix')
    const target = await loopbackServer(() => {})
    const p = target.port
    const cases: [string, Buffer][] = [
      ['a wrong token', authFrame({ op: 'auth', token: TOKEN.slice(0, -1) + 'x', tunnel: p })],
      ['no token', authFrame({ op: 'auth', tunnel: p })],
      ['a tunnel op instead of auth', authFrame({ op: 'tunnel', port: p })],
      ['a tunnel op with the token', authFrame({ op: 'tunnel', token: TOKEN, port: p })],
      ['port 0', authFrame({ op: 'auth', token: TOKEN, tunnel: 0 })],
      ['port 65536', authFrame({ op: 'auth', token: TOKEN, tunnel: 65536 })],
      ['a port as a string', authFrame({ op: 'auth', token: TOKEN, tunnel: String(p) })],
      ['a fractional port', authFrame({ op: 'auth', token: TOKEN, tunnel: p + 0.5 })],
      ['true as the port', authFrame({ op: 'auth', token: TOKEN, tunnel: true })],
      ['null as the port', authFrame({ op: 'auth', token: TOKEN, tunnel: null })],
      ['a host and port', authFrame({ op: 'auth', token: TOKEN, tunnel: { host: '127.0.0.1', port: p } })],
    ]
    for (const [what, frame] of cases) {
      const t = await tunnel(l, p, frame)
      assert.equal(t.status, undefined, `${what}: the executor answered ${t.status}`)
    }
    assert.equal(target.connections(), 0, 'a refused tunnel reached the port')
    assert.ok(alive(l))
    assert.equal((await tunnel(l, p)).status, 0)
    await within(
      (async () => {
        while (target.connections() === 0) await delay(10)
      })(),
      5000,
      'the tunnel did not reach the port',
    )
  })

  it('holds at most the relay’s connections (from RLIMIT_NOFILE), answering 2 past them, beside 16 hosts', async () => {
    // nofile=90: the relay's budget is (90 - 48) / 2 = 21 connections, more than the 16 hosts.
    const l = await listen('tcp', { CODEBOX_RLIMITS: 'nofile=90' })
    const echo = await loopbackServer((c) => c.on('data', (d: Buffer) => c.write(d)).on('end', () => c.end()))
    const open: Tunnel[] = []
    for (let i = 0; i < 21; i++) {
      const t = await tunnel(l, echo.port)
      assert.equal(t.status, 0, `tunnel ${i + 1}`)
      open.push(t)
    }
    const refused = await tunnel(l, echo.port)
    assert.equal(refused.status, 2)
    assert.equal((await within(refused.rest, 5000, 'the refused tunnel stayed open')).length, 0)
    // Tunnels take none of the 16 connection slots: 16 hosts are served beside them.
    const hosts = await Promise.all(Array.from({ length: 16 }, () => host(l)))
    assert.ok((await Promise.all(hosts.map((h) => h.client.call('ping', {})))).every((p) => p.pid === l.child.pid))
    // Every tunnel still carries bytes; one ends and a new one is let in.
    const echoed = once(open[20]!.socket, 'data')
    open[20]!.socket.write('x')
    assert.equal(String((await within(echoed, 5000, 'no echo'))[0]), 'x')
    // A tunnel being authenticated takes a slot as any connection does: let the hosts go first.
    for (const h of hosts) h.socket.destroy()
    open[0]!.socket.destroy()
    let again: number | undefined
    for (let i = 0; i < 50 && again !== 0; i++) {
      if (i > 0) await delay(50)
      const t = await tunnel(l, echo.port)
      again = t.status
      if (again !== 0) t.socket.destroy()
    }
    assert.equal(again, 0, 'no tunnel was let in after one of them closed')
  })
})
