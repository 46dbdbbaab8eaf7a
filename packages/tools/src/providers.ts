/**
 * The agent tools for the model APIs used without a framework: JSON-schema definitions in the
 * shapes of the Anthropic Messages API and the OpenAI Chat Completions and Responses APIs, and
 * `dispatchToolCall`, which runs a tool call the model made and returns the message that answers
 * it. Plain objects only: no provider SDK is imported.
 */
import { z } from 'zod'
import type { ToolResult } from '@codebox/core'
import { agentToolDescriptions, agentToolNames, agentToolSchemas, type AgentToolName } from './definitions.ts'
import { errorForModel, resultToText, resultToTextAndImages, runAgentTool, type ModelImageType, type RunToolOptions, type ToolTarget } from './dispatch.ts'

/** A JSON Schema of an object, as the model APIs take it. */
export interface JsonObjectSchema {
  type: 'object'
  properties?: Record<string, unknown>
  required?: string[]
  [keyword: string]: unknown
}

/** Which tools to offer. */
export interface ToolListOptions {
  /** Only these tools, in this order. Default all nine. */
  include?: readonly AgentToolName[]
}

/**
 * The input schema of an agent tool as JSON Schema (the input side: fields with a default, such
 * as `language`, are optional), without the `$schema` key that some APIs reject.
 */
export function agentToolJsonSchema(name: AgentToolName): JsonObjectSchema {
  const { $schema: _, ...schema } = z.toJSONSchema(agentToolSchemas[name], { io: 'input' }) as JsonObjectSchema
  return schema
}

/** A tool definition of the Anthropic Messages API (`tools` of `messages.create`). */
export interface AnthropicToolDefinition {
  name: AgentToolName
  description: string
  input_schema: JsonObjectSchema
}

/** The tools for the Anthropic Messages API: `anthropic.messages.create({tools: anthropicTools(), ...})`. */
export function anthropicTools(options: ToolListOptions = {}): AnthropicToolDefinition[] {
  return selected(options).map((name) => ({ name, description: agentToolDescriptions[name], input_schema: agentToolJsonSchema(name) }))
}

/** A function tool of the OpenAI Chat Completions API. */
export interface OpenAIChatTool {
  type: 'function'
  function: { name: AgentToolName; description: string; parameters: JsonObjectSchema }
}

/** The tools for OpenAI Chat Completions (and compatible APIs): `openai.chat.completions.create({tools: openaiTools(), ...})`. */
export function openaiTools(options: ToolListOptions = {}): OpenAIChatTool[] {
  return selected(options).map((name) => ({
    type: 'function',
    function: { name, description: agentToolDescriptions[name], parameters: agentToolJsonSchema(name) },
  }))
}

/** A function tool of the OpenAI Responses API. */
export interface OpenAIResponsesTool {
  type: 'function'
  name: AgentToolName
  description: string
  parameters: JsonObjectSchema
  /** false: the Responses API would otherwise apply strict mode, which these schemas are not written for. */
  strict: false
}

/** The tools for the OpenAI Responses API: `openai.responses.create({tools: openaiResponsesTools(), ...})`. */
export function openaiResponsesTools(options: ToolListOptions = {}): OpenAIResponsesTool[] {
  return selected(options).map((name) => ({
    type: 'function',
    name,
    description: agentToolDescriptions[name],
    parameters: agentToolJsonSchema(name),
    strict: false,
  }))
}

/** A `tool_use` block of an Anthropic assistant message. */
export interface AnthropicToolUse {
  type: 'tool_use'
  id: string
  name: string
  input: unknown
}

/** The `tool_result` block that answers it (send it in the next user message). */
export interface AnthropicToolResult {
  type: 'tool_result'
  tool_use_id: string
  content: ({ type: 'text'; text: string } | { type: 'image'; source: { type: 'base64'; media_type: ModelImageType; data: string } })[]
  is_error: boolean
}

/** An entry of `tool_calls` of an OpenAI Chat Completions assistant message. */
export interface OpenAIToolCall {
  id: string
  type: 'function'
  function: { name: string; arguments: string }
}

/** The `tool` message that answers it. Chat Completions takes text only: images are described. */
export interface OpenAIToolMessage {
  role: 'tool'
  tool_call_id: string
  content: string
}

/** A `function_call` output item of the OpenAI Responses API. */
export interface OpenAIResponsesFunctionCall {
  type: 'function_call'
  call_id: string
  name: string
  arguments: string
}

/** The `function_call_output` input item that answers it; images come as `input_image` data URLs. */
export interface OpenAIResponsesFunctionCallOutput {
  type: 'function_call_output'
  call_id: string
  output: string | ({ type: 'input_text'; text: string } | { type: 'input_image'; image_url: string })[]
}

/** Options of `dispatchToolCall`. */
export interface DispatchToolCallOptions extends RunToolOptions {
  /** Send images (charts, PNG/JPEG files) to the model as images where the API allows. Default true. */
  images?: boolean
}

/**
 * Runs a tool call the model made in `target`'s session (a CodeInterpreter) and returns the message
 * that answers it, in the same API's shape: an Anthropic `tool_use` block gets a `tool_result`
 * block, an OpenAI chat `tool_calls` entry a `tool` message, a Responses `function_call` a
 * `function_call_output`. A failing cell, an unknown tool, arguments that are not JSON or do not
 * fit the schema, a missing file: all come back as an error result for the model to read. Throws
 * only what the model cannot fix: the session ended, the server is unreachable, the abort.
 */
export async function dispatchToolCall(target: ToolTarget, call: AnthropicToolUse, options?: DispatchToolCallOptions): Promise<AnthropicToolResult>
export async function dispatchToolCall(target: ToolTarget, call: OpenAIToolCall, options?: DispatchToolCallOptions): Promise<OpenAIToolMessage>
export async function dispatchToolCall(
  target: ToolTarget,
  call: OpenAIResponsesFunctionCall,
  options?: DispatchToolCallOptions,
): Promise<OpenAIResponsesFunctionCallOutput>
export async function dispatchToolCall(
  target: ToolTarget,
  call: AnthropicToolUse | OpenAIToolCall | OpenAIResponsesFunctionCall,
  options: DispatchToolCallOptions = {},
): Promise<AnthropicToolResult | OpenAIToolMessage | OpenAIResponsesFunctionCallOutput> {
  const { images = true, ...runOptions } = options
  if (call.type === 'tool_use') {
    const outcome = await run(target, call.name, () => call.input, runOptions)
    return { type: 'tool_result', tool_use_id: call.id, ...anthropicContent(outcome, images) }
  }
  if (call.type === 'function' && typeof call.function === 'object') {
    const outcome = await run(target, call.function.name, () => parseArguments(call.function.arguments), runOptions)
    return { role: 'tool', tool_call_id: call.id, content: 'error' in outcome ? `Error: ${outcome.error}` : resultToText(outcome.result) }
  }
  if (call.type === 'function_call') {
    const outcome = await run(target, call.name, () => parseArguments(call.arguments), runOptions)
    return { type: 'function_call_output', call_id: call.call_id, output: responsesOutput(outcome, images) }
  }
  throw new TypeError(`not a tool call of a known API (Anthropic tool_use, OpenAI tool_calls entry or function_call): ${JSON.stringify(call).slice(0, 200)}`)
}

type Outcome = { result: ToolResult } | { error: string }

/** Runs the call; what the model got wrong becomes `{error}`, everything else is thrown. */
async function run(target: ToolTarget, name: string, input: () => unknown, options: RunToolOptions): Promise<Outcome> {
  try {
    return { result: await runAgentTool(target, name, input(), options) }
  } catch (e) {
    const error = e instanceof SyntaxError ? e.message : errorForModel(e)
    if (error === undefined) throw e
    return { error }
  }
}

/** JSON arguments of an OpenAI call; a SyntaxError for the model when they are not an object. */
function parseArguments(text: string): unknown {
  let value: unknown
  try {
    value = JSON.parse(text === '' ? '{}' : text)
  } catch (e) {
    throw new SyntaxError(`the arguments are not valid JSON (${(e as Error).message}); send a JSON object`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SyntaxError('the arguments must be a JSON object')
  return value
}

function anthropicContent(outcome: Outcome, images: boolean): Pick<AnthropicToolResult, 'content' | 'is_error'> {
  if ('error' in outcome) return { content: [{ type: 'text', text: outcome.error }], is_error: true }
  const split = images ? resultToTextAndImages(outcome.result) : { text: resultToText(outcome.result), images: [] }
  return {
    content: [
      ...(split.text ? [{ type: 'text' as const, text: split.text }] : []),
      ...split.images.map((i) => ({ type: 'image' as const, source: { type: 'base64' as const, media_type: i.mimeType, data: i.data } })),
    ],
    is_error: outcome.result.isError,
  }
}

function responsesOutput(outcome: Outcome, images: boolean): OpenAIResponsesFunctionCallOutput['output'] {
  if ('error' in outcome) return `Error: ${outcome.error}`
  if (!images) return resultToText(outcome.result)
  const split = resultToTextAndImages(outcome.result)
  if (split.images.length === 0) return split.text
  return [
    ...(split.text ? [{ type: 'input_text' as const, text: split.text }] : []),
    ...split.images.map((i) => ({ type: 'input_image' as const, image_url: `data:${i.mimeType};base64,${i.data}` })),
  ]
}

function selected(options: ToolListOptions): AgentToolName[] {
  return options.include ? [...options.include] : [...agentToolNames]
}
