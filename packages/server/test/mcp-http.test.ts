/**
 * MCP over Streamable HTTP at /mcp through the official MCP client, against a real codebox server
 * on the real bwrap sandbox: every tool, state across calls, a chart as an image block, a failing
 * cell as isError, progress and cancellation, two connections isolated, the connection's session
 * stopped when the connection ends (DELETE, or idle), and the bad input of issue 5.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'
import type { RunningServer } from '@codebox/server'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { realServer, waitUntil } from './fixtures.ts'

type Result = CallToolResult & { structuredContent?: { sessionId?: string; stdout?: string; taskId?: string; taskStatus?: string } }

describe('MCP over Streamable HTTP on the real sandbox', () => {
  let skip: string | undefined
  let work: string
  let server: RunningServer | undefined
  let keys: { acme: string; other: string }
  const open: { client: Client; transport: StreamableHTTPClientTransport }[] = []

  /** A connected MCP client of `tenant`. */
  const connect = async (key: string, query = ''): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> => {
    const transport = new StreamableHTTPClientTransport(new URL(`${server!.url}/mcp${query}`), { requestInit: { headers: { authorization: `Bearer ${key}` } } })
    const client = new Client({ name: 'codebox-test', version: '1.0.0' })
    await client.connect(transport)
    const c = { client, transport }
    open.push(c)
    return c
  }
  const call = async (client: Client, name: string, args: Record<string, unknown>, options: Parameters<Client['callTool']>[2] = {}): Promise<Result> =>
    (await client.callTool({ name, arguments: args }, undefined, options)) as Result
  const text = (r: Result): string =>
    r.content
      .filter((c) => c.type === 'text')
      .map((c) => (c as { text: string }).text)
      .join('')
  const status = async (sessionId: string, tenant = 'acme'): Promise<string | undefined> => (await server!.store.sessions.get(sessionId, tenant))?.status

  before(async () => {
    skip = await bwrapUnavailable()
    work = await mkdtemp(path.join(tmpdir(), 'codebox-mcp-http-'))
    if (skip) return
    // Long enough that a loaded machine's slow steps (an abandoned cell interrupted) never look idle.
    server = await realServer(work, { CODEBOX_MCP_IDLE_MS: '6000' })
    keys = { acme: (await server.store.keys.create({ tenant: 'acme' })).secret, other: (await server.store.keys.create({ tenant: 'other' })).secret }
  })
  after(async () => {
    for (const c of open) await c.client.close().catch(() => {})
    await server?.close()
    await rm(work, { recursive: true, force: true })
  })

  test('the nine tools, described for a model; unauthenticated requests are refused', async (t) => {
    if (skip) return t.skip(skip)
    const { client } = await connect(keys.acme)
    const { tools } = await client.listTools()
    assert.deepEqual(
      tools.map((tool) => tool.name),
      ['execute_code', 'execute_command', 'write_files', 'read_files', 'list_files', 'remove_files', 'start_task', 'get_task', 'stop_task'],
    )
    for (const tool of tools) {
      assert.ok(tool.description && tool.description.length > 40, tool.name)
      assert.equal(tool.inputSchema.type, 'object')
      assert.ok(tool.inputSchema.properties?.session_id, `${tool.name} takes session_id`)
    }
    assert.match(tools[0]!.description!, /pandas/)
    const anonymous = await fetch(`${server!.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } },
      }),
    })
    assert.equal(anonymous.status, 401)
  })

  test('every tool in the connection’s own session: state, a chart as an image, files, tasks, a failing cell', async (t) => {
    if (skip) return t.skip(skip)
    const { client, transport } = await connect(keys.acme)
    const first = await call(client, 'execute_code', { code: 'x = 41\nprint("set")' })
    assert.equal(first.isError, false)
    const sessionId = first.structuredContent!.sessionId!
    assert.match(sessionId, /^[0-9a-z]{26}$/)
    const second = await call(client, 'execute_code', { code: 'x + 1' })
    assert.equal(text(second), '42')
    assert.equal(second.structuredContent!.sessionId, sessionId, 'the same session')

    const chart = await call(client, 'execute_code', { code: 'import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()' })
    const image = chart.content.find((c) => c.type === 'image') as { data: string; mimeType: string } | undefined
    assert.ok(image, JSON.stringify(chart.content.map((c) => c.type)))
    assert.equal(image.mimeType, 'image/png')
    assert.equal(Buffer.from(image.data, 'base64').subarray(1, 4).toString(), 'PNG')

    const failing = await call(client, 'execute_code', { code: 'def f():\n    raise ValueError("boom")\nf()' })
    assert.equal(failing.isError, true)
    assert.match(text(failing), /ValueError: boom/)
    assert.match(text(failing), /\[error \(exit code 1\)\]/)

    const js = await call(client, 'execute_code', { code: 'const n: number = 2; n * 21', language: 'typescript' })
    assert.equal(text(js), '42')
    const cmd = await call(client, 'execute_command', { command: 'echo $((6 * 7)); exit 3' })
    assert.equal(cmd.isError, true)
    assert.match(text(cmd), /^42\n/)

    const written = await call(client, 'write_files', {
      files: [
        { path: 'data/notes.txt', text: 'hello' },
        { path: 'data/bytes.bin', base64: Buffer.from([0, 1, 2, 255]).toString('base64') },
      ],
    })
    assert.equal(written.isError, false)
    const read = await call(client, 'read_files', { paths: ['data/notes.txt', 'data/bytes.bin'] })
    const resources = read.content.filter((c) => c.type === 'resource') as { resource: { uri: string; text?: string; blob?: string } }[]
    assert.deepEqual(
      resources.map((r) => [r.resource.uri, r.resource.text ?? Buffer.from(r.resource.blob!, 'base64').toString('hex')]),
      [
        ['file:///data/notes.txt', 'hello'],
        ['file:///data/bytes.bin', '000102ff'],
      ],
    )
    const listed = await call(client, 'list_files', { path: 'data' })
    const links = listed.content.filter((c) => c.type === 'resource_link') as { name: string; size?: number }[]
    assert.deepEqual(links.map((l) => `${l.name}:${l.size}`).sort(), ['bytes.bin:4', 'notes.txt:5'])
    assert.equal((await call(client, 'remove_files', { paths: ['data/bytes.bin'] })).isError, false)
    assert.equal((await call(client, 'list_files', { path: 'data' })).content.filter((c) => c.type === 'resource_link').length, 1)

    const started = await call(client, 'start_task', { command: 'for i in 1 2 3 4 5 6 7 8 9; do echo tick $i; sleep 1; done' })
    const taskId = started.structuredContent!.taskId!
    let got: Result | undefined
    for (let i = 0; i < 50; i++) {
      got = await call(client, 'get_task', { task_id: taskId })
      if (/tick 2/.test(text(got))) break
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.equal(got!.structuredContent!.taskStatus, 'working')
    const stopped = await call(client, 'stop_task', { task_id: taskId })
    assert.equal(stopped.structuredContent!.taskStatus, 'canceled')

    // The connection ends (DELETE /mcp): its session is stopped.
    assert.equal(await status(sessionId), 'READY')
    await transport.terminateSession()
    await client.close()
    assert.equal(await status(sessionId), 'TERMINATED')
  })

  test('progress notifications carry output as it is produced; a cancelled call stops its execution', async (t) => {
    if (skip) return t.skip(skip)
    const { client } = await connect(keys.acme)
    const progress: string[] = []
    const streamed = await call(
      client,
      'execute_code',
      { code: 'import time\nfor i in range(3):\n    print("line", i, flush=True)\n    time.sleep(0.2)' },
      { onprogress: (p) => progress.push(p.message ?? '') },
    )
    assert.equal(text(streamed), 'line 0\nline 1\nline 2\n')
    assert.deepEqual(progress, ['line 0\n', 'line 1\n', 'line 2\n'])

    const abort = new AbortController()
    const started = performance.now()
    // Cancelled once it runs: its first output arrives as a progress notification.
    const cancelled = call(
      client,
      'execute_code',
      { code: 'import time\nprint("running", flush=True)\ntime.sleep(30)' },
      { signal: abort.signal, onprogress: () => abort.abort() },
    )
    await assert.rejects(cancelled, /abort/i)
    const next = await call(client, 'execute_command', { command: 'ps -eo args | grep -c "[t]ime.sleep(30)" || true' })
    assert.equal(text(next).trim(), '0', 'the cancelled cell is not running')
    assert.ok(performance.now() - started < 10_000)
  })

  test('two connections have separate sessions; a session id of another tenant is refused; a named session of one’s own works', async (t) => {
    if (skip) return t.skip(skip)
    const a = await connect(keys.acme)
    const b = await connect(keys.acme)
    await call(a.client, 'execute_code', { code: 'secret = "a"' })
    const fromB = await call(b.client, 'execute_code', { code: 'print(secret)' })
    assert.equal(fromB.isError, true)
    assert.match(text(fromB), /NameError/)
    assert.equal((await call(b.client, 'list_files', {})).content.filter((c) => c.type === 'resource_link').length, 0)
    const aSession = (await call(a.client, 'execute_code', { code: 'print(secret)' })).structuredContent!.sessionId!
    // b may name a's session: same tenant.
    assert.equal(text(await call(b.client, 'execute_code', { code: 'print(secret)', session_id: aSession })), 'a\n')
    // Another tenant may not, and learns nothing about it.
    const other = await connect(keys.other)
    const foreign = await call(other.client, 'execute_code', { code: 'print(secret)', session_id: aSession })
    assert.equal(foreign.isError, true)
    assert.match(text(foreign), /NotFound: no session/)
    // Nor can it use a's MCP connection id.
    const hijack = await fetch(`${server!.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${keys.other}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': a.transport.sessionId!,
        'mcp-protocol-version': '2025-06-18',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list' }),
    })
    assert.equal(hijack.status, 404)
  })

  test('bad input: unknown tool, wrong types, a 50 MB file, a client that disconnects mid-call', async (t) => {
    if (skip) return t.skip(skip)
    const { client, transport } = await connect(keys.acme)
    const unknown = await call(client, 'execute_cod', { code: '1' })
    assert.equal(unknown.isError, true)
    assert.match(text(unknown), /Tool execute_cod not found/)
    const wrong = await call(client, 'execute_code', { code: 42 })
    assert.equal(wrong.isError, true)
    assert.match(text(wrong), /expected string.*code/)
    const both = await call(client, 'write_files', { files: [{ path: 'a', text: 'x', base64: 'eA==' }] })
    assert.equal(both.isError, true)
    assert.match(text(both), /exactly one of text or base64/)

    const big = randomBytes(50 * 1024 * 1024)
    const wrote = await call(client, 'write_files', { files: [{ path: 'big.bin', base64: big.toString('base64') }] })
    assert.equal(wrote.isError, false, text(wrote))
    const sum = await call(client, 'execute_command', { command: 'sha256sum big.bin' })
    assert.equal(text(sum).split(' ')[0], createHash('sha256').update(big).digest('hex'))

    // A raw request whose client goes away: its cell is interrupted, the session answers at once.
    const gone = new AbortController()
    const request = fetch(`${server!.url}/mcp`, {
      method: 'POST',
      signal: gone.signal,
      headers: {
        authorization: `Bearer ${keys.acme}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': transport.sessionId!,
        'mcp-protocol-version': '2025-06-18',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 99,
        method: 'tools/call',
        params: { name: 'execute_code', arguments: { code: 'import time\ntime.sleep(30)' } },
      }),
    })
      .then((r) => r.body?.getReader().read())
      .catch(() => undefined)
    await waitUntil(() => server!.engine.list().some((s) => s.active > 0), 'the cell to run')
    gone.abort()
    await request
    // The abandoned cell is interrupted, not left to run its 30 s.
    await waitUntil(() => server!.engine.list().every((s) => s.active === 0), 'the abandoned cell to stop', 5000)
    const started = performance.now()
    assert.equal(text(await call(client, 'execute_code', { code: 'print("free")' })), 'free\n')
    assert.ok(performance.now() - started < 5000, 'the session was not kept busy by the abandoned cell')
  })

  test('a connection that goes quiet is closed after CODEBOX_MCP_IDLE_MS, and its session stopped', async (t) => {
    if (skip) return t.skip(skip)
    const { client } = await connect(keys.acme)
    const sessionId = (await call(client, 'execute_code', { code: 'print(1)' })).structuredContent!.sessionId!
    let s = await status(sessionId)
    for (let i = 0; i < 150 && s === 'READY'; i++) {
      await new Promise((r) => setTimeout(r, 100))
      s = await status(sessionId)
    }
    assert.equal(s, 'TERMINATED')
    await assert.rejects(client.listTools(), /404|not found|session/i)
  })
})
