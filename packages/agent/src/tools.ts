/**
 * The nine codebox agent tools as Strands tools, bound to one turn's ToolTarget (the
 * conversation's code session). Each call is validated and run by @codebox/tools' runAgentTool;
 * stdout/stderr stream out as tool events while the call runs; the result goes back to the model
 * as text plus the images the code drew. A mistake the model can fix (bad or non-JSON arguments,
 * a missing file: what errorForModel maps) becomes an error result and the loop continues; any
 * other failure (the session ended, the server is going away) ends the turn.
 */
import type { ExecutionEvent } from '@codebox/core'
import {
  agentToolDescriptions,
  agentToolJsonSchema,
  agentToolNames,
  errorForModel,
  resultToTextAndImages,
  runAgentTool,
  type AgentToolName,
  type ToolTarget,
} from '@codebox/tools'
import { ImageBlock, TextBlock, Tool, ToolResultBlock, ToolStreamEvent, type ToolContext, type ToolSpec, type ToolStreamGenerator } from '@strands-agents/sdk'
import { INVALID_JSON_KEY } from './fallback.ts'

/** What a tool call ended with, as the `tool_result` event shows it. */
export interface ToolOutcome {
  isError: boolean
  text: string
  exitCode?: number
  images: { mimeType: string; data: string }[]
}

/** The turn a tool call belongs to: where it runs and where its outcome and fatal errors go. */
export interface ToolTurn {
  target: ToolTarget
  /** Records the outcome of a call, by toolUseId. */
  outcomes: Map<string, ToolOutcome>
  /** Ends the turn with an error the model cannot fix. */
  fail(error: unknown): void
}

/** Output chunks a running tool call streams, as carried in ToolStreamEvent.data. */
export interface ToolOutputData {
  codeboxOutput: { toolUseId: string; stream: 'stdout' | 'stderr'; text: string }
}

/** The message for a call to a tool that does not exist. */
export function unknownToolMessage(name: string): string {
  return `ValidationError: name: unknown tool ${JSON.stringify(name)}; the tools are ${agentToolNames.join(', ')}`
}

/** The tools' specs, built once (JSON Schema from zod is not free). */
const toolSpecs = new Map<AgentToolName, ToolSpec>()
function toolSpecOf(name: AgentToolName): ToolSpec {
  let spec = toolSpecs.get(name)
  if (!spec) {
    spec = { name, description: agentToolDescriptions[name], inputSchema: agentToolJsonSchema(name) as ToolSpec['inputSchema'] }
    toolSpecs.set(name, spec)
  }
  return spec
}

/** The Strands tools for one turn. */
export function codeboxTools(turn: ToolTurn): Tool[] {
  return agentToolNames.map((name) => new CodeboxTool(name, turn))
}

class CodeboxTool extends Tool {
  readonly name: AgentToolName
  readonly description: string
  readonly toolSpec: ToolSpec
  readonly #turn: ToolTurn

  constructor(name: AgentToolName, turn: ToolTurn) {
    super()
    this.name = name
    this.description = agentToolDescriptions[name]
    this.toolSpec = toolSpecOf(name)
    this.#turn = turn
  }

  async *stream(context: ToolContext): ToolStreamGenerator {
    const { toolUseId, input } = context.toolUse
    const finish = (outcome: ToolOutcome, content: (TextBlock | ImageBlock)[]) => {
      this.#turn.outcomes.set(toolUseId, outcome)
      return new ToolResultBlock({ toolUseId, status: outcome.isError ? 'error' : 'success', content })
    }
    const modelError = (text: string) => finish({ isError: true, text, images: [] }, [new TextBlock(text)])

    const raw = (input as Record<string, unknown> | null)?.[INVALID_JSON_KEY]
    if (typeof raw === 'string') return modelError(`ValidationError: ${this.name}: the arguments are not valid JSON: ${raw.slice(0, 200)}`)

    const queue: ExecutionEvent[] = []
    let wake: (() => void) | undefined
    let settled: { ok: true; value: Awaited<ReturnType<typeof runAgentTool>> } | { ok: false; error: unknown } | undefined
    const call = runAgentTool(this.#turn.target, this.name, input, {
      signal: context.cancelSignal,
      onEvent: (event) => {
        queue.push(event)
        wake?.()
      },
    }).then(
      (value) => (settled = { ok: true, value }),
      (error: unknown) => (settled = { ok: false, error }),
    )
    void call.finally(() => wake?.())
    // A target that does not honour the signal must not hold a canceled turn open.
    const onCancel = () => wake?.()
    context.cancelSignal.addEventListener('abort', onCancel, { once: true })
    for (;;) {
      while (queue.length) {
        const event = queue.shift()!
        if (event.type === 'stdout' || event.type === 'stderr') {
          const data: ToolOutputData = { codeboxOutput: { toolUseId, stream: event.type, text: event.text } }
          yield new ToolStreamEvent({ data })
        }
      }
      if (settled) break
      if (context.cancelSignal.aborted) return modelError('canceled')
      await new Promise<void>((resolve) => (wake = resolve))
      wake = undefined
    }
    context.cancelSignal.removeEventListener('abort', onCancel)
    const done = settled as NonNullable<typeof settled>
    if (!done.ok) {
      const message = errorForModel(done.error)
      if (message !== undefined) return modelError(message)
      // A canceled turn stops here; the loop reports the cancellation, not this call's AbortError.
      if (context.cancelSignal.aborted) return modelError('canceled')
      this.#turn.fail(done.error)
      return modelError(`the tool call failed: ${(done.error as Error)?.message ?? String(done.error)}`)
    }
    const result = done.value
    const { text, images } = resultToTextAndImages(result)
    const content: (TextBlock | ImageBlock)[] = [new TextBlock(text)]
    for (const image of images) {
      content.push(new ImageBlock({ format: image.mimeType.slice('image/'.length) as 'png', source: { bytes: Buffer.from(image.data, 'base64') } }))
    }
    return finish({ isError: result.isError, text, exitCode: result.structuredContent.exitCode, images }, content)
  }
}
