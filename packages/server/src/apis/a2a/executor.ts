/**
 * The A2A executor of the codebox agent: one A2A message is one agent turn (AgentDoor.turn), the
 * A2A context id is the conversation, so a peer that keeps its context id continues the
 * conversation. The turn streams as A2A events: a `working` status per step (the model chosen,
 * each tool call with its code, each result with the charts it drew as images), the answer's text
 * as it streams (chunks of the `answer` artifact), then the final answer replacing those chunks and
 * a `completed` status; a failure is a `failed` status naming the codebox error code; tasks/cancel
 * aborts the turn (and the running cell) and ends the task `canceled`.
 */
import { randomUUID } from 'node:crypto'
import { Role, TaskState, type Message, type Part } from '@a2a-js/sdk'
import { AgentEvent as A2AEvent, type AgentExecutor, type ExecutionEventBus, type RequestContext } from '@a2a-js/sdk/server'
import type { AgentEvent } from '@codebox/core'
import { toCodeboxError } from '../../http/errors.ts'
import type { AgentDoor, TurnRequest } from '../../services/agent-door.ts'
import type { Caller } from '../../services/sessions.ts'

/** Keys of ServerCallContext.state that the transport fills for the executor. */
export const callerKey = 'codebox.caller'
export const requestIdKey = 'codebox.requestId'

/** How often streamed text is flushed as an artifact chunk (many deltas make one chunk). */
const textFlushMs = 200

const textPart = (text: string): Part => ({ content: { $case: 'text', value: text }, metadata: undefined, filename: '', mediaType: 'text/plain' })
const imagePart = (image: { mimeType: string; data: string }, index: number): Part => ({
  content: { $case: 'raw', value: Buffer.from(image.data, 'base64') },
  metadata: undefined,
  filename: `chart-${index + 1}.${image.mimeType.split('/')[1] ?? 'png'}`,
  mediaType: image.mimeType,
})

export class CodeboxAgentExecutor implements AgentExecutor {
  readonly #agent: AgentDoor
  readonly #running = new Map<string, AbortController>()

  constructor(agent: AgentDoor) {
    this.#agent = agent
  }

  async execute(context: RequestContext, bus: ExecutionEventBus): Promise<void> {
    const { taskId, contextId } = context
    const publish = new TaskPublisher(bus, taskId, contextId)
    bus.publish(
      A2AEvent.task(
        context.task ?? {
          id: taskId,
          contextId,
          status: { state: TaskState.TASK_STATE_SUBMITTED, message: undefined, timestamp: new Date().toISOString() },
          artifacts: [],
          history: [context.userMessage],
          metadata: undefined,
        },
      ),
    )
    const prompt = context.userMessage.parts
      .map((p) => (p.content?.$case === 'text' ? p.content.value : ''))
      .join('\n')
      .trim()
    if (!prompt) {
      publish.status(TaskState.TASK_STATE_REJECTED, 'ValidationError: the message has no text part; send the question as text')
      return
    }
    const controller = new AbortController()
    this.#running.set(taskId, controller)
    try {
      const turn = this.#agent.turn({ ...turnOptions(context), prompt, conversationId: contextId, signal: controller.signal })
      let failed = false
      for await (const event of turn) {
        // A canceled turn ends `canceled`, not with the error event its abort produced.
        if (event.type === 'error' && controller.signal.aborted) continue
        if (event.type === 'error') failed = true
        publish.event(event)
      }
      if (controller.signal.aborted) publish.status(TaskState.TASK_STATE_CANCELED, 'canceled: the turn was stopped')
      else if (!failed && !publish.finished) publish.status(TaskState.TASK_STATE_FAILED, 'Internal: the agent ended the turn without an answer')
    } catch (e) {
      // Refused before the turn began: no model configured, a busy conversation, a quota.
      const err = toCodeboxError(e)
      publish.status(TaskState.TASK_STATE_FAILED, `${err.code}: ${err.message}`)
    } finally {
      this.#running.delete(taskId)
      publish.flushText()
    }
  }

  async cancelTask(taskId: string): Promise<void> {
    // The turn ends through its signal; execute() then publishes the `canceled` status.
    this.#running.get(taskId)?.abort()
  }
}

/** The turn request parts that come from the transport: the caller, the role and the request id. */
function turnOptions(context: RequestContext): Omit<TurnRequest, 'prompt'> {
  const caller = context.context.state.get(callerKey) as Caller | undefined
  if (!caller) throw new Error('the A2A transport did not authenticate the caller')
  const requestId = context.context.state.get(requestIdKey) as string | undefined
  const metadata = (context.userMessage.metadata ?? {}) as Record<string, unknown>
  const language = metadata.language === 'javascript' || metadata.language === 'typescript' ? metadata.language : 'python'
  return {
    caller,
    role: metadata.role === 'generate' ? 'generate' : 'answer',
    ...(metadata.role === 'generate' ? { language } : {}),
    ...(requestId ? { requestId } : {}),
  }
}

/** Publishes one task's A2A events, batching text deltas into artifact chunks. */
class TaskPublisher {
  readonly #bus: ExecutionEventBus
  readonly #taskId: string
  readonly #contextId: string
  #text = ''
  #chunks = 0
  #flushAt = 0
  finished = false

  constructor(bus: ExecutionEventBus, taskId: string, contextId: string) {
    this.#bus = bus
    this.#taskId = taskId
    this.#contextId = contextId
  }

  event(event: AgentEvent): void {
    if (event.type === 'text') {
      this.#text += event.delta
      if (Date.now() >= this.#flushAt) this.flushText()
      return
    }
    this.flushText()
    switch (event.type) {
      case 'turn_start':
        return this.status(TaskState.TASK_STATE_WORKING, `working on conversation ${event.conversationId}`, [], event)
      case 'model':
        return this.status(
          TaskState.TASK_STATE_WORKING,
          `model ${event.model}${event.skipped.length ? ` (skipped ${event.skipped.map((s) => `${s.model}: ${s.reason}`).join('; ')})` : ''}`,
          [],
          event,
        )
      case 'tool_use':
        return this.status(
          TaskState.TASK_STATE_WORKING,
          event.code ? `${event.name} (${event.language ?? 'code'}):\n${event.code}` : `${event.name} ${JSON.stringify(event.input)}`,
          [],
          event,
        )
      case 'tool_output':
        return
      case 'tool_result':
        return this.status(TaskState.TASK_STATE_WORKING, `${event.isError ? 'tool error' : 'tool result'}:\n${event.text}`, event.images.map(imagePart), {
          ...event,
          images: event.images.map((i) => ({ mimeType: i.mimeType, data: `(${i.data.length} base64 characters, in this message's parts)` })),
        })
      case 'final': {
        const parts = [textPart(event.text)]
        if (event.code !== undefined) parts.push({ ...textPart(event.code), mediaType: `text/x-${event.language ?? 'python'}` })
        this.#artifact(parts, false, true)
        this.finished = true
        return this.status(TaskState.TASK_STATE_COMPLETED, event.text, [], {
          model: event.model,
          skipped: event.skipped,
          usage: event.usage,
          stopReason: event.stopReason,
        })
      }
      case 'error':
        this.finished = true
        return this.status(TaskState.TASK_STATE_FAILED, `${event.code}: ${event.message}`, [], event)
    }
  }

  /** Sends the text gathered since the last chunk as the next chunk of the `answer` artifact. */
  flushText(): void {
    this.#flushAt = Date.now() + textFlushMs
    if (!this.#text) return
    this.#artifact([textPart(this.#text)], this.#chunks > 0, false)
    this.#chunks++
    this.#text = ''
  }

  status(state: TaskState, text: string, extraParts: Part[] = [], codebox?: unknown): void {
    const message: Message = {
      messageId: randomUUID(),
      contextId: this.#contextId,
      taskId: this.#taskId,
      role: Role.ROLE_AGENT,
      parts: [textPart(text), ...extraParts],
      metadata: codebox === undefined ? undefined : { codebox },
      extensions: [],
      referenceTaskIds: [],
    }
    this.#bus.publish(
      A2AEvent.statusUpdate({
        taskId: this.#taskId,
        contextId: this.#contextId,
        status: { state, message, timestamp: new Date().toISOString() },
        metadata: undefined,
      }),
    )
  }

  #artifact(parts: Part[], append: boolean, lastChunk: boolean): void {
    this.#bus.publish(
      A2AEvent.artifactUpdate({
        taskId: this.#taskId,
        contextId: this.#contextId,
        artifact: { artifactId: 'answer', name: 'answer', description: 'The agent’s answer.', parts, metadata: undefined, extensions: [] },
        append,
        lastChunk,
        metadata: undefined,
      }),
    )
  }
}
