/**
 * A scripted AgentDoor for the agent doors' tests (AWS InvokeAgentRuntime, A2A): it records every
 * turn request and plays a short turn (turn_start, model, text deltas, a tool call, final) or the
 * failure a test asks for, keeping conversations per tenant as the real service does. The doors
 * are thin mappings; this lets their tests check the mapping exactly and fast. The end-to-end
 * tests use the real AgentService, with `sandboxModelScript` as their scripted model.
 */
import { randomUUID } from 'node:crypto'
import { CodeboxError, type AgentEvent, type AgentStatus, type AgentTurn, type Conversation } from '@codebox/core'
import type { ModelRequestView, ScriptedReply } from '../../agent/test/model-servers.ts'
import type { AgentDoor, ConversationPage, TurnRequest } from '../src/services/agent-door.ts'
import type { Caller } from '../src/services/sessions.ts'

/** A chart the fake tool call "drew": the PNG signature and a few bytes, base64. */
export const fakePng = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]).toString('base64')

export interface FakeTurnScript {
  /** The answer's text, streamed in a few deltas. Default `the answer to: <prompt>`. */
  answer?: string
  /** Thrown before `turn_start` (ModelNotConfigured, Conflict, ...). */
  throwBefore?: CodeboxError
  /** Yielded as an `error` event after the tool call, instead of `final`. */
  failWith?: { code: string; message: string }
  /** Waits for the caller's signal (a long cell) before answering. */
  hang?: boolean
}

export class FakeAgentDoor implements AgentDoor {
  readonly configured = true
  running = 0
  readonly requests: TurnRequest[] = []
  readonly stopped: { tenant: string; conversationId: string }[] = []
  readonly canceled: string[] = []
  /** conversation key `tenant/id` → the prompts of its turns. */
  readonly conversations = new Map<string, string[]>()
  script: (request: TurnRequest) => FakeTurnScript = () => ({})

  get busy(): boolean {
    return this.running > 0
  }

  async *turn(request: TurnRequest): AsyncGenerator<AgentEvent, AgentTurn, undefined> {
    this.requests.push(request)
    const script = this.script(request)
    if (script.throwBefore) throw script.throwBefore
    const conversationId = request.conversationId ?? `conv-${randomUUID()}`
    const key = `${request.caller.tenant}/${conversationId}`
    const prompts = this.conversations.get(key) ?? []
    this.conversations.set(key, [...prompts, request.prompt])
    this.running++
    const events: AgentEvent[] = []
    const emit = (e: AgentEvent): AgentEvent => (events.push(e), e)
    try {
      yield emit({ type: 'turn_start', conversationId, sessionId: `sess${prompts.length}`, role: request.role })
      yield emit({ type: 'model', model: 'openai:scripted', skipped: [] })
      yield emit({ type: 'tool_use', toolUseId: 't1', name: 'execute_code', input: { code: 'print(6*7)' }, code: 'print(6*7)', language: 'python' })
      if (script.hang) {
        await new Promise<void>((resolve) => {
          if (request.signal?.aborted) resolve()
          request.signal?.addEventListener('abort', () => resolve(), { once: true })
        })
        this.canceled.push(conversationId)
        yield emit({ type: 'error', code: 'Conflict', message: 'the turn was canceled' })
        return this.stored(request, conversationId, events, 'canceled', '')
      }
      yield emit({ type: 'tool_result', toolUseId: 't1', isError: false, text: '42\n', exitCode: 0, images: [{ mimeType: 'image/png', data: fakePng }] })
      if (script.failWith) {
        yield emit({ type: 'error', ...script.failWith })
        return this.stored(request, conversationId, events, 'error', script.failWith.message)
      }
      const answer = script.answer ?? `the answer to: ${request.prompt}`
      const cut = Math.ceil(answer.length / 3)
      for (const delta of [answer.slice(0, cut), answer.slice(cut, 2 * cut), answer.slice(2 * cut)]) if (delta) yield emit({ type: 'text', delta })
      const usage = { inputTokens: 10, outputTokens: 5 }
      yield emit({ type: 'final', text: answer, model: 'openai:scripted', skipped: [], stopReason: 'end_turn', usage })
      return this.stored(request, conversationId, events, 'ok', answer)
    } finally {
      this.running--
    }
  }

  private stored(request: TurnRequest, conversationId: string, events: AgentEvent[], outcome: AgentTurn['outcome'], text: string): AgentTurn {
    return {
      turnId: this.requests.length,
      conversationId,
      role: request.role,
      prompt: request.prompt,
      text,
      outcome,
      skipped: [],
      usage: { inputTokens: 10, outputTokens: 5 },
      events,
      createdAt: new Date().toISOString(),
    }
  }

  async stopConversation(caller: Caller, conversationId: string): Promise<void> {
    if (!this.conversations.has(`${caller.tenant}/${conversationId}`)) throw new CodeboxError('NotFound', `conversation ${conversationId} not found`)
    this.stopped.push({ tenant: caller.tenant, conversationId })
  }

  async deleteConversation(caller: Caller, conversationId: string): Promise<void> {
    if (!this.conversations.delete(`${caller.tenant}/${conversationId}`)) throw new CodeboxError('NotFound', `conversation ${conversationId} not found`)
  }

  async listConversations(): Promise<ConversationPage> {
    return { items: [] as Conversation[] }
  }

  async history(_caller: Caller, conversationId: string): Promise<{ conversation: Conversation; turns: AgentTurn[] }> {
    throw new CodeboxError('NotFound', `conversation ${conversationId} not found`)
  }

  status(): AgentStatus {
    return { configured: true, models: [] }
  }
}

/**
 * The scripted model behind the real agent in the doors' end-to-end tests: the marker in the
 * newest prompt picks what it does; it runs code first, then answers from the tool result it was
 * sent (`leap years` → counts them in Python and answers with the number; `[set]` sets x = 41;
 * `[x+1]` prints x + 1; `[slow]` prints, then sleeps 120 s).
 */
export function sandboxModelScript(req: ModelRequestView): ScriptedReply {
  const prompt = req.userTexts.at(-1) ?? ''
  const result = req.toolResults.at(-1)
  const code = (source: string): ScriptedReply => ({ toolUse: { name: 'execute_code', input: { language: 'python', code: source } } })
  if (prompt.includes('leap years')) {
    if (result === undefined) return code('print(sum(1 for y in range(2000, 2025) if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)))')
    return { text: `There are ${/\d+/.exec(result)?.[0] ?? 'no number'} leap years between 2000 and 2024.` }
  }
  if (prompt.includes('[set]')) return result === undefined ? code('x = 41') : { text: 'x is set.' }
  if (prompt.includes('[x+1]')) return result === undefined ? code('print(x + 1)') : { text: `x + 1 gives: ${result}` }
  if (prompt.includes('[slow]')) return result === undefined ? code("import time\nprint('started', flush=True)\ntime.sleep(120)") : { text: 'slept' }
  return { text: 'ok' }
}
