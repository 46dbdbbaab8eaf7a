/**
 * Hosted agents end to end on a real server (bwrap): a stdlib-only Python agent deployed as a
 * runtime and invoked through the AWS SDK's InvokeAgentRuntimeCommand. Each runtime session id gets
 * its own sandbox (isolated: its own process and memory), one session keeps its state across
 * invocations, an SSE answer streams through, StopRuntimeSessionCommand ends a session (the next
 * invocation starts the agent afresh), and an agent that crashes mid-request is AWS's
 * RuntimeClientError with what it printed readable in the runtime's logs.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import { InvokeAgentRuntimeCommand, StopRuntimeSessionCommand } from '@aws-sdk/client-bedrock-agentcore'
import { CodeboxClient } from '@codebox/sdk'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { agentCore, codebox, deployAgent, hostedServer, pythonAgent } from './hosted-fixtures.ts'

/** Counts its invocations; also crashes, asks its model through the gateway, scans for keys and streams, as the prompt says. */
const agentPy = pythonAgent(String.raw`    def do_POST(self):
        global count
        payload = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        prompt = payload.get("prompt", "")
        if prompt == "crash":
            print("about to crash on purpose", flush=True)
            os._exit(3)
        if prompt == "model":
            import urllib.request
            req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=b'{"model": "m", "max_tokens": 1, "messages": []}',
                                         headers={"content-type": "application/json", "x-api-key": os.environ["ANTHROPIC_API_KEY"], "anthropic-version": "2023-06-01"})
            self.reply(200, "application/json", urllib.request.urlopen(req, timeout=20).read())
            return
        if prompt == "scan":
            # Where could a key be? Every process's environment, and the files the sandbox holds.
            needles = [n.encode() for n in payload["needles"]]
            hits = []
            for p in os.listdir("/proc"):
                if p.isdigit():
                    try:
                        data = open("/proc/%s/environ" % p, "rb").read()
                    except OSError:
                        continue
                    hits += ["/proc/%s/environ" % p for n in needles if n in data]
            for root in ("/app", "/tmp", "/workspace", "/run", "/home"):
                for dirpath, _, files in os.walk(root):
                    for f in files:
                        try:
                            data = open(os.path.join(dirpath, f), "rb").read(1 << 20)
                        except OSError:
                            continue
                        hits += [os.path.join(dirpath, f) for n in needles if n in data]
            self.reply(200, "application/json", json.dumps({"hits": hits, "environs": len([p for p in os.listdir("/proc") if p.isdigit()])}).encode())
            return
        count += 1
        if prompt == "stream":
            return self.stream_parts()
        gateway_keys = sorted(k for k in os.environ if k.endswith("_API_KEY"))
        answer = {"count": count, "pid": os.getpid(), "sum": sum(range(101)), "session": self.headers.get("x-amzn-bedrock-agentcore-runtime-session-id"),
                  "cwd": os.getcwd(), "version": os.environ["AGENTCORE_RUNTIME_VERSION"], "keys": {k: os.environ[k] for k in gateway_keys}, "prompt": prompt}
        self.reply(200, "application/json", json.dumps(answer).encode())`)

// A scripted model provider on loopback: it answers with the key it was sent.
const provider = http.createServer((req, res) => {
  req.resume()
  req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ key: req.headers['x-api-key'] })))
})
before(() => new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve)))
after(() => provider.close())
const hosted = hostedServer({
  name: 'hosted',
  unavailable: bwrapUnavailable,
  env: () => ({ CODEBOX_GATEWAY_ANTHROPIC_URL: `http://127.0.0.1:${(provider.address() as AddressInfo).port}`, ANTHROPIC_API_KEY: 'the-operators-key' }),
})

const sid = (c: string): string => `${c.repeat(8)}-session-for-the-hosted-agent-test`

test('a deployed Python agent through InvokeAgentRuntime: one sandbox per runtime session, state kept, SSE, the gateway with the runtime’s own key, versions and rollback, stop, a crash with its logs', async (t) => {
  if (hosted.skip) return t.skip(hosted.skip)
  const server = hosted.server
  const call = (method: string, p: string, body?: Buffer | object, type = 'application/json') =>
    fetch(server.url + p, { method, ...(body ? { body: Buffer.isBuffer(body) ? body : JSON.stringify(body) } : {}), headers: { 'content-type': type } })
  const { agentRuntimeArn, agentRuntimeId, bundleId } = await deployAgent(server, 'counter', agentPy)
  const { aws, invoke } = agentCore(server, agentRuntimeArn)

  const a1 = await invoke(sid('a'), 'add the numbers 0 to 100')
  assert.equal(a1.sum, 5050)
  assert.equal(a1.count, 1)
  assert.equal(a1.session, sid('a'), 'the agent got the runtime session id header')
  assert.equal(a1.cwd, '/app')
  // The model keys inside are the gateway's placeholders, never a real key.
  for (const v of Object.values(a1.keys as Record<string, string>)) assert.equal(v, 'codebox-gateway')
  const a2 = await invoke(sid('a'), 'again')
  assert.deepEqual([a2.count, a2.pid], [2, a1.pid], 'the same process, with its memory')
  const b1 = await invoke(sid('b'), 'another session')
  assert.equal(b1.count, 1, 'another runtime session has its own agent')

  const sdk = new CodeboxClient({ baseUrl: server.url })
  const listed = await sdk.runtimes.sessions(agentRuntimeId)
  assert.deepEqual(listed.items.map((s) => s.runtimeSessionId).sort(), [sid('a'), sid('b')])
  assert.notEqual(listed.items[0]!.sessionId, listed.items[1]!.sessionId, 'one sandbox each')

  const streamed = await aws.send(
    new InvokeAgentRuntimeCommand({
      agentRuntimeArn,
      runtimeSessionId: sid('b'),
      payload: JSON.stringify({ prompt: 'stream' }),
      accept: 'text/event-stream',
    }),
  )
  assert.equal(streamed.contentType, 'text/event-stream')
  assert.equal(await streamed.response!.transformToString(), 'data: {"part": 0}\n\ndata: {"part": 1}\n\ndata: {"part": 2}\n\n')

  await aws.send(new StopRuntimeSessionCommand({ agentRuntimeArn, runtimeSessionId: sid('a') }))
  await assert.rejects(aws.send(new StopRuntimeSessionCommand({ agentRuntimeArn, runtimeSessionId: sid('a') })), { name: 'ResourceNotFoundException' })
  assert.equal((await invoke(sid('a'), 'after the stop')).count, 1, 'a stopped session starts afresh')

  await assert.rejects(invoke(sid('c'), 'crash'), (e: Error) => {
    assert.equal(e.name, 'RuntimeClientError')
    assert.match(e.message, /about to crash on purpose/)
    return true
  })
  const logs = await sdk.runtimes.logs(agentRuntimeId, sid('c'))
  assert.equal(logs.items.length, 1)
  assert.match(logs.items[0]!.text, /agent listening on 8080\nabout to crash on purpose\n/)
  assert.match(logs.items[0]!.ended ?? '', /exited with code 3/)
  // The CLI reads the same logs, and lists the running sessions.
  const cli = await codebox(['runtimes', 'logs', 'counter', '--session', sid('c')], server.url)
  assert.equal(cli.code, 0, cli.stderr)
  assert.match(cli.stdout, /\(version 1, .*exited with code 3\)\nagent listening on 8080\nabout to crash on purpose\n/)
  const running = await codebox(['runtimes', 'sessions', 'counter', '--json'], server.url)
  assert.equal(running.code, 0, running.stderr)
  assert.deepEqual((JSON.parse(running.stdout) as { runtimeSessionId: string }[]).map((x) => x.runtimeSessionId).sort(), [sid('a'), sid('b')])

  // The agent reaches its model through the gateway: the operator's key, or the runtime's own secret once set.
  assert.deepEqual(await invoke(sid('b'), 'model'), { key: 'the-operators-key' })
  const secret = await call('PUT', `/v1/runtimes/${agentRuntimeId}/secrets/ANTHROPIC_API_KEY`, { value: 'the-runtimes-own-key' })
  assert.equal(secret.status, 200)
  assert.deepEqual(await invoke(sid('b'), 'model'), { key: 'the-runtimes-own-key' })
  // Neither key is in any process's environment or any file of the sandbox (they live on the host).
  const scan = await aws.send(
    new InvokeAgentRuntimeCommand({
      agentRuntimeArn,
      runtimeSessionId: sid('b'),
      payload: JSON.stringify({ prompt: 'scan', needles: ['the-operators-key', 'the-runtimes-own-key'] }),
    }),
  )
  const scanned = JSON.parse(await scan.response!.transformToString()) as { hits: string[]; environs: number }
  assert.deepEqual(scanned.hits, [])
  assert.ok(scanned.environs >= 3, 'the scan saw the sandbox’s processes')

  // Per runtime in /metrics: invocations by outcome, sessions alive, sessions ended by reason.
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  const value = (name: string): number => Number(new RegExp(`^${name.replace(/[{}"]/g, (ch) => `\\${ch}`)} (\\d+)`, 'm').exec(metrics)?.[1] ?? NaN)
  assert.equal(value(`codebox_runtime_invocations_total{runtime="${agentRuntimeId}",outcome="ok"}`), 8)
  assert.equal(value(`codebox_runtime_invocations_total{runtime="${agentRuntimeId}",outcome="agent-error"}`), 1)
  assert.equal(value(`codebox_runtime_sessions{runtime="${agentRuntimeId}"}`), 2)
  assert.equal(value(`codebox_runtime_sessions_ended_total{runtime="${agentRuntimeId}",reason="stopped"}`), 1)
  const audit = (await (await fetch(`${server.url}/v1/audit?limit=100`)).json()) as { items: { action: string; outcome: string }[] }
  assert.equal(audit.items.filter((e) => e.action === 'invokeAgentRuntime').length, 9)
  assert.ok(audit.items.some((e) => e.action === 'runtimeSessionEnded'))

  // A new version serves new runtime sessions; running ones keep theirs; a rollback pins DEFAULT back.
  const v2 = await call('POST', '/v1/runtimes', { name: 'counter', bundleId })
  assert.equal(((await v2.json()) as { agentRuntimeVersion: string }).agentRuntimeVersion, '2')
  assert.equal((await invoke(sid('e'), 'which version')).version, '2')
  assert.equal((await invoke(sid('b'), 'which version')).version, '1', 'a running session keeps its version')
  assert.equal((await call('POST', `/v1/runtimes/${agentRuntimeId}/rollback`, { version: 1 })).status, 200)
  assert.equal((await invoke(sid('f'), 'which version')).version, '1')

  await assert.rejects(aws.send(new InvokeAgentRuntimeCommand({ agentRuntimeArn: agentRuntimeArn + 'x', payload: '{}' })), {
    name: 'ResourceNotFoundException',
  })
})
