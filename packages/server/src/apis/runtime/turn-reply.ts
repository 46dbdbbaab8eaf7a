/**
 * How an HTTP door answers one agent turn: as one JSON document once the turn is over, or as SSE
 * (`data: <AgentEvent json>` per event, the AgentCore runtime form) while it runs. Shared by the
 * runtime contract (`POST /invocations`) and the IDE's `/v1/agent` routes. An error before the
 * turn's first event is a plain HTTP error with its status; after it, an `error` event ends the
 * stream (JSON: the error's status and body). A client that goes away cancels the turn.
 */
import { CodeboxError, errorCodes, type AgentEvent, type AgentTurn, type ErrorCode, type InvocationResponse } from '@codebox/core'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { toCodeboxError } from '../../http/errors.ts'
import { openSse } from '../../http/sse.ts'
import type { AgentDoor, TurnRequest } from '../../services/agent-door.ts'

/** The AgentCore header that names the runtime session, which codebox maps to the conversation. */
export const SESSION_HEADER = 'x-amzn-bedrock-agentcore-runtime-session-id'
/** The AgentCore header that names the end user (the conversation's actor). */
export const USER_HEADER = 'x-amzn-bedrock-agentcore-runtime-user-id'

/** The errors of a turn, for the OpenAPI document of every route that runs one. */
export const turnErrors = {
  400: { description: 'ValidationError: no prompt, or a bad field or header; the message names it.' },
  401: { description: 'Unauthorized: missing or invalid API key.' },
  409: { description: 'Conflict: a turn of this conversation is already running.' },
  429: { description: 'RateLimited or QuotaExceeded: the tenant’s agent-turn quota; see Retry-After.' },
  502: { description: 'ModelUnavailable: every model of the chain failed.' },
  503: { description: 'ModelNotConfigured: no model is configured; the message says what to set.' },
}

type TurnEvents = AsyncGenerator<AgentEvent, AgentTurn, undefined>
type TurnStart = Extract<AgentEvent, { type: 'turn_start' }>

/** A turn that has produced its `turn_start`: what is known so far and the rest of its events. */
export interface OpenTurn {
  start: TurnStart
  events: TurnEvents
}

/**
 * Starts a turn and waits for its first event (`turn_start`), so that anything the door refuses
 * (no model, a foreign conversation, a quota) is still a plain HTTP error.
 */
export async function openTurn(door: AgentDoor, request: TurnRequest): Promise<OpenTurn> {
  const events = door.turn(request)
  const first = await events.next()
  if (first.done || first.value.type !== 'turn_start') {
    await events.return(undefined as never)
    throw new CodeboxError('Internal', 'the agent ended the turn before it started')
  }
  return { start: first.value, events }
}

/** An AbortSignal that fires when the client goes away before the reply is complete. */
export function clientGone(reply: FastifyReply): AbortSignal {
  const abort = new AbortController()
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) abort.abort()
  })
  return abort.signal
}

/** Whether the client asked for SSE: `Accept` names `text/event-stream` at least as high as JSON. */
export function wantsEventStream(accept: string | undefined): boolean {
  if (!accept) return false
  const q = (type: string): number => {
    for (const part of accept.toLowerCase().split(',')) {
      const [media, ...params] = part.split(';').map((s) => s.trim())
      if (media !== type) continue
      const qp = params.find((p) => p.startsWith('q='))
      const v = qp ? Number(qp.slice(2)) : 1
      return Number.isFinite(v) ? v : 0
    }
    return -1
  }
  const sse = q('text/event-stream')
  return sse > 0 && sse >= q('application/json')
}

/** The `error` event code of a turn that was canceled (interrupt, stop, shutdown): an event code, not an HTTP error. */
export const CANCELED = 'Canceled'

/** Whether an `error` event's code says the turn was canceled. */
export function isCanceledCode(code: string): boolean {
  return code === CANCELED
}

/**
 * The CodeboxError an `error` event stands for, for the JSON form (a canceled turn is `Canceled`,
 * 409), an unknown code Internal with the message.
 */
export function errorFromEvent(event: Extract<AgentEvent, { type: 'error' }>, conversationId: string): CodeboxError {
  const code: ErrorCode = Object.hasOwn(errorCodes, event.code) ? (event.code as ErrorCode) : 'Internal'
  return new CodeboxError(code, event.message, { details: { conversationId } })
}

/** The AgentEvent form of any error (what an SSE stream or a WebSocket sends when a turn fails). */
export function errorEvent(e: unknown): Extract<AgentEvent, { type: 'error' }> {
  const err = toCodeboxError(e)
  return { type: 'error', code: err.code, message: err.message }
}

/** Appends `event` to `into`, joining a text delta onto the text event just before it. */
export function pushMerged(into: AgentEvent[], event: AgentEvent): void {
  const last = into.at(-1)
  if (event.type === 'text' && last?.type === 'text') into[into.length - 1] = { type: 'text', delta: last.delta + event.delta }
  else into.push(event)
}

/** What a whole turn came to: its events (text merged) and how it ended. */
export interface CollectedTurn {
  start: TurnStart
  events: AgentEvent[]
  final?: Extract<AgentEvent, { type: 'final' }>
}

/**
 * Runs the rest of an open turn to its end (always to the end: the door stores the turn when its
 * generator returns). An `error` event is then thrown as the CodeboxError it stands for; a turn
 * canceled because the client left throws too, with nobody there to read it.
 */
export async function collectTurn(turn: OpenTurn): Promise<CollectedTurn & { final: Extract<AgentEvent, { type: 'final' }> }> {
  const events: AgentEvent[] = [turn.start]
  let final: Extract<AgentEvent, { type: 'final' }> | undefined
  let failed: Extract<AgentEvent, { type: 'error' }> | undefined
  let next = await turn.events.next()
  while (!next.done) {
    const event = next.value
    pushMerged(events, event)
    if (event.type === 'final') final = event
    if (event.type === 'error') failed ??= event
    next = await turn.events.next()
  }
  const conversationId = turn.start.conversationId
  if (failed) throw errorFromEvent(failed, conversationId)
  if (final) return { start: turn.start, events, final }
  if (next.value.outcome === 'canceled') throw new CodeboxError('Conflict', 'the turn was canceled', { details: { conversationId } })
  throw new CodeboxError('Internal', 'the agent ended the turn without an answer', { details: { conversationId } })
}

/** The invocation JSON (`invocationResponseSchema`) of a finished turn. */
export function invocationResponse(turn: CollectedTurn & { final: Extract<AgentEvent, { type: 'final' }> }): InvocationResponse {
  const { start, final } = turn
  return {
    result: final.text,
    output: { message: { role: 'assistant', content: [{ text: final.text }] } },
    conversationId: start.conversationId,
    ...(start.sessionId ? { sessionId: start.sessionId } : {}),
    model: final.model,
    skipped: final.skipped,
    usage: final.usage,
    events: turn.events,
  }
}

/**
 * Streams an open turn as SSE: `data: <AgentEvent json>` per event, a `: keep-alive` comment every
 * 15 s, no faster than the client reads. The response carries the conversation id in the session
 * header. A failure of the generator itself becomes a last `error` event.
 */
export async function streamTurn(request: FastifyRequest, reply: FastifyReply, turn: OpenTurn): Promise<void> {
  const sse = openSse(request, reply, { [SESSION_HEADER]: turn.start.conversationId })
  const res = sse.res
  const write = (event: AgentEvent): Promise<void> => sse.write(`data: ${JSON.stringify(event)}\n\n`)
  try {
    await write(turn.start)
    // Read to the end even after the client left: its signal cancels the turn, and the door
    // stores the turn when its generator returns.
    let next = await turn.events.next()
    while (!next.done) {
      if (!res.destroyed) await write(next.value)
      next = await turn.events.next()
    }
  } catch (e) {
    const err = toCodeboxError(e)
    if (err.status >= 500) request.log.error({ err: e }, 'agent turn failed mid-stream')
    if (!res.destroyed) await write(errorEvent(err))
  } finally {
    sse.end()
  }
}
