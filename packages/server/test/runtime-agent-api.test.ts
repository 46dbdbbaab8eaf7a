/**
 * A hosted agent uses codebox's code interpreter from inside its sandbox (seed 001), on a real
 * server (bwrap) with API keys: `CODEBOX_URL` (the native API) and
 * `AWS_ENDPOINT_URL_BEDROCK_AGENTCORE` (the AgentCore API) point at the gateway's loopback port,
 * and the calls are served as the runtime's tenant with no key in the sandbox. The agent sees only
 * the sessions it started itself, reaches nothing but the code interpreter (not the audit log, not
 * creating interpreters), and no caller reaches into a hosted agent's own sandbox through the
 * session API.
 */
import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { BedrockAgentCoreClient, InvokeAgentRuntimeCommand } from '@aws-sdk/client-bedrock-agentcore'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { realServer } from './fixtures.ts'
import { rawTarGz } from './runtime-fixtures.ts'

const skip = await bwrapUnavailable()

/** An agent that, on each invocation, runs the calls its payload names against codebox's API and answers what it got. */
const agentPy = String.raw`import json, os, time, urllib.request, urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def call(base, method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

class Agent(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200, json.dumps({"status": "Healthy", "time_of_last_update": int(time.time())}).encode())

    def do_POST(self):
        payload = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        cb, ac = os.environ["CODEBOX_URL"], os.environ["AWS_ENDPOINT_URL_BEDROCK_AGENTCORE"]
        out = {"codebox_url": cb, "agentcore_url": ac}
        s, b = call(cb, "POST", "/v1/sessions", {"name": "agent-work"}, {"authorization": "Bearer not-a-key"})
        out["start"] = s
        sid = json.loads(b)["sessionId"]
        out["sid"] = sid
        s, b = call(cb, "POST", "/v1/sessions/%s/invoke" % sid, {"name": "executeCode", "arguments": {"code": "print(sum(i*i for i in range(1, 101)))", "language": "python"}})
        out["run"] = [s, json.loads(b)["structuredContent"]["stdout"].strip()]
        s, b = call(cb, "GET", "/v1/sessions?limit=100")
        out["listed"] = [x["sessionId"] for x in json.loads(b)["items"]]
        out["foreign"] = [call(cb, "GET", "/v1/sessions/" + x)[0] for x in payload["foreign"]]
        s, b = call(cb, "GET", "/v1/audit")
        out["audit"] = [s, json.loads(b)["error"]["code"]]
        s, b = call(ac, "PUT", "/code-interpreters/aws.codeinterpreter.v1/sessions/start", {}, {"authorization": "AWS4-HMAC-SHA256 Credential=codebox-gateway/20260101/us-east-1/bedrock-agentcore/aws4_request, SignedHeaders=host, Signature=00"})
        out["aws_start"] = s
        aws_sid = json.loads(b)["sessionId"]
        s, b = call(ac, "POST", "/code-interpreters/aws.codeinterpreter.v1/tools/invoke", {"name": "executeCode", "arguments": {"code": "print(6 * 7)", "language": "python"}}, {"x-amzn-code-interpreter-session-id": aws_sid})
        out["aws_run"] = [s, b"42" in b]
        s, b = call(ac, "PUT", "/code-interpreters", {"name": "mine", "networkConfiguration": {"networkMode": "SANDBOX"}})
        out["aws_create"] = [s, json.loads(b)["message"][:120]]
        out["aws_sid"] = aws_sid
        self.reply(200, json.dumps(out).encode())

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Agent).serve_forever()
`

test('a hosted agent uses the code interpreter through its gateway, as its tenant, seeing only its own sessions', { skip }, async (t) => {
  const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-agent-api-'))
  const server = await realServer(parent, { CODEBOX_POOL_SIZE: '0', CODEBOX_LOG_LEVEL: process.env.HOSTED_TEST_LOG ?? 'silent' })
  t.after(async () => {
    await server.close()
    fs.rmSync(parent, { recursive: true, force: true })
  })
  const acme = (await server.store.keys.create({ tenant: 'acme' })).secret
  const other = (await server.store.keys.create({ tenant: 'other' })).secret
  const awsKey = await server.store.awsKeys.create({ tenant: 'acme' })
  const call = (key: string, method: string, p: string, body?: Buffer | object, type = 'application/json') =>
    fetch(server.url + p, {
      method,
      ...(body ? { body: Buffer.isBuffer(body) ? body : JSON.stringify(body) } : {}),
      headers: { 'content-type': type, authorization: `Bearer ${key}` },
    })
  const up = await call(acme, 'POST', '/v1/runtime-bundles', rawTarGz([{ path: 'agent.py', body: agentPy }]), 'application/gzip')
  assert.equal(up.status, 201, await up.clone().text())
  const dep = await call(acme, 'POST', '/v1/runtimes', {
    name: 'worker',
    bundleId: ((await up.json()) as { bundleId: string }).bundleId,
    entrypoint: 'agent.py',
  })
  assert.equal(dep.status, 201, await dep.clone().text())
  const { agentRuntimeArn, agentRuntimeId } = (await dep.json()) as { agentRuntimeArn: string; agentRuntimeId: string }
  // The tenant's own session, and another tenant's: neither is the agent's to see.
  const ownerSession = ((await (await call(acme, 'POST', '/v1/sessions', {})).json()) as { sessionId: string }).sessionId
  const otherSession = ((await (await call(other, 'POST', '/v1/sessions', {})).json()) as { sessionId: string }).sessionId

  const aws = new BedrockAgentCoreClient({
    endpoint: server.url,
    region: 'us-east-1',
    credentials: { accessKeyId: awsKey.accessKeyId, secretAccessKey: awsKey.secretAccessKey },
    maxAttempts: 1,
  })
  const r = await aws.send(
    new InvokeAgentRuntimeCommand({
      agentRuntimeArn,
      runtimeSessionId: 'w'.repeat(40),
      payload: JSON.stringify({ foreign: [ownerSession, otherSession] }),
      contentType: 'application/json',
    }),
  )
  const out = JSON.parse(await r.response!.transformToString()) as Record<string, unknown>
  assert.equal(out.codebox_url, 'http://127.0.0.1:3129/codebox')
  assert.equal(out.agentcore_url, 'http://127.0.0.1:3129/agentcore')
  assert.equal(out.start, 201)
  assert.deepEqual(out.run, [200, '338350'], 'the number was computed in a code interpreter session')
  const sid = out.sid as string
  const awsSid = out.aws_sid as string
  assert.deepEqual(out.listed, [sid], 'the agent lists only the sessions it started')
  assert.deepEqual(out.foreign, [404, 404])
  assert.deepEqual(out.audit, [403, 'Forbidden'])
  assert.equal(out.aws_start, 200)
  assert.deepEqual(out.aws_run, [200, true])
  assert.equal((out.aws_create as [number, string])[0], 403)
  assert.match((out.aws_create as [number, string])[1], /code interpreter only/)

  // The agent's sessions are its tenant's: acme sees them (started by the agent), the other tenant does not.
  assert.equal((await call(acme, 'GET', `/v1/sessions/${sid}`)).status, 200)
  assert.equal((await call(acme, 'GET', `/v1/sessions/${awsSid}`)).status, 200)
  assert.equal((await call(other, 'GET', `/v1/sessions/${sid}`)).status, 404)
  const audit = (await (await call(acme, 'GET', `/v1/audit?sessionId=${sid}`)).json()) as { items: { action: string; keyId?: string }[] }
  assert.ok(
    audit.items.some((e) => e.action === 'executeCode' && e.keyId?.startsWith('agent:')),
    `the audit log names the agent as the caller: ${JSON.stringify(audit.items)}`,
  )

  // No one reaches into the hosted agent's own sandbox through the session API, not even its tenant.
  const hosted = (await (await call(acme, 'GET', `/v1/runtimes/${agentRuntimeId}/sessions`)).json()) as { items: { sessionId: string }[] }
  assert.equal(hosted.items.length, 1)
  const into = await call(acme, 'POST', `/v1/sessions/${hosted.items[0]!.sessionId}/invoke`, { name: 'executeCommand', arguments: { command: 'ps aux' } })
  assert.equal(into.status, 409)
  assert.match(((await into.json()) as { error: { message: string } }).error.message, /hosted agent of runtime .*reached through its runtime/)
})
