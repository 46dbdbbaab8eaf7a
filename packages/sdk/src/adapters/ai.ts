/**
 * @codebox/sdk/ai: codebox's agent tools as a Vercel AI SDK tool set, for `generateText`,
 * `streamText` and agents: `generateText({model, tools: codeboxTools(ci), stopWhen: stepCountIs(10)})`.
 * Each tool returns codebox's ToolResult to the program; the model gets its text, with charts as
 * images (`toModelOutput`). A failing cell is an error result for the model, not a thrown error.
 * Needs the `ai` package (v7), an optional peer dependency of @codebox/sdk.
 */
import { tool, type Tool } from 'ai'
import type { z } from 'zod'
import type { ExecutionEvent, ToolResult } from '@codebox/core'
import {
  agentToolDescriptions,
  agentToolNames,
  agentToolSchemas,
  type AgentToolName,
  resultToText,
  resultToTextAndImages,
  runAgentTool,
  type ToolTarget,
} from '@codebox/tools'

/** Options of `codeboxTools`. */
export interface CodeboxToolsOptions<N extends AgentToolName = AgentToolName> {
  /** Only these tools. Default all nine. */
  include?: readonly N[]
  /** Send images (charts, PNG/JPEG files) to the model as image parts; false for models without vision. Default true. */
  images?: boolean
  /** Called with stdout, stderr and display events while a tool runs. */
  onEvent?: (event: ExecutionEvent, call: { toolName: AgentToolName; toolCallId: string }) => void
}

/** One codebox tool of the AI SDK: the input of its zod schema, codebox's ToolResult as output. */
export type CodeboxTool<N extends AgentToolName> = Tool<z.output<(typeof agentToolSchemas)[N]>, ToolResult>

/** The tool set, keyed by tool name (`execute_code`, `execute_command`, `write_files`, ...). */
export type CodeboxToolSet<N extends AgentToolName = AgentToolName> = { [K in N]: CodeboxTool<K> }

type ModelOutput = Awaited<ReturnType<NonNullable<Tool<unknown, ToolResult>['toModelOutput']>>>

/**
 * The agent tools running in `target`'s session (a started CodeInterpreter, e.g. from
 * `codeSession()`): state persists across calls and steps. The AI SDK's `abortSignal` reaches the
 * running call.
 */
export function codeboxTools<N extends AgentToolName = AgentToolName>(target: ToolTarget, options: CodeboxToolsOptions<N> = {}): CodeboxToolSet<N> {
  const names = (options.include ?? agentToolNames) as readonly N[]
  return Object.fromEntries(names.map((name) => [name, codeboxTool(target, name, options)])) as CodeboxToolSet<N>
}

function codeboxTool<N extends AgentToolName>(target: ToolTarget, name: N, options: CodeboxToolsOptions<N>): CodeboxTool<N> {
  const { images = true, onEvent } = options
  // one schema of the union, typed as the one for N (TypeScript cannot narrow the index by N)
  const inputSchema = agentToolSchemas[name] as unknown as z.ZodType<z.output<(typeof agentToolSchemas)[N]>>
  return tool({
    description: agentToolDescriptions[name],
    inputSchema,
    execute: (input, { abortSignal, toolCallId }) =>
      runAgentTool(target, name, input, { signal: abortSignal, ...(onEvent ? { onEvent: (e) => onEvent(e, { toolName: name, toolCallId }) } : {}) }),
    toModelOutput: ({ output }) => toModelOutput(output, images),
  })
}

/** A ToolResult as the model sees it: text (an error text for a failure), with images as file parts. */
export function toModelOutput(result: ToolResult, images = true): ModelOutput {
  const split = images ? resultToTextAndImages(result) : { text: resultToText(result), images: [] }
  if (split.images.length === 0) return { type: result.isError ? 'error-text' : 'text', value: split.text }
  return {
    type: 'content',
    value: [
      ...(split.text ? [{ type: 'text' as const, text: split.text }] : []),
      ...split.images.map((i) => ({ type: 'file' as const, mediaType: i.mimeType, data: { type: 'data' as const, data: i.data } })),
    ],
  }
}
