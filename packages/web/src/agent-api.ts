/**
 * The web IDE's only door to the agent. Written against the SDK's coming `AgentClient` (ask,
 * generate, conversations, history, stopConversation, status) so that, once @codebox/sdk has it,
 * this module becomes `new AgentClient(...)` and nothing else in the page changes. Until then it
 * calls the routes of packages/core/src/agent.ts with fetch on the page's own origin.
 */
import { CodeboxError, errorFromWire, type AgentEvent, type AgentStatus, type AgentTurn, type Conversation, type GenerateResponse } from '@codebox/core'
import { SseParser } from '@codebox/sdk'
import { authHeaders } from './connection.ts'

/** What the page needs of the agent: the interface of the SDK's AgentClient. */
export interface AgentApi {
  /** One answer turn, its events streamed as they happen; aborting `signal` cancels the turn. */
  ask(prompt: string, options?: { conversationId?: string; signal?: AbortSignal }): AsyncGenerator<AgentEvent, void, undefined>
  /** Code for the editor (not run). */
  generate(prompt: string, options?: { language?: string; conversationId?: string; signal?: AbortSignal }): Promise<GenerateResponse>
  /** The caller's conversations, newest first. */
  conversations(): Promise<Conversation[]>
  /** One conversation and its turns. */
  history(conversationId: string): Promise<{ conversation: Conversation; turns: AgentTurn[] }>
  /** Ends the conversation's running turn and its code session. */
  stopConversation(conversationId: string): Promise<void>
  /** The configured model chain and how each model fared. */
  status(): Promise<AgentStatus>
}

async function call(method: string, path: string, options: { json?: unknown; signal?: AbortSignal; accept?: string } = {}): Promise<Response> {
  const res = await fetch(path, {
    method,
    headers: {
      ...authHeaders(),
      accept: options.accept ?? 'application/json',
      ...(options.json !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(options.json !== undefined ? { body: JSON.stringify(options.json) } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  })
  if (!res.ok) {
    const text = await res.text()
    let body: unknown = null
    try {
      body = JSON.parse(text)
    } catch {
      body = null
    }
    if (res.status === 404 && body === null) throw new CodeboxError('NotFound', `${method} ${path}: this server has no agent routes yet`)
    throw errorFromWire(res.status, body)
  }
  return res
}

async function json<T>(method: string, path: string, options: { json?: unknown; signal?: AbortSignal } = {}): Promise<T> {
  return (await (await call(method, path, options)).json()) as T
}

/** The agent of the page's own server, over its REST routes. */
export function agentApi(): AgentApi {
  return {
    async *ask(prompt, options = {}) {
      const res = await call('POST', '/v1/agent/ask', {
        json: { prompt, ...(options.conversationId ? { conversationId: options.conversationId } : {}) },
        accept: 'text/event-stream',
        ...(options.signal ? { signal: options.signal } : {}),
      })
      if (!res.body) throw new CodeboxError('Internal', 'the agent answered without a body')
      const parser = new SseParser()
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
      for (let r = await reader.read(); !r.done; r = await reader.read()) {
        for (const event of parser.push(r.value)) {
          if (event.data === '') continue
          yield JSON.parse(event.data) as AgentEvent
        }
      }
    },
    generate: (prompt, options = {}) =>
      json<GenerateResponse>('POST', '/v1/agent/generate', {
        json: {
          prompt,
          ...(options.language ? { language: options.language } : {}),
          ...(options.conversationId ? { conversationId: options.conversationId } : {}),
        },
        ...(options.signal ? { signal: options.signal } : {}),
      }),
    conversations: async () => (await json<{ items: Conversation[] }>('GET', '/v1/agent/conversations')).items,
    history: (id) => json('GET', `/v1/agent/conversations/${encodeURIComponent(id)}`),
    stopConversation: async (id) => {
      await call('POST', `/v1/agent/conversations/${encodeURIComponent(id)}/stop`)
    },
    status: () => json<AgentStatus>('GET', '/v1/agent/status'),
  }
}
