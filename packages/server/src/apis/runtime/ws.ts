/**
 * `GET /ws`, the WebSocket of the AgentCore Runtime contract (seed 002): prompts in, the agent's
 * events out, interruption. Client → `{"prompt": "...", "conversationId"?: "..."}` (also
 * `{"input": {"prompt"}}`), `{"type": "interrupt"}`, `{"type": "auth", "apiKey"}` (when no
 * Authorization header could be sent). Server → one AgentEvent per JSON text frame; every turn
 * ends with `final` or `error`. One turn at a time per socket; the socket's conversation is the
 * session header of the upgrade, else the first turn's, and a prompt may name another.
 */
import { CodeboxError, conversationIdSchema, invocationRequestSchema, parseWire, validationError, type AgentEvent } from '@codebox/core'
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import { z } from 'zod'
import type { Authenticator } from '../../http/auth.ts'
import { parseJsonBody } from '../../http/body.ts'
import type { AgentDoor } from '../../services/agent-door.ts'
import type { Caller } from '../../services/sessions.ts'
import { invocationPrompt, runtimeHeaders } from './invocations.ts'
import { CANCELED, errorEvent, isCanceledCode } from './turn-reply.ts'

/** Larger prompts are refused (a prompt is at most 100,000 characters). */
const MAX_MESSAGE_BYTES = 1_000_000
const AUTH_WAIT_MS = 10_000

const promptMessageSchema = invocationRequestSchema.extend({
  type: z.literal('prompt').optional(),
  conversationId: conversationIdSchema.optional(),
})

/** Registers `GET /ws`. Authentication happens here (the route opts out of the HTTP hook), as for /v1/ws. */
export function runtimeWsRoutes(app: FastifyInstance, auth: Authenticator, agent: AgentDoor): void {
  app.get('/ws', { websocket: true, config: { auth: false } }, (socket: WebSocket, request) => {
    const send = (event: AgentEvent): void => {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(event))
    }
    let headers: ReturnType<typeof runtimeHeaders>
    try {
      headers = runtimeHeaders(request.headers)
    } catch (e) {
      send(errorEvent(e))
      socket.close(1008, 'bad runtime session header')
      return
    }
    let conversationId = headers.conversationId
    let caller: Caller | undefined
    let authTimer: NodeJS.Timeout | undefined
    let running: AbortController | undefined
    let turns = 0
    const authenticated = (async (): Promise<void> => {
      try {
        caller = await auth.authenticate(request.headers.authorization)
      } catch (e) {
        if (request.headers.authorization) {
          send(errorEvent(e))
          socket.close(4401, 'unauthorized')
          return
        }
        authTimer = setTimeout(() => socket.close(4401, 'no auth message'), AUTH_WAIT_MS)
      }
    })()

    const runTurn = async (who: Caller, prompt: string, abort: AbortController): Promise<void> => {
      let ended = false
      try {
        const events = agent.turn({
          caller: who,
          role: 'answer',
          prompt,
          ...(conversationId ? { conversationId } : {}),
          ...(headers.actor ? { actor: headers.actor } : {}),
          signal: abort.signal,
          requestId: `${request.id}:${++turns}`,
        })
        let next = await events.next()
        while (!next.done) {
          // An interrupted turn ends with one documented code, whatever the agent called the abort.
          const event = next.value.type === 'error' && abort.signal.aborted && isCanceledCode(next.value.code) ? { ...next.value, code: CANCELED } : next.value
          if (event.type === 'turn_start') conversationId = event.conversationId
          if (event.type === 'final' || event.type === 'error') ended = true
          send(event)
          next = await events.next()
        }
        // Every turn ends with final or error, even when the agent said nothing as it was canceled.
        if (!ended)
          send(
            next.value.outcome === 'canceled'
              ? { type: 'error', code: CANCELED, message: 'the turn was interrupted' }
              : errorEvent(new CodeboxError('Internal', 'the agent ended the turn without an answer')),
          )
      } catch (e) {
        send(errorEvent(e))
      } finally {
        if (running === abort) running = undefined
      }
    }

    const handle = async (data: Buffer, isBinary: boolean): Promise<void> => {
      await authenticated
      let msg: Record<string, unknown>
      try {
        if (isBinary) throw validationError('message', 'must be a JSON text message')
        if (data.length > MAX_MESSAGE_BYTES) throw validationError('message', `must be at most ${MAX_MESSAGE_BYTES} bytes`)
        const parsed = parseJsonBody(data.toString('utf8'))
        if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw validationError('message', 'must be a JSON object')
        msg = parsed as Record<string, unknown>
      } catch (e) {
        send(errorEvent(e))
        return
      }
      if (msg.type === 'auth') {
        try {
          caller = await auth.authenticate(`Bearer ${String(msg.apiKey)}`)
          clearTimeout(authTimer)
        } catch (e) {
          send(errorEvent(e))
          socket.close(4401, 'unauthorized')
        }
        return
      }
      if (!caller) return send(errorEvent(new CodeboxError('Unauthorized', 'send {"type": "auth", "apiKey": "..."} first')))
      if (msg.type === 'interrupt') {
        running?.abort()
        return
      }
      if (msg.type !== undefined && msg.type !== 'prompt') {
        return send(errorEvent(validationError('type', `must be prompt, interrupt or auth, got ${JSON.stringify(msg.type)}`)))
      }
      if (running)
        return send(errorEvent(new CodeboxError('Conflict', 'a turn is running on this socket; wait for its final event or send {"type": "interrupt"}')))
      let prompt: string
      try {
        const body = parseWire(promptMessageSchema, msg)
        prompt = invocationPrompt(body)
        if (body.conversationId) conversationId = body.conversationId
      } catch (e) {
        return send(errorEvent(e))
      }
      const abort = new AbortController()
      running = abort
      void runTurn(caller, prompt, abort)
    }
    // One message after the other: authentication is asynchronous, and an interrupt must not overtake its prompt.
    let queue = Promise.resolve()
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      queue = queue.then(() => handle(data, isBinary))
    })
    socket.on('close', () => {
      clearTimeout(authTimer)
      running?.abort()
    })
  })
}
