/**
 * @codebox/sdk/langchain against a real codebox (the server's in-process test server, fake
 * driver, host python3): the tools invoked directly, with tool calls, and in an agent loop driven
 * by @langchain/core's fake chat model.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { AIMessage, HumanMessage, ToolMessage, type BaseMessage } from '@langchain/core/messages'
import { fakeModel } from '@langchain/core/testing'
import { codeboxLangChainTools } from '../src/adapters/langchain.ts'
import { codeSession, type ToolResult } from '../src/index.ts'
import { agentToolDescriptions, agentToolNames } from '../src/tools/index.ts'
import { isPng, plot, sessionOnTestServer } from './adapter-fixtures.ts'

describe('@codebox/sdk/langchain', () => {
  const shared = sessionOnTestServer()
  const byName = (name: string) => codeboxLangChainTools(shared.ci).find((t) => t.name === name)!

  it('offers the nine tools with their descriptions', () => {
    const tools = codeboxLangChainTools(shared.ci)
    assert.deepEqual(
      tools.map((t) => t.name),
      agentToolNames,
    )
    assert.equal(tools[0]!.description, agentToolDescriptions.execute_code)
    assert.deepEqual(
      codeboxLangChainTools(shared.ci, { include: ['execute_code', 'read_files'] }).map((t) => t.name),
      ['execute_code', 'read_files'],
    )
  })

  it('invoked with arguments: returns text, or text and image blocks for a chart; state persists', async () => {
    const executeCode = byName('execute_code')
    assert.equal(await executeCode.invoke({ code: 'x = 41' }), '(no output)')
    assert.equal(await executeCode.invoke({ code: 'print(x + 1)' }), '42\n', `session ${shared.ci.sessionId}`)
    const charted = (await executeCode.invoke({ code: plot })) as { type: string; text?: string; mimeType?: string; data?: string }[]
    assert.deepEqual(charted[0], { type: 'text', text: 'plotted\n' })
    assert.equal(charted[1]?.type, 'image')
    assert.equal(charted[1]?.mimeType, 'image/png')
    assert.ok(isPng(charted[1]!.data!), 'a PNG image block')
    await assert.rejects(executeCode.invoke({ language: 'python' } as never), /did not match expected schema/)
  })

  it('invoked with a tool call: a ToolMessage, status error for a failing cell or a missing file, the ToolResult as artifact', async () => {
    const failing = (await byName('execute_code').invoke({ type: 'tool_call', id: 'call_1', name: 'execute_code', args: { code: '1 / 0' } })) as ToolMessage
    assert.ok(failing instanceof ToolMessage)
    assert.equal(failing.tool_call_id, 'call_1')
    assert.equal(failing.status, 'error')
    assert.match(String(failing.content), /ZeroDivisionError: division by zero/)
    assert.equal((failing.artifact as ToolResult).isError, true)

    const missing = (await byName('read_files').invoke({
      type: 'tool_call',
      id: 'call_2',
      name: 'read_files',
      args: { paths: ['no-such.csv'] },
    })) as ToolMessage
    assert.equal(missing.status, 'error')
    assert.equal(missing.content, "NotFound: 'no-such.csv' does not exist")

    const listed = (await byName('execute_command').invoke({
      type: 'tool_call',
      id: 'call_3',
      name: 'execute_command',
      args: { command: 'echo hi' },
    })) as ToolMessage
    assert.equal(listed.status, 'success')
    assert.equal(listed.content, 'hi\n')
  })

  it('runs in an agent loop with a chat model: bindTools, tool calls, ToolMessages back to the model', async () => {
    const model = fakeModel()
      .respondWithTools([{ name: 'execute_code', args: { code: plot }, id: 'call_plot' }])
      .respondWithTools([{ name: 'execute_code', args: { code: 'print(len(squares))' }, id: 'call_len' }])
      .respond(new AIMessage('Five squares, plotted.'))
    const answer = await agentLoop(model, codeboxLangChainTools(shared.ci), [new HumanMessage('Plot the first five squares.')])
    assert.equal(answer.content, 'Five squares, plotted.')
    assert.equal(model.callCount, 3)

    const sawChart = model.calls[1]!.messages.at(-1) as ToolMessage
    assert.equal(sawChart.tool_call_id, 'call_plot')
    const blocks = sawChart.content as { type: string; data?: string }[]
    assert.ok(
      blocks.some((b) => b.type === 'image' && isPng(b.data!)),
      'the model received the chart',
    )
    const sawLength = model.calls[2]!.messages.at(-1) as ToolMessage
    assert.equal(sawLength.content, '5\n', 'squares survived from the first call')
  })

  it("passes the run's abort signal to the running call", async () => {
    await using own = await codeSession({ baseUrl: shared.server.url })
    const [executeCode] = codeboxLangChainTools(own, { include: ['execute_code'] })
    const signal = AbortSignal.timeout(300)
    await assert.rejects(executeCode!.invoke({ code: 'import time\ntime.sleep(60)' }, { signal }), (e) => e === signal.reason)
    // LangChain rejects on abort by itself; only an aborted request makes codebox interrupt the cell
    const started = performance.now()
    assert.equal(await executeCode!.invoke({ code: 'print("next")' }), 'next\n')
    assert.ok(performance.now() - started < 10_000, `the sleeping cell was interrupted (session ${own.sessionId})`)
  })
})

/** The loop of the docs' example: call the model, run its tool calls, until it answers. */
async function agentLoop(model: ReturnType<typeof fakeModel>, tools: ReturnType<typeof codeboxLangChainTools>, messages: BaseMessage[]): Promise<BaseMessage> {
  const bound = model.bindTools(tools)
  for (let step = 0; step < 10; step++) {
    const reply = await bound.invoke(messages)
    messages.push(reply)
    if (!reply.tool_calls?.length) return reply
    for (const call of reply.tool_calls) messages.push((await tools.find((t) => t.name === call.name)!.invoke(call)) as ToolMessage)
  }
  throw new Error('the model did not answer in 10 steps')
}
