/**
 * AWS's `CodeInterpreter.install_packages` (bedrock_agentcore) against a real codebox server on
 * the real bwrap sandbox, with the AWS SDK: it sends `executeCommand` with the command
 * `pip install <packages>`, built here exactly as the Python SDK builds it. An installed package
 * reports as installed; a missing one fails fast in a SANDBOX interpreter and says why; in a VPC
 * interpreter the same command installs from a PEP 503 index on loopback through the egress proxy.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { BedrockAgentCoreClient, StartCodeInterpreterSessionCommand, StopCodeInterpreterSessionCommand, type ToolName } from '@aws-sdk/client-bedrock-agentcore'
import { BedrockAgentCoreControlClient, CreateCodeInterpreterCommand } from '@aws-sdk/client-bedrock-agentcore-control'
import type { RunningServer } from '@codebox/server'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'
import { MAKE_WHEEL, packageServer, type PackageServer } from '../../sandbox/test/packages-fixtures.ts'
import { invoke } from './agentcore-fixtures.ts'
import { realServer } from './fixtures.ts'

const builtIn = 'aws.codeinterpreter.v1'

/** The command `CodeInterpreter.install_packages(packages, upgrade)` sends (src/bedrock_agentcore/tools/code_interpreter_client.py). */
const installPackagesCommand = (packages: string[], upgrade = false): string => `pip install ${upgrade ? '--upgrade ' : ''}${packages.join(' ')}`

describe('install_packages through InvokeCodeInterpreter on the real sandbox', () => {
  let skip: string | undefined
  let work: string
  let server: RunningServer | undefined
  let index: PackageServer | undefined
  let data: BedrockAgentCoreClient
  let control: BedrockAgentCoreControlClient
  const wheels: Record<string, Buffer> = {}

  before(async () => {
    skip = await bwrapUnavailable()
    work = await mkdtemp(path.join(tmpdir(), 'codebox-agentcore-packages-'))
    if (skip) return
    index = await packageServer({ wheels }, '127.0.0.1')
    server = await realServer(work, { CODEBOX_EGRESS_TRUSTED: `127.0.0.1:${index.port}` })
    const key = await server.store.awsKeys.create({ tenant: 'agents' })
    const options = { endpoint: server.url, region: 'us-west-2', credentials: key }
    data = new BedrockAgentCoreClient(options)
    control = new BedrockAgentCoreControlClient(options)
  })
  after(async () => {
    await server?.close()
    index?.server.close()
    await rm(work, { recursive: true, force: true })
  })

  test("install_packages(['pandas']) reports pandas as already installed", async (t) => {
    if (skip) return t.skip(skip)
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const r = await invoke(data, {
      codeInterpreterIdentifier: builtIn,
      sessionId,
      name: 'executeCommand',
      arguments: { command: installPackagesCommand(['pandas']) },
    })
    assert.equal(r.isError, false, r.structuredContent?.stderr)
    assert.equal(r.structuredContent?.exitCode, 0)
    assert.match(r.structuredContent!.stdout!, /Requirement already satisfied: pandas/)
    await data.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
  })

  test('in a SANDBOX interpreter a package that is not installed fails within seconds and says why', async (t) => {
    if (skip) return t.skip(skip)
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const started = Date.now()
    const r = await invoke(data, {
      codeInterpreterIdentifier: builtIn,
      sessionId,
      name: 'executeCommand',
      arguments: { command: installPackagesCommand(['codebox-not-installed-anywhere']) },
    })
    const seconds = (Date.now() - started) / 1000
    assert.ok(seconds < 20, `install_packages took ${seconds} s to fail`)
    assert.equal(r.isError, true)
    assert.notEqual(r.structuredContent?.exitCode, 0)
    assert.match(r.structuredContent!.stderr!, /this session has no network/)
    assert.match(r.structuredContent!.stderr!, /PUBLIC or VPC/)
    await data.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
  })

  test('in a VPC interpreter install_packages installs from an index through the egress proxy, and executeCode imports it', async (t) => {
    if (skip) return t.skip(skip)
    const vpc = await control.send(
      new CreateCodeInterpreterCommand({
        name: 'packages_vpc',
        networkConfiguration: { networkMode: 'VPC', vpcConfig: { securityGroups: ['sg-1'], subnets: ['subnet-1'] } },
        tags: { 'codebox:egress-allow': `127.0.0.1:${index!.port}` },
      }),
    )
    const id = vpc.codeInterpreterId!
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: id }))
    const call = (name: ToolName, args: Record<string, unknown>) => invoke(data, { codeInterpreterIdentifier: id, sessionId, name, arguments: args as never })
    // the wheel is made in the sandbox, so the host needs no Python of its own
    await call('writeFiles', { content: [{ path: 'make_wheel.py', text: MAKE_WHEEL }] })
    const made = await call('executeCommand', { command: 'python3 make_wheel.py codebox_indexed 2.0 from-the-index codebox_indexed-2.0-py3-none-any.whl' })
    assert.equal(made.structuredContent?.exitCode, 0, made.structuredContent?.stderr)
    const read = await call('readFiles', { paths: ['codebox_indexed-2.0-py3-none-any.whl'] })
    wheels['codebox_indexed-2.0-py3-none-any.whl'] = Buffer.from(read.content![0]!.resource!.blob!)
    await call('executeCommand', { command: 'rm codebox_indexed-2.0-py3-none-any.whl' })
    // The index is on 127.0.0.1, which the sandbox's NO_PROXY keeps local: pip's own proxy setting goes first.
    const pipConf = `[global]\nindex-url = http://127.0.0.1:${index!.port}/simple\ntrusted-host = 127.0.0.1\nproxy = http://127.0.0.1:3128\n`
    await call('writeFiles', { content: [{ path: '.config/pip/pip.conf', text: pipConf }] })
    const r = await call('executeCommand', { command: installPackagesCommand(['codebox-indexed==2.0']) })
    assert.equal(r.structuredContent?.exitCode, 0, r.structuredContent?.stderr)
    assert.match(r.structuredContent!.stdout!, /Successfully installed codebox[-_]indexed-2\.0/)
    assert.ok(index!.requests.includes('/files/codebox_indexed-2.0-py3-none-any.whl'), index!.requests.join(', '))
    const imported = await call('executeCode', { language: 'python', code: 'import codebox_indexed\nprint(codebox_indexed.VALUE)' })
    assert.equal(imported.structuredContent?.stdout, 'from-the-index\n', imported.structuredContent?.stderr)
    await data.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier: id, sessionId }))
  })
})
