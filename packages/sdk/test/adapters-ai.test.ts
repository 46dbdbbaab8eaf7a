/**
 * @codebox/sdk/ai against a real codebox (the server's in-process test server, fake driver, host
 * python3): `generateText` with the AI SDK's mock model drives the tools the way a model would,
 * and the prompts the model receives show what it saw.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateText, stepCountIs, type ModelMessage } from 'ai'
import { MockLanguageModelV4 } from 'ai/test'
import { codeboxTools, toModelOutput } from '../src/adapters/ai.ts'
import { codeSession, type ToolResult } from '../src/index.ts'
import { agentToolNames } from '../src/tools/index.ts'
import { isPng, plot, sessionOnTestServer } from './adapter-fixtures.ts'

const usage = { inputTokens: { total: 10, noCache: 10, cacheRead: 0, cacheWrite: 0 }, outputTokens: { total: 5, text: 5, reasoning: 0 } }
const callTools = (...calls: { id: string; name: string; input: unknown }[]) => ({
  content: calls.map((c) => ({ type: 'tool-call' as const, toolCallId: c.id, toolName: c.name, input: JSON.stringify(c.input) })),
  finishReason: { unified: 'tool-calls' as const, raw: undefined },
  usage,
  warnings: [],
})
const answer = (text: string) => ({
  content: [{ type: 'text' as const, text }],
  finishReason: { unified: 'stop' as const, raw: undefined },
  usage,
  warnings: [],
})

/** The tool results in the last message of a prompt the model received, by tool call id. */
function toolResultsSeen(prompt: ModelMessage[]): Map<string, unknown> {
  const last = prompt.at(-1)
  assert.equal(last?.role, 'tool', `the prompt ends with tool results: ${JSON.stringify(prompt).slice(0, 300)}`)
  return new Map((last.content as { type: string; toolCallId: string; output: unknown }[]).map((p) => [p.toolCallId, p.output]))
}

describe('@codebox/sdk/ai', () => {
  const shared = sessionOnTestServer()

  it('generateText runs the calls in one session: a chart reaches the model as an image, a failing cell as error text', async () => {
    const model = new MockLanguageModelV4({
      doGenerate: [
        callTools({ id: 'plot', name: 'execute_code', input: { code: plot } }),
        callTools(
          { id: 'sum', name: 'execute_code', input: { code: 'print(sum(squares))' } },
          { id: 'fail', name: 'execute_code', input: { code: 'squares / 0' } },
          { id: 'missing', name: 'read_files', input: { paths: ['no-such.csv'] } },
        ),
        answer('The squares sum to 55.'),
      ],
    })
    const result = await generateText({
      model,
      tools: codeboxTools(shared.ci),
      stopWhen: stepCountIs(5),
      prompt: 'Plot the first five squares, then sum them.',
    })
    assert.equal(result.text, 'The squares sum to 55.', `session ${shared.ci.sessionId}`)

    const offered = model.doGenerateCalls[0]!.tools ?? []
    assert.deepEqual(
      offered.map((t) => t.name),
      agentToolNames,
    )
    const executeCode = offered[0] as { inputSchema: { required?: string[]; properties: Record<string, unknown> } }
    assert.deepEqual(executeCode.inputSchema.required, ['code'], 'language has a default, so the model may leave it out')

    // the program gets codebox's ToolResult, image included
    const plotted = result.steps[0]!.toolResults[0]!.output as ToolResult
    assert.equal(plotted.structuredContent.stdout, 'plotted\n')
    const image = plotted.content.find((b) => b.type === 'image')
    assert.ok(image?.type === 'image' && isPng(image.data), 'the ToolResult carries the PNG')

    // the model gets the text and the chart as an image part
    const seen1 = toolResultsSeen(model.doGenerateCalls[1]!.prompt)
    const plotOutput = seen1.get('plot') as {
      type: string
      value: { type: string; text?: string; mediaType?: string; data?: { type: string; data: string } }[]
    }
    assert.equal(plotOutput.type, 'content')
    assert.deepEqual(plotOutput.value[0], { type: 'text', text: 'plotted\n' })
    assert.equal(plotOutput.value[1]?.type, 'file')
    assert.equal(plotOutput.value[1]?.mediaType, 'image/png')
    assert.ok(isPng(plotOutput.value[1]!.data!.data), 'the model sees the PNG itself')

    // state kept from the first call; the failing cell and the missing file come back as errors to read
    const seen2 = toolResultsSeen(model.doGenerateCalls[2]!.prompt)
    assert.deepEqual(seen2.get('sum'), { type: 'text', value: '55\n' })
    const failed = seen2.get('fail') as { type: string; value: string }
    assert.equal(failed.type, 'error-text')
    assert.match(failed.value, /TypeError: unsupported operand type\(s\) for \/: 'list' and 'int'/)
    assert.match(failed.value, /\[error \(exit code 1\)\]$/)
    const missing = seen2.get('missing') as { type: string; value: string }
    assert.equal(missing.type, 'error-text')
    assert.match(missing.value, /no-such\.csv' does not exist/)
  })

  it('passes the abort signal to the running call and streams its output to onEvent', async () => {
    await using own = await codeSession({ baseUrl: shared.server.url })
    const controller = new AbortController()
    const events: string[] = []
    const tools = codeboxTools(own, {
      include: ['execute_code'],
      onEvent: (event, call) => {
        if (event.type !== 'stdout') return
        events.push(`${call.toolName}/${call.toolCallId}: ${event.text}`)
        controller.abort()
      },
    })
    assert.deepEqual(Object.keys(tools), ['execute_code'])
    const model = new MockLanguageModelV4({
      doGenerate: [
        callTools({ id: 'slow', name: 'execute_code', input: { code: 'import time\nprint("started", flush=True)\ntime.sleep(60)' } }),
        answer('never'),
      ],
    })
    const started = performance.now()
    await assert.rejects(generateText({ model, tools, stopWhen: stepCountIs(3), prompt: 'wait', abortSignal: controller.signal }), { name: 'AbortError' })
    assert.deepEqual(events, ['execute_code/slow: started\n'])
    // the AI SDK waits for the tool before it rejects, and codebox interrupts a cell only when its request is aborted
    assert.equal((await own.executeCode({ code: 'print("next")' })).structuredContent.stdout, 'next\n')
    assert.ok(performance.now() - started < 10_000, `the sleeping cell was interrupted (session ${own.sessionId})`)
  })

  it('leaves what the model cannot fix to the AI SDK, which reports it as a tool-error part', async () => {
    const ended = await codeSession({ baseUrl: shared.server.url })
    await ended.stop()
    const model = new MockLanguageModelV4({
      doGenerate: [callTools({ id: 'late', name: 'execute_code', input: { code: '1' } }), answer('The session is gone.')],
    })
    const result = await generateText({ model, tools: codeboxTools(ended), stopWhen: stepCountIs(3), prompt: 'run 1' })
    const errors = result.steps[0]!.content.filter((part) => part.type === 'tool-error')
    assert.equal(errors.length, 1)
    assert.match(String(errors[0]!.error), /SessionTerminatedError: session \w+ has ended/)
  })

  it('describes images in text with images: false, and for types a model cannot take', () => {
    const png = Buffer.from('\x89PNG\r\n\x1a\nfake', 'latin1').toString('base64') // 12 bytes
    const result: ToolResult = {
      content: [
        { type: 'text', text: 'two charts\n' },
        { type: 'image', data: png, mimeType: 'image/png' },
        { type: 'image', data: png, mimeType: 'image/svg+xml' },
      ],
      structuredContent: { stdout: 'two charts\n', stderr: '', exitCode: 0, executionTime: 5 },
      isError: false,
    }
    const asText = toModelOutput(result, false)
    assert.equal(asText.type, 'text')
    assert.match(String(asText.value), /^two charts\n\n\[image: image\/png, \d+ bytes\]\n\[image: image\/svg\+xml, \d+ bytes\]$/)
    const withImages = toModelOutput(result) as { type: string; value: { type: string; mediaType?: string; text?: string }[] }
    assert.equal(withImages.type, 'content')
    assert.deepEqual(
      withImages.value.map((p) => p.mediaType ?? p.text),
      ['two charts\n\n[image: image/svg+xml, 12 bytes]', 'image/png'],
    )
  })
})
