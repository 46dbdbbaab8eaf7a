/**
 * Hosted agents on a server whose driver is gVisor (CODEBOX_DRIVER=gvisor): a stdlib-only Python
 * agent deployed as a runtime and invoked through the AWS SDK's InvokeAgentRuntimeCommand reaches
 * its sandbox's port 8080 through the gVisor driver's inbound relay (a host socket in the
 * sandbox's ports tmpfs). Each runtime session has its own sandbox and process, one keeps its
 * state, an SSE answer streams through, and StopRuntimeSessionCommand ends a session. Skipped, with
 * the reason, where runsc cannot run or the image has no /app to mount the code on.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { BedrockAgentCoreClient, InvokeAgentRuntimeCommand, StopRuntimeSessionCommand } from '@aws-sdk/client-bedrock-agentcore'
import { gvisorCodeUnavailable } from '../../sandbox/test/gvisor-fixtures.ts'
import { realServer } from './fixtures.ts'
import { rawTarGz } from './runtime-fixtures.ts'

const skip = (await gvisorCodeUnavailable()) ?? false

/** A runtime-contract agent with Python's standard library only: /ping, and /invocations that count. */
const agentPy = String.raw`import json, os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

count = 0

class Agent(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, ctype, body):
        self.send_response(code)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/ping":
            self.reply(200, "application/json", json.dumps({"status": "Healthy", "time_of_last_update": int(time.time())}).encode())
        else:
            self.reply(404, "text/plain", b"no")

    def do_POST(self):
        global count
        payload = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        count += 1
        if payload.get("prompt") == "stream":
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            for i in range(3):
                self.wfile.write(("data: " + json.dumps({"part": i}) + "\n\n").encode())
                self.wfile.flush()
            return
        kernel_log = os.popen("dmesg 2>/dev/null").read()
        self.reply(200, "application/json", json.dumps({"count": count, "pid": os.getpid(), "cwd": os.getcwd(), "gvisor": "gVisor" in kernel_log}).encode())

print("agent listening on", os.environ["PORT"], flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Agent).serve_forever()
`

const sid = (c: string): string => `${c.repeat(8)}-session-for-the-gvisor-hosted-test`

test('a deployed Python agent on gVisor through InvokeAgentRuntime: a sandbox per runtime session, state kept, SSE, stop', { skip }, async (t) => {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-hosted-gvisor-'))
  const server = await realServer(parent, { CODEBOX_DRIVER: 'gvisor', CODEBOX_POOL_SIZE: '0' })
  t.after(async () => {
    await server.close()
    fs.rmSync(parent, { recursive: true, force: true })
  })
  const call = (method: string, p: string, body: Buffer | object, type = 'application/json') =>
    fetch(server.url + p, { method, body: Buffer.isBuffer(body) ? body : JSON.stringify(body), headers: { 'content-type': type } })
  const up = await call('POST', '/v1/runtime-bundles', rawTarGz([{ path: 'agent.py', body: agentPy }]), 'application/gzip')
  assert.equal(up.status, 201, await up.clone().text())
  const { bundleId } = (await up.json()) as { bundleId: string }
  const dep = await call('POST', '/v1/runtimes', { name: 'counter', bundleId, entrypoint: 'agent.py' })
  assert.equal(dep.status, 201, await dep.clone().text())
  const { agentRuntimeArn } = (await dep.json()) as { agentRuntimeArn: string }

  const aws = new BedrockAgentCoreClient({
    endpoint: server.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' },
    maxAttempts: 1,
  })
  const invoke = async (session: string, prompt: string): Promise<Record<string, unknown>> => {
    const r = await aws.send(
      new InvokeAgentRuntimeCommand({ agentRuntimeArn, runtimeSessionId: session, payload: JSON.stringify({ prompt }), contentType: 'application/json' }),
    )
    return JSON.parse(await r.response!.transformToString()) as Record<string, unknown>
  }

  const a1 = await invoke(sid('a'), 'first')
  assert.deepEqual([a1.count, a1.cwd, a1.gvisor], [1, '/app', true])
  const a2 = await invoke(sid('a'), 'again')
  assert.deepEqual([a2.count, a2.pid], [2, a1.pid], 'the same process, with its memory')
  assert.equal((await invoke(sid('b'), 'another session')).count, 1, 'another runtime session has its own agent')

  const streamed = await aws.send(
    new InvokeAgentRuntimeCommand({ agentRuntimeArn, runtimeSessionId: sid('b'), payload: JSON.stringify({ prompt: 'stream' }), accept: 'text/event-stream' }),
  )
  assert.equal(streamed.contentType, 'text/event-stream')
  assert.equal(await streamed.response!.transformToString(), 'data: {"part": 0}\n\ndata: {"part": 1}\n\ndata: {"part": 2}\n\n')

  await aws.send(new StopRuntimeSessionCommand({ agentRuntimeArn, runtimeSessionId: sid('a') }))
  assert.equal((await invoke(sid('a'), 'after the stop')).count, 1, 'a stopped session starts afresh')
})
