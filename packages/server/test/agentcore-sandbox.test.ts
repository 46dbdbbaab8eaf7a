/**
 * The seeds' AgentCore workflows with the real AWS SDK against a real codebox server on the real
 * bwrap sandbox, signed with an access key of the store: a pandas + matplotlib analysis of an
 * uploaded CSV whose chart comes back as PNG, a 50 MB file round trip, a background task started,
 * polled and stopped, a session that times out, and egress through the proxy in VPC mode (to a
 * loopback test server the operator trusts) against none in SANDBOX mode.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import {
  BedrockAgentCoreClient,
  GetCodeInterpreterSessionCommand,
  StartCodeInterpreterSessionCommand,
  StopCodeInterpreterSessionCommand,
  type CodeInterpreterResult,
} from '@aws-sdk/client-bedrock-agentcore'
import { BedrockAgentCoreControlClient, CreateCodeInterpreterCommand } from '@aws-sdk/client-bedrock-agentcore-control'
import type { RunningServer } from '@codebox/server'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { invoke } from './agentcore-fixtures.ts'
import { realServer } from './fixtures.ts'

const builtIn = 'aws.codeinterpreter.v1'
const repo = fileURLToPath(new URL('../../../', import.meta.url))

describe('AgentCore workflows on the real sandbox', () => {
  let skip: string | undefined
  let work: string
  let server: RunningServer | undefined
  let data: BedrockAgentCoreClient
  let control: BedrockAgentCoreControlClient
  let target: Server | undefined
  let targetPort = 0
  let key: { accessKeyId: string; secretAccessKey: string }

  before(async () => {
    skip = await bwrapUnavailable()
    work = await mkdtemp(path.join(tmpdir(), 'codebox-agentcore-test-'))
    if (skip) return
    // Egress target: a loopback HTTP server, which the operator trusts for allow-lists (tests only).
    target = createServer((req, res) => res.end(`hello from the allow-listed server ${req.url}`))
    await new Promise<void>((r) => target!.listen(0, '127.0.0.1', r))
    targetPort = (target.address() as { port: number }).port
    server = await realServer(work, { CODEBOX_EGRESS_TRUSTED: `127.0.0.1:${targetPort}` })
    key = await server.store.awsKeys.create({ tenant: 'agents' })
    const options = { endpoint: server.url, region: 'us-west-2', credentials: key }
    data = new BedrockAgentCoreClient(options)
    control = new BedrockAgentCoreControlClient(options)
  })
  after(async () => {
    await server?.close()
    await new Promise((r) => (target ? target.close(r) : r(undefined)))
    await rm(work, { recursive: true, force: true })
  })

  test('the seed: upload a CSV, analyse it with pandas, plot it with matplotlib, get the PNG', async (t) => {
    if (skip) return t.skip(skip)
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const csv = 'month,sales\nJan,120\nFeb,150\nMar,90\nApr,200\n'
    await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'writeFiles', arguments: { content: [{ path: 'data.csv', text: csv }] } })
    const r = await invoke(data, {
      codeInterpreterIdentifier: builtIn,
      sessionId,
      name: 'executeCode',
      arguments: {
        language: 'python',
        code: [
          'import pandas as pd',
          'import matplotlib.pyplot as plt',
          'df = pd.read_csv("data.csv")',
          'print(df["sales"].sum(), df["sales"].idxmax())',
          'df.plot(x="month", y="sales", kind="bar")',
          'plt.show()',
        ].join('\n'),
        clearContext: false,
      },
    })
    assert.equal(r.isError, false, r.structuredContent?.stderr)
    assert.match(r.structuredContent!.stdout!, /^560 3$/m)
    const image = r.content!.find((c) => c.type === 'image')
    assert.ok(image, `an image block in ${JSON.stringify(r.content?.map((c) => c.type))}`)
    assert.equal(image.mimeType, 'image/png')
    assert.deepEqual([...image.data!.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])
    await data.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
  })

  test('executeCode with runtime deno runs TypeScript in Deno, python and nodejs alongside', async (t) => {
    if (skip) return t.skip(skip)
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const run = (args: Record<string, unknown>) =>
      invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'executeCode', arguments: args as never })
    const deno = await run({ language: 'typescript', runtime: 'deno', code: 'const n: number = 20\nconsole.log(typeof Deno.version.deno, n + 22)' })
    assert.equal(deno.isError, false, deno.structuredContent?.stderr)
    assert.equal(deno.structuredContent?.stdout, 'string 42\n')
    const node = await run({ language: 'javascript', runtime: 'nodejs', code: 'console.log(typeof Deno)' })
    assert.equal(node.structuredContent?.stdout, 'undefined\n')
    await assert.rejects(run({ language: 'python', runtime: 'deno', code: 'print(1)' }), { name: 'ValidationException', message: /deno/ })
    await data.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
  })

  test('a 50 MB file goes in with writeFiles and comes back with readFiles, byte for byte', async (t) => {
    if (skip) return t.skip(skip)
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const blob = randomBytes(50 * 1024 * 1024)
    const digest = createHash('sha256').update(blob).digest('hex')
    const w = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'writeFiles', arguments: { content: [{ path: 'big.bin', blob }] } })
    assert.equal(w.isError, false)
    const inside = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'executeCommand', arguments: { command: 'sha256sum big.bin' } })
    assert.equal(inside.structuredContent!.stdout!.split(' ')[0], digest)
    const r = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'readFiles', arguments: { paths: ['big.bin'] } })
    const back = r.content![0]!.resource!.blob!
    assert.equal(back.length, blob.length)
    assert.equal(createHash('sha256').update(back).digest('hex'), digest)
    await data.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
  })

  test('a background task: started, polled while it works, stopped', async (t) => {
    if (skip) return t.skip(skip)
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const started = await invoke(data, {
      codeInterpreterIdentifier: builtIn,
      sessionId,
      name: 'startCommandExecution',
      arguments: { command: 'for i in $(seq 1 600); do echo tick $i; sleep 0.1; done' },
    })
    const taskId = started.structuredContent!.taskId!
    let polled: CodeInterpreterResult | undefined
    for (let i = 0; i < 100; i++) {
      polled = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'getTask', arguments: { taskId } })
      if (/tick 3/.test(polled.structuredContent?.stdout ?? '')) break
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.equal(polled!.structuredContent!.taskStatus, 'working')
    assert.match(polled!.structuredContent!.stdout!, /tick 1\ntick 2\ntick 3/)
    const stopped = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'stopTask', arguments: { taskId } })
    assert.equal(stopped.structuredContent!.taskStatus, 'canceled')
    const ps = await invoke(data, {
      codeInterpreterIdentifier: builtIn,
      sessionId,
      name: 'executeCommand',
      arguments: { command: 'ps -eo args | grep -c "[s]eq 1 600" || true' },
    })
    assert.equal(ps.structuredContent!.stdout!.trim(), '0', 'the task process tree is gone')
    await data.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
  })

  test('a session with sessionTimeoutSeconds ends after that long without calls', async (t) => {
    if (skip) return t.skip(skip)
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionTimeoutSeconds: 2 }))
    assert.equal((await data.send(new GetCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))).status, 'READY')
    let status = 'READY'
    for (let i = 0; i < 60 && status === 'READY'; i++) {
      await new Promise((r) => setTimeout(r, 250))
      status = (await data.send(new GetCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))).status!
    }
    assert.equal(status, 'TERMINATED')
    await assert.rejects(invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'executeCode', arguments: { code: '1' } }), {
      name: 'ResourceNotFoundException',
    })
  })

  test('egress: VPC mode reaches the allow-listed server through the proxy; SANDBOX mode has no network', async (t) => {
    if (skip) return t.skip(skip)
    // 127.0.0.1 is in the sandbox's NO_PROXY (it means the sandbox itself), so the test drops it to go through the proxy.
    const opener = [
      'import os, urllib.request, urllib.error',
      'os.environ.pop("NO_PROXY", None); os.environ.pop("no_proxy", None)',
      'proxy = os.environ.get("HTTP_PROXY")',
      'opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy} if proxy else {}))',
    ]
    const fetchCode = (url: string) =>
      [
        ...opener,
        'try:',
        `    print(opener.open("${url}", timeout=5).read().decode())`,
        'except urllib.error.HTTPError as e:',
        '    print(e.code, e.read().decode())',
        'except Exception as e:',
        '    print("failed:", e)',
      ].join('\n')
    const vpc = await control.send(
      new CreateCodeInterpreterCommand({
        name: 'egress_vpc',
        networkConfiguration: { networkMode: 'VPC', vpcConfig: { securityGroups: ['sg-1'], subnets: ['subnet-1'] } },
        tags: { 'codebox:egress-allow': `127.0.0.1:${targetPort}` },
      }),
    )
    const vpcId = vpc.codeInterpreterId!
    const inVpc = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: vpcId }))
    const allowed = await invoke(data, {
      codeInterpreterIdentifier: vpcId,
      sessionId: inVpc.sessionId,
      name: 'executeCode',
      arguments: { code: fetchCode(`http://127.0.0.1:${targetPort}/probe`) },
    })
    assert.match(allowed.structuredContent!.stdout!, /hello from the allow-listed server \/probe/)
    // Not on the list: another loopback port (codebox's own), and the metadata address.
    const serverPort = Number(new URL(server!.url).port)
    for (const [url, reason] of [
      [`http://127.0.0.1:${serverPort}/ping`, /not on this interpreter's allow-list|loopback/],
      ['http://169.254.169.254/latest/meta-data/', /169\.254\.169\.254/],
    ] as const) {
      const r = await invoke(data, { codeInterpreterIdentifier: vpcId, sessionId: inVpc.sessionId, name: 'executeCode', arguments: { code: fetchCode(url) } })
      assert.match(r.structuredContent!.stdout!, /^403 codebox egress: /, url)
      assert.match(r.structuredContent!.stdout!, reason, url)
    }

    const sandboxed = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const denied = await invoke(data, {
      codeInterpreterIdentifier: builtIn,
      sessionId: sandboxed.sessionId,
      name: 'executeCode',
      arguments: { code: `${fetchCode(`http://127.0.0.1:${targetPort}/probe`)}\nprint("proxy:", proxy)` },
    })
    assert.match(denied.structuredContent!.stdout!, /^failed: .*(Connection refused|Network is unreachable)/)
    assert.match(denied.structuredContent!.stdout!, /^proxy: None$/m)
    // The proxy's decisions are counted.
    const metrics = await (await fetch(`${server!.url}/metrics`)).text()
    assert.match(metrics, /^codebox_egress_requests_total\{outcome="allowed"\} [1-9]/m)
    assert.match(metrics, /^codebox_egress_requests_total\{outcome="denied"\} [2-9]/m)
  })

  test('every TypeScript example of docs/agentcore.md runs unchanged with only the endpoint and keys given', async (t) => {
    if (skip) return t.skip(skip)
    const doc = await readFile(path.join(repo, 'docs/agentcore.md'), 'utf8')
    const examples = [...doc.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!)
    assert.ok(examples.length >= 1)
    for (const [i, example] of examples.entries()) {
      const file = path.join(repo, 'packages/server/test', `agentcore-doc-example-${process.pid}-${i}.ts`)
      await writeFile(file, example)
      try {
        const r = await new Promise<{ code: number; out: string }>((resolve) => {
          const child = spawn(process.execPath, [file], {
            cwd: repo,
            stdio: ['ignore', 'pipe', 'pipe'],
            env: { ...process.env, CODEBOX_URL: server!.url, AWS_ACCESS_KEY_ID: key.accessKeyId, AWS_SECRET_ACCESS_KEY: key.secretAccessKey },
          })
          let out = ''
          child.stdout.on('data', (c: Buffer) => (out += c.toString()))
          child.stderr.on('data', (c: Buffer) => (out += c.toString()))
          child.on('exit', (code) => resolve({ code: code ?? -1, out }))
        })
        assert.equal(r.code, 0, `example ${i + 1}:\n${r.out}`)
        assert.match(r.out, /^200$/m, `example ${i + 1} printed ${r.out}`)
      } finally {
        await unlink(file)
      }
    }
  })
})
