/**
 * AgentClient: the codebox agent from TypeScript. Ask in plain language and read the turn as it
 * happens (model, text, tool calls with their code and output, the final answer), generate code
 * to edit, list and read conversations, and speak the raw AgentCore runtime contract
 * (`POST /invocations`). Browser-safe: fetch and streams only.
 */
import {
  agentEventSchema,
  agentStatusSchema,
  CodeboxError,
  conversationHistorySchema,
  conversationListSchema,
  errorCodes,
  generateResponseSchema,
  invocationResponseSchema,
  parseWire,
  type AgentEvent,
  type AgentStatus,
  type AgentTurn,
  type Conversation,
  type ErrorCode,
  type GenerateResponse,
  type InvocationResponse,
} from '@codebox/core'
import type { z } from 'zod'
import { errorFromEvent, InternalError, toTypedError, UnavailableError } from './errors.ts'
import { HttpClient, type CallOptions, type ClientOptions, type RequestSpec } from './http.ts'
import { allPages } from './routes.ts'
import { parseSse } from './sse.ts'

/** The header of the runtime contract that names the conversation (AgentCore's runtime session id). */
export const sessionIdHeader = 'x-amzn-bedrock-agentcore-runtime-session-id'
/** The header of the runtime contract that names the actor (whose memory the turn uses). */
export const userIdHeader = 'x-amzn-bedrock-agentcore-runtime-user-id'

/** Options of `ask`, `askJson`: the call options plus the conversation to continue. */
export interface TurnOptions extends CallOptions {
  /** Continue this conversation; default a new one (its id is in the result and the `turn_start` event). */
  conversationId?: string
  /** Try this model of the chain first (`provider:model`, as `status().models` lists them); the rest stays the fallback. */
  model?: string
}

/** Options of `ask` and `askJson`. */
export interface AskOptions extends TurnOptions {
  /** Run the code in this session of yours (its files and variables) instead of the conversation's own code session. */
  sessionId?: string
}

/** Options of `generate` and `generateStream`. */
export interface GenerateOptions extends TurnOptions {
  /** The language of the code. Default python. */
  language?: 'python' | 'javascript' | 'typescript'
}

/** Options of `conversations`: one page. */
export interface ListConversationsOptions extends CallOptions {
  /** Page size. Default the server's. */
  limit?: number
  /** From the previous page. */
  nextToken?: string
}

/** Options of `invoke`: the runtime contract's headers, and whether to stream. */
export interface InvokeOptions extends CallOptions {
  /** Sent as `X-Amzn-Bedrock-AgentCore-Runtime-Session-Id`: the conversation; default a new one. */
  sessionId?: string
  /** Sent as `X-Amzn-Bedrock-AgentCore-Runtime-User-Id`: the actor. Default the API key. */
  userId?: string
}

/** A page of conversations, newest first. */
export type ConversationList = z.infer<typeof conversationListSchema>
/** A conversation and its stored turns, oldest first. */
export type ConversationHistory = { conversation: Conversation; turns: AgentTurn[] }

/**
 * A client of one codebox server's agent. Options as CodeboxClient's (`CODEBOX_URL` /
 * `CODEBOX_API_KEY` by default). A turn is never retried (it runs code); reads are.
 */
export class AgentClient {
  readonly #http: HttpClient

  constructor(options: ClientOptions = {}) {
    this.#http = new HttpClient(options)
  }

  /** The server URL this client talks to. */
  get baseUrl(): string {
    return this.#http.baseUrl
  }

  /**
   * Asks the agent (`POST /v1/agent/ask`, streamed) and yields the turn's events as they happen.
   * Returns the turn in the shape of `askJson`'s answer. An `error` event is thrown as the typed
   * error of its code (ModelNotConfiguredError, ModelUnavailableError, ...); aborting
   * `options.signal` closes the stream and the server cancels the turn.
   */
  ask(prompt: string, options: AskOptions = {}): AsyncGenerator<AgentEvent, InvocationResponse, undefined> {
    const json = askBody(prompt, options)
    return this.#stream({ method: 'POST', path: '/v1/agent/ask', json, headers: { accept: 'text/event-stream' } }, options)
  }

  /** Asks the agent and waits for the whole turn (`POST /v1/agent/ask` without streaming). */
  async askJson(prompt: string, options: AskOptions = {}): Promise<InvocationResponse> {
    const json = askBody(prompt, options)
    return read(invocationResponseSchema, await this.#http.json({ method: 'POST', path: '/v1/agent/ask', json }, callOptions(options)))
  }

  /** The generate role (`POST /v1/agent/generate`): code for the user to edit, not run. */
  async generate(prompt: string, options: GenerateOptions = {}): Promise<GenerateResponse> {
    return read(
      generateResponseSchema,
      await this.#http.json({ method: 'POST', path: '/v1/agent/generate', json: generateBody(prompt, options) }, callOptions(options)),
    )
  }

  /** `generate`, streamed: yields the events (text as the model writes it) and returns the same answer as `generate`. */
  async *generateStream(prompt: string, options: GenerateOptions = {}): AsyncGenerator<AgentEvent, GenerateResponse, undefined> {
    const spec: RequestSpec = { method: 'POST', path: '/v1/agent/generate', json: generateBody(prompt, options), headers: { accept: 'text/event-stream' } }
    const turn = yield* this.#stream(spec, options)
    const final = turn.events.find((e) => e.type === 'final')
    const text = final?.type === 'final' ? final.text : turn.result
    const language = (final?.type === 'final' ? final.language : undefined) ?? options.language ?? 'python'
    const code = (final?.type === 'final' ? final.code : undefined) ?? text
    return { conversationId: turn.conversationId, code, language, text, model: turn.model, skipped: turn.skipped }
  }

  /** One page of the caller's conversations (`GET /v1/agent/conversations`). */
  async conversations(options: ListConversationsOptions = {}): Promise<ConversationList> {
    const query = { limit: options.limit, nextToken: options.nextToken }
    return read(conversationListSchema, await this.#http.json({ method: 'GET', path: '/v1/agent/conversations', query, retry: true }, callOptions(options)))
  }

  /** Every conversation, walking the pages. */
  allConversations(options: Omit<ListConversationsOptions, 'nextToken'> = {}): AsyncGenerator<Conversation, void, undefined> {
    return allPages((page: ListConversationsOptions) => this.conversations(page), options)
  }

  /** A conversation and its stored turns (`GET /v1/agent/conversations/{id}`). */
  async history(conversationId: string, options: CallOptions = {}): Promise<ConversationHistory> {
    const body = await this.#http.json({ method: 'GET', path: conversationPath(conversationId), retry: true }, callOptions(options))
    return read(conversationHistorySchema, body)
  }

  /** Ends the conversation's running turn and its code session; its memory stays until its TTL. */
  async stopConversation(conversationId: string, options: CallOptions = {}): Promise<void> {
    await this.#http.json({ method: 'POST', path: `${conversationPath(conversationId)}/stop`, retry: true }, callOptions(options))
  }

  /** Removes a conversation and its memory. */
  async deleteConversation(conversationId: string, options: CallOptions = {}): Promise<void> {
    await this.#http.json({ method: 'DELETE', path: conversationPath(conversationId), retry: true }, callOptions(options))
  }

  /** The configured model chain and how each model fared (`GET /v1/agent/status`); works without a model. */
  async status(options: CallOptions = {}): Promise<AgentStatus> {
    return read(agentStatusSchema, await this.#http.json({ method: 'GET', path: '/v1/agent/status', retry: true }, callOptions(options)))
  }

  /**
   * The raw runtime contract, as `agentcore invoke` sends it: posts `payload` (`{prompt}`) to
   * `/invocations` and returns the JSON answer with the conversation id of the response header.
   */
  async invoke(payload: unknown, options: InvokeOptions = {}): Promise<InvocationResponse> {
    const { response, body } = await this.#http.open(invocationSpec(payload, options, false), callOptions(options))
    const text = await new Response(body).text()
    const value = read(invocationResponseSchema, parseJson(text))
    return { ...value, conversationId: value.conversationId || (response.headers.get(sessionIdHeader) ?? '') }
  }

  /** `invoke`, streamed (`Accept: text/event-stream`): yields the events and returns the turn. */
  invokeStream(payload: unknown, options: InvokeOptions = {}): AsyncGenerator<AgentEvent, InvocationResponse, undefined> {
    return this.#stream(invocationSpec(payload, options, true), options)
  }

  async *#stream(spec: RequestSpec, options: CallOptions): AsyncGenerator<AgentEvent, InvocationResponse, undefined> {
    const { response, body } = await this.#http.open(spec, callOptions(options))
    const headerId = response.headers.get(sessionIdHeader) ?? undefined
    if (!(response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
      // A server that answers with the whole turn as JSON: its events, then the turn.
      const turn = read(invocationResponseSchema, parseJson(await new Response(body).text()))
      yield* turn.events
      return turn
    }
    const turn = new TurnCollector(headerId)
    for await (const sse of parseSse(body)) {
      const event = parseEvent(sse.event, sse.data)
      if (!event) continue
      if (event.type === 'error') throw typedError(event.code, event.message)
      turn.add(event)
      yield event
      if (event.type === 'final') return turn.result(event)
    }
    throw new UnavailableError(`the event stream of ${spec.method} ${spec.path} ended before the turn's final answer; the connection was cut`)
  }
}

/** Collects a streamed turn into the shape of the JSON answer: text deltas merged, ids remembered. */
class TurnCollector {
  #events: AgentEvent[] = []
  #conversationId: string | undefined
  #sessionId: string | undefined

  constructor(conversationId: string | undefined) {
    this.#conversationId = conversationId
  }

  add(event: AgentEvent): void {
    if (event.type === 'turn_start') {
      this.#conversationId = event.conversationId
      this.#sessionId = event.sessionId
    }
    const last = this.#events[this.#events.length - 1]
    if (event.type === 'text' && last?.type === 'text') this.#events[this.#events.length - 1] = { type: 'text', delta: last.delta + event.delta }
    else this.#events.push(event)
  }

  result(final: Extract<AgentEvent, { type: 'final' }>): InvocationResponse {
    return {
      result: final.text,
      output: { message: { role: 'assistant', content: [{ text: final.text }] } },
      conversationId: this.#conversationId ?? '',
      ...(this.#sessionId !== undefined ? { sessionId: this.#sessionId } : {}),
      model: final.model,
      skipped: final.skipped,
      usage: final.usage,
      events: this.#events,
    }
  }
}

const eventTypes = new Set<string>(agentEventSchema.options.map((o) => o.shape.type.value))

/**
 * One SSE message as an AgentEvent; undefined for an event type this SDK does not know (a newer
 * server). A codebox error body (`event: error`, `{error: {...}}`) is thrown as its typed error.
 */
function parseEvent(name: string, data: string): AgentEvent | undefined {
  const value = parseJson(data)
  if (name === 'error' || (value as { error?: unknown } | null)?.error !== undefined) {
    if (typeof (value as { type?: unknown } | null)?.type !== 'string') throw errorFromEvent(data)
  }
  const type = (value as { type?: unknown } | null)?.type
  if (typeof type !== 'string' || !eventTypes.has(type)) return undefined
  return read(agentEventSchema, value)
}

/** The typed error of an `error` event's code; a code this SDK does not know becomes InternalError naming it. */
function typedError(code: string, message: string): CodeboxError {
  if (code in errorCodes) return toTypedError(new CodeboxError(code as ErrorCode, message))
  return new InternalError(`${code}: ${message}`, { details: { code } })
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch (e) {
    throw new InternalError(`the server sent data that is not JSON: ${text.slice(0, 200)}`, { cause: e })
  }
}

/** Parses a server answer; one that does not fit the schema is the server's fault, so InternalError. */
function read<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  try {
    return parseWire(schema, value, 'response')
  } catch (e) {
    throw new InternalError(`the server's answer is not what this SDK expects: ${(e as Error).message}`, { cause: e })
  }
}

function askBody(prompt: string, options: AskOptions): Record<string, unknown> {
  return {
    prompt,
    ...(options.conversationId !== undefined ? { conversationId: options.conversationId } : {}),
    ...(options.model !== undefined ? { model: options.model } : {}),
    ...(options.sessionId !== undefined ? { sessionId: options.sessionId } : {}),
  }
}

function generateBody(prompt: string, options: GenerateOptions): Record<string, unknown> {
  return {
    prompt,
    ...(options.language !== undefined ? { language: options.language } : {}),
    ...(options.conversationId !== undefined ? { conversationId: options.conversationId } : {}),
    ...(options.model !== undefined ? { model: options.model } : {}),
  }
}

function invocationSpec(payload: unknown, options: InvokeOptions, stream: boolean): RequestSpec {
  const headers: Record<string, string> = stream ? { accept: 'text/event-stream' } : {}
  if (options.sessionId !== undefined) headers[sessionIdHeader] = options.sessionId
  if (options.userId !== undefined) headers[userIdHeader] = options.userId
  return { method: 'POST', path: '/invocations', json: payload, headers }
}

const conversationPath = (id: string): string => `/v1/agent/conversations/${encodeURIComponent(id)}`
const callOptions = (o: CallOptions): CallOptions => ({ signal: o.signal, timeoutMs: o.timeoutMs })
