/**
 * Lifecycle across restarts: sandboxes outlive a server killed with SIGKILL, and the next server
 * re-adopts their sessions (kernel variables, files and background tasks intact); a call in flight
 * when the server died fails for its client; a session whose idle timeout passed while no server
 * ran has ended itself and is recorded so; with a driver whose sandboxes die with their server,
 * the next server marks the sessions TERMINATED (`server-restart`). One server per store.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { gvisorUnavailable } from '../../sandbox/test/gvisor-fixtures.ts'

const child = path.join(import.meta.dirname, 'serve-child.ts')

async function serve(
  stateDir: string,
  driver: string,
  args: string[] = [],
  env: Record<string, string> = {},
): Promise<{ proc: ChildProcess; url: string; output: () => string }> {
  const proc = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', child, ...args], {
    env: { ...process.env, CODEBOX_STATE_DIR: stateDir, CODEBOX_DRIVER: driver, CODEBOX_POOL_SIZE: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
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
    proc.on('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)))
  })
  return { proc, url, output: () => out + err }
}

/** Every process below `pid`, found through /proc. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>()
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8')
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = []
  const walk = (p: number): void => {
    for (const [c, pp] of parent) if (pp === p) (out.push(c), walk(c))
  }
  walk(pid)
  return out
}

const aliveAll = (pids: number[]): number[] => pids.filter((p) => fs.existsSync(`/proc/${p}`))

interface ToolReply {
  isError?: boolean
  structuredContent: { stdout: string; stderr: string; exitCode: number; taskId?: string; taskStatus?: string }
}

const post = (url: string, p: string, body: unknown, signal?: AbortSignal): Promise<Response> =>
  fetch(url + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), ...(signal ? { signal } : {}) })
const start = async (url: string, body: unknown = {}): Promise<string> =>
  ((await (await post(url, '/v1/sessions', body)).json()) as { sessionId: string }).sessionId
const invoke = async (url: string, id: string, name: string, args: unknown): Promise<ToolReply> => {
  const r = await post(url, `/v1/sessions/${id}/invoke`, { name, arguments: args })
  const body = (await r.json()) as ToolReply
  assert.ok(r.ok, `${name} answered ${r.status}: ${JSON.stringify(body)}`)
  return body
}
const info = async (url: string, id: string): Promise<{ status: string; endReason?: string }> =>
  (await (await fetch(`${url}/v1/sessions/${id}`)).json()) as { status: string; endReason?: string }

/** The state dir of a restart test: its own store and sandbox records, the shared image. */
function stateDir(t: { after(fn: () => void): void }, driver: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-restart-'))
  if (driver === 'bwrap') fs.symlinkSync(path.join(process.env.CODEBOX_STATE_DIR ?? '/var/lib/codebox', 'images'), path.join(dir, 'images'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

const bwrapSkip = await bwrapUnavailable()
const gvisorSkip = await gvisorUnavailable()

test('kill -9 of the server: the next one serves its sessions again, variables, files and tasks intact', { skip: bwrapSkip }, async (t) => {
  const dir = stateDir(t, 'bwrap')
  const first = await serve(dir, 'bwrap')
  t.after(() => first.proc.kill('SIGKILL'))
  const a = await start(first.url)
  const b = await start(first.url)
  const c = await start(first.url)
  await invoke(first.url, a, 'executeCode', { code: 'x = 41\nopen("note.txt", "w").write("kept")' })
  const task = await invoke(first.url, a, 'startCommandExecution', { command: 'for i in $(seq 1 600); do echo tick $i; sleep 0.1; done' })
  const taskId = task.structuredContent.taskId!
  await fetch(`${first.url}/v1/sessions/${b}`, { method: 'DELETE' })
  // A call in flight when the server dies: its client gets an error, not silence.
  const inFlight = post(first.url, `/v1/sessions/${c}/invoke`, { name: 'executeCode', arguments: { code: 'import time\ny = 5\ntime.sleep(60)' } }).then(
    (r) => `answered ${r.status}`,
    (e: Error) => `failed: ${e.message}`,
  )
  await new Promise((r) => setTimeout(r, 500))

  const second = await serve(dir, 'bwrap').then(
    (s) => (s.proc.kill('SIGKILL'), 'started'),
    (e: Error) => e.message,
  )
  assert.match(second, /another codebox server \(pid \d+\) is using/)

  const procs = descendants(first.proc.pid!)
  assert.ok(procs.length > 0, 'the server has sandbox processes')
  first.proc.kill('SIGKILL')
  assert.match(await inFlight, /^failed: /)
  await new Promise((r) => setTimeout(r, 1000))
  assert.ok(aliveAll(procs).length > 0, 'the sandboxes outlived the server')

  const next = await serve(dir, 'bwrap')
  const listening = Date.now()
  t.after(() => next.proc.kill('SIGKILL'))
  const again = await invoke(next.url, a, 'executeCode', { code: 'print(x + 1, open("note.txt").read())' })
  const took = Date.now() - listening
  assert.equal(again.structuredContent.stdout, '42 kept\n')
  t.diagnostic(`the first call after the restart answered ${took} ms after the server listened`)
  const ticks = await invoke(next.url, a, 'getTask', { taskId })
  assert.equal(ticks.structuredContent.taskStatus, 'working', 'the background task runs on')
  assert.match(ticks.structuredContent.stdout, /tick [5-9]\d*\n/)
  // The call that was cut off was interrupted in its sandbox; the session and its kernel live on.
  const afterCut = await invoke(next.url, c, 'executeCode', { code: 'print(y * 2)' })
  assert.equal(afterCut.structuredContent.stdout, '10\n')
  assert.deepEqual([(await info(next.url, a)).status, (await info(next.url, c)).status], ['READY', 'READY'])
  const ended = await info(next.url, b)
  assert.deepEqual([ended.status, ended.endReason], ['TERMINATED', 'stopped'])

  // A clean stop (SIGTERM here stops every session) leaves nothing running.
  const adopted = descendants(1).filter((p) => procs.includes(p))
  const exit = new Promise<number | null>((resolve) => next.proc.on('exit', resolve))
  next.proc.kill('SIGTERM')
  assert.equal(await exit, 0)
  const deadline = Date.now() + 10_000
  while (aliveAll(adopted).length && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100))
  assert.deepEqual(aliveAll(procs), [], 'every sandbox process ended with the sessions')
  // ... and nothing recorded: the server exits only once every sandbox's teardown has finished.
  const records = fs.readdirSync(path.join(dir, 'sandboxes')).filter((f) => f.endsWith('.json'))
  assert.deepEqual(records, [], 'no sandbox record is left behind')
})

test('a session with network egress is re-adopted with its policy: what it may reach, it reaches again', { skip: bwrapSkip }, async (t) => {
  // A loopback web server stands for the internet (trusted for this test, as loopback is refused otherwise).
  const web = http.createServer((_req, res) => res.end('hello from the web'))
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve))
  t.after(() => web.close())
  const port = (web.address() as AddressInfo).port
  const env = { CODEBOX_EGRESS_TRUSTED: `127.0.0.1:${port}` }
  const dir = stateDir(t, 'bwrap')
  const first = await serve(dir, 'bwrap', [], env)
  t.after(() => first.proc.kill('SIGKILL'))
  const created = await post(first.url, '/v1/interpreters', { name: 'web', network: { mode: 'VPC', allow: [`127.0.0.1:${port}`] } })
  assert.equal(created.status, 201)
  const { interpreterId } = (await created.json()) as { interpreterId: string }
  const id = await start(first.url, { interpreterId })
  // NO_PROXY names 127.0.0.1, which inside is the sandbox's own lo: the test's "web" is the host's.
  const fetchCell = `import os, urllib.request
os.environ.pop("NO_PROXY", None), os.environ.pop("no_proxy", None)
def get(url):
    try:
        return urllib.request.urlopen(url, timeout=10).read().decode()
    except Exception as e:
        return "refused: %s" % e
print(get("http://127.0.0.1:${port}/"))
print(get("http://127.0.0.1:${port + 1 === 65536 ? port - 1 : port + 1}/")[:8])`
  const before = await invoke(first.url, id, 'executeCode', { code: `seen = 1\n${fetchCell}` })
  assert.equal(before.structuredContent.stdout, 'hello from the web\nrefused:\n')
  first.proc.kill('SIGKILL')
  await new Promise((r) => setTimeout(r, 500))

  const next = await serve(dir, 'bwrap', [], env)
  t.after(() => next.proc.kill('SIGKILL'))
  assert.equal((await info(next.url, id)).status, 'READY')
  const after = await invoke(next.url, id, 'executeCode', { code: `print(seen)\n${fetchCell}` })
  assert.equal(after.structuredContent.stdout, '1\nhello from the web\nrefused:\n', 'the same policy: allowed still, refused still')
  const stopped = new Promise<number | null>((resolve) => next.proc.on('exit', resolve))
  next.proc.kill('SIGTERM')
  assert.equal(await stopped, 0)
})

test(
  'a session of a gVisor interpreter (whose sandboxes end with their server): the next server records it ended; the bwrap one beside it is re-adopted',
  { skip: bwrapSkip ?? gvisorSkip },
  async (t) => {
    const dir = stateDir(t, 'bwrap')
    const first = await serve(dir, 'bwrap')
    t.after(() => first.proc.kill('SIGKILL'))
    const created = await post(first.url, '/v1/interpreters', { name: 'strict', driver: 'gvisor', preload: [] })
    assert.equal(created.status, 201, await created.clone().text())
    const { interpreterId } = (await created.json()) as { interpreterId: string }
    const g = await start(first.url, { interpreterId })
    const kept = await start(first.url)
    await invoke(first.url, g, 'executeCode', { code: 'print(1)' })
    await invoke(first.url, kept, 'executeCode', { code: 'z = 3' })
    const procs = descendants(first.proc.pid!)
    first.proc.kill('SIGKILL')
    await new Promise((r) => setTimeout(r, 1000))

    const next = await serve(dir, 'bwrap')
    t.after(() => next.proc.kill('SIGKILL'))
    const gone = await info(next.url, g)
    assert.deepEqual([gone.status, gone.endReason], ['TERMINATED', 'server-restart'])
    assert.equal((await invoke(next.url, kept, 'executeCode', { code: 'print(z)' })).structuredContent.stdout, '3\n', 'the bwrap session was re-adopted')
    const deadline = Date.now() + 10_000
    const runsc = () => aliveAll(procs).filter((p) => /runsc|exe/.test(fs.readFileSync(`/proc/${p}/comm`, 'utf8')))
    while (runsc().length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
    assert.deepEqual(runsc(), [], 'the gVisor sandbox ended with its server')
    next.proc.kill('SIGTERM')
  },
)

test(
  'a moved lifetime end holds across a restart: an extended session is re-adopted past its first end, a shortened one ended itself',
  { skip: bwrapSkip },
  async (t) => {
    const dir = stateDir(t, 'bwrap')
    const first = await serve(dir, 'bwrap')
    t.after(() => first.proc.kill('SIGKILL'))
    const patch = async (id: string, endsInSeconds: number): Promise<{ endsAt: string }> => {
      const r = await fetch(`${first.url}/v1/sessions/${id}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ endsInSeconds }),
      })
      assert.equal(r.status, 200)
      return (await r.json()) as { endsAt: string }
    }
    // Started to live 5 s, extended to an hour: the sandbox is told, and so is the record.
    const extended = await start(first.url, { limits: { maxLifetimeMs: 5000 } })
    const { endsAt } = await patch(extended, 3600)
    const shortened = await start(first.url)
    await patch(shortened, 3)
    first.proc.kill('SIGKILL')
    await new Promise((r) => setTimeout(r, 7000))
    const next = await serve(dir, 'bwrap')
    t.after(() => next.proc.kill('SIGKILL'))
    const kept = (await (await fetch(`${next.url}/v1/sessions/${extended}`)).json()) as { status: string; endsAt?: string }
    assert.deepEqual([kept.status, kept.endsAt], ['READY', endsAt], 'served again, with the moved end')
    assert.equal((await invoke(next.url, extended, 'executeCommand', { command: 'echo alive' })).structuredContent.stdout, 'alive\n')
    const gone = await info(next.url, shortened)
    assert.deepEqual([gone.status, gone.endReason], ['TERMINATED', 'server-restart'], 'it ended itself at its new end while no server ran')
    next.proc.kill('SIGTERM')
  },
)

test('while no server runs, a session ends itself at its idle timeout; the next server records it ended', { skip: bwrapSkip }, async (t) => {
  const dir = stateDir(t, 'bwrap')
  const first = await serve(dir, 'bwrap')
  t.after(() => first.proc.kill('SIGKILL'))
  // Idle for 5 s: long enough that a loaded machine still gets the first call in.
  const a = await start(first.url, { timeoutSeconds: 5 })
  const keep = await start(first.url)
  await invoke(first.url, a, 'executeCode', { code: 'print(1)' })
  const procs = descendants(first.proc.pid!)
  first.proc.kill('SIGKILL')
  await new Promise((r) => setTimeout(r, 7000))
  const next = await serve(dir, 'bwrap')
  t.after(() => next.proc.kill('SIGKILL'))
  const gone = await info(next.url, a)
  assert.deepEqual([gone.status, gone.endReason], ['TERMINATED', 'server-restart'])
  const r = await post(next.url, `/v1/sessions/${a}/invoke`, { name: 'executeCommand', arguments: { command: 'true' } })
  assert.equal(r.status, 410)
  assert.equal((await info(next.url, keep)).status, 'READY')
  // The first server's pool sandbox (never handed over) ended with it: only the kept session's processes remain of the first run.
  await new Promise((r) => setTimeout(r, 1000))
  assert.ok(aliveAll(procs).length > 0 && aliveAll(procs).length < procs.length, `left: ${aliveAll(procs).length} of ${procs.length}`)
  next.proc.kill('SIGTERM')
})

test('a driver whose sandboxes die with the server (fake): the next server marks its sessions TERMINATED (server-restart)', async (t) => {
  const dir = stateDir(t, 'fake')
  const first = await serve(dir, 'fake')
  const a = await start(first.url)
  await invoke(first.url, a, 'executeCommand', { command: 'true' })
  const procs = descendants(first.proc.pid!)
  first.proc.kill('SIGKILL')
  const deadline = Date.now() + 10_000
  while (aliveAll(procs).length && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100))
  assert.deepEqual(aliveAll(procs), [], 'every sandbox process died with the server')
  const next = await serve(dir, 'fake')
  t.after(() => next.proc.kill('SIGTERM'))
  const gone = await info(next.url, a)
  assert.deepEqual([gone.status, gone.endReason], ['TERMINATED', 'server-restart'])
  const again = await post(next.url, `/v1/sessions/${a}/invoke`, { name: 'executeCommand', arguments: { command: 'true' } })
  assert.equal(again.status, 410)
  const audit = (await (await fetch(`${next.url}/v1/audit?sessionId=${a}`)).json()) as { items: { action: string; outcome: string }[] }
  assert.deepEqual(
    audit.items.map((e) => `${e.action}:${e.outcome}`),
    ['startSession:ok', 'executeCommand:ok', 'executeCommand:rejected'],
  )
})

test('an uncaught exception from a timer and an unhandled rejection are logged, and the server keeps serving', async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-faults-'))
  t.after(() => fs.rmSync(stateDir, { recursive: true, force: true }))
  const server = await serve(stateDir, 'fake', ['--faults'])
  let exited: number | null | undefined
  server.proc.on('exit', (code) => (exited = code))
  t.after(() => server.proc.kill('SIGKILL'))
  // Both faults went off (the child prints this after them), or the process died of the first.
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (server.output().includes('faults raised')) resolve()
    }
    server.proc.stdout!.on('data', check)
    server.proc.on('exit', (code) => reject(new Error(`the server died of the fault (exit ${code}): ${server.output().slice(-2000)}`)))
    check()
  })
  assert.equal(exited, undefined)
  const post = (p: string, body: unknown): Promise<Response> =>
    fetch(server.url + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const started = await post('/v1/sessions', {})
  assert.equal(started.status, 201)
  const { sessionId } = (await started.json()) as { sessionId: string }
  const r = await post(`/v1/sessions/${sessionId}/invoke`, { name: 'executeCode', arguments: { code: 'print(6 * 7)' } })
  assert.equal(((await r.json()) as { structuredContent: { stdout: string } }).structuredContent.stdout, '42\n')
  const log = server.output()
  assert.match(log, /uncaught exception; the server keeps serving/)
  assert.match(log, /deliberate fault from a timer/)
  assert.match(log, /unhandled promise rejection; the server keeps serving/)
  assert.match(log, /deliberate unhandled rejection/)
  const exit = new Promise<number | null>((resolve) => server.proc.on('exit', resolve))
  server.proc.kill('SIGTERM')
  assert.equal(await exit, 0)
})

/** A runtime-contract agent that counts its invocations in memory and says its pid. */
const counterAgent = String.raw`import json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
count = 0
class Agent(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def reply(self, body):
        body = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        self.reply({"status": "Healthy", "time_of_last_update": int(time.time())})
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("content-length") or 0))
        count += 1
        print("invocation", count, flush=True)
        self.reply({"count": count, "pid": os.getpid()})
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Agent).serve_forever()
`

test('kill -9 of the server: a hosted agent’s runtime session is served again, its process and memory intact', { skip: bwrapSkip }, async (t) => {
  const { BedrockAgentCoreClient, InvokeAgentRuntimeCommand } = await import('@aws-sdk/client-bedrock-agentcore')
  const { rawTarGz } = await import('./runtime-fixtures.ts')
  const dir = stateDir(t, 'bwrap')
  const first = await serve(dir, 'bwrap', [], { CODEBOX_POOL_SIZE: '0' })
  t.after(() => first.proc.kill('SIGKILL'))
  const up = await fetch(`${first.url}/v1/runtime-bundles`, {
    method: 'POST',
    headers: { 'content-type': 'application/gzip' },
    body: rawTarGz([{ path: 'agent.py', body: counterAgent }]),
  })
  assert.equal(up.status, 201, await up.clone().text())
  const dep = await post(first.url, '/v1/runtimes', { name: 'counter', bundleId: ((await up.json()) as { bundleId: string }).bundleId, entrypoint: 'agent.py' })
  assert.equal(dep.status, 201, await dep.clone().text())
  const { agentRuntimeArn, agentRuntimeId } = (await dep.json()) as { agentRuntimeArn: string; agentRuntimeId: string }
  const call = async (url: string, runtimeSessionId: string): Promise<{ count: number; pid: number }> => {
    const aws = new BedrockAgentCoreClient({ endpoint: url, region: 'us-east-1', credentials: { accessKeyId: 'A', secretAccessKey: 'x' }, maxAttempts: 1 })
    const r = await aws.send(
      new InvokeAgentRuntimeCommand({ agentRuntimeArn, runtimeSessionId, payload: '{"prompt": "count"}', contentType: 'application/json' }),
    )
    return JSON.parse(await r.response!.transformToString()) as { count: number; pid: number }
  }
  const rs = 'r'.repeat(40)
  await call(first.url, rs)
  const before = await call(first.url, rs)
  assert.equal(before.count, 2)
  first.proc.kill('SIGKILL')
  await new Promise((r) => setTimeout(r, 500))

  const next = await serve(dir, 'bwrap', [], { CODEBOX_POOL_SIZE: '0' })
  t.after(() => next.proc.kill('SIGKILL'))
  const after = await call(next.url, rs)
  assert.deepEqual([after.count, after.pid], [3, before.pid], 'the same process, its memory kept')
  const listed = (await (await fetch(`${next.url}/v1/runtimes/${agentRuntimeId}/sessions`)).json()) as { items: { runtimeSessionId: string }[] }
  assert.deepEqual(
    listed.items.map((s) => s.runtimeSessionId),
    [rs],
  )
  // Its output is collected again (every half second), from the restart on.
  let text = ''
  for (let i = 0; i < 50 && !text.includes('invocation 3'); i++) {
    const logs = (await (await fetch(`${next.url}/v1/runtimes/${agentRuntimeId}/logs?runtimeSessionId=${rs}`)).json()) as { items: { text: string }[] }
    text = logs.items.map((l) => l.text).join('\n')
    await new Promise((r) => setTimeout(r, 100))
  }
  assert.match(text, /the server restarted and serves this runtime session again; output from here on\]\ninvocation 3\n/)
  // The agent's sandbox would outlive a server that lets its sessions go: it is stopped first.
  assert.equal((await fetch(`${next.url}/v1/runtimes/${agentRuntimeId}/sessions/${rs}`, { method: 'DELETE' })).status, 204)
  next.proc.kill('SIGTERM')
})
