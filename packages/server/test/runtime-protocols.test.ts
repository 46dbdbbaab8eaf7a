/**
 * A hosted agent's other protocols end to end on a real server (bwrap), through AWS's paths and
 * the real clients: an MCP server (`--protocol MCP`, /mcp on 8000, no /ping) driven by the official
 * MCP SDK's StreamableHTTPClientTransport with `/runtimes/{arn}/invocations` as its URL, and by
 * InvokeAgentRuntimeCommand with its mcpSessionId; an A2A server (`--protocol A2A`, 9000) whose card
 * comes from GetAgentCardCommand and whose messages go through the A2A SDK's JSON-RPC transport; a
 * WebSocket at `/runtimes/{arn}/ws` piped to the agent's /ws on 8080, its session id as a header or
 * a query parameter. Each runtime session is its own sandbox with its own memory; a protocol a
 * runtime does not serve is a clear error.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import type { Message } from '@a2a-js/sdk'
import { LegacyJsonRpcTransport } from '@a2a-js/sdk/compat/v0_3/client'
import { BedrockAgentCoreClient, GetAgentCardCommand, InvokeAgentRuntimeCommand } from '@aws-sdk/client-bedrock-agentcore'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { CodeboxClient } from '@codebox/sdk'
import WebSocket from 'ws'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { pipeBounded } from '../src/agentcore/runtime-protocols.ts'
import { userMessage } from './a2a-fixtures.ts'
import { realServer } from './fixtures.ts'
import { rawTarGz } from './runtime-fixtures.ts'

const skip = await bwrapUnavailable()

const pyServer = (handler: string): string => String.raw`import base64, hashlib, json, os, struct, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"n": 0}

class Agent(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body=b"", ctype="application/json"):
        self.send_response(code)
        if body:
            self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        return json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")

    def who(self):
        return {"pid": os.getpid(), "session": self.headers.get("x-amzn-bedrock-agentcore-runtime-session-id"), "mcpSession": self.headers.get("mcp-session-id")}
${handler}
print("listening on", os.environ["PORT"], flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Agent).serve_forever()
`

/** A stateless MCP server over streamable HTTP (JSON answers), with a tool that adds to the process's total. */
const mcpAgent = pyServer(String.raw`
    def do_GET(self):
        self.reply(405 if self.path == "/mcp" else 404)

    def do_DELETE(self):
        self.reply(200 if self.path == "/mcp" else 404)

    def do_POST(self):
        msg = self.body()
        if self.path != "/mcp":
            return self.reply(404)
        if "id" not in msg:
            return self.reply(202)
        method, params = msg["method"], msg.get("params") or {}
        if method == "initialize":
            result = {"protocolVersion": params.get("protocolVersion"), "capabilities": {"tools": {}}, "serverInfo": {"name": "adder", "version": "1.0.0"}}
        elif method == "tools/list":
            result = {"tools": [{"name": "add", "description": "adds n to this session's total", "inputSchema": {"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]}}]}
        elif method == "tools/call":
            state["n"] += params["arguments"]["n"]
            result = {"content": [{"type": "text", "text": json.dumps(dict(total=state["n"], **self.who()))}]}
        else:
            return self.reply(200, json.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": {"code": -32601, "message": "no method " + method}}).encode())
        self.reply(200, json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode())
`)

/** An A2A v0.3 JSON-RPC server at / with its card; each message is counted. */
const a2aAgent = pyServer(String.raw`
    def do_GET(self):
        if self.path == "/.well-known/agent-card.json":
            card = {"name": "echo-agent", "description": "echoes with a count", "url": "http://127.0.0.1:9000/", "version": "1.0.0",
                    "protocolVersion": "0.3.0", "preferredTransport": "JSONRPC", "capabilities": {"streaming": False},
                    "defaultInputModes": ["text/plain"], "defaultOutputModes": ["text/plain"],
                    "skills": [{"id": "echo", "name": "Echo", "description": "echoes", "tags": ["echo"]}]}
            return self.reply(200, json.dumps(card).encode())
        self.reply(404)

    def do_POST(self):
        msg = self.body()
        if self.path != "/" or msg.get("method") != "message/send":
            return self.reply(404)
        state["n"] += 1
        text = "".join(p.get("text", "") for p in msg["params"]["message"]["parts"])
        answer = {"kind": "message", "role": "agent", "messageId": str(uuid.uuid4()), "parts": [{"kind": "text", "text": "#%d %s %s" % (state["n"], text, json.dumps(self.who()))}]}
        self.reply(200, json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": answer}).encode())
`)

/** The runtime contract (/ping, /invocations) and a WebSocket at /ws answering each text frame with the process's count. */
const wsAgent = pyServer(String.raw`
    def do_POST(self):
        self.body()
        self.reply(200, json.dumps(self.who()).encode())

    def do_GET(self):
        if self.path == "/ping":
            return self.reply(200, b'{"status": "Healthy"}')
        if self.path != "/ws":
            return self.reply(404)
        accept = base64.b64encode(hashlib.sha1((self.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("X-Agent-Saw-Session", self.headers.get("x-amzn-bedrock-agentcore-runtime-session-id") or "")
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        who = self.who()
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            op, size = head[0] & 15, head[1] & 127
            if size == 126:
                size = struct.unpack(">H", self.rfile.read(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 128 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(size)))
            if op == 8:
                self.wfile.write(b"\x88\x02\x03\xe8")
                return
            if op != 1:
                continue
            state["n"] += 1
            out = json.dumps(dict(n=state["n"], echo=data.decode(), **who)).encode()
            self.wfile.write(bytes([129, len(out)]) if len(out) < 126 else bytes([129, 126]) + struct.pack(">H", len(out)))
            self.wfile.write(out)
            self.wfile.flush()
`)

const sid = (c: string): string => `${c.repeat(8)}-session-for-the-protocols-test`

test(
  'MCP, A2A and WebSocket agents on AWS’s paths: the official clients, one sandbox per runtime session, state kept, protocols not served refused',
  { skip },
  async (t) => {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-protocols-'))
    const server = await realServer(parent, { CODEBOX_POOL_SIZE: '0', CODEBOX_LOG_LEVEL: process.env.HOSTED_TEST_LOG ?? 'silent' })
    t.after(async () => {
      await server.close()
      fs.rmSync(parent, { recursive: true, force: true })
    })
    const deploy = async (name: string, code: string, protocol: string): Promise<{ agentRuntimeArn: string; agentRuntimeId: string }> => {
      const up = await fetch(`${server.url}/v1/runtime-bundles`, {
        method: 'POST',
        body: rawTarGz([{ path: 'agent.py', body: code }]),
        headers: { 'content-type': 'application/gzip' },
      })
      assert.equal(up.status, 201, await up.clone().text())
      const { bundleId } = (await up.json()) as { bundleId: string }
      const dep = await fetch(`${server.url}/v1/runtimes`, {
        method: 'POST',
        body: JSON.stringify({ name, bundleId, entrypoint: 'agent.py', protocol }),
        headers: { 'content-type': 'application/json' },
      })
      assert.equal(dep.status, 201, await dep.clone().text())
      return (await dep.json()) as { agentRuntimeArn: string; agentRuntimeId: string }
    }
    const [mcp, a2a, ws] = await Promise.all([deploy('adder', mcpAgent, 'MCP'), deploy('echo', a2aAgent, 'A2A'), deploy('talker', wsAgent, 'HTTP')])
    const invocationsUrl = (arn: string): string => `${server.url}/runtimes/${encodeURIComponent(arn)}/invocations?qualifier=DEFAULT`
    const aws = new BedrockAgentCoreClient({
      endpoint: server.url,
      region: 'us-east-1',
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' },
      maxAttempts: 1,
    })
    const sdk = new CodeboxClient({ baseUrl: server.url })

    // MCP: the official client, its URL the runtime's invocations; the runtime session follows Mcp-Session-Id.
    const mcpClient = async (): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> => {
      const transport = new StreamableHTTPClientTransport(new URL(invocationsUrl(mcp.agentRuntimeArn)))
      const client = new Client({ name: 'protocols-test', version: '1.0.0' })
      await client.connect(transport)
      t.after(() => client.close())
      return { client, transport }
    }
    const add = async (client: Client, n: number): Promise<{ total: number; pid: number; session: string; mcpSession: string }> => {
      const r = (await client.callTool({ name: 'add', arguments: { n } })) as { content: { type: string; text: string }[] }
      return JSON.parse(r.content[0]!.text) as { total: number; pid: number; session: string; mcpSession: string }
    }
    const first = await mcpClient()
    assert.equal(first.client.getServerVersion()?.name, 'adder')
    assert.deepEqual(
      (await first.client.listTools()).tools.map((x) => x.name),
      ['add'],
    )
    const a = await add(first.client, 2)
    const a2 = await add(first.client, 3)
    assert.equal(a.total, 2)
    assert.deepEqual([a2.total, a2.pid], [5, a.pid], 'the same process keeps its total across calls')
    assert.ok(first.transport.sessionId && first.transport.sessionId.length >= 33, 'the client got an Mcp-Session-Id')
    assert.deepEqual([a.session, a.mcpSession], [first.transport.sessionId, first.transport.sessionId], 'the agent saw the runtime session as both headers')
    const second = await mcpClient()
    const b = await add(second.client, 10)
    assert.equal(b.total, 10, 'another MCP session is another runtime session, with its own memory')
    assert.notEqual(b.session, a.session)
    assert.equal(b.session, second.transport.sessionId)
    // The AWS SDK reaches the same session (it always sends a runtime session id: that names the session).
    const viaAws = await aws.send(
      new InvokeAgentRuntimeCommand({
        agentRuntimeArn: mcp.agentRuntimeArn,
        runtimeSessionId: first.transport.sessionId,
        mcpSessionId: first.transport.sessionId,
        contentType: 'application/json',
        accept: 'application/json, text/event-stream',
        payload: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'add', arguments: { n: 1 } } }),
      }),
    )
    const viaAwsBody = JSON.parse(await viaAws.response!.transformToString()) as { result: { content: { text: string }[] } }
    assert.equal((JSON.parse(viaAwsBody.result.content[0]!.text) as { total: number }).total, 6)
    await second.transport.terminateSession()
    assert.equal((await sdk.runtimes.sessions(mcp.agentRuntimeId)).items.length, 2)

    // A2A: GetAgentCard, then messages through the A2A SDK's JSON-RPC transport, one runtime session.
    const card = await aws.send(new GetAgentCardCommand({ agentRuntimeArn: a2a.agentRuntimeArn, runtimeSessionId: sid('c') }))
    assert.equal(card.runtimeSessionId, sid('c'))
    assert.equal((card.agentCard as { name?: string }).name, 'echo-agent')
    const withSession: typeof fetch = (input, init) =>
      fetch(input, {
        ...init,
        headers: { ...Object.fromEntries(new Headers(init?.headers).entries()), 'x-amzn-bedrock-agentcore-runtime-session-id': sid('c') },
      })
    const a2aTransport = new LegacyJsonRpcTransport({
      endpoint: `${server.url}/runtimes/${encodeURIComponent(a2a.agentRuntimeArn)}/invocations/`,
      fetchImpl: withSession,
    })
    const say = async (text: string): Promise<string> => {
      const r = (await a2aTransport.sendMessage(userMessage(text))) as Message
      const part = r.parts[0]?.content
      assert.equal(part?.$case, 'text', JSON.stringify(r).slice(0, 300))
      return part.value
    }
    const hello = await say('hello')
    assert.match(hello, /^#1 hello /)
    assert.equal((JSON.parse(hello.replace(/^#1 hello /, '')) as { session: string }).session, sid('c'))
    assert.match(await say('again'), /^#2 again /, 'the same A2A server, its count kept')
    // InvokeAgentRuntime carries A2A's JSON-RPC as its payload, to the same session.
    const viaInvoke = await aws.send(
      new InvokeAgentRuntimeCommand({
        agentRuntimeArn: a2a.agentRuntimeArn,
        runtimeSessionId: sid('c'),
        contentType: 'application/json',
        payload: JSON.stringify({
          jsonrpc: '2.0',
          id: 'req-1',
          method: 'message/send',
          params: { message: { kind: 'message', role: 'user', messageId: randomUUID(), parts: [{ kind: 'text', text: 'third' }] } },
        }),
      }),
    )
    const viaInvokeBody = JSON.parse(await viaInvoke.response!.transformToString()) as { id: string; result: { parts: { text: string }[] } }
    assert.equal(viaInvokeBody.id, 'req-1')
    assert.match(viaInvokeBody.result.parts[0]!.text, /^#3 third /)

    // WebSocket: the agent's /ws on 8080, its handshake passed through; the session id as a header or a query parameter.
    const wsUrl = (arn: string, query = ''): string => `${server.url.replace(/^http/, 'ws')}/runtimes/${encodeURIComponent(arn)}/ws${query}`
    const open = async (socket: WebSocket): Promise<Record<string, string | string[] | undefined>> =>
      new Promise((resolve, reject) => {
        socket.once('upgrade', (res) => resolve(res.headers))
        socket.once('unexpected-response', (_req, res) => reject(new Error(`the upgrade was answered ${res.statusCode}`)))
        socket.once('error', reject)
      })
    const exchange = (socket: WebSocket, text: string): Promise<{ n: number; echo: string; pid: number; session: string }> =>
      new Promise((resolve, reject) => {
        socket.once('message', (data: Buffer) => resolve(JSON.parse(data.toString()) as { n: number; echo: string; pid: number; session: string }))
        socket.once('error', reject)
        socket.send(text)
      })
    const s1 = new WebSocket(wsUrl(ws.agentRuntimeArn), { headers: { 'x-amzn-bedrock-agentcore-runtime-session-id': sid('d') } })
    t.after(() => s1.terminate())
    const handshake = await open(s1)
    assert.equal(handshake['x-agent-saw-session'], sid('d'), 'the agent’s own 101 came through')
    assert.equal(handshake['x-amzn-bedrock-agentcore-runtime-session-id'], sid('d'))
    const m1 = await exchange(s1, 'one')
    const m2 = await exchange(s1, 'two')
    assert.deepEqual([m1.n, m1.echo, m1.session], [1, 'one', sid('d')])
    assert.deepEqual([m2.n, m2.pid], [2, m1.pid], 'state kept across messages')
    // Node's own WebSocket cannot set headers: the session id goes in the query, as AWS allows.
    const s2 = new globalThis.WebSocket(wsUrl(ws.agentRuntimeArn, `?X-Amzn-Bedrock-AgentCore-Runtime-Session-Id=${sid('e')}&qualifier=DEFAULT`))
    const m3 = await new Promise<{ n: number; pid: number; session: string }>((resolve, reject) => {
      s2.onopen = () => s2.send('three')
      s2.onmessage = (e) => resolve(JSON.parse(String(e.data)) as { n: number; pid: number; session: string })
      s2.onerror = () => reject(new Error('the WebSocket failed'))
    })
    s2.close()
    assert.deepEqual([m3.n, m3.session], [1, sid('e')], 'another session: another agent, its own count')
    const sessions = await sdk.runtimes.sessions(ws.agentRuntimeId)
    assert.deepEqual(sessions.items.map((x) => x.runtimeSessionId).sort(), [sid('d'), sid('e')])
    assert.notEqual(sessions.items[0]!.sessionId, sessions.items[1]!.sessionId, 'one sandbox each')
    // While its WebSocket is open the runtime session is busy.
    assert.equal(sessions.items.find((x) => x.runtimeSessionId === sid('d'))?.activeInvocations, 1)
    s1.close()

    // A protocol a runtime does not serve is a clear error.
    await assert.rejects(aws.send(new GetAgentCardCommand({ agentRuntimeArn: mcp.agentRuntimeArn, runtimeSessionId: sid('f') })), (e: Error) => {
      assert.equal(e.name, 'ValidationException')
      assert.match(e.message, /serves MCP: only A2A runtimes have an agent card/)
      return true
    })
    const notWs = new WebSocket(wsUrl(a2a.agentRuntimeArn))
    await assert.rejects(open(notWs), /the upgrade was answered 400/)
    const getOnHttp = await fetch(invocationsUrl(ws.agentRuntimeArn))
    assert.equal(getOnHttp.status, 400)
    assert.match(await getOnHttp.text(), /serves HTTP: GET \/runtimes\/\{arn\}\/invocations is for MCP runtimes/)
    assert.equal((await sdk.runtimes.sessions(a2a.agentRuntimeId)).items.length, 1, 'a refused request starts no session')
    const builtIn = await fetch(
      `${server.url}/runtimes/${encodeURIComponent('arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/codebox-agent')}/invocations/.well-known/agent-card.json`,
    )
    assert.equal(builtIn.status, 400)
    assert.match(await builtIn.text(), /codebox-agent serves HTTP: it has no agent card/)

    // A WebSocket still open when the server shuts down is closed with its session; the shutdown does not wait for it.
    const last = new WebSocket(wsUrl(ws.agentRuntimeArn), { headers: { 'x-amzn-bedrock-agentcore-runtime-session-id': sid('g') } })
    await open(last)
    assert.equal((await exchange(last, 'still here')).n, 1)
    const closed = new Promise<void>((resolve) => last.once('close', () => resolve()))
    const shutdownStarted = Date.now()
    await server.close()
    await closed
    assert.ok(Date.now() - shutdownStarted < 30_000, `the shutdown took ${Date.now() - shutdownStarted} ms`)
  },
)

test('a WebSocket pipe carries bytes both ways, stays open while they flow, and ends both sides after its idle time', async (t) => {
  // Two loopback connections stand in for the client's socket and the agent's port stream.
  const pair = async (): Promise<[net.Socket, net.Socket]> => {
    const server = net.createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    t.after(() => server.close())
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
    const outer = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
    return [outer, await accepted]
  }
  const [client, clientSide] = await pair()
  const [agentSide, agent] = await pair()
  t.after(() => [client, clientSide, agentSide, agent].forEach((s) => s.destroy()))
  let done = 0
  pipeBounded(clientSide, agentSide, 600, () => done++)
  const next = (s: net.Socket): Promise<string> => new Promise((resolve) => s.once('data', (c: Buffer) => resolve(c.toString())))
  client.write('to the agent')
  assert.equal(await next(agent), 'to the agent')
  agent.write('to the client')
  assert.equal(await next(client), 'to the client')
  // Traffic every 200 ms keeps it open past its idle time.
  for (let i = 0; i < 6; i++) {
    await new Promise((r) => setTimeout(r, 200))
    client.write(`tick ${i}`)
    await next(agent)
  }
  assert.equal(done, 0)
  const started = Date.now()
  await Promise.all([new Promise((r) => client.once('close', r)), new Promise((r) => agent.once('close', r))])
  assert.ok(Date.now() - started >= 500, 'not before its idle time')
  await new Promise((r) => setTimeout(r, 100))
  assert.equal(done, 1, 'done once, however many ways it ended')
})
