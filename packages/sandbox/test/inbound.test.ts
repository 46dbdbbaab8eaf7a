/**
 * Hosted servers in sessions: code mounted read-only (`code`), a server started as a background
 * task with its env and logs, and real HTTP requests to it through session.openPort (the
 * executor's inbound relay on bwrap and gVisor; plain loopback on the fake driver).
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { chmodSync, existsSync, lstatSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { Duplex } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { CODE_DIR, CodeboxError, defaultLimits } from '@codebox/core'
import { FakeDriver, SessionManager, type Session } from '@codebox/sandbox'
import { GVISOR_PORTS_DIR, ociSpec, type BundleOptions } from '../src/drivers/gvisor/bundle.ts'
import { bwrapDriver, bwrapUnavailable } from './fixtures.ts'
import { gvisorCodeUnavailable, gvisorDriver, gvisorUnavailable } from './gvisor-fixtures.ts'

/** A tiny stdlib server: GET answers with NAME, POST echoes its body; logs each request to stderr. */
const SERVER = `
import http.server, os, sys
NAME = os.environ.get("NAME", "?")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("hello from %s" % NAME).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers["Content-Length"])
        data = self.rfile.read(n)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
print("listening on", os.environ["PORT"], flush=True)
srv.serve_forever()
`

/** A bundle directory as the registry would extract it: root-owned, 0755/0644. */
function makeBundle(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'codebox-inbound-bundle-'))
  writeFileSync(path.join(dir, 'server.py'), SERVER, { mode: 0o644 })
  chmodSync(path.join(dir, 'server.py'), 0o644)
  chmodSync(dir, 0o755)
  return dir
}

interface Reply {
  status: number
  body: Buffer
}

/** One HTTP request to `port` in the session, over the stream openPort gives. */
function request(session: Session, port: number, options: { method?: string; body?: Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        method: options.method ?? 'GET',
        path: '/',
        headers: options.body ? { 'content-length': options.body.length } : {},
        createConnection: (_opts: unknown, cb: (err: Error | null, s?: Duplex) => void) => {
          session.openPort(port).then((s) => cb(null, s), cb)
          return undefined
        },
      } as http.RequestOptions,
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(options.body)
  })
}

/** Starts the bundle's server as a task and waits until it answers. */
async function startServer(session: Session, env: Record<string, string>, codeDir: string): Promise<string> {
  const started = await session.tasks.start(`exec python3 -u "${codeDir}/server.py"`, { env })
  const taskId = started.structuredContent.taskId
  assert.ok(taskId, JSON.stringify(started.structuredContent))
  const port = Number(env.PORT)
  for (let i = 0; ; i++) {
    try {
      await request(session, port)
      return taskId
    } catch (e) {
      if (i > 200 || !(e instanceof CodeboxError && e.details.reason === 'refused')) throw e
      await delay(50)
    }
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex')

async function refusedFast(session: Session, port: number): Promise<void> {
  const t0 = performance.now()
  await assert.rejects(session.openPort(port), (e: unknown) => {
    assert.ok(e instanceof CodeboxError, String(e))
    assert.equal(e.code, 'Unavailable')
    assert.match(e.message, new RegExp(`nothing listens on port ${port} in the sandbox`))
    return true
  })
  const took = performance.now() - t0
  assert.ok(took < 3000, `the refusal took ${took.toFixed(0)} ms`)
}

/**
 * The relay's tests every driver passes, for the `describe` of one: two sessions (`sessions()`,
 * set by its `before`) each serving SERVER on 8080 as NAME a and b; `requests` at once to both.
 */
function relayTests(sessions: () => [Session, Session], skip: string | false | undefined, requests: number): void {
  test('a request reaches the server in the sandbox, and each session answers its own', { skip }, async () => {
    const [a, b] = sessions()
    assert.deepEqual(await request(a, 8080).then((r) => [r.status, r.body.toString()]), [200, 'hello from a'])
    assert.deepEqual(await request(b, 8080).then((r) => [r.status, r.body.toString()]), [200, 'hello from b'])
  })

  test('a port nothing listens on fails fast and clearly', { skip }, async () => {
    const [a] = sessions()
    await refusedFast(a, 9000)
    await assert.rejects(a.openPort(0), { code: 'ValidationError' })
    await assert.rejects(a.openPort(70000), { code: 'ValidationError' })
  })

  test(`${requests} concurrent requests and a 5 MiB body pass intact`, { skip }, async () => {
    const [a, b] = sessions()
    const replies = await Promise.all(Array.from({ length: requests }, (_, i) => request(i % 2 ? a : b, 8080)))
    assert.deepEqual(new Set(replies.map((r) => r.body.toString())), new Set(['hello from a', 'hello from b']))
    const body = randomBytes(5 * 1024 * 1024)
    const echoed = await request(a, 8080, { method: 'POST', body })
    assert.equal(echoed.status, 200)
    assert.equal(echoed.body.length, body.length)
    assert.equal(sha(echoed.body), sha(body))
  })
}

describe('inbound: bwrap', async () => {
  const skip = await bwrapUnavailable()
  let manager: SessionManager
  let bundle: string
  let a: Session
  let b: Session

  before(async () => {
    if (skip) return
    bundle = makeBundle()
    manager = new SessionManager({ driver: await bwrapDriver(), poolSize: 0 })
    ;[a, b] = await Promise.all([manager.start({ code: { hostPath: bundle }, preload: [] }), manager.start({ code: { hostPath: bundle }, preload: [] })])
    await Promise.all([startServer(a, { PORT: '8080', NAME: 'a' }, '/app'), startServer(b, { PORT: '8080', NAME: 'b' }, '/app')])
  })
  after(async () => {
    await manager?.close()
    if (bundle) rmSync(bundle, { recursive: true, force: true })
  })

  relayTests(() => [a, b], skip, 40)

  test('the code is read-only at /app, readable, and its host path is not in mountinfo', { skip }, async () => {
    const r = await a.commands.run('cat /app/server.py | head -c 40; touch /app/x 2>&1; echo "$CODEBOX_CODE_DIR"; id -u')
    assert.match(r.structuredContent.stdout, /^\nimport http\.server, os, sys/)
    assert.match(r.structuredContent.stdout, /Read-only file system/)
    assert.match(r.structuredContent.stdout, /\n\/app\n1000\n$/)
    const mountinfo = (await a.commands.run('cat /proc/self/mountinfo')).structuredContent.stdout
    assert.match(mountinfo, / \/app /)
    assert.ok(!mountinfo.includes(bundle) && !mountinfo.includes(path.basename(bundle)), mountinfo)
    const app = mountinfo.split('\n').find((l) => / \/app /.test(l))!
    assert.match(app, /\bro\b/)
    assert.match(app, /nosuid/)
    assert.match(app, /nodev/)
  })

  test('the relay survives a client that disconnects mid-body', { skip }, async () => {
    for (let i = 0; i < 3; i++) {
      const s = await a.openPort(8080)
      s.write(`POST / HTTP/1.1\r\nHost: x\r\nContent-Length: ${10 * 1024 * 1024}\r\n\r\n`)
      s.write(randomBytes(1024 * 1024))
      await delay(50)
      s.destroy()
    }
    assert.equal((await request(a, 8080)).body.toString(), 'hello from a')
  })

  test('the server is a task whose logs are read from offsets on', { skip }, async () => {
    const first = await a.tasks.read('task-1')
    assert.equal(first.status, 'working')
    assert.match(first.stdout, /^listening on 8080\n/)
    assert.equal(first.stdoutOffset, first.stdoutEnd)
    const before = first.stderrOffset
    await request(a, 8080)
    const next = await a.tasks.read('task-1', { stdoutOffset: first.stdoutOffset, stderrOffset: before })
    assert.equal(next.stdout, '')
    assert.match(next.stderr, /"GET \/ HTTP\/1\.1" 200/)
    assert.equal(next.stderrDropped, 0)
    assert.equal(next.stderrOffset, before + Buffer.byteLength(next.stderr))
  })

  test('a relay socket swapped for a symlink to a host socket never leads the host there', { skip }, async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'codebox-inbound-host-'))
    const hostSocket = path.join(dir, 'host.sock')
    let reached = 0
    const conns: net.Socket[] = []
    const server = net.createServer((c) => (reached++, conns.push(c), c.end('\0from the host'))).listen(hostSocket)
    await new Promise((r) => server.once('listening', r))
    try {
      await refusedFast(a, 7001)
      const r = await a.commands.run(`cd /run/codebox/channel && rm port-7001.sock && ln -s ${hostSocket} port-7001.sock && ls -l port-7001.sock`)
      assert.match(r.structuredContent.stdout, /port-7001.sock -> /)
      await refusedFast(a, 7001)
      assert.equal(reached, 0)
    } finally {
      for (const c of conns) c.destroy()
      await new Promise((r) => server.close(r))
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('a session re-adopted by a new manager reaches its server again', { skip }, async () => {
    const driver = await bwrapDriver()
    const first = new SessionManager({ driver, poolSize: 0 })
    const s = await first.start({ code: { hostPath: bundle }, preload: [] })
    const record = { sessionId: s.id, sandboxId: s.sandboxId, limits: { ...s.limits }, createdAt: s.createdAt }
    await startServer(s, { PORT: '8080', NAME: 'kept' }, '/app')
    await first.close({ detach: true })
    const second = new SessionManager({ driver: await bwrapDriver(), poolSize: 0 })
    try {
      const outcome = await second.adopt([record])
      assert.deepEqual(outcome.failed, [])
      const again = outcome.adopted[0]!
      assert.equal((await request(again, 8080)).body.toString(), 'hello from kept')
    } finally {
      await second.close()
    }
  })

  test('a session that ended refuses openPort with SessionTerminated', { skip }, async () => {
    const s = await manager.start({ preload: [] })
    await s.stop()
    await assert.rejects(s.openPort(8080), { code: 'SessionTerminated' })
  })
})

describe('inbound: gVisor', async () => {
  const skip = (await gvisorUnavailable()) ?? false
  const codeSkip = (await gvisorCodeUnavailable()) ?? false
  let manager: SessionManager
  let a: Session
  let b: Session
  let host: { dir: string; socket: string; server: net.Server; reached: () => number } | undefined

  before(async () => {
    if (skip) return
    manager = new SessionManager({ driver: await gvisorDriver(), poolSize: 0 })
    ;[a, b] = await Promise.all([manager.start({ preload: [] }), manager.start({ preload: [] })])
    // The images built before /app existed cannot take code under gVisor: the server is a workspace file.
    await Promise.all([a.files.write('server.py', SERVER), b.files.write('server.py', SERVER)])
    await Promise.all([startServer(a, { PORT: '8080', NAME: 'a' }, '/workspace'), startServer(b, { PORT: '8080', NAME: 'b' }, '/workspace')])
  })
  after(async () => {
    await manager?.close()
    if (host) {
      await new Promise((r) => host!.server.close(r))
      rmSync(host.dir, { recursive: true, force: true })
    }
  })

  /** A unix socket on the host, outside every sandbox, counting who reaches it. */
  async function hostSocket(): Promise<{ dir: string; socket: string; server: net.Server; reached: () => number }> {
    const dir = mkdtempSync(path.join(tmpdir(), 'codebox-inbound-host-'))
    const socket = path.join(dir, 'host.sock')
    let n = 0
    const server = net.createServer((c) => (n++, c.end('\0from the host'))).listen(socket)
    await new Promise((r) => server.once('listening', r))
    return { dir, socket, server, reached: () => n }
  }

  relayTests(() => [a, b], skip, 20)

  /** Runs a Python probe in `session` that prints one JSON line: what `ops` (name -> expression) gave, or the errno name they failed with. */
  async function tryOps(session: Session, setup: string, ops: Record<string, string>): Promise<Record<string, unknown>> {
    const lines = Object.entries(ops).map(
      ([k, v]) => `try:\n    out[${JSON.stringify(k)}] = ${v}\nexcept OSError as e:\n    out[${JSON.stringify(k)}] = errno.errorcode[e.errno]`,
    )
    const code = `import errno, json, os, socket\n${setup}\nout = {}\n${lines.join('\n')}\nprint(json.dumps(out))`
    const r = await session.runCode({ code, language: 'python' })
    assert.equal(r.structuredContent.exitCode, 0, r.structuredContent.stderr)
    return JSON.parse(r.structuredContent.stdout) as Record<string, unknown>
  }

  test('the ports directory is the only writable host-backed place, small, and shows no host path', { skip }, async () => {
    const d = GVISOR_PORTS_DIR
    const bindable = `def bindable(p):\n    try:\n        socket.socket(socket.AF_UNIX).bind(p)\n        return "bound"\n    except OSError as e:\n        return errno.errorcode[e.errno]`
    const out = await tryOps(a, `d = ${JSON.stringify(d)}\n${bindable}`, {
      relay: '"port-8080.sock" in os.listdir(d)',
      mode: '[oct(os.stat(d).st_mode & 0o777), os.stat(d).st_uid]',
      run: 'open("/run/x", "w").close()',
      runCodebox: 'open("/run/codebox/x", "w").close()',
      mnt: 'open("/mnt/x", "w").close()',
      // --host-uds=create: a socket bound in a host-backed mount becomes a host socket; nowhere but here.
      sockets: '[bindable(p) for p in ["/x.sock", "/run/x.sock", "/run/codebox/x.sock", "/mnt/x.sock", "/opt/codebox/x.sock", "/usr/x.sock"]]',
      big: 'open(d + "/big", "wb").write(b"x" * 2**20)',
      many: '[open(d + "/f%d" % i, "w").close() for i in range(100)]',
      env: 'os.environ.get("CODEBOX_PORTS_DIR")',
      cleanup: '[os.unlink(d + "/" + n) for n in os.listdir(d) if not n.startswith("port-")] and None',
    })
    assert.deepEqual(out, {
      relay: true,
      mode: ['0o700', 1000],
      run: 'EACCES',
      runCodebox: 'EACCES',
      mnt: 'EACCES',
      sockets: ['EROFS', 'EROFS', 'EROFS', 'EROFS', 'EROFS', 'EROFS'],
      big: 'ENOSPC',
      many: 'ENOSPC',
      env: null,
      cleanup: null,
    })
    const mountinfo = (await a.commands.run('cat /proc/self/mountinfo')).structuredContent.stdout
    assert.match(mountinfo, / \/run\/codebox\/ports rw,/)
    assert.ok(!mountinfo.includes('/gvisor/bundles') && !mountinfo.includes(a.sandboxId), mountinfo)
  })

  test("the relay's socket cannot be swapped, and a symlink planted under a port's name never leads the host out", { skip }, async () => {
    host = await hostSocket()
    const hostDir = path.join('/run/codebox/gvisor/bundles', a.sandboxId, 'ports')
    // Before the port is opened: a symlink under its name, which the relay replaces with its socket.
    await a.commands.run(`ln -s ${host.socket} ${GVISOR_PORTS_DIR}/port-7001.sock`)
    await refusedFast(a, 7001)
    assert.ok(lstatSync(path.join(hostDir, 'port-7001.sock')).isSocket())
    // Once bound, gVisor lets nothing in the sandbox remove, rename, overwrite or rebind it.
    const out = await tryOps(a, `p = ${JSON.stringify(`${GVISOR_PORTS_DIR}/port-7001.sock`)}\nos.symlink(${JSON.stringify(host.socket)}, p + ".l")`, {
      unlink: 'os.unlink(p)',
      rename: 'os.rename(p, p + ".moved")',
      over: 'os.rename(p + ".l", p)',
      rebind: 'socket.socket(socket.AF_UNIX).bind(p)',
    })
    assert.deepEqual(out, { unlink: 'EPERM', rename: 'EPERM', over: 'EPERM', rebind: 'EPERM' })
    assert.ok(lstatSync(path.join(hostDir, 'port-7001.sock')).isSocket())
    await refusedFast(a, 7001)
    assert.equal(host.reached(), 0)
  })

  test("a port's name taken by the session's own socket is refused clearly", { skip }, async () => {
    const r = await a.commands.run(`python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("${GVISOR_PORTS_DIR}/port-7002.sock"); print("bound")'`)
    assert.equal(r.structuredContent.stdout, 'bound\n', r.structuredContent.stderr)
    await assert.rejects(a.openPort(7002), { code: 'Unavailable', message: /^port 7002: the inbound relay cannot listen at port-7002\.sock/ })
  })

  test('a server started from code at /app answers (a hosted agent’s layout)', { skip: codeSkip }, async () => {
    const bundle = makeBundle()
    const s = await manager.start({ code: { hostPath: bundle }, preload: [] })
    try {
      await startServer(s, { PORT: '8080', NAME: 'app' }, '/app')
      assert.deepEqual(await request(s, 8080).then((r) => [r.status, r.body.toString()]), [200, 'hello from app'])
    } finally {
      await s.stop()
      rmSync(bundle, { recursive: true, force: true })
    }
  })

  test('a session that ended refuses openPort with SessionTerminated, and its ports tmpfs is gone', { skip }, async () => {
    const s = await manager.start({ preload: [] })
    await s.commands.run('true')
    const bundle = path.join('/run/codebox/gvisor/bundles', s.sandboxId)
    assert.ok(readFileSync('/proc/self/mountinfo', 'utf8').includes(path.join(bundle, 'ports')))
    await s.stop()
    await assert.rejects(s.openPort(8080), { code: 'SessionTerminated' })
    assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(bundle))
    assert.equal(existsSync(bundle), false)
  })
})

describe('inbound: fake driver', () => {
  let manager: SessionManager
  let bundle: string
  let session: Session
  let port = 0

  before(async () => {
    bundle = makeBundle()
    manager = new SessionManager({ driver: new FakeDriver(), poolSize: 0 })
    session = await manager.start({ code: { hostPath: bundle }, preload: [] })
    // The fake "sandbox" is the host: a free loopback port of the host.
    const probe = net.createServer().listen(0, '127.0.0.1')
    await new Promise((r) => probe.once('listening', r))
    port = (probe.address() as net.AddressInfo).port
    await new Promise((r) => probe.close(r))
    await startServer(session, { PORT: String(port), NAME: 'fake' }, bundle)
  })
  after(async () => {
    await manager?.close()
    rmSync(bundle, { recursive: true, force: true })
  })

  test('CODEBOX_CODE_DIR names the code, and a request reaches the server', async () => {
    assert.equal((await session.commands.run('echo "$CODEBOX_CODE_DIR"')).structuredContent.stdout, `${bundle}\n`)
    assert.equal((await request(session, port)).body.toString(), 'hello from fake')
    const body = randomBytes(1024 * 1024)
    assert.equal(sha((await request(session, port, { method: 'POST', body })).body), sha(body))
  })

  test('a closed port fails fast and clearly', async () => {
    const probe = net.createServer().listen(0, '127.0.0.1')
    await new Promise((r) => probe.once('listening', r))
    const closed = (probe.address() as net.AddressInfo).port
    await new Promise((r) => probe.close(r))
    await refusedFast(session, closed)
  })

  test('a bad code mount is refused naming the field', async () => {
    await assert.rejects(manager.start({ code: { hostPath: 'relative/dir' } }), {
      code: 'ValidationError',
      message: /^code\.hostPath: must be an absolute path/,
    })
    await assert.rejects(manager.start({ code: { hostPath: path.join(bundle, 'missing') } }), { code: 'ValidationError', message: /^code\.hostPath: .*ENOENT/ })
    await assert.rejects(manager.start({ code: { hostPath: path.join(bundle, 'server.py') } }), { code: 'ValidationError', message: /is not a directory$/ })
  })

  test('task env, cwd and bounded output that keeps the last bytes', async () => {
    await assert.rejects(session.tasks.start('true', { env: { 'BAD-NAME': 'x' } }), {
      code: 'ValidationError',
      message: /^env: "BAD-NAME" is not a variable name/,
    })
    await assert.rejects(session.tasks.start('true', { cwd: '' }), { code: 'ValidationError', message: /^cwd: must be a path in the sandbox/ })
    // A relative cwd is in the workspace.
    await assert.rejects(session.tasks.start('true', { cwd: 'no-such-dir' }), { code: 'ValidationError', message: /^cwd: .*\/no-such-dir' is not a directory/ })
    const t = await session.tasks.start('echo "$GREETING"; pwd; python3 -c "import sys; sys.stdout.write(\'x\' * 3000000 + \'END\')"', {
      env: { GREETING: 'hi there' },
      cwd: bundle,
    })
    const id = t.structuredContent.taskId!
    let out = await session.tasks.read(id)
    for (let i = 0; out.status === 'working' && i < 200; i++) {
      await delay(50)
      out = await session.tasks.read(id)
    }
    assert.equal(out.status, 'completed')
    // 1 MiB of output is kept (the session's outputBytes): the last bytes, the rest counted as dropped.
    assert.ok(out.stdout.endsWith('END'))
    assert.equal(out.stdoutEnd, 'hi there\n'.length + bundle.length + 1 + 3_000_003)
    assert.equal(out.stdoutDropped + Buffer.byteLength(out.stdout), out.stdoutEnd)
    assert.ok(out.stdoutDropped > 0)
    const whole = await session.tasks.get(id)
    assert.deepEqual(whole.structuredContent.limitsExceeded, ['OUTPUT_TRUNCATED'])
  })
})

describe('inbound: gVisor bundle', () => {
  /** The OCI spec of a sandbox without egress or cgroups, with `extra` options (code, ports). */
  const specWith = (extra: Partial<BundleOptions>): Record<string, unknown> =>
    ociSpec({ imagePath: '/img', runtimePath: '/rt', limits: { ...defaultLimits }, egressDir: undefined, cgroupsPath: undefined, ...extra })

  test('code is an OCI bind mount at /app, read-only, nosuid, nodev, named in the environment', () => {
    const spec = specWith({ codePath: '/bundles/b1' })
    const mounts = spec.mounts as { destination: string; type: string; source: string; options: string[] }[]
    assert.deepEqual(
      mounts.find((m) => m.destination === CODE_DIR),
      { destination: '/app', type: 'bind', source: '/bundles/b1', options: ['rbind', 'ro', 'nosuid', 'nodev'] },
    )
    assert.ok((spec.process as { env: string[] }).env.includes('CODEBOX_CODE_DIR=/app'))
    const without = specWith({})
    assert.ok(!(without.mounts as { destination: string }[]).some((m) => m.destination === CODE_DIR))
  })

  test('the ports directory is a writable bind at /run/codebox/ports, under a read-only /run, named in the environment', () => {
    const spec = specWith({ ports: { runDir: '/b/run', portsDir: '/b/ports' } })
    const mounts = spec.mounts as { destination: string; type: string; source: string; options: string[] }[]
    const run = mounts.findIndex((m) => m.destination === '/run')
    const ports = mounts.findIndex((m) => m.destination === GVISOR_PORTS_DIR)
    assert.ok(run >= 0 && ports > run, 'the ports mount comes after /run')
    assert.deepEqual(mounts[run], { destination: '/run', type: 'bind', source: '/b/run', options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] })
    assert.deepEqual(mounts[ports], { destination: '/run/codebox/ports', type: 'bind', source: '/b/ports', options: ['rbind', 'nosuid', 'nodev', 'noexec'] })
    assert.ok((spec.process as { env: string[] }).env.includes('CODEBOX_PORTS_DIR=/run/codebox/ports'))
    const without = specWith({})
    assert.ok(!(without.mounts as { destination: string }[]).some((m) => m.destination === '/run' || m.destination === GVISOR_PORTS_DIR))
    assert.ok(!(without.process as { env: string[] }).env.some((e) => e.startsWith('CODEBOX_PORTS_DIR=')))
  })
})
