/**
 * The whole answer loop against each provider's real wire format, driven by the real client
 * libraries: the model calls execute_code, the (fake, recording) session runs it, the model reads
 * the tool result and answers with the number from it. Also generate and the history.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { AgentEvent } from '@codebox/core'
import { agentToolNames } from '@codebox/tools'
import { createAgent } from '../src/agent.ts'
import { agentOptionsFromEnv } from '../src/index.ts'
import { cellResult, FakeTarget } from './fake-target.ts'
import { drain, modelIds, modelServer, shape } from './helpers.ts'
import { modelEnv, type ModelRequestView, type ScriptedReply } from './model-servers.ts'

const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='
const LEAP_CODE = 'import calendar\nprint(sum(calendar.isleap(y) for y in range(2000, 2025)))'

/** The model: first it runs code, then it answers with the number it finds in the tool result. */
function countingModel(req: ModelRequestView): ScriptedReply {
  const result = req.toolResults.at(-1)
  if (result === undefined) return { text: 'I will count them.', toolUse: { name: 'execute_code', input: { code: LEAP_CODE } } }
  const n = /\d+/.exec(result)?.[0]
  return { text: n ? `There are ${n} leap years between 2000 and 2024.` : 'I could not find the number.' }
}

/** The session: runs the leap-year code "for real" (computes it here) and draws a chart. */
function leapTarget(): FakeTarget {
  return new FakeTarget((call) => {
    assert.equal(call.name, 'executeCode')
    assert.equal(call.args.code, LEAP_CODE)
    let n = 0
    for (let y = 2000; y < 2025; y++) if ((y % 4 === 0 && y % 100 !== 0) || y % 400 === 0) n++
    return cellResult(`${n}\n`, { images: [PNG] })
  })
}

for (const provider of ['anthropic', 'bedrock', 'openai'] as const) {
  describe(`the loop over ${provider}`, () => {
    test('runs code, reads the result, answers with the computed number', async (t) => {
      const server = await modelServer(t, provider, countingModel)
      const agent = createAgent(agentOptionsFromEnv({ ...modelEnv(provider, server), CODEBOX_AGENT_MODELS: `${provider}:${modelIds[provider]}` }))
      const target = leapTarget()
      const history = [{ prompt: 'My name is Ada.', answer: 'Nice to meet you, Ada.' }]
      const { events, result, error } = await drain(agent.answer({ prompt: 'How many leap years between 2000 and 2024?', history, tools: target }))
      assert.equal(error, undefined, String(error))
      assert.deepEqual(shape(events), ['model', 'text', 'tool_use', 'tool_output', 'tool_result', 'text', 'final'])

      const id = `${provider}:${modelIds[provider]}`
      assert.deepEqual(events[0], { type: 'model', model: id, skipped: [] })
      const use = events.find((e) => e.type === 'tool_use')!
      assert.deepEqual(
        { ...use, toolUseId: '' },
        { type: 'tool_use', toolUseId: '', name: 'execute_code', input: { code: LEAP_CODE }, code: LEAP_CODE, language: 'python' },
      )
      const output = events.find((e) => e.type === 'tool_output')!
      assert.deepEqual(output, { type: 'tool_output', toolUseId: use.toolUseId, stream: 'stdout', text: '7\n' })
      const toolResult = events.find((e) => e.type === 'tool_result') as Extract<AgentEvent, { type: 'tool_result' }>
      assert.equal(toolResult.toolUseId, use.toolUseId)
      assert.equal(toolResult.isError, false)
      assert.equal(toolResult.exitCode, 0)
      assert.match(toolResult.text, /^7\n/)
      assert.deepEqual(toolResult.images, [{ mimeType: 'image/png', data: PNG }])

      assert.equal(result!.text, 'There are 7 leap years between 2000 and 2024.')
      assert.deepEqual(events.at(-1), { type: 'final', ...result })
      assert.equal(result!.model, id)
      assert.equal(result!.stopReason, 'endTurn')
      assert.ok(result!.usage.inputTokens > 0 && result!.usage.outputTokens > 0)

      // What the model was sent: the verify-by-execution prompt, the nine tools, the history, maxTokens.
      assert.equal(server.requests.length, 2)
      const [first, second] = server.requests as [ModelRequestView, ModelRequestView]
      assert.equal(first.model, modelIds[provider])
      assert.match(first.system, /never guess numbers/i)
      assert.match(first.system, /execute_code/)
      assert.deepEqual(first.userTexts, ['My name is Ada.', 'How many leap years between 2000 and 2024?'])
      assert.ok(JSON.stringify(first.raw).includes('Nice to meet you, Ada.'))
      assert.deepEqual(toolNames(provider, first.raw), [...agentToolNames].sort())
      assert.equal(maxTokens(provider, first.raw), 4096)
      assert.match(second.toolResults[0]!, /^7\n/)
      // The chart reaches a model that takes images; a local OpenAI-compatible server gets a description.
      if (provider === 'openai') {
        assert.equal(second.imageCount, 0)
        assert.match(second.toolResults[0]!, /\[image: png, \d+ bytes; this model does not take images\]/)
      } else assert.equal(second.imageCount, 1)
    })
  })
}

describe('generate', () => {
  test('asks for one fenced block without tools and returns the code apart from the explanation', async (t) => {
    const reply = 'Here it is:\n\n```python\nimport calendar\nprint(calendar.isleap(2024))\n```\n\nIt prints True for a leap year.'
    const server = await modelServer(t, 'anthropic', [{ text: reply }])
    const agent = createAgent(agentOptionsFromEnv({ ...modelEnv('anthropic', server), CODEBOX_AGENT_MODELS: 'anthropic:claude-x' }))
    const { events, result, error } = await drain(agent.generate({ prompt: 'is 2024 a leap year', language: 'python', history: [] }))
    assert.equal(error, undefined)
    assert.deepEqual(shape(events), ['model', 'text', 'final'])
    assert.equal(result!.code, 'import calendar\nprint(calendar.isleap(2024))')
    assert.equal(result!.language, 'python')
    assert.equal(result!.text, reply)
    assert.deepEqual(events.at(-1), { type: 'final', ...result })
    const req = server.requests[0]!
    assert.match(req.system, /exactly one fenced code block tagged `python`/)
    assert.equal((req.raw as { tools?: unknown[] }).tools, undefined)
  })

  test('a reply without a fence is all code', async (t) => {
    const server = await modelServer(t, 'openai', [{ text: 'console.log(40 + 2)' }])
    const agent = createAgent(agentOptionsFromEnv({ ...modelEnv('openai', server), CODEBOX_AGENT_MODELS: 'openai:m' }))
    const { result } = await drain(agent.generate({ prompt: 'add', language: 'javascript', history: [] }))
    assert.equal(result!.code, 'console.log(40 + 2)')
    assert.equal(result!.language, 'javascript')
  })
})

function toolNames(provider: string, raw: unknown): string[] {
  type ToolDef = { name?: string; function?: { name: string }; toolSpec?: { name: string } }
  const r = raw as { tools?: ToolDef[]; toolConfig?: { tools: ToolDef[] } }
  const tools = provider === 'bedrock' ? (r.toolConfig?.tools ?? []) : (r.tools ?? [])
  return tools
    .map((x) => x.name ?? x.function?.name ?? x.toolSpec?.name)
    .filter((n): n is string => typeof n === 'string')
    .sort()
}

function maxTokens(provider: string, raw: unknown): number | undefined {
  const r = raw as { max_tokens?: number; max_completion_tokens?: number; inferenceConfig?: { maxTokens?: number } }
  if (provider === 'bedrock') return r.inferenceConfig?.maxTokens
  if (provider === 'openai') {
    assert.equal(r.max_tokens, r.max_completion_tokens, 'a compatible server gets both max_tokens and max_completion_tokens')
    return r.max_completion_tokens
  }
  return r.max_tokens
}
