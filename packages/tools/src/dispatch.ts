/**
 * Running an agent tool call against a session: the name and input are checked (a bad call is a
 * ValidationError naming what is wrong, for the model to fix), mapped onto the codebox tool, and
 * run through whatever can invoke codebox tools (a CodeInterpreter, or the server's own sessions).
 */
import { isCodeboxError, validationError, type ExecutionEvent, type ToolArguments, type ToolName, type ToolResult } from '@codebox/core'
import { agentToolNames, agentToolSchemas, toCodeboxCall, type AgentToolName } from './definitions.ts'

/** Something that runs codebox tools in one session: a CodeInterpreter satisfies it. */
export interface ToolTarget {
  invoke(name: ToolName, args: ToolArguments[ToolName], options?: { signal?: AbortSignal }): Promise<ToolResult>
  invokeStream?(name: ToolName, args: ToolArguments[ToolName], options?: { signal?: AbortSignal }): AsyncGenerator<ExecutionEvent, ToolResult, undefined>
}

export interface RunToolOptions {
  signal?: AbortSignal
  /** Called with stdout, stderr and display events as they happen (when the target can stream). */
  onEvent?: (event: ExecutionEvent) => void
}

export const isAgentToolName = (name: unknown): name is AgentToolName => typeof name === 'string' && (agentToolNames as string[]).includes(name)

/** Checks a call's name and input; returns the codebox call it stands for. Throws ValidationError. */
export function checkAgentToolCall(name: unknown, input: unknown): { name: ToolName; arguments: ToolArguments[ToolName] } {
  if (!isAgentToolName(name)) throw validationError('name', `unknown tool ${JSON.stringify(name)}; the tools are ${agentToolNames.join(', ')}`)
  const parsed = agentToolSchemas[name].safeParse(input ?? {})
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!
    throw validationError([name, ...issue.path.map(String)].join('.'), issue.message)
  }
  try {
    return toCodeboxCall(name, parsed.data as never)
  } catch (e) {
    throw validationError(name, (e as Error).message)
  }
}

/** Runs one agent tool call in `target`'s session and returns the codebox result. */
export async function runAgentTool(target: ToolTarget, name: unknown, input: unknown, options: RunToolOptions = {}): Promise<ToolResult> {
  const call = checkAgentToolCall(name, input)
  if (options.onEvent && target.invokeStream) {
    const events = target.invokeStream(call.name, call.arguments, { signal: options.signal })
    for (;;) {
      const next = await events.next()
      if (next.done) return next.value
      if (next.value.type !== 'result') options.onEvent(next.value)
    }
  }
  return target.invoke(call.name, call.arguments, { signal: options.signal })
}

/** Image types that model APIs (Anthropic, OpenAI, Gemini) accept as image input. */
export const modelImageTypes = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'] as const
export type ModelImageType = (typeof modelImageTypes)[number]
const isModelImageType = (mimeType: string): mimeType is ModelImageType => (modelImageTypes as readonly string[]).includes(mimeType)

/**
 * A result as text for a model: the output, then what else came back (images, files, links) and
 * how it ended. Images and file contents are described, not inlined; adapters that can pass
 * images to a model use `resultToTextAndImages`.
 */
export function resultToText(result: ToolResult): string {
  return describe(result, false).text || '(no output)'
}

/**
 * A result for a model that sees images: the images of `modelImageTypes` (base64), and everything
 * else as `resultToText` would say it. `text` is empty when the images are all there is.
 */
export function resultToTextAndImages(result: ToolResult): { text: string; images: { data: string; mimeType: ModelImageType }[] } {
  const { text, images } = describe(result, true)
  return { text: text === '' && images.length === 0 ? '(no output)' : text, images }
}

/**
 * How a call ended, for a model, when there is something to say: `[task <id>: <status>; error
 * (exit code N); limit reached: TIMEOUT]`. Undefined for a plain success.
 */
export function resultStatus(result: ToolResult): string | undefined {
  const s = result.structuredContent
  const tail: string[] = []
  if (s.taskId) tail.push(`task ${s.taskId}: ${s.taskStatus}`)
  if (result.isError) tail.push(`error (exit code ${s.exitCode})`)
  else if (s.exitCode !== 0) tail.push(`exit code ${s.exitCode}`)
  if (s.limitsExceeded?.length) tail.push(`limit reached: ${s.limitsExceeded.join(', ')}`)
  return tail.length ? `[${tail.join('; ')}]` : undefined
}

/** Error codes a model causes and can fix by calling differently: a bad argument, a missing file or task, too much data. */
const modelErrorCodes: ReadonlySet<string> = new Set(['ValidationError', 'NotFound', 'LimitExceeded'])

/**
 * The text a model should see for an error its call caused (`ValidationError`, `NotFound`,
 * `LimitExceeded`: `"NotFound: 'data.csv' does not exist"`), or undefined for every other error
 * (the session ended, the server is unavailable, the caller aborted): rethrow those.
 */
export function errorForModel(error: unknown): string | undefined {
  return isCodeboxError(error) && modelErrorCodes.has(error.code) ? `${error.code}: ${error.message}` : undefined
}

/** The result's text and status; images of model types pulled out when `inlineImages`, else described. */
function describe(result: ToolResult, inlineImages: boolean): { text: string; images: { data: string; mimeType: ModelImageType }[] } {
  const parts: string[] = []
  const images: { data: string; mimeType: ModelImageType }[] = []
  for (const block of result.content) {
    switch (block.type) {
      case 'text':
        parts.push(block.text)
        break
      case 'image':
        if (inlineImages && isModelImageType(block.mimeType)) images.push({ data: block.data, mimeType: block.mimeType })
        else parts.push(`[image: ${block.mimeType}, ${Math.floor((block.data.length * 3) / 4)} bytes]`)
        break
      case 'resource':
        parts.push(
          block.resource.text !== undefined
            ? `--- ${block.resource.uri} ---\n${block.resource.text}`
            : `--- ${block.resource.uri} (${block.resource.mimeType}, base64) ---\n${block.resource.blob ?? ''}`,
        )
        break
      case 'resource_link':
        parts.push(`${block.description === 'Directory' ? 'dir ' : 'file'} ${block.name}${block.size !== undefined ? ` (${block.size} bytes)` : ''}`)
        break
    }
  }
  const status = resultStatus(result)
  return { text: [...parts.filter((p) => p !== ''), ...(status ? [status] : [])].join('\n'), images }
}
