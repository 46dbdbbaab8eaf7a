/**
 * @codebox/sdk/langchain: codebox's agent tools as LangChain.js tools, for `model.bindTools()`,
 * LangGraph's ToolNode and `createAgent`. Invoked with a tool call (what a model returns) a tool
 * answers with a ToolMessage: charts as image content blocks, `status: 'error'` for a failing cell
 * or a call the model got wrong, codebox's ToolResult as `artifact`. Invoked with plain arguments
 * it returns the content alone. Needs `@langchain/core` (v1), an optional peer dependency.
 */
import { ToolMessage } from '@langchain/core/messages'
import { tool, type DynamicStructuredTool, type ToolRunnableConfig } from '@langchain/core/tools'
import type { ExecutionEvent, ToolResult } from '@codebox/core'
import {
  agentToolDescriptions,
  agentToolNames,
  agentToolSchemas,
  type AgentToolName,
  errorForModel,
  resultToText,
  resultToTextAndImages,
  runAgentTool,
  type ToolTarget,
} from '@codebox/tools'

/** Options of `codeboxLangChainTools`. */
export interface CodeboxLangChainToolsOptions {
  /** Only these tools. Default all nine. */
  include?: readonly AgentToolName[]
  /** Send images (charts, PNG/JPEG files) to the model as image blocks; false for models without vision. Default true. */
  images?: boolean
  /** Called with stdout, stderr and display events while a tool runs. */
  onEvent?: (event: ExecutionEvent, call: { toolName: AgentToolName; toolCallId?: string }) => void
}

/** What a tool returns: text, or text and image blocks (LangChain's standard content blocks). */
export type CodeboxToolContent = string | ({ type: 'text'; text: string } | { type: 'image'; mimeType: string; data: string })[]

/**
 * The agent tools running in `target`'s session (a started CodeInterpreter, e.g. from
 * `codeSession()`): state persists across calls. The run's `signal` reaches the running call.
 * Errors the model cannot fix (the session ended, the server is unreachable) are thrown.
 */
export function codeboxLangChainTools(target: ToolTarget, options: CodeboxLangChainToolsOptions = {}): DynamicStructuredTool[] {
  return (options.include ?? agentToolNames).map((name) => codeboxLangChainTool(target, name, options))
}

function codeboxLangChainTool(target: ToolTarget, name: AgentToolName, options: CodeboxLangChainToolsOptions): DynamicStructuredTool {
  const { images = true, onEvent } = options
  const run = async (input: unknown, config: ToolRunnableConfig): Promise<CodeboxToolContent | ToolMessage> => {
    const toolCallId = config.toolCall?.id
    let content: CodeboxToolContent
    let artifact: ToolResult | undefined
    try {
      artifact = await runAgentTool(target, name, input, {
        signal: config.signal,
        ...(onEvent ? { onEvent: (e: ExecutionEvent) => onEvent(e, { toolName: name, toolCallId }) } : {}),
      })
      content = toLangChainContent(artifact, images)
    } catch (e) {
      const error = errorForModel(e)
      if (error === undefined) throw e
      content = error
    }
    if (toolCallId === undefined) return content
    return new ToolMessage({ content, tool_call_id: toolCallId, name, status: !artifact || artifact.isError ? 'error' : 'success', artifact })
  }
  return tool(run, { name, description: agentToolDescriptions[name], schema: agentToolSchemas[name] })
}

/** A ToolResult as tool content: its text, and its images as image blocks when there are any. */
export function toLangChainContent(result: ToolResult, images = true): CodeboxToolContent {
  if (!images) return resultToText(result)
  const split = resultToTextAndImages(result)
  if (split.images.length === 0) return split.text
  return [
    ...(split.text ? [{ type: 'text' as const, text: split.text }] : []),
    ...split.images.map((i) => ({ type: 'image' as const, mimeType: i.mimeType, data: i.data })),
  ]
}
