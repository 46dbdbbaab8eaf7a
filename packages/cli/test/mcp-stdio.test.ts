/**
 * `codebox mcp` end to end, as an MCP client sees it: the official MCP Client and
 * StdioClientTransport spawn packages/cli/bin/codebox mcp against a real codebox server on the
 * real bwrap sandbox (and, once, with an embedded server), and call every tool.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import type { RequestOptions } from '@modelcontextprotocol/sdk/shared/protocol.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import { CodeInterpreter } from '@codebox/sdk'
import { agentToolNames } from '@codebox/tools'
import { Store, type RunningServer } from '@codebox/server'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { imageStateDir, realServer } from '../../server/test/fixtures.ts'
import { createMcpServer, serveStdio, type McpBackend } from '@codebox/mcp'

const repo = fileURLToPath(new URL('../../../', import.meta.url))
const bin = path.join(repo, 'packages/cli/bin/codebox')

interface Connection {
  client: Client
  pid: number
  stderr: () => string
  /** Protocol errors the client saw, e.g. a line on stdout that is not an MCP message. */
  errors: Error[]
}

const text = (r: CallToolResult): string => r.content.flatMap((b) => (b.type === 'text' ? [b.text] : [])).join('\n')
const sessionOf = (r: CallToolResult): string => (r.structuredContent as { sessionId: string }).sessionId
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('codebox mcp over stdio', () => {
  let skip: string | undefined
  let work: string
  let server: RunningServer | undefined
  let keyA = ''
  let keyB = ''
  const open = new Set<Connection>()

  async function connect(env: Record<string, string | undefined> = {}, args: string[] = []): Promise<Connection> {
    const merged = { ...process.env, CODEBOX_URL: server!.url, CODEBOX_API_KEY: keyA, ...env }
    const transport = new StdioClientTransport({
      command: bin,
      args: ['mcp', ...args],
      env: Object.fromEntries(Object.entries(merged).filter((e): e is [string, string] => e[1] !== undefined)),
      stderr: 'pipe',
    })
    let stderr = ''
    transport.stderr?.on('data', (c: Buffer) => (stderr += c.toString()))
    const client = new Client({ name: 'codebox-stdio-test', version: '0.0.0' })
    const c: Connection = { client, pid: 0, stderr: () => stderr, errors: [] }
    client.onerror = (e) => c.errors.push(e)
    await client.connect(transport)
    c.pid = transport.pid!
    open.add(c)
    return c
  }
  const call = (c: Connection, name: string, args: Record<string, unknown>, options?: RequestOptions): Promise<CallToolResult> =>
    c.client.callTool({ name, arguments: args }, undefined, options) as Promise<CallToolResult>
  const close = async (c: Connection): Promise<void> => {
    open.delete(c)
    await c.client.close()
  }

  let conn: Connection
  before(async () => {
    skip = await bwrapUnavailable()
    work = await mkdtemp(path.join(tmpdir(), 'codebox-mcp-test-'))
    if (skip) return
    server = await realServer(work, { CODEBOX_POOL_SIZE: '2' })
    keyA = (await server.store.keys.create({ tenant: 'alpha' })).secret
    keyB = (await server.store.keys.create({ tenant: 'beta' })).secret
    conn = await connect()
  })
  after(async () => {
    await Promise.all([...open].map((c) => close(c).catch(() => {})))
    await server?.close()
    await rm(work, { recursive: true, force: true })
  })

  test('lists the nine tools, each with a description for a model and an input schema', async (t) => {
    if (skip) return t.skip(skip)
    const { tools } = await conn.client.listTools()
    assert.deepEqual(tools.map((x) => x.name).sort(), [...agentToolNames].sort())
    for (const tool of tools) {
      assert.ok((tool.description ?? '').length > 40, `${tool.name} has a description`)
      assert.equal(tool.inputSchema.type, 'object')
      assert.ok(tool.inputSchema.properties?.session_id, `${tool.name} takes session_id`)
      assert.ok(!tool.inputSchema.required?.includes('session_id'), `${tool.name}: session_id is optional`)
    }
    const exec = tools.find((x) => x.name === 'execute_code')!
    assert.deepEqual(exec.inputSchema.required, ['code'])
    assert.match(exec.description!, /pandas/)
  })

  test('execute_code keeps state across calls in the connection’s own session', async (t) => {
    if (skip) return t.skip(skip)
    const first = await call(conn, 'execute_code', { code: 'x = 41' })
    assert.equal(first.isError, false, text(first))
    const second = await call(conn, 'execute_code', { code: 'x + 1' })
    assert.equal(text(second), '42')
    assert.equal(sessionOf(second), sessionOf(first))
    assert.match(sessionOf(first), /^[0-9a-z]{26}$/)
    const ts = await call(conn, 'execute_code', { code: 'const n: number = 6\nconsole.log(n * 7)', language: 'typescript' })
    assert.match(text(ts), /^42$/m)
  })

  test('a matplotlib chart comes back as a PNG image block', async (t) => {
    if (skip) return t.skip(skip)
    const r = await call(conn, 'execute_code', { code: 'import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()' })
    const image = r.content.find((b) => b.type === 'image')
    assert.ok(image && image.type === 'image', JSON.stringify(r.content).slice(0, 300))
    assert.equal(image.mimeType, 'image/png')
    assert.deepEqual([...Buffer.from(image.data, 'base64').subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47])
  })

  test('a failing cell is an isError result with the traceback; a failing command with its exit code', async (t) => {
    if (skip) return t.skip(skip)
    const r = await call(conn, 'execute_code', { code: 'def f():\n    return 1 / 0\nf()' })
    assert.equal(r.isError, true)
    assert.match(text(r), /Traceback[\s\S]*ZeroDivisionError: division by zero/)
    const cmd = await call(conn, 'execute_command', { command: 'echo out; echo err >&2; exit 3' })
    assert.equal(cmd.isError, true)
    assert.match(text(cmd), /out/)
    assert.deepEqual([(cmd.structuredContent as { exitCode: number }).exitCode, (cmd.structuredContent as { stderr: string }).stderr], [3, 'err\n'])
  })

  test('write_files, read_files (embedded resources), list_files (resource links), remove_files', async (t) => {
    if (skip) return t.skip(skip)
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
    const w = await call(conn, 'write_files', {
      files: [
        { path: 'dir/a.txt', text: 'héllo\n' },
        { path: 'b.bin', base64: bytes.toString('base64') },
      ],
    })
    assert.equal(w.isError, false, text(w))
    const r = await call(conn, 'read_files', { paths: ['dir/a.txt', 'b.bin'] })
    const resources = r.content.flatMap((b) => (b.type === 'resource' ? [b.resource] : []))
    assert.equal(resources.length, 2, JSON.stringify(r.content).slice(0, 300))
    const textFile = resources.find((x) => x.uri.endsWith('dir/a.txt'))
    const binFile = resources.find((x) => x.uri.endsWith('b.bin'))
    assert.equal(textFile && 'text' in textFile ? textFile.text : undefined, 'héllo\n')
    assert.equal(binFile && 'blob' in binFile ? binFile.blob : undefined, bytes.toString('base64'))
    const links = async (dir: string): Promise<string[]> => {
      const l = await call(conn, 'list_files', { path: dir })
      return l.content.flatMap((b) => (b.type === 'resource_link' ? [b.name] : [])).sort()
    }
    assert.deepEqual(await links(''), ['b.bin', 'dir'])
    const inDir = await links('dir')
    assert.equal(inDir.length, 1)
    assert.match(inDir[0]!, /a\.txt$/)
    const rm = await call(conn, 'remove_files', { paths: ['b.bin', 'dir'] })
    assert.equal(rm.isError, false, text(rm))
    assert.deepEqual(await links(''), [])
  })

  test('start_task, get_task and stop_task run a background command', async (t) => {
    if (skip) return t.skip(skip)
    const started = await call(conn, 'start_task', { command: 'for i in 1 2 3; do echo line$i; sleep 0.1; done; sleep 60' })
    const taskId = (started.structuredContent as { taskId?: string }).taskId
    assert.ok(taskId, text(started))
    let status: CallToolResult | undefined
    await until('the task printed line3', async () => {
      status = await call(conn, 'get_task', { task_id: taskId })
      return /line3/.test(text(status))
    })
    assert.equal((status!.structuredContent as { taskStatus: string }).taskStatus, 'working')
    const stopped = await call(conn, 'stop_task', { task_id: taskId })
    assert.match(text(stopped), /canceled/)
    const after = await call(conn, 'get_task', { task_id: taskId })
    assert.equal((after.structuredContent as { taskStatus: string }).taskStatus, 'canceled')
  })

  test('a streaming cell sends its output as progress notifications while it runs', async (t) => {
    if (skip) return t.skip(skip)
    const progress: { message: string; at: number }[] = []
    const code = 'import time\nfor i in range(3):\n    print("tick", i, flush=True)\n    time.sleep(0.4)'
    const r = await call(conn, 'execute_code', { code }, { onprogress: (p) => void progress.push({ message: p.message ?? '', at: Date.now() }) })
    const done = Date.now()
    assert.match(text(r), /tick 0\ntick 1\ntick 2/)
    assert.match(progress.map((p) => p.message).join(''), /tick 0\n[\s\S]*tick 2\n/)
    assert.ok(done - progress[0]!.at > 500, `the first output arrived ${done - progress[0]!.at} ms before the result`)
  })

  test('cancelling a call stops its execution: the session answers at once, the process is gone', async (t) => {
    if (skip) return t.skip(skip)
    for (const [tool, args] of [
      ['execute_code', { code: 'import time\nprint("sleeping", flush=True)\ntime.sleep(60)' }],
      ['execute_command', { command: 'echo sleeping; exec sleep 61' }],
    ] as const) {
      const abort = new AbortController()
      const onprogress = (): void => abort.abort()
      await assert.rejects(call(conn, tool, args, { signal: abort.signal, onprogress }), /abort/i)
      const startedAt = Date.now()
      const next = await call(conn, 'execute_code', { code: 'print("after")' })
      assert.equal(text(next).trim(), 'after')
      assert.ok(Date.now() - startedAt < 5000, `${tool}: the next call waited ${Date.now() - startedAt} ms`)
      await until(`${tool}: the sleep is gone`, async () => {
        const ps = await call(conn, 'execute_command', { command: "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '" })
        return !/sleep 61|time\.sleep\(60\)/.test(text(ps))
      })
    }
  })

  test('bad calls: unknown tool, wrong argument types, a malformed session id give clear errors', async (t) => {
    if (skip) return t.skip(skip)
    const unknown = await call(conn, 'frobnicate', {}).catch((e: Error) => ({ isError: true, content: [{ type: 'text' as const, text: e.message }] }))
    assert.equal(unknown.isError, true)
    assert.match(text(unknown), /frobnicate not found/)
    const wrongType = await call(conn, 'execute_code', { code: 42 })
    assert.equal(wrongType.isError, true)
    assert.match(text(wrongType), /code[\s\S]*expected string/i)
    const neither = await call(conn, 'write_files', { files: [{ path: 'x' }] })
    assert.equal(neither.isError, true)
    assert.match(text(neither), /exactly one of text or base64/)
    const badId = await call(conn, 'execute_code', { code: '1', session_id: '../x' })
    assert.equal(badId.isError, true)
    assert.match(text(badId), /not a session id/)
    assert.deepEqual(conn.errors, [])
  })

  test('session_id: one of the caller’s sessions works; another tenant’s is an error result, not access', async (t) => {
    if (skip) return t.skip(skip)
    const mine = new CodeInterpreter({ baseUrl: server!.url, apiKey: keyA })
    const theirs = new CodeInterpreter({ baseUrl: server!.url, apiKey: keyB })
    await mine.start()
    await theirs.start()
    try {
      await theirs.executeCode({ code: 'secret = "beta"' })
      const ok = await call(conn, 'execute_code', { code: 'print("in mine")', session_id: mine.sessionId })
      assert.equal(text(ok).trim(), 'in mine')
      assert.equal(sessionOf(ok), mine.sessionId)
      for (const [tool, args] of [
        ['execute_code', { code: 'print(secret)' }],
        ['write_files', { files: [{ path: 'planted.txt', text: 'x' }] }],
        ['list_files', {}],
      ] as const) {
        const r = await call(conn, tool, { ...args, session_id: theirs.sessionId })
        assert.equal(r.isError, true, `${tool}: ${text(r)}`)
        assert.match(text(r), /NotFound/)
        assert.doesNotMatch(text(r), /beta/)
      }
      const listing = await theirs.listFileEntries()
      assert.ok(!listing.items.some((f) => f.name === 'planted.txt'))
    } finally {
      await mine.stop()
      await theirs.stop()
    }
  })

  test('two connections are isolated: each has its own session', async (t) => {
    if (skip) return t.skip(skip)
    const other = await connect()
    try {
      const a = await call(conn, 'execute_code', { code: 'only_here = 1' })
      const b = await call(other, 'execute_code', { code: 'print(only_here)' })
      assert.equal(b.isError, true)
      assert.match(text(b), /NameError/)
      assert.notEqual(sessionOf(a), sessionOf(b))
    } finally {
      await close(other)
    }
  })

  test('closing the client, even mid-call, stops the connection’s session and ends the process', async (t) => {
    if (skip) return t.skip(skip)
    const c = await connect()
    const first = await call(c, 'execute_code', { code: 'print(1)' })
    const id = sessionOf(first)
    const running = call(c, 'execute_code', { code: 'import time\ntime.sleep(60)' }).catch((e: unknown) => e)
    await new Promise((r) => setTimeout(r, 300))
    const closedAt = Date.now()
    await close(c)
    await running
    await until('the session is TERMINATED', async () => (await server!.store.sessions.get(id, 'alpha'))?.status === 'TERMINATED')
    await until('the process has exited', () => !alive(c.pid))
    assert.ok(Date.now() - closedAt < 3000, `closing took ${Date.now() - closedAt} ms (the client sends SIGTERM after 2 s)`)
    assert.match(c.stderr(), /stdin (ended|closed): stopping the connection's session/)
    assert.equal(server!.engine.find(id), undefined)
  })

  test('SIGTERM stops the connection’s session and ends the process', async (t) => {
    if (skip) return t.skip(skip)
    const c = await connect()
    const id = sessionOf(await call(c, 'execute_code', { code: 'print(1)' }))
    process.kill(c.pid, 'SIGTERM')
    await until('the session is TERMINATED', async () => (await server!.store.sessions.get(id, 'alpha'))?.status === 'TERMINATED')
    await until('the process has exited', () => !alive(c.pid))
    assert.match(c.stderr(), /SIGTERM: stopping the connection's session/)
    await close(c)
  })

  test('a 50 MB file through write_files arrives intact', async (t) => {
    if (skip) return t.skip(skip)
    const data = randomBytes(50_000_000)
    const startedAt = Date.now()
    const w = await call(conn, 'write_files', { files: [{ path: 'big.bin', base64: data.toString('base64') }] }, { timeout: 120_000 })
    assert.equal(w.isError, false, text(w))
    // Under a second on a quiet machine (the SDK's own stdio reader, which re-copies its buffer per
    // chunk, took over 10 s); how long is reported, not asserted: timing belongs in bench/.
    t.diagnostic(`writing 50 MB took ${Date.now() - startedAt} ms`)
    const sum = await call(conn, 'execute_command', { command: 'sha256sum big.bin && stat -c %s big.bin && rm big.bin' })
    assert.match(text(sum), new RegExp(`^${createHash('sha256').update(data).digest('hex')}  big.bin\\n50000000$`, 'm'))
  })

  test('without a configured server it starts an embedded one, and stops it on exit', async (t) => {
    if (skip) return t.skip(skip)
    // Auto-detection needs nothing at the default address; when something is there, --embedded forces the same path.
    const taken = await fetch('http://127.0.0.1:8080/ping', { signal: AbortSignal.timeout(1000) }).then(
      () => true,
      () => false,
    )
    const dir = await imageStateDir(work, 'embedded')
    const c = await connect({ CODEBOX_URL: undefined, CODEBOX_API_KEY: undefined, CODEBOX_STATE_DIR: dir, CODEBOX_POOL_SIZE: '0' }, taken ? ['--embedded'] : [])
    const r = await call(c, 'execute_code', { code: 'print(6 * 7)' })
    assert.equal(text(r).trim(), '42', c.stderr())
    assert.match(c.stderr(), /started an embedded codebox server at http:\/\/127\.0\.0\.1:\d+/)
    await close(c)
    await until('the process has exited', () => !alive(c.pid))
    assert.equal(existsSync(path.join(dir, 'server.pid')), false, 'the embedded server released its state dir')
    const store = Store.open(path.join(dir, 'codebox.db'))
    try {
      assert.deepEqual(
        (await store.sessions.list({ tenant: 'default', limit: 10 })).items.map((s) => s.status),
        ['TERMINATED'],
      )
    } finally {
      store.close()
    }
    assert.deepEqual(c.errors, [], 'nothing but MCP messages on stdout')
  })

  test('--embedded with a URL is a usage error', async (t) => {
    if (skip) return t.skip(skip)
    const c = new StdioClientTransport({ command: bin, args: ['mcp', '--embedded', '--url', 'http://127.0.0.1:1'], stderr: 'pipe' })
    let stderr = ''
    c.stderr?.on('data', (b: Buffer) => (stderr += b.toString()))
    const exited = new Promise<void>((resolve) => (c.onclose = resolve))
    await c.start()
    await exited
    assert.match(stderr, /--embedded/)
  })
})

describe('serveStdio', () => {
  test('a message over the size cap gets a JSON-RPC error for its id, and the connection goes on', async () => {
    const backend: McpBackend = {
      startSession: () => Promise.reject(new Error('not used')),
      session: () => Promise.reject(new Error('not used')),
      stopSession: async () => {},
    }
    const mcp = createMcpServer(backend)
    const stdin = new PassThrough()
    const stdout = new PassThrough()
    const errors: Error[] = []
    const { ended } = await serveStdio(mcp.server, { stdin, stdout, maxMessageBytes: 4096, onError: (e) => errors.push(e) })
    const replies: { id?: unknown; result?: unknown; error?: { message: string } }[] = []
    let buffered = ''
    stdout.on('data', (c: Buffer) => {
      buffered += c.toString()
      for (let i = buffered.indexOf('\n'); i >= 0; i = buffered.indexOf('\n')) {
        replies.push(JSON.parse(buffered.slice(0, i)) as (typeof replies)[number])
        buffered = buffered.slice(i + 1)
      }
    })
    const send = (m: object): boolean => stdin.write(`${JSON.stringify(m)}\n`)
    send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '0' } } })
    send({ jsonrpc: '2.0', method: 'notifications/initialized' })
    // Written in small pieces, as a pipe delivers it.
    const big = `${JSON.stringify({ method: 'tools/call', params: { name: 'write_files', arguments: { files: [{ path: 'x', text: 'y'.repeat(10_000) }] } }, jsonrpc: '2.0', id: 7 })}\n`
    for (let i = 0; i < big.length; i += 1000) stdin.write(big.slice(i, i + 1000))
    send({ jsonrpc: '2.0', id: 8, method: 'tools/list' })
    await until('both replies arrived', () => replies.some((r) => r.id === 8) && replies.some((r) => r.id === 7))
    assert.match(replies.find((r) => r.id === 7)!.error!.message, /over this server's limit of 4096 bytes/)
    assert.equal((replies.find((r) => r.id === 8)!.result as { tools: unknown[] }).tools.length, 9)
    assert.match(errors[0]!.message, /request 7/)
    stdin.end()
    assert.equal(await ended, 'stdin ended')
    await mcp.close()
  })
})
