/**
 * E2B envd's Connect services (apis/e2b/envd-connect.ts) driven by the unmodified `e2b` SDK
 * against a real bwrap session.
 *
 * The app here is the test's own, not codebox's server: it registers envdConnectRoutes under
 * `/e2b/envd` and adds two things the E2B front door (apis/e2b, app.ts) does for real: a tiny
 * rewrite of requests with `E2b-Sandbox-Port: 49983` onto that prefix, and a minimal
 * control-plane stub (`POST /v2/sandboxes` answering with the session's id, an access token and
 * the envd version) so the SDK can make a Sandbox object. Neither is in src. sandboxOf checks the
 * `E2b-Sandbox-Id` and `X-Access-Token` headers against that one session.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { test } from 'node:test'
import Fastify, { type FastifyInstance } from 'fastify'
import { fromBinary, type MessageInitShape } from '@bufbuild/protobuf'
import { FileDescriptorProtoSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt'
import { Code, ConnectError, createClient, type Transport } from '@connectrpc/connect'
import { createConnectTransport } from '@connectrpc/connect-node'
import { CommandExitError, FileNotFoundError, RateLimitError, Sandbox, SandboxError, TimeoutError, type FilesystemEvent } from 'e2b'
import { CodeboxError } from '@codebox/core'
import { SessionManager, type Session } from '@codebox/sandbox'
import { bwrapDriver, bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import type { E2bDeps } from '../src/apis/e2b/deps.ts'
import { checkUser, endEvent, envdConnectRoutes, goPermissions, keepaliveMs, toSandboxPath } from '../src/apis/e2b/envd-connect.ts'
import { EventType, file_filesystem_filesystem, Filesystem } from '../src/apis/e2b/proto/filesystem/filesystem_pb.ts'
import { file_process_process, Process, type StreamInputRequestSchema } from '../src/apis/e2b/proto/process/process_pb.ts'
import { captureLogger, waitUntil, type LogRecord } from './fixtures.ts'

/** The envd version the stub control plane advertises: closeStdin (0.5.2), watch entries (0.6.3), network mounts (0.6.4). */
const ENVD_VERSION = '0.6.4'

test('our .proto files describe the same services, messages, fields and numbers as the e2b SDK’s own descriptors', () => {
  const sdk = readFileSync(path.join(path.dirname(createRequire(import.meta.url).resolve('e2b')), 'index.mjs'), 'utf8')
  const theirs = [...sdk.matchAll(/fileDesc\("([A-Za-z0-9+/=]+)"/g)].map((m) => fromBinary(FileDescriptorProtoSchema, Buffer.from(m[1]!, 'base64')))
  type Msg = FileDescriptorProto['messageType'][number]
  const message = (d: Msg): unknown => [
    d.name,
    d.field.map((f) => [f.name, f.number, f.type, f.label, f.typeName, f.proto3Optional, f.oneofIndex]),
    d.nestedType.map(message),
    d.oneofDecl.map((o) => o.name),
  ]
  const shape = (f: FileDescriptorProto): unknown => ({
    package: f.package,
    enums: f.enumType.map((e) => [e.name, e.value.map((v) => [v.name, v.number])]),
    messages: f.messageType.map(message),
    services: f.service.map((s) => [s.name, s.method.map((m) => [m.name, m.inputType, m.outputType, m.clientStreaming, m.serverStreaming])]),
  })
  for (const ours of [file_process_process.proto, file_filesystem_filesystem.proto]) {
    const sdkFile = theirs.find((f) => f.package === ours.package)
    assert.ok(sdkFile, `the SDK has a descriptor of package ${ours.package}`)
    assert.deepEqual(shape(ours), shape(sdkFile))
  }
})

test('paths, users, permissions, ends and keepalives map as envd has them', () => {
  assert.deepEqual(toSandboxPath('/home/user', 'path'), { path: '', root: '/home/user' })
  assert.deepEqual(toSandboxPath('/home/user/a/b', 'path'), { path: 'a/b', root: '/home/user' })
  assert.deepEqual(toSandboxPath('~/a', 'path'), { path: 'a', root: '/home/user' })
  assert.deepEqual(toSandboxPath('a', 'path'), { path: 'a', root: '/home/user' })
  assert.deepEqual(toSandboxPath('/workspace/a', 'path'), { path: '/workspace/a', root: '/workspace' })
  assert.deepEqual(toSandboxPath('/home/username', 'path'), { path: '/home/username', root: '/home/user' }, 'not the home, passed on for the engine to refuse')
  assert.throws(
    () => toSandboxPath('a\0b', 'path'),
    (e: ConnectError) => e.code === Code.InvalidArgument,
  )

  assert.equal(goPermissions('lrwxrwxrwx'), 'Lrwxrwxrwx')
  assert.equal(goPermissions('drwxr-xr-x'), 'drwxr-xr-x')
  assert.equal(goPermissions('-rw-r--r--'), '-rw-r--r--')

  const headers = (v?: string): { requestHeader: Headers } => ({ requestHeader: new Headers(v === undefined ? {} : { authorization: v }) })
  const basic = (user: string): string => `Basic ${Buffer.from(`${user}:`).toString('base64')}`
  checkUser(headers())
  checkUser(headers(basic('user')))
  assert.throws(
    () => checkUser(headers(basic('root'))),
    (e: ConnectError) => e.code === Code.PermissionDenied && /root/.test(e.rawMessage),
  )
  assert.throws(
    () => checkUser(headers(basic('alice'))),
    (e: ConnectError) => e.code === Code.InvalidArgument && /alice/.test(e.rawMessage),
  )
  assert.throws(
    () => checkUser(headers('Bearer x')),
    (e: ConnectError) => e.code === Code.InvalidArgument,
  )

  const end = { taskId: 'task-1', pid: 7, status: 'completed', truncated: false } as const
  assert.deepEqual(endEvent({ ...end, exitCode: 0, signal: null }), { exitCode: 0, exited: true, status: 'exit status 0' })
  assert.deepEqual(endEvent({ ...end, status: 'failed', exitCode: 3, signal: null }), {
    exitCode: 3,
    exited: true,
    status: 'exit status 3',
    error: 'exit status 3',
  })
  assert.deepEqual(endEvent({ ...end, status: 'failed', exitCode: 137, signal: 'SIGKILL' }), {
    exitCode: -1,
    exited: false,
    status: 'signal: killed',
    error: 'signal: killed',
  })

  assert.equal(keepaliveMs('50'), 50_000)
  assert.equal(keepaliveMs(null), 50_000)
  assert.equal(keepaliveMs('0.001'), 1_000, 'at least a second')
  assert.equal(keepaliveMs('1e9'), 600_000, 'at most ten minutes')
  assert.equal(keepaliveMs('soon'), 50_000)
})

test('errors: codebox errors keep their meaning as Connect codes; anything else is internal to the client and logged on the server', async (t) => {
  const logs: LogRecord[] = []
  let failure: Error = new CodeboxError('Unauthorized', 'bad access token')
  const app = Fastify({ loggerInstance: captureLogger(logs) })
  const deps: E2bDeps = {
    sessions: undefined as unknown as E2bDeps['sessions'],
    sandboxOf: () => Promise.reject(failure),
  }
  await app.register(async (scope) => envdConnectRoutes(scope, deps), { prefix: '/e2b/envd' })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => app.close())
  const baseUrl = `http://127.0.0.1:${(app.server.address() as { port: number }).port}/e2b/envd`
  const client = createClient(Process, createConnectTransport({ baseUrl, httpVersion: '1.1' }))
  await assert.rejects(client.list({}), (e: unknown) => e instanceof ConnectError && e.code === Code.Unauthenticated && e.rawMessage === 'bad access token')
  failure = new CodeboxError('SessionTerminated', 'the session has ended')
  const stream = client.connect({ process: { selector: { case: 'pid', value: 1 } } })
  await assert.rejects(
    (async () => {
      for await (const _ of stream) assert.fail('no event')
    })(),
    (e: unknown) => e instanceof ConnectError && e.code === Code.Unavailable,
  )
  failure = new Error('a bug with a secret detail')
  await assert.rejects(
    client.list({}),
    (e: unknown) => e instanceof ConnectError && e.code === Code.Internal && !e.rawMessage.includes('secret') && /server log/.test(e.rawMessage),
  )
  const logged = logs.find((l) => l.msg === 'envd rpc failed')
  assert.ok(logged, 'the failure is logged')
  assert.equal((logged.err as { message: string }).message, 'a bug with a secret detail')
})

const skip = await bwrapUnavailable()

test('the e2b SDK runs commands and works with files through envd’s Connect services on a bwrap session', { skip, timeout: 240_000 }, async (t) => {
  const manager = new SessionManager({ driver: await bwrapDriver(), poolSize: 0 })
  t.after(() => manager.close())
  const session: Session = await manager.start()
  const accessToken = 'envd-token-for-the-test'
  const deps: E2bDeps = {
    // The routes under test never use the session service; sandboxOf hands them the session.
    sessions: undefined as unknown as E2bDeps['sessions'],
    async sandboxOf(request) {
      if (request.headers['e2b-sandbox-id'] !== session.id) throw new CodeboxError('NotFound', 'no such sandbox')
      if (request.headers['x-access-token'] !== accessToken) throw new CodeboxError('Unauthorized', 'bad access token')
      return { caller: { tenant: 'default' }, sessionId: session.id, session, envs: async () => ({}) }
    },
  }
  const app: FastifyInstance = Fastify({
    // As app.ts: close drops the SDK's kept-alive connections.
    forceCloseConnections: true,
    // What app.ts does for the E2B front door: envd's requests onto the internal prefix.
    rewriteUrl: (req) => (req.headers['e2b-sandbox-port'] === '49983' ? `/e2b/envd${req.url ?? '/'}` : (req.url ?? '/')),
  })
  // The control-plane stub (test only): Sandbox.create gets this session.
  app.post('/v2/sandboxes', async (_request, reply) =>
    reply.code(201).send({ sandboxID: session.id, templateID: 'codebox', clientID: 'codebox', envdVersion: ENVD_VERSION, envdAccessToken: accessToken }),
  )
  await app.register(async (scope) => envdConnectRoutes(scope, deps), { prefix: '/e2b/envd' })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => app.close())
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const sbx = await Sandbox.create({ apiKey: 'e2b_test', apiUrl: url, sandboxUrl: url })
  assert.equal(sbx.sandboxId, session.id)

  /** A Connect client of our own (binary codec) with the headers the SDK sends, for what the JS SDK does not call. */
  const transport = (id: string): Transport =>
    createConnectTransport({
      baseUrl: url,
      httpVersion: '1.1',
      interceptors: [
        (next) => (req) => {
          req.header.set('E2b-Sandbox-Id', id)
          req.header.set('E2b-Sandbox-Port', '49983')
          req.header.set('X-Access-Token', accessToken)
          req.header.set('Keepalive-Ping-Interval', '1')
          return next(req)
        },
      ],
    })

  await t.test('commands.run: exit codes, stdout and stderr as callbacks and in the result, cwd, envs', async () => {
    const out: string[] = []
    const err: string[] = []
    const ok = await sbx.commands.run('echo one; echo two >&2; echo "$GREETING"; pwd', {
      envs: { GREETING: 'hello' },
      onStdout: (d) => void out.push(d),
      onStderr: (d) => void err.push(d),
    })
    assert.equal(ok.exitCode, 0)
    assert.equal(ok.stdout, 'one\nhello\n/workspace\n')
    assert.equal(ok.stderr, 'two\n')
    assert.equal(out.join(''), ok.stdout)
    assert.equal(err.join(''), 'two\n')

    const failed = await sbx.commands.run('echo partial; exit 3').catch((e: unknown) => e)
    assert.ok(failed instanceof CommandExitError, String(failed))
    assert.equal(failed.exitCode, 3)
    assert.equal(failed.stdout, 'partial\n')
    assert.equal(failed.error, 'exit status 3')

    await sbx.files.makeDir('/home/user/sub')
    assert.equal((await sbx.commands.run('pwd', { cwd: '/home/user/sub' })).stdout, '/workspace/sub\n')
    await assert.rejects(sbx.commands.run('id', { user: 'root' }), (e: unknown) => e instanceof SandboxError && /root.*refused/.test(e.message))
  })

  await t.test('a background command: stdin sent, listed, followed again by connect, then killed', async () => {
    const seen: string[] = []
    const h = await sbx.commands.run('read line; echo "got:$line"; sleep 600', { background: true, stdin: true, onStdout: (d) => void seen.push(d) })
    assert.ok(h.pid > 0)
    await sbx.commands.sendStdin(h.pid, 'hello\n')
    await waitUntil(() => seen.join('').includes('got:hello'), 'the echo of the input')

    const listed = (await sbx.commands.list()).find((p) => p.pid === h.pid)
    assert.ok(listed, 'the command is listed while it runs')
    assert.equal(listed.cmd, '/bin/bash')
    assert.deepEqual(listed.args, ['-l', '-c', 'read line; echo "got:$line"; sleep 600'])
    assert.equal(listed.cwd, '/home/user')

    const ticks = await sbx.commands.run('for i in $(seq 1 300); do echo tick $i; sleep 0.1; done', { background: true })
    await ticks.disconnect()
    const again: string[] = []
    const followed = await sbx.commands.connect(ticks.pid, { onStdout: (d) => void again.push(d) })
    await waitUntil(() => /tick \d+/.test(again.join('')), 'output after connecting again')
    // A stream the client gives up frees its slot (8 per task in the engine): more than 8 in a row work.
    for (let i = 0; i < 10; i++) await (await sbx.commands.connect(ticks.pid)).disconnect()
    assert.equal(await followed.kill(), true)
    await assert.rejects(followed.wait(), (e: unknown) => e instanceof CommandExitError && e.exitCode === -1 && e.error === 'signal: killed')

    assert.equal(await h.kill(), true)
    await assert.rejects(h.wait(), (e: unknown) => e instanceof CommandExitError && e.exitCode === -1)
    assert.equal(await sbx.commands.kill(h.pid), false, 'an ended command is not found')
    assert.ok(!(await sbx.commands.list()).some((p) => p.pid === h.pid || p.pid === ticks.pid))
    await assert.rejects(sbx.commands.connect(h.pid), (e: unknown) => e instanceof Error && /no running process/.test(e.message))
  })

  await t.test('closeStdin ends a reader’s input; a deadline ends the stream, not the process', async () => {
    const h = await sbx.commands.run('cat; echo "eof seen"', { background: true, stdin: true })
    await sbx.commands.sendStdin(h.pid, 'abc')
    await sbx.commands.closeStdin(h.pid)
    const r = await h.wait()
    assert.equal(r.stdout, 'abceof seen\n')

    await assert.rejects(sbx.commands.run('sleep 30', { timeoutMs: 1000 }), (e: unknown) => e instanceof TimeoutError)
    const sleeping = (await sbx.commands.list()).find((p) => p.args.includes('sleep 30'))
    assert.ok(sleeping, 'the process runs on after its stream timed out, as with E2B')
    assert.equal(await sbx.commands.kill(sleeping.pid), true)
  })

  await t.test('keepalives at the asked interval; a foreign sandbox, a missing program, bad PTY requests and a bad signal are refused', async () => {
    const client = createClient(Process, transport(session.id))
    const abort = new AbortController()
    const kinds: string[] = []
    const started = Date.now()
    for await (const r of client.start({ process: { cmd: 'sleep', args: ['600'] }, stdin: false }, { signal: abort.signal })) {
      kinds.push(r.event?.event.case ?? 'none')
      if (kinds.filter((k) => k === 'keepalive').length === 2) break
    }
    assert.equal(kinds[0], 'start')
    assert.deepEqual(kinds.slice(1), ['keepalive', 'keepalive'])
    assert.ok(Date.now() - started >= 1500, 'a keepalive a second, not faster')
    const sleeping = (await sbx.commands.list()).find((p) => p.cmd === 'sleep')
    assert.ok(sleeping, 'the process runs on after the client left')
    await sbx.commands.kill(sleeping.pid)
    // The kill is sent; the process's end is seen a moment later.
    await waitUntil(async () => !(await sbx.commands.list()).some((p) => p.pid === sleeping.pid), 'the killed process to end')

    const foreign = createClient(Process, transport('not-this-one'))
    await assert.rejects(foreign.list({}), (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound)

    const first = async (events: AsyncIterable<unknown>): Promise<void> => {
      for await (const _ of events) return
    }
    await assert.rejects(
      first(client.start({ process: { cmd: 'no-such-program-here' } })),
      (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument && /no-such-program-here/.test(e.rawMessage),
    )
    const refused = (code: Code, pattern: RegExp) => (e: unknown) => e instanceof ConnectError && e.code === code && pattern.test(e.rawMessage)
    await assert.rejects(
      first(client.start({ process: { cmd: 'sh' }, pty: { size: { cols: 0, rows: 24 } } })),
      refused(Code.InvalidArgument, /pty\.size\.cols/),
    )
    await assert.rejects(first(client.start({ process: { cmd: 'sh' }, pty: {} })), refused(Code.InvalidArgument, /pty\.size/))
    const ended = { process: { selector: { case: 'pid', value: sleeping.pid } } } as const
    await assert.rejects(client.update({ ...ended, pty: { size: { cols: 80, rows: 24 } } }), refused(Code.NotFound, /no running process/))
    await assert.rejects(client.update({ ...ended, pty: { size: { cols: 80, rows: 1001 } } }), refused(Code.InvalidArgument, /pty\.size\.rows/))
    const piped = await sbx.commands.run('cat', { background: true, stdin: true })
    const pipedPid = { process: { selector: { case: 'pid', value: piped.pid } } } as const
    await assert.rejects(client.update({ ...pipedPid, pty: { size: { cols: 80, rows: 24 } } }), refused(Code.FailedPrecondition, /without a PTY/))
    await assert.rejects(
      client.sendInput({ ...pipedPid, input: { input: { case: 'pty', value: Buffer.from('x') } } }),
      refused(Code.FailedPrecondition, /without a terminal/),
    )
    await sbx.commands.kill(piped.pid)
    await assert.rejects(
      client.sendSignal({ process: { selector: { case: 'pid', value: sleeping.pid } }, signal: 0 }),
      (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument,
    )
  })

  await t.test('a PTY process over Connect: pty data, input by SendInput and StreamInput, resize, connect', async () => {
    const client = createClient(Process, transport(session.id))
    const abort = new AbortController()
    t.after(() => abort.abort())
    const events = client.start(
      { process: { cmd: 'bash', args: ['--norc', '--noprofile', '-i'], envs: { PS1: '$ ' } }, pty: { size: { cols: 70, rows: 20 } } },
      { signal: abort.signal },
    )
    let screen = ''
    const kinds = new Set<string>()
    let pid = 0
    const reading = (async () => {
      for await (const r of events) {
        const e = r.event?.event
        if (e?.case === 'start') pid = e.value.pid
        if (e?.case === 'data') {
          kinds.add(e.value.output.case ?? 'none')
          if (e.value.output.case === 'pty') screen += Buffer.from(e.value.output.value).toString()
        }
      }
    })()
    await waitUntil(() => pid > 0, 'the start event')
    const selector = { selector: { case: 'pid', value: pid } } as const
    await client.sendInput({ process: selector, input: { input: { case: 'pty', value: Buffer.from('stty size\n') } } })
    await waitUntil(() => /^20 70\r$/m.test(screen), 'the size the terminal was started with', 20_000)
    await assert.rejects(
      client.sendInput({ process: selector, input: { input: { case: 'stdin', value: Buffer.from('x') } } }),
      (e: unknown) => e instanceof ConnectError && e.code === Code.FailedPrecondition && /terminal/.test(e.rawMessage),
    )
    await client.update({ process: selector, pty: { size: { cols: 90, rows: 30 } } })

    // StreamInput (client streaming, over HTTP/1.1): the process first, then its input in parts.
    async function* input(): AsyncGenerator<MessageInitShape<typeof StreamInputRequestSchema>> {
      yield { event: { case: 'start', value: { process: selector } } }
      yield { event: { case: 'keepalive', value: {} } }
      for (const part of ['stty ', 'size; echo "from-$((', '2+3))"\n'])
        yield { event: { case: 'data', value: { input: { input: { case: 'pty', value: Buffer.from(part) } } } } }
    }
    await client.streamInput(input())
    await waitUntil(() => /^30 90\r$/m.test(screen) && /^from-5\r$/m.test(screen), 'the new size and the streamed input', 20_000)
    async function* noStart(): AsyncGenerator<MessageInitShape<typeof StreamInputRequestSchema>> {
      yield { event: { case: 'data', value: { input: { input: { case: 'pty', value: Buffer.from('x') } } } } }
    }
    await assert.rejects(
      client.streamInput(noStart()),
      (e: unknown) => e instanceof ConnectError && e.code === Code.InvalidArgument && /start/.test(e.rawMessage),
    )

    // Connect follows it again: its output is still `pty` data.
    const again = client.connect({ process: selector }, { signal: abort.signal })
    let followed = ''
    const following = (async () => {
      for await (const r of again) {
        const e = r.event?.event
        if (e?.case === 'data' && e.value.output.case === 'pty') followed += Buffer.from(e.value.output.value).toString()
      }
    })()
    await new Promise((r) => setTimeout(r, 300))
    await client.sendInput({ process: selector, input: { input: { case: 'pty', value: Buffer.from('echo again\n') } } })
    await waitUntil(() => /^again\r$/m.test(followed), 'output through connect', 20_000)
    await client.sendSignal({ process: selector, signal: 9 })
    await Promise.all([reading, following])
    assert.deepEqual([...kinds], ['pty'], 'a terminal’s output is pty data only')
  })

  await t.test('files: makeDir, exists, getInfo, list with depth, symlinks, rename, remove', async () => {
    assert.equal(await sbx.files.makeDir('/home/user/d/e'), true)
    assert.equal(await sbx.files.makeDir('/home/user/d/e'), false, 'there already')
    assert.equal(await sbx.files.exists('/home/user/d'), true)
    assert.equal(await sbx.files.exists('/home/user/nothing-here'), false)
    await sbx.commands.run('printf hi > /workspace/d/f.txt && ln -s f.txt /workspace/d/link')

    const dir = await sbx.files.getInfo('/home/user/d')
    assert.equal(dir.type, 'dir')
    assert.equal(dir.name, 'd')
    assert.equal(dir.path, '/home/user/d')
    assert.match(dir.permissions, /^d[rwx-]{9}$/)
    assert.ok(dir.modifiedTime instanceof Date && Math.abs(dir.modifiedTime.getTime() - Date.now()) < 10 * 60_000)

    const listed = await sbx.files.list('/home/user/d')
    assert.deepEqual(listed.map((e) => e.name).sort(), ['e', 'f.txt', 'link'])
    const file = listed.find((e) => e.name === 'f.txt')!
    assert.equal(file.type, 'file')
    assert.equal(file.size, 2)
    assert.equal(file.path, '/home/user/d/f.txt')
    const link = listed.find((e) => e.name === 'link')!
    assert.equal(link.type, 'symlink')
    assert.equal(link.symlinkTarget, 'f.txt')
    assert.match(link.permissions, /^L/, 'Go’s letter for a symlink')
    const deep = await sbx.files.list('/home/user', { depth: 2 })
    assert.ok(deep.some((e) => e.path === '/home/user/d/e'))
    assert.ok(!(await sbx.files.list('/home/user')).some((e) => e.path === '/home/user/d/e'), 'depth 1 by default')

    const moved = await sbx.files.rename('/home/user/d/f.txt', '/home/user/d/g.txt')
    assert.equal(moved.path, '/home/user/d/g.txt')
    assert.equal(await sbx.files.exists('/home/user/d/f.txt'), false)
    await sbx.files.remove('/home/user/d')
    assert.equal(await sbx.files.exists('/home/user/d'), false)
    await sbx.files.remove('/home/user/d')
    await assert.rejects(sbx.files.getInfo('/home/user/d'), (e: unknown) => e instanceof FileNotFoundError)
    await assert.rejects(sbx.files.list('/home/user', { user: 'root' }), (e: unknown) => e instanceof SandboxError && /root.*refused/.test(e.message))
    await assert.rejects(sbx.files.list('/etc'), (e: unknown) => e instanceof Error && /workspace/.test(e.message))
  })

  await t.test('files.watchDir: changes as they happen, with entries when asked; stop ends the watch', async () => {
    await sbx.files.makeDir('/home/user/w')
    const events: FilesystemEvent[] = []
    const handle = await sbx.files.watchDir('/home/user/w', (e) => void events.push(e), { includeEntry: true })
    await sbx.commands.run('printf x > /workspace/w/a.txt')
    await waitUntil(() => events.some((e) => e.name === 'a.txt' && e.type === 'write'), 'a write event of a.txt')
    const write = events.find((e) => e.name === 'a.txt' && e.type === 'write')!
    assert.equal(write.entry?.path, '/home/user/w/a.txt')
    await handle.stop()
    const before = events.length
    await sbx.commands.run('printf y > /workspace/w/b.txt')
    // Watches are freed when stopped (the SDK's stop only aborts its request; the server then
    // ends the watch): the engine allows 16 per session, and 20 in a row can be had.
    for (let i = 0; i < 20; i++) {
      let watch: Awaited<ReturnType<typeof sbx.files.watchDir>> | undefined
      await waitUntil(
        async () => {
          watch = await sbx.files
            .watchDir('/home/user/w', () => {})
            .catch((e: unknown) => {
              if (e instanceof RateLimitError) return undefined
              throw e
            })
          return watch !== undefined
        },
        `watch ${i + 1} of 20`,
      )
      await watch!.stop()
    }
    assert.equal(events.length, before, 'no events after stop')
    await assert.rejects(
      sbx.files.watchDir('/home/user/w/a.txt', () => {}),
      (e: unknown) => e instanceof Error && /not a directory/.test(e.message),
    )
  })

  await t.test('a polled watcher (CreateWatcher, GetWatcherEvents, RemoveWatcher), as the Python SDK’s synchronous watch_dir uses', async () => {
    const fsClient = createClient(Filesystem, transport(session.id))
    await sbx.files.makeDir('/home/user/polled')
    const { watcherId } = await fsClient.createWatcher({ path: '/home/user/polled', recursive: false, includeEntry: true })
    assert.match(watcherId, /^[0-9a-f-]{36}$/)
    await sbx.commands.run('printf z > /workspace/polled/c.txt')
    const got: { name: string; type: EventType; path?: string }[] = []
    await waitUntil(async () => {
      for (const e of (await fsClient.getWatcherEvents({ watcherId })).events) got.push({ name: e.name, type: e.type, path: e.entry?.path })
      return got.some((e) => e.name === 'c.txt' && e.type === EventType.WRITE)
    }, 'the write of c.txt')
    assert.equal(got.find((e) => e.type === EventType.WRITE)?.path, '/home/user/polled/c.txt')
    const foreign = createClient(Filesystem, transport('not-this-one'))
    await assert.rejects(foreign.getWatcherEvents({ watcherId }), (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound)
    await fsClient.removeWatcher({ watcherId })
    await assert.rejects(fsClient.getWatcherEvents({ watcherId }), (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound)
    await assert.rejects(fsClient.removeWatcher({ watcherId }), (e: unknown) => e instanceof ConnectError && e.code === Code.NotFound)
  })
})
