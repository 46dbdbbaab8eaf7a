/**
 * The AgentCore-compatible API through the real AWS SDK clients (@aws-sdk/client-bedrock-agentcore
 * and -control), against the server in-process with the fake driver: every operation and tool,
 * the typed exceptions, SigV4 failures, tenancy and paging. tests/agentcore-sandbox (in the CLI
 * package) runs the seeds' workflows on the real sandbox.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  BedrockAgentCoreClient,
  GetCodeInterpreterSessionCommand,
  InvokeCodeInterpreterCommand,
  ListCodeInterpreterSessionsCommand,
  StartCodeInterpreterSessionCommand,
  StopCodeInterpreterSessionCommand,
} from '@aws-sdk/client-bedrock-agentcore'
import {
  BedrockAgentCoreControlClient,
  CreateCodeInterpreterCommand,
  DeleteCodeInterpreterCommand,
  GetCodeInterpreterCommand,
  ListCodeInterpretersCommand,
} from '@aws-sdk/client-bedrock-agentcore-control'
import { EventStreamCodec } from '@smithy/eventstream-codec'
import { fromUtf8, toUtf8 } from '@smithy/util-utf8'
import { invoke } from './agentcore-fixtures.ts'
import { invoke as nativeInvoke, startSession, testServer, type LogRecord, type TestServer } from './fixtures.ts'

const region = 'us-west-2'
const anyCredentials = { accessKeyId: 'AKIAOPENSERVER000000', secretAccessKey: 'unused-on-an-open-server' }

function clients(server: TestServer, credentials = anyCredentials) {
  const options = { endpoint: server.url, region, credentials, maxAttempts: 1 }
  return { data: new BedrockAgentCoreClient(options), control: new BedrockAgentCoreControlClient(options) }
}

const builtIn = 'aws.codeinterpreter.v1'

describe('AgentCore data plane through the AWS SDK', () => {
  test('start, get, list, invoke every tool, stop', async (t) => {
    const server = await testServer(t)
    const { data } = clients(server)
    const started = await data.send(
      new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, name: 'sdk-test', sessionTimeoutSeconds: 600 }),
    )
    assert.equal(started.codeInterpreterIdentifier, builtIn)
    assert.match(started.sessionId!, /^[0-9a-zA-Z]{1,40}$/)
    assert.ok(started.createdAt instanceof Date && Math.abs(started.createdAt.getTime() - Date.now()) < 60_000)
    const sessionId = started.sessionId!

    const got = await data.send(new GetCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
    assert.equal(got.status, 'READY')
    assert.equal(got.name, 'sdk-test')
    assert.equal(got.sessionTimeoutSeconds, 600)

    const code = await invoke(data, {
      codeInterpreterIdentifier: builtIn,
      sessionId,
      name: 'executeCode',
      arguments: { code: 'x = 6 * 7\nprint(x)', language: 'python' },
    })
    assert.equal(code.isError, false)
    assert.equal(code.structuredContent?.stdout, '42\n')
    assert.equal(code.structuredContent?.exitCode, 0)
    assert.equal(typeof code.structuredContent?.executionTime, 'number')
    assert.deepEqual(code.content?.[0], { type: 'text', text: '42\n' })
    // State persists; clearContext resets it.
    const again = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'executeCode', arguments: { code: 'print(x + 1)' } })
    assert.equal(again.structuredContent?.stdout, '43\n')
    const cleared = await invoke(data, {
      codeInterpreterIdentifier: builtIn,
      sessionId,
      name: 'executeCode',
      arguments: { code: 'print(x)', clearContext: true },
    })
    assert.equal(cleared.isError, true)
    assert.match(cleared.structuredContent?.stderr ?? '', /NameError/)

    const js = await invoke(data, {
      codeInterpreterIdentifier: builtIn,
      sessionId,
      name: 'executeCode',
      arguments: { code: 'console.log(1 + 1)', language: 'javascript' },
    })
    assert.equal(js.structuredContent?.stdout, '2\n')
    const node = await invoke(data, {
      codeInterpreterIdentifier: builtIn,
      sessionId,
      name: 'executeCode',
      arguments: { code: 'console.log(typeof process)', runtime: 'nodejs' },
    })
    assert.equal(node.structuredContent?.stdout, 'object\n')

    const cmd = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'executeCommand', arguments: { command: 'echo hi; exit 3' } })
    assert.equal(cmd.structuredContent?.stdout, 'hi\n')
    assert.equal(cmd.structuredContent?.exitCode, 3)
    assert.equal(cmd.isError, true)

    const written = await invoke(data, {
      codeInterpreterIdentifier: builtIn,
      sessionId,
      name: 'writeFiles',
      arguments: {
        content: [
          { path: 'notes/a.txt', text: 'hello' },
          { path: 'b.bin', blob: new Uint8Array([0, 1, 2, 255]) },
        ],
      },
    })
    assert.equal(written.isError, false)
    const listed = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'listFiles', arguments: { directoryPath: '' } })
    const names = listed.content!.map((c) => `${c.type}:${c.name}:${c.description}`)
    assert.ok(names.includes('resource_link:notes:Directory'), names.join())
    assert.ok(names.includes('resource_link:b.bin:File'), names.join())
    assert.equal(listed.content!.find((c) => c.name === 'b.bin')!.size, 4)
    const read = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'readFiles', arguments: { paths: ['notes/a.txt', 'b.bin'] } })
    assert.equal(read.content![0]!.type, 'resource')
    assert.equal(read.content![0]!.resource?.text, 'hello')
    assert.equal(read.content![0]!.resource?.uri, 'file:///notes/a.txt')
    assert.deepEqual([...read.content![1]!.resource!.blob!], [0, 1, 2, 255])
    const removed = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'removeFiles', arguments: { paths: ['b.bin'] } })
    assert.equal(removed.isError, false)

    const task = await invoke(data, {
      codeInterpreterIdentifier: builtIn,
      sessionId,
      name: 'startCommandExecution',
      arguments: { command: 'echo started; sleep 30' },
    })
    const taskId = task.structuredContent?.taskId
    assert.ok(taskId)
    assert.ok(['submitted', 'working'].includes(task.structuredContent!.taskStatus!))
    let status = ''
    for (let i = 0; i < 50 && !status.includes('started'); i++) {
      const polled = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'getTask', arguments: { taskId } })
      status = `${polled.structuredContent?.taskStatus} ${polled.structuredContent?.stdout}`
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.match(status, /^working started/)
    const stopped = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'stopTask', arguments: { taskId } })
    assert.equal(stopped.structuredContent?.taskStatus, 'canceled')

    const list = await data.send(new ListCodeInterpreterSessionsCommand({ codeInterpreterIdentifier: builtIn, status: 'READY' }))
    assert.deepEqual(
      list.items?.map((s) => [s.sessionId, s.status, s.codeInterpreterIdentifier]),
      [[sessionId, 'READY', builtIn]],
    )
    assert.ok(list.items![0]!.lastUpdatedAt instanceof Date)

    const stop = await data.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
    assert.equal(stop.sessionId, sessionId)
    assert.ok(stop.lastUpdatedAt instanceof Date)
    const after = await data.send(new GetCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
    assert.equal(after.status, 'TERMINATED')
  })

  test('a retried start with the same clientToken returns the same session; paging with nextToken', async (t) => {
    const server = await testServer(t)
    const { data } = clients(server)
    const token = 'retry-token-0123456789abcdefghijklmnop'
    const a = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, clientToken: token }))
    const b = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, clientToken: token }))
    assert.equal(a.sessionId, b.sessionId)
    const c = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const seen: string[] = []
    let nextToken: string | undefined
    do {
      const page = await data.send(new ListCodeInterpreterSessionsCommand({ codeInterpreterIdentifier: builtIn, maxResults: 1, nextToken }))
      assert.ok(page.items!.length <= 1)
      seen.push(...page.items!.map((s) => s.sessionId!))
      nextToken = page.nextToken
    } while (nextToken)
    assert.deepEqual(seen.sort(), [a.sessionId!, c.sessionId!].sort())
  })
})

describe('AgentCore errors are the typed exceptions of the SDK', () => {
  test('validation, not found, conflict-free stop, invoke on a stopped session, unknown tool, wrong types', async (t) => {
    const server = await testServer(t)
    const { data } = clients(server)
    const expectException = async (p: Promise<unknown>, name: string, status: number, message: RegExp) => {
      const e = (await p.then(
        () => assert.fail(`expected ${name}`),
        (e: unknown) => e,
      )) as { name: string; message: string; $metadata: { httpStatusCode: number } }
      assert.equal(e.name, name, `${e.name}: ${e.message}`)
      assert.equal(e.$metadata.httpStatusCode, status)
      assert.match(e.message, message)
      return e
    }
    await expectException(
      data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionTimeoutSeconds: 28801 })),
      'ValidationException',
      400,
      /sessionTimeoutSeconds/,
    )
    await expectException(
      data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: 'nope-0123456789' })),
      'ResourceNotFoundException',
      404,
      /nope/,
    )
    await expectException(
      data.send(new GetCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId: 'unknownsession' })),
      'ResourceNotFoundException',
      404,
      /unknownsession/,
    )
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const v = (await expectException(
      invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'executeCodez' as 'executeCode', arguments: { code: '1' } }),
      'ValidationException',
      400,
      /executeCodez/,
    )) as unknown as { reason?: string; fieldList?: { name: string }[] }
    assert.equal(v.reason, 'FieldValidationFailed')
    await expectException(
      data.send(
        new InvokeCodeInterpreterCommand({
          codeInterpreterIdentifier: builtIn,
          sessionId,
          name: 'executeCode',
          arguments: { code: 42 as unknown as string },
        }),
      ),
      'ValidationException',
      400,
      /code/,
    )
    await expectException(
      data
        .send(
          new InvokeCodeInterpreterCommand({ codeInterpreterIdentifier: builtIn, sessionId, name: 'executeCode', arguments: { code: '1', runtime: 'deno' } }),
        )
        .then(() => {
          throw Object.assign(new Error('deno ran'), { name: 'ValidationException', $metadata: { httpStatusCode: 400 } })
        }),
      'ValidationException',
      400,
      /deno/,
    )
    // Code that raises is a successful invoke with isError.
    const raised = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'executeCode', arguments: { code: 'raise ValueError("boom")' } })
    assert.equal(raised.isError, true)
    assert.match(raised.structuredContent!.stderr!, /ValueError: boom/)

    await data.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
    await expectException(
      data.send(new InvokeCodeInterpreterCommand({ codeInterpreterIdentifier: builtIn, sessionId, name: 'executeCode', arguments: { code: '1' } })),
      'ResourceNotFoundException',
      404,
      /ended/,
    )
    await expectException(
      data.send(new InvokeCodeInterpreterCommand({ codeInterpreterIdentifier: builtIn, sessionId: undefined, name: 'executeCode', arguments: { code: '1' } })),
      'ValidationException',
      400,
      /session/,
    )
  })
})

describe('AgentCore invoke timing', () => {
  test("a short call's result is complete when the response arrives: the stream can be read after the session stopped (seed 000's Strands tool)", async (t) => {
    const server = await testServer(t)
    const { data } = clients(server)
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const response = await data.send(
      new InvokeCodeInterpreterCommand({
        codeInterpreterIdentifier: builtIn,
        sessionId,
        name: 'executeCode',
        arguments: { code: 'import time\ntime.sleep(0.5)\nprint("finished")' },
      }),
    )
    await data.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
    for await (const event of response.stream!) {
      assert.equal(event.result?.structuredContent?.stdout, 'finished\n')
      return
    }
    assert.fail('no event')
  })

  test('a call still running after CODEBOX_AGENTCORE_HOLD_MS gets its headers then, its result when done', async (t) => {
    const server = await testServer(t, { env: { CODEBOX_AGENTCORE_HOLD_MS: '300' } })
    const { data } = clients(server)
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const started = performance.now()
    const res = await fetch(`${server.url}/code-interpreters/${builtIn}/tools/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-amzn-code-interpreter-session-id': sessionId! },
      body: JSON.stringify({ name: 'executeCode', arguments: { code: 'import time\ntime.sleep(2)\nprint("done")' } }),
    })
    const headersAfter = performance.now() - started
    assert.equal(res.status, 200)
    assert.equal(res.headers.get('content-type'), 'application/vnd.amazon.eventstream')
    const body = Buffer.from(await res.arrayBuffer())
    const bodyAfter = performance.now() - started
    assert.ok(headersAfter >= 250 && headersAfter < 1500, `headers after ${headersAfter} ms`)
    assert.ok(bodyAfter >= 1900, `body after ${bodyAfter} ms`)
    assert.match(body.toString('latin1'), /"stdout":"done\\n"/)
    // Stopped while its headers are out: the failure comes as an exception event.
    const late = await fetch(`${server.url}/code-interpreters/${builtIn}/tools/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-amzn-code-interpreter-session-id': sessionId! },
      body: JSON.stringify({ name: 'executeCode', arguments: { code: 'import time\ntime.sleep(5)' } }),
    })
    assert.equal(late.status, 200)
    await data.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
    const message = new EventStreamCodec(toUtf8, fromUtf8).decode(new Uint8Array(await late.arrayBuffer()))
    assert.equal(message.headers[':message-type']?.value, 'exception')
    assert.equal(message.headers[':exception-type']?.value, 'resourceNotFoundException')
    assert.match(JSON.parse(toUtf8(message.body)).message, /session ended \(stopped\) while this call ran/)
  })
})

describe('AgentCore answers once', () => {
  test('an invoke (held, streamed, failed) and a native SSE invoke log no FST_ERR_REP_ALREADY_SENT or other warning', async (t) => {
    const logs: LogRecord[] = []
    const server = await testServer(t, { logs, env: { CODEBOX_AGENTCORE_HOLD_MS: '100' } })
    const { data } = clients(server)
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const quick = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'executeCode', arguments: { code: 'print(1)' } })
    assert.equal(quick.structuredContent?.stdout, '1\n')
    // Past the hold: the headers go out before the result.
    const slow = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'executeCode', arguments: { code: 'import time; time.sleep(0.5)' } })
    assert.equal(slow.isError, false)
    await assert.rejects(data.send(new InvokeCodeInterpreterCommand({ codeInterpreterIdentifier: builtIn, sessionId, name: 'noSuchTool' as never })), {
      name: 'ValidationException',
    })
    const native = await startSession(server)
    const sse = await server.call('POST', `/v1/sessions/${native}/invoke`, {
      json: { name: 'executeCode', arguments: { code: 'print(2)' } },
      headers: { accept: 'text/event-stream' },
    })
    assert.match(await sse.text(), /event: result/)
    assert.equal((await nativeInvoke(server, native, 'executeCode', { code: 'print(3)' })).status, 200)
    await data.send(new StopCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
    // The response logs come after the body: wait for all eight requests' "request completed".
    const deadline = Date.now() + 5000
    while (logs.filter((l) => l.msg === 'request completed').length < 8 && Date.now() < deadline) await new Promise((r) => setImmediate(r))
    const text = JSON.stringify(logs.filter((l) => l.level === 'warn' || l.level === 'error' || l.level === 'fatal'))
    assert.doesNotMatch(JSON.stringify(logs), /ALREADY_SENT|already sent/i)
    assert.equal(text, '[]')
  })
})

describe('AgentCore bad input over raw HTTP', () => {
  test('answered with the AWS error shape, and nothing else changes', async (t) => {
    const server = await testServer(t)
    const { data } = clients(server)
    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const before = { sessions: (await server.store.sessions.list({ tenant: 'default', limit: 100 })).items, live: server.engine.list().length }
    const send = async (method: string, path: string, body?: string, headers: Record<string, string> = {}) => {
      const res = await fetch(server.url + path, { method, body, headers: { 'content-type': 'application/json', ...headers } })
      const text = await res.text()
      return { status: res.status, type: res.headers.get('x-amzn-errortype'), body: text ? (JSON.parse(text) as { message: string }) : undefined }
    }
    const cases: [string, string, string | undefined, Record<string, string>, number, string, RegExp][] = [
      ['PUT', `/code-interpreters/${builtIn}/sessions/start`, '{"name": ', {}, 400, 'ValidationException', /not valid JSON/],
      ['PUT', `/code-interpreters/${builtIn}/sessions/start`, '{"sessionTimeoutSeconds": "900"}', {}, 400, 'ValidationException', /sessionTimeoutSeconds/],
      ['PUT', `/code-interpreters/${builtIn}/sessions/start`, '{"certificates": [{"location": {}}]}', {}, 400, 'ValidationException', /certificates/],
      ['PUT', `/code-interpreters/${builtIn}/sessions/start`, '{"__proto__": {"x": 1}}', {}, 400, 'ValidationException', /__proto__/],
      [
        'POST',
        `/code-interpreters/${builtIn}/tools/invoke`,
        '{"name": "executeCode", "arguments": {"code": "1"}}',
        { 'x-amzn-code-interpreter-session-id': 'bad id!' },
        400,
        'ValidationException',
        /sessionId/,
      ],
      [
        'POST',
        `/code-interpreters/${builtIn}/tools/invoke`,
        '{"name": "readFiles", "arguments": {"paths": "a.txt"}}',
        { 'x-amzn-code-interpreter-session-id': sessionId! },
        400,
        'ValidationException',
        /paths/,
      ],
      [
        'POST',
        `/code-interpreters/${builtIn}/tools/invoke`,
        '{"arguments": {}}',
        { 'x-amzn-code-interpreter-session-id': sessionId! },
        400,
        'ValidationException',
        /name/,
      ],
      ['GET', `/code-interpreters/${builtIn}/sessions/get?sessionId=${'x'.repeat(41)}`, undefined, {}, 400, 'ValidationException', /sessionId/],
      ['POST', `/code-interpreters/${builtIn}/sessions/list`, '{"maxResults": 0}', {}, 400, 'ValidationException', /maxResults/],
      ['GET', `/code-interpreters/${builtIn}/sessions/start`, undefined, {}, 404, 'UnknownOperationException', /does not implement/],
      ['POST', '/code-interpreters/x/browsers', '{}', {}, 404, 'UnknownOperationException', /does not implement/],
    ]
    for (const [method, path, body, headers, status, type, message] of cases) {
      const r = await send(method, path, body, headers)
      assert.deepEqual([r.status, r.type], [status, type], `${method} ${path} ${body}: ${JSON.stringify(r.body)}`)
      assert.match(r.body!.message, message, `${method} ${path} ${body}`)
    }
    assert.deepEqual((await server.store.sessions.list({ tenant: 'default', limit: 100 })).items, before.sessions)
    assert.equal(server.engine.list().length, before.live)
    // The session still works.
    const ok = await invoke(data, { codeInterpreterIdentifier: builtIn, sessionId, name: 'executeCode', arguments: { code: 'print("still here")' } })
    assert.equal(ok.structuredContent?.stdout, 'still here\n')
  })
})

describe('AgentCore control plane: the codebox extension', () => {
  test('preload and driver are set on create and shown by get; a wrong one is a ValidationException naming it', async (t) => {
    const server = await testServer(t)
    const send = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(server.url + path, { method, ...(body ? { body: JSON.stringify(body) } : {}), headers: { 'content-type': 'application/json' } })
      return { status: res.status, type: res.headers.get('x-amzn-errortype'), body: (await res.json()) as Record<string, any> }
    }
    const driver = server.sessions.defaultDriver
    const created = await send('PUT', '/code-interpreters', {
      name: 'lean_env',
      networkConfiguration: { networkMode: 'SANDBOX' },
      codebox: { preload: ['json'], driver },
    })
    assert.equal(created.status, 202, JSON.stringify(created.body))
    const got = await send('GET', `/code-interpreters/${created.body.codeInterpreterId}`)
    assert.deepEqual([got.body.codebox.preload, got.body.codebox.driver], [['json'], driver])
    const builtInView = await send('GET', `/code-interpreters/${builtIn}`)
    assert.deepEqual([builtInView.body.codebox.preload, builtInView.body.codebox.driver], [[...server.sessions.defaultPreload], driver])
    const wrongDriver = await send('PUT', '/code-interpreters', {
      name: 'x_env',
      networkConfiguration: { networkMode: 'SANDBOX' },
      codebox: { driver: 'nope' },
    })
    assert.deepEqual([wrongDriver.status, wrongDriver.type], [400, 'ValidationException'])
    assert.match(wrongDriver.body.message, /codebox\.driver.*must be one of/)
    const wrongPreload = await send('PUT', '/code-interpreters', {
      name: 'y_env',
      networkConfiguration: { networkMode: 'SANDBOX' },
      codebox: { preload: ['os; rm'] },
    })
    assert.deepEqual([wrongPreload.status, wrongPreload.type], [400, 'ValidationException'])
    assert.match(wrongPreload.body.message, /preload/)
    // Nothing was created by the refused ones.
    const names = (await send('POST', '/code-interpreters?type=CUSTOM')).body.codeInterpreterSummaries.map((x: { name: string }) => x.name)
    assert.deepEqual(names, ['lean_env'])
  })
})

describe('AgentCore control plane through the AWS SDK', () => {
  test('create, get, list by type, delete; sessions of a custom interpreter', async (t) => {
    const server = await testServer(t)
    const { data, control } = clients(server)
    const created = await control.send(
      new CreateCodeInterpreterCommand({
        name: 'analysis_env',
        description: 'for tests',
        executionRoleArn: 'arn:aws:iam::123456789012:role/AgentCoreCodeInterpreter',
        networkConfiguration: { networkMode: 'SANDBOX' },
      }),
    )
    assert.match(created.codeInterpreterId!, /^analysis_env-[0-9a-zA-Z]{10}$/)
    assert.equal(created.status, 'READY')
    assert.match(created.codeInterpreterArn!, /^arn:aws:bedrock-agentcore:us-west-2:\d{12}:code-interpreter-custom\/analysis_env-/)
    const id = created.codeInterpreterId!
    const got = await control.send(new GetCodeInterpreterCommand({ codeInterpreterId: id }))
    assert.equal(got.name, 'analysis_env')
    assert.equal(got.description, 'for tests')
    assert.equal(got.executionRoleArn, 'arn:aws:iam::123456789012:role/AgentCoreCodeInterpreter')
    assert.equal((await control.send(new GetCodeInterpreterCommand({ codeInterpreterId: builtIn }))).executionRoleArn, undefined)
    assert.deepEqual(got.networkConfiguration, { networkMode: 'SANDBOX' })
    assert.ok(got.createdAt instanceof Date && got.lastUpdatedAt instanceof Date)

    const system = await control.send(new ListCodeInterpretersCommand({ type: 'SYSTEM' }))
    assert.deepEqual(
      system.codeInterpreterSummaries?.map((s) => s.codeInterpreterId),
      [builtIn],
    )
    const custom = await control.send(new ListCodeInterpretersCommand({ type: 'CUSTOM' }))
    assert.deepEqual(
      custom.codeInterpreterSummaries?.map((s) => s.codeInterpreterId),
      [id],
    )
    const page1 = await control.send(new ListCodeInterpretersCommand({ maxResults: 1 }))
    assert.equal(page1.codeInterpreterSummaries?.length, 1)
    const page2 = await control.send(new ListCodeInterpretersCommand({ maxResults: 1, nextToken: page1.nextToken }))
    assert.deepEqual(
      [...page1.codeInterpreterSummaries!, ...page2.codeInterpreterSummaries!].map((s) => s.codeInterpreterId),
      [builtIn, id],
    )
    assert.equal(page2.nextToken, undefined)

    const { sessionId } = await data.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: id }))
    const r = await invoke(data, { codeInterpreterIdentifier: id, sessionId, name: 'executeCode', arguments: { code: 'print("custom")' } })
    assert.equal(r.structuredContent?.stdout, 'custom\n')
    // A session belongs to its interpreter: through another identifier it is not found.
    await assert.rejects(data.send(new GetCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId })), {
      name: 'ResourceNotFoundException',
    })

    await assert.rejects(control.send(new CreateCodeInterpreterCommand({ name: 'analysis_env', networkConfiguration: { networkMode: 'SANDBOX' } })), {
      name: 'ConflictException',
    })
    await assert.rejects(control.send(new CreateCodeInterpreterCommand({ name: '9bad-name', networkConfiguration: { networkMode: 'SANDBOX' } })), {
      name: 'ValidationException',
      message: /name/,
    })
    await assert.rejects(control.send(new CreateCodeInterpreterCommand({ name: 'vpc_without_list', networkConfiguration: { networkMode: 'VPC' } })), {
      name: 'ValidationException',
      message: /allow-list/,
    })
    const deleted = await control.send(new DeleteCodeInterpreterCommand({ codeInterpreterId: id }))
    assert.equal(deleted.status, 'DELETED')
    await assert.rejects(control.send(new GetCodeInterpreterCommand({ codeInterpreterId: id })), { name: 'ResourceNotFoundException' })
    await assert.rejects(control.send(new DeleteCodeInterpreterCommand({ codeInterpreterId: builtIn })), { name: 'ValidationException' })
  })
})
