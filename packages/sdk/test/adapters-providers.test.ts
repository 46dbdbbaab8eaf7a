/**
 * @codebox/sdk/tools for the Anthropic and OpenAI APIs: the JSON-schema definitions, and
 * `dispatchToolCall` with hand-written tool calls of each API against a real codebox (the
 * server's in-process test server, fake driver, host python3).
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { describe, it } from 'node:test'
import { promisify } from 'node:util'
import { codeSession, SessionTerminatedError } from '../src/index.ts'
import {
  agentToolDescriptions,
  agentToolNames,
  anthropicTools,
  dispatchToolCall,
  openaiResponsesTools,
  openaiTools,
  type AnthropicToolUse,
  type JsonObjectSchema,
} from '../src/tools/index.ts'
import { isPng, plot, sessionOnTestServer } from './adapter-fixtures.ts'

const toolUse = (name: string, input: unknown, id = `toolu_${name}`): AnthropicToolUse => ({ type: 'tool_use', id, name, input })
const toolCall = (name: string, args: string, id = `call_${name}`) => ({ id, type: 'function' as const, function: { name, arguments: args } })

/** Checks what the model APIs require of a tool's schema, recursively; returns the problems. */
function schemaProblems(schema: unknown, at = 'schema'): string[] {
  if (typeof schema !== 'object' || schema === null) return [`${at} is not an object`]
  const s = schema as Record<string, unknown>
  const problems = Object.keys(s)
    .filter((k) => k.startsWith('$'))
    .map((k) => `${at} has ${k}`)
  if (s.type === 'object') {
    const properties = (s.properties ?? {}) as Record<string, unknown>
    for (const r of (s.required ?? []) as string[]) if (!(r in properties)) problems.push(`${at} requires ${r}, which is not a property`)
    for (const [k, v] of Object.entries(properties)) problems.push(...schemaProblems(v, `${at}.${k}`))
  }
  if (s.type === 'array') problems.push(...schemaProblems(s.items, `${at}[]`))
  if (typeof s.type !== 'string' && !s.enum) problems.push(`${at} has no type`)
  return problems
}

describe('Anthropic and OpenAI tool definitions', () => {
  const anthropic = anthropicTools()

  it('are the nine tools with their descriptions and object schemas the APIs accept', () => {
    assert.deepEqual(
      anthropic.map((t) => t.name),
      agentToolNames,
    )
    for (const t of anthropic) {
      assert.equal(t.description, agentToolDescriptions[t.name])
      assert.equal(t.input_schema.type, 'object', t.name)
      assert.deepEqual(schemaProblems(t.input_schema), [], t.name)
      assert.deepEqual(JSON.parse(JSON.stringify(t)), t, `${t.name} is plain JSON`)
    }
  })

  it('make defaulted fields optional and the others required', () => {
    const schema = (name: string): JsonObjectSchema => anthropic.find((t) => t.name === name)!.input_schema
    assert.deepEqual(schema('execute_code').required, ['code'])
    assert.deepEqual((schema('execute_code').properties!.language as { enum: string[] }).enum, ['python', 'javascript', 'typescript'])
    assert.equal(schema('list_files').required, undefined)
    assert.deepEqual(schema('write_files').required, ['files'])
    assert.deepEqual(schema('get_task').required, ['task_id'])
  })

  it('come in the OpenAI Chat Completions and Responses shapes', () => {
    const chat = openaiTools()
    assert.deepEqual(
      chat.map((t) => [t.type, t.function.name, t.function.parameters]),
      anthropic.map((t) => ['function', t.name, t.input_schema]),
    )
    const responses = openaiResponsesTools({ include: ['execute_code'] })
    assert.deepEqual(responses, [
      { type: 'function', name: 'execute_code', description: agentToolDescriptions.execute_code, parameters: anthropic[0]!.input_schema, strict: false },
    ])
  })

  it('are importable where there is no Node (the tools subpath is browser-safe)', async () => {
    const entry = new URL('../src/tools/index.ts', import.meta.url).href
    const script = `
      import { registerHooks, builtinModules } from 'node:module'
      registerHooks({
        resolve(specifier, context, next) {
          if (specifier.startsWith('node:') || builtinModules.includes(specifier)) throw new Error(specifier + ' imported by ' + context.parentURL)
          return next(specifier, context)
        },
      })
      const tools = await import(${JSON.stringify(entry)})
      console.log(tools.anthropicTools().length, tools.openaiTools().length)
    `
    const { stdout } = await promisify(execFile)(process.execPath, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script])
    assert.equal(stdout.trim(), '9 9')
  })
})

describe('dispatchToolCall', () => {
  const shared = sessionOnTestServer()

  it('answers an Anthropic tool_use with a tool_result: text, the chart as an image block', async () => {
    const result = await dispatchToolCall(shared.ci, toolUse('execute_code', { code: plot }, 'toolu_01'))
    assert.equal(result.type, 'tool_result')
    assert.equal(result.tool_use_id, 'toolu_01')
    assert.equal(result.is_error, false, `session ${shared.ci.sessionId}`)
    assert.deepEqual(result.content[0], { type: 'text', text: 'plotted\n' })
    const image = result.content[1]
    assert.ok(image?.type === 'image', JSON.stringify(result.content).slice(0, 300))
    assert.equal(image.source.type, 'base64')
    assert.equal(image.source.media_type, 'image/png')
    assert.ok(isPng(image.source.data))
  })

  it('returns what the model got wrong as an error tool_result: a failing cell, an unknown tool, bad input, a missing file', async () => {
    const failing = await dispatchToolCall(shared.ci, toolUse('execute_code', { code: 'squares[10]' }))
    assert.equal(failing.is_error, true)
    assert.match((failing.content[0] as { text: string }).text, /IndexError: list index out of range[\s\S]*\[error \(exit code 1\)\]$/)

    const unknown = await dispatchToolCall(shared.ci, toolUse('run_python', { code: '1' }))
    assert.equal(unknown.is_error, true)
    assert.match((unknown.content[0] as { text: string }).text, /^ValidationError: name: unknown tool "run_python"; the tools are execute_code, /)

    const invalid = await dispatchToolCall(shared.ci, toolUse('execute_code', { language: 'python' }))
    assert.equal(invalid.is_error, true)
    assert.match((invalid.content[0] as { text: string }).text, /^ValidationError: execute_code\.code: /)

    const missing = await dispatchToolCall(shared.ci, toolUse('read_files', { paths: ['no-such.csv'] }))
    assert.deepEqual(missing.content, [{ type: 'text', text: "NotFound: 'no-such.csv' does not exist" }])
  })

  it('answers an OpenAI tool call with a tool message in the same session; images are described, bad JSON is an error', async () => {
    const summed = await dispatchToolCall(shared.ci, toolCall('execute_code', JSON.stringify({ code: 'print(sum(squares))' }), 'call_1'))
    assert.deepEqual(summed, { role: 'tool', tool_call_id: 'call_1', content: '55\n' })

    const charted = await dispatchToolCall(shared.ci, toolCall('execute_code', JSON.stringify({ code: plot })))
    assert.match(charted.content, /^plotted\n\n\[image: image\/png, \d+ bytes\]$/)

    const badJson = await dispatchToolCall(shared.ci, toolCall('execute_code', '{"code": "print(1)"'))
    assert.match(badJson.content, /^Error: the arguments are not valid JSON \(.+\); send a JSON object$/)
    const notObject = await dispatchToolCall(shared.ci, toolCall('execute_code', '["print(1)"]'))
    assert.equal(notObject.content, 'Error: the arguments must be a JSON object')
    const unknown = await dispatchToolCall(shared.ci, toolCall('python', '{}'))
    assert.match(unknown.content, /^Error: ValidationError: name: unknown tool "python"/)
    const listed = await dispatchToolCall(shared.ci, toolCall('list_files', ''))
    assert.equal(listed.role, 'tool', 'empty arguments are an empty object')
  })

  it('answers an OpenAI Responses function_call with a function_call_output; the chart as an input_image', async () => {
    const out = await dispatchToolCall(shared.ci, { type: 'function_call', call_id: 'fc_1', name: 'execute_code', arguments: JSON.stringify({ code: plot }) })
    assert.equal(out.type, 'function_call_output')
    assert.equal(out.call_id, 'fc_1')
    assert.ok(Array.isArray(out.output))
    assert.deepEqual(out.output[0], { type: 'input_text', text: 'plotted\n' })
    const image = out.output[1]
    assert.ok(image?.type === 'input_image')
    assert.ok(image.image_url.startsWith('data:image/png;base64,'))
    assert.ok(isPng(image.image_url.slice('data:image/png;base64,'.length)))

    const textOnly = await dispatchToolCall(shared.ci, { type: 'function_call', call_id: 'fc_2', name: 'execute_command', arguments: '{"command":"echo hi"}' })
    assert.equal(textOnly.output, 'hi\n')
    const badJson = await dispatchToolCall(shared.ci, { type: 'function_call', call_id: 'fc_3', name: 'execute_command', arguments: '{' })
    assert.match(String(badJson.output), /^Error: the arguments are not valid JSON/)
    const noImages = await dispatchToolCall(
      shared.ci,
      { type: 'function_call', call_id: 'fc_4', name: 'execute_code', arguments: JSON.stringify({ code: plot }) },
      { images: false },
    )
    assert.match(String(noImages.output), /^plotted\n\n\[image: image\/png, \d+ bytes\]$/)
  })

  it('throws what the model cannot fix: the session has ended; and a call of no known API', async () => {
    const ended = await codeSession({ baseUrl: shared.server.url })
    await ended.stop()
    await assert.rejects(dispatchToolCall(ended, toolUse('execute_code', { code: '1' })), SessionTerminatedError)
    await assert.rejects(dispatchToolCall(shared.ci, { name: 'execute_code', args: {} } as never), TypeError)
  })
})
