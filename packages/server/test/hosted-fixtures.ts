/**
 * Hosted agents on a real codebox server, for the tests that deploy a stdlib-only Python agent as a
 * runtime and reach it: the server (a state dir of its own, no warm pool, logs as HOSTED_TEST_LOG
 * says, silent by default), the agent's source around its `do_POST`, deploying it, the AWS SDK's
 * client and the CLI. `hostedServer` adds the before and after hooks of the suite it is called in
 * (a file's top level or a `describe`).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before } from 'node:test'
import { BedrockAgentCoreClient, InvokeAgentRuntimeCommand } from '@aws-sdk/client-bedrock-agentcore'
import type { RuntimeInfo } from '@codebox/core'
import { CodeboxClient } from '@codebox/sdk'
import { startServer, type RunningServer, type ServerConfig } from '@codebox/server'
import { realServerConfig } from './fixtures.ts'
import { rawTarGz } from './runtime-fixtures.ts'

export interface HostedServer {
  /** Why the suite cannot run here, once `before` ran; then nothing else is set. */
  readonly skip: string | undefined
  readonly server: RunningServer
  /** Closes the server and starts a new one on the same state dir and store. */
  restart(): Promise<RunningServer>
}

export interface HostedServerOptions {
  /** Names the temporary directory (`codebox-<name>-…`). */
  name: string
  /** Why the server cannot run here (its driver is missing), or undefined. */
  unavailable: () => Promise<string | undefined>
  /** Settings over the fixture's, read when `before` runs (after the hooks registered earlier). */
  env?: () => Record<string, string>
}

/** A real server for the suite: started in `before` unless `unavailable` says why not, closed with its files in `after`. */
export function hostedServer(options: HostedServerOptions): HostedServer {
  const state: { skip?: string; server?: RunningServer; work?: string; config?: ServerConfig } = {}
  before(async () => {
    state.skip = await options.unavailable()
    if (state.skip) return
    state.work = await mkdtemp(path.join(tmpdir(), `codebox-${options.name}-`))
    state.config = await realServerConfig(state.work, {
      CODEBOX_POOL_SIZE: '0',
      CODEBOX_LOG_LEVEL: process.env.HOSTED_TEST_LOG ?? 'silent',
      ...options.env?.(),
    })
    state.server = await startServer(state.config)
  })
  after(async () => {
    await state.server?.close()
    if (state.work) await rm(state.work, { recursive: true, force: true })
  })
  const running = (): RunningServer => {
    if (!state.server) throw new Error('the hosted-agent test server is not running (skipped, or before() failed)')
    return state.server
  }
  return {
    get skip() {
      return state.skip
    },
    get server() {
      return running()
    },
    async restart() {
      await running().close()
      state.server = undefined
      state.server = await startServer(state.config!)
      return state.server
    },
  }
}

/**
 * A runtime-contract agent with Python's standard library only: `doPost` (Python: the handler's
 * `def do_POST(self):`, indented by four spaces) with a module-level `count`, `self.reply(code,
 * ctype, body)`, `self.stream_parts()` (an SSE answer of three `{"part": i}` events) and base64,
 * json, os, sys and time imported. GET /ping answers Healthy; it listens on $PORT and says so.
 */
export function pythonAgent(doPost: string): string {
  return String.raw`import base64, json, os, sys, time
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

    def stream_parts(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        for i in range(3):
            self.wfile.write(("data: " + json.dumps({"part": i}) + "\n\n").encode())
            self.wfile.flush()
            time.sleep(0.05)

    def do_GET(self):
        if self.path == "/ping":
            self.reply(200, "application/json", json.dumps({"status": "Healthy", "time_of_last_update": int(time.time())}).encode())
        else:
            self.reply(404, "text/plain", b"no")

${doPost.trimEnd()}

print("agent listening on", os.environ["PORT"], flush=True)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Agent).serve_forever()
`
}

/** Uploads `source` as a bundle's agent.py and deploys it as runtime `name` (the SDK's calls); the bundle id comes back too. */
export async function deployAgent(server: RunningServer, name: string, source: string): Promise<RuntimeInfo & { bundleId: string }> {
  const sdk = new CodeboxClient({ baseUrl: server.url })
  const { bundleId } = await sdk.runtimes.uploadBundle(rawTarGz([{ path: 'agent.py', body: source }]))
  return { ...(await sdk.runtimes.deploy({ name, bundleId, entrypoint: 'agent.py' })), bundleId }
}

/** The AWS SDK's client of the server's AgentCore door (no retries), and a JSON invocation of one runtime through it. */
export function agentCore(server: RunningServer, agentRuntimeArn: string) {
  const aws = new BedrockAgentCoreClient({
    endpoint: server.url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x' },
    maxAttempts: 1,
  })
  /** Sends `{prompt}` to the runtime session and returns the agent's JSON answer; the session id must come back. */
  const invoke = async (runtimeSessionId: string, prompt: string): Promise<Record<string, unknown>> => {
    const r = await aws.send(
      new InvokeAgentRuntimeCommand({ agentRuntimeArn, runtimeSessionId, payload: JSON.stringify({ prompt }), contentType: 'application/json' }),
    )
    assert.equal(r.runtimeSessionId, runtimeSessionId)
    return JSON.parse(await r.response!.transformToString()) as Record<string, unknown>
  }
  return { aws, invoke }
}

const bin = path.join(import.meta.dirname, '../../cli/bin/codebox')

/** Runs the `codebox` CLI against `url` with `input` on its stdin (60 s at the most). */
export function codebox(args: string[], url: string, input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, CODEBOX_URL: url }, timeout: 60_000 })
    child.stdin.end(input)
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}
