/**
 * Issue 14's headline, end to end on a real server (bwrap): a TypeScript agent written for AgentCore
 * Runtime with AWS's own packages (fixtures/agents/strands-ts: `bedrock-agentcore`'s
 * BedrockAgentCoreApp, a Strands agent on a BedrockModel, AgentCore's code interpreter tools), with
 * nothing codebox-specific in it, deployed with `codebox runtimes deploy` (which runs `npm ci` on
 * its lock file) and invoked through the AWS SDK's InvokeAgentRuntimeCommand. Its model is a
 * scripted Bedrock server reached through the gateway: the first turn asks for Python code to run,
 * the second echoes the tool result it was sent, so the number in the agent's SSE answer can only
 * have been computed in a code interpreter sandbox. That sandbox belongs to the runtime's tenant,
 * and the model requests were signed with the operator's AWS key, never the sandbox's placeholder.
 * Needs the npm registry (skipped when it cannot be reached) and the bwrap driver.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { BedrockAgentCoreClient, InvokeAgentRuntimeCommand, ListCodeInterpreterSessionsCommand } from '@aws-sdk/client-bedrock-agentcore'
import { SignatureV4 } from '@smithy/signature-v4'
import { CodeboxClient } from '@codebox/sdk'
import { startModelServer, type ModelRequestView, type ScriptedReply } from '../../agent/test/model-servers.ts'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { NodeSha256 } from '../src/services/gateway-http.ts'
import { realServer } from './fixtures.ts'

const fixture = path.join(import.meta.dirname, 'fixtures/agents/strands-ts')
const bin = path.join(import.meta.dirname, '../../cli/bin/codebox')
/** The Node that runs the tests first on PATH, so npm (`#!/usr/bin/env node`) and the CLI run on it. */
const childPath = `${path.dirname(process.execPath)}${path.delimiter}${process.env.PATH ?? ''}`

interface Run {
  code: number
  stdout: string
  stderr: string
}

function run(command: string, args: string[], options: { env?: Record<string, string | undefined>; timeoutMs: number; cwd?: string }): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PATH: childPath, ...options.env },
      timeout: options.timeoutMs,
      ...(options.cwd ? { cwd: options.cwd } : {}),
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.on('error', (e) => resolve({ code: -1, stdout, stderr: stderr + e.message }))
    child.on('close', (code, signal) => resolve({ code: code ?? -1, stdout, stderr: signal ? `${stderr}\n(killed by ${signal})` : stderr }))
  })
}

/** Why the fixture's dependencies cannot be installed here (the npm registry does not answer within 30 s), or undefined. */
async function npmUnavailable(): Promise<string | undefined> {
  const lock = JSON.parse(fs.readFileSync(path.join(fixture, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string }> }
  const version = lock.packages['node_modules/bedrock-agentcore']?.version
  const r = await run('npm', ['view', `bedrock-agentcore@${version}`, 'version', '--fetch-retries=1', '--fetch-timeout=10000'], {
    timeoutMs: 30_000,
    cwd: os.tmpdir(),
  })
  if (r.code === 0 && r.stdout.trim() === version) return undefined
  const lines = r.stderr.split('\n')
  const why = lines.find((l) => /FetchError|npm error code/.test(l)) ?? lines.filter(Boolean).at(-1) ?? `exit ${r.code}`
  return `the npm registry cannot be reached to install the agent's dependencies (npm view bedrock-agentcore@${version}: ${why.slice(0, 200)})`
}

const skip = (await bwrapUnavailable()) ?? (await npmUnavailable())

/** The operator's AWS key for Bedrock, configured on the server only. */
const operator = { accessKeyId: 'AKIAOPERATORBEDROCK1', secretAccessKey: 'operator-secret-for-the-bedrock-gateway-test' }
const region = 'us-east-1'
const expression = 'sum(i * i for i in range(1, 101))'

/** Turn 1: run Python in the code interpreter; turn 2: report what the tool returned (nothing else). */
function script(req: ModelRequestView): ScriptedReply {
  const tools = (
    ((req.raw as { toolConfig?: { tools?: { toolSpec?: { name?: string } }[] } }).toolConfig?.tools ?? []) as { toolSpec?: { name?: string } }[]
  ).map((t) => t.toolSpec?.name)
  if (!tools.includes('executeCode')) return { text: `no executeCode tool was offered (tools: ${tools.join(', ')})` }
  if (req.toolResults.length === 0) return { toolUse: { name: 'executeCode', input: { code: `print(${expression})`, language: 'python' } } }
  return { text: `The sandbox computed ${req.toolResults.at(-1)!.trim()}.` }
}

/** Server-Sent Events: each event's name (default `message`) and its JSON data. */
function parseSse(text: string): { event: string; data: unknown }[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() !== '')
    .map((block) => {
      const lines = block.split('\n')
      const event =
        lines
          .find((l) => l.startsWith('event:'))
          ?.slice(6)
          .trim() ?? 'message'
      const data = lines
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trimStart())
        .join('\n')
      return { event, data: JSON.parse(data) as unknown }
    })
}

/** Whether `req` carries a valid SigV4 signature (service bedrock) made with `credentials`. */
async function signedWith(req: ModelRequestView, credentials: typeof operator, upstreamUrl: string): Promise<boolean> {
  const auth = /^AWS4-HMAC-SHA256 Credential=[^,]+, SignedHeaders=([a-z0-9;-]+), Signature=[0-9a-f]{64}$/.exec(req.headers.authorization ?? '')
  const date = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(req.headers['x-amz-date'] ?? '')
  if (!auth || !date) return false
  const [, y, mo, d, h, mi, s] = date.map(Number) as [number, number, number, number, number, number, number]
  const headers = Object.fromEntries(auth[1]!.split(';').map((name) => [name, req.headers[name] ?? '']))
  const url = new URL(upstreamUrl)
  const signed = await new SignatureV4({ service: 'bedrock', region, credentials, sha256: NodeSha256 }).sign(
    { method: 'POST', protocol: url.protocol, hostname: url.hostname, port: Number(url.port), path: req.path, query: {}, headers, body: req.body },
    { signingDate: new Date(Date.UTC(y, mo - 1, d, h, mi, s)) },
  )
  return signed.headers.authorization === req.headers.authorization
}

test(
  'a TypeScript Strands agent on AWS’s bedrock-agentcore, deployed with the CLI: its model through the gateway, a number computed in a code interpreter sandbox of the runtime’s tenant, streamed back as SSE',
  { skip, timeout: 600_000 },
  async (t) => {
    const parent = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-strands-'))
    t.after(() => fs.rmSync(parent, { recursive: true, force: true }))
    // The gateway forwards to its upstream over HTTP/1.1.
    const model = await startModelServer('bedrock', script, { http1: true })
    t.after(() => model.close())
    const server = await realServer(parent, {
      CODEBOX_POOL_SIZE: '0',
      CODEBOX_LOG_LEVEL: process.env.HOSTED_TEST_LOG ?? 'silent',
      CODEBOX_GATEWAY_BEDROCK_URL: model.url,
      AWS_REGION: region,
      AWS_ACCESS_KEY_ID: operator.accessKeyId,
      AWS_SECRET_ACCESS_KEY: operator.secretAccessKey,
    })
    t.after(() => server.close())
    // Two tenants: acme deploys and invokes; other must see none of it.
    const acme = { apiKey: (await server.store.keys.create({ tenant: 'acme' })).secret, aws: await server.store.awsKeys.create({ tenant: 'acme' }) }
    const other = await server.store.awsKeys.create({ tenant: 'other' })

    // Deploy exactly as the README says, from a copy without node_modules: the CLI runs npm ci.
    const dir = path.join(parent, 'agent')
    fs.cpSync(fixture, dir, { recursive: true, filter: (src) => path.basename(src) !== 'node_modules' })
    const deployed = await run(bin, ['runtimes', 'deploy', dir, '--name', 'strands_calculator', '--entrypoint', 'agent.ts', '--json'], {
      env: { CODEBOX_URL: server.url, CODEBOX_API_KEY: acme.apiKey },
      timeoutMs: 300_000,
    })
    assert.equal(deployed.code, 0, deployed.stderr)
    assert.match(deployed.stderr, /installing dependencies: npm ci --omit=dev/)
    assert.ok(fs.existsSync(path.join(dir, 'node_modules/bedrock-agentcore/package.json')), 'npm ci installed the dependencies')
    const { agentRuntimeArn, agentRuntimeId } = JSON.parse(deployed.stdout) as { agentRuntimeArn: string; agentRuntimeId: string }

    const aws = (key: { accessKeyId: string; secretAccessKey: string }) =>
      new BedrockAgentCoreClient({
        endpoint: server.url,
        region,
        credentials: { accessKeyId: key.accessKeyId, secretAccessKey: key.secretAccessKey },
        maxAttempts: 1,
      })
    const runtimeSessionId = 'strands-calculator-session-0000000000001'
    const prompt = 'What is the sum of the squares of the integers from 1 to 100?'
    let body: string
    try {
      const answer = await aws(acme.aws).send(
        new InvokeAgentRuntimeCommand({
          agentRuntimeArn,
          runtimeSessionId,
          payload: JSON.stringify({ prompt }),
          contentType: 'application/json',
          accept: 'text/event-stream',
        }),
      )
      assert.equal(answer.contentType, 'text/event-stream')
      body = await answer.response!.transformToString()
    } catch (e) {
      const logs = await new CodeboxClient({ baseUrl: server.url, apiKey: acme.apiKey }).runtimes
        .logs(agentRuntimeId, runtimeSessionId)
        .catch(() => ({ items: [] }))
      throw new Error(`${(e as Error).message}\n--- the agent's log ---\n${logs.items.map((l) => l.text).join('\n')}`, { cause: e })
    }

    // The agent streamed the tool's result and then the model's answer, which carries the sandbox's number.
    const events = parseSse(body)
    const toolResults = events.filter((e) => e.event === 'tool_result').map((e) => e.data)
    assert.deepEqual(toolResults, [{ status: 'success', content: [{ text: '338350\n' }] }], body)
    const text = events
      .filter((e) => e.event === 'message')
      .map((e) => (e.data as { text: string }).text)
      .join('')
    assert.equal(text, 'The sandbox computed 338350.')
    // Two model turns through the gateway: the prompt in, the sandbox's output back as the tool result.
    assert.equal(model.requests.length, 2)
    assert.ok(model.requests[0]!.userTexts.includes(prompt))
    assert.deepEqual(model.requests[1]!.toolResults, ['338350\n'])
    // Each signed upstream with the operator's key by the gateway, not by the agent's placeholder credentials.
    for (const req of model.requests) {
      assert.match(req.headers.authorization ?? '', new RegExp(`^AWS4-HMAC-SHA256 Credential=${operator.accessKeyId}/\\d{8}/${region}/bedrock/aws4_request, `))
      assert.ok(await signedWith(req, operator, model.url), `the request is signed with the operator's secret: ${req.headers.authorization}`)
    }

    // The code ran in a code interpreter session of the runtime's tenant (acme), which another tenant cannot see.
    const list = async (key: { accessKeyId: string; secretAccessKey: string }) =>
      (await aws(key).send(new ListCodeInterpreterSessionsCommand({ codeInterpreterIdentifier: 'aws.codeinterpreter.v1' }))).items ?? []
    const used = (await list(acme.aws)).filter((s) => s.name === 'default')
    assert.equal(used.length, 1, 'the agent’s CodeInterpreter session (named "default" by bedrock-agentcore) is acme’s')
    assert.deepEqual(await list(other), [])
    const audit = (await (
      await fetch(`${server.url}/v1/audit?sessionId=${used[0]!.sessionId}`, { headers: { authorization: `Bearer ${acme.apiKey}` } })
    ).json()) as {
      items: { action: string; tenant: string }[]
    }
    assert.ok(
      audit.items.some((e) => e.action === 'executeCode' && e.tenant === 'acme'),
      `the audit log shows the code run in that session: ${JSON.stringify(audit.items)}`,
    )

    // The README's example agent, beside the fixture's dependencies (installed above, so no npm ci
    // again), deployed and invoked the same way: its streamed text carries the sandbox's number.
    const readme = fs.readFileSync(path.join(import.meta.dirname, '../../../README.md'), 'utf8')
    const example = /```typescript\n(\/\/ my-agent\/agent\.ts[\s\S]*?)```/.exec(readme)?.[1]
    assert.ok(example, 'the README has the example agent')
    fs.writeFileSync(path.join(dir, 'readme-agent.ts'), example)
    const again = await run(bin, ['runtimes', 'deploy', dir, '--name', 'readme_agent', '--entrypoint', 'readme-agent.ts', '--json'], {
      env: { CODEBOX_URL: server.url, CODEBOX_API_KEY: acme.apiKey },
      timeoutMs: 300_000,
    })
    assert.equal(again.code, 0, again.stderr)
    assert.doesNotMatch(again.stderr, /npm ci/)
    const readmeArn = (JSON.parse(again.stdout) as { agentRuntimeArn: string }).agentRuntimeArn
    const streamed = await aws(acme.aws).send(
      new InvokeAgentRuntimeCommand({
        agentRuntimeArn: readmeArn,
        runtimeSessionId: 'readme-agent-session-000000000000000001',
        payload: JSON.stringify({ prompt }),
        contentType: 'application/json',
        accept: 'text/event-stream',
      }),
    )
    const readmeText = parseSse(await streamed.response!.transformToString())
      .filter((e) => e.event === 'message')
      .map((e) => (e.data as { text: string }).text)
      .join('')
    assert.equal(readmeText, 'The sandbox computed 338350.')
  },
)
