/**
 * Native API v1: a WebSocket at /v1/ws carrying the same invocation events as SSE, for the web
 * IDE. Client → `{type:'auth', apiKey}` (when no Authorization header could be sent),
 * `{type:'invoke', id, sessionId, name, arguments, timeoutMs?}`, `{type:'cancel', id}`.
 * Server → `{type:'ready', tenant}`, `{type:'event', id, event}` (the last one has
 * `event.type === 'result'`), `{type:'error', id?, error}`. docs/api.md has the protocol.
 */
import { CodeboxError, validationError } from '@codebox/core'
import type { FastifyInstance } from 'fastify'
import type { WebSocket } from 'ws'
import type { Authenticator } from '../http/auth.ts'
import { parseJsonBody } from '../http/body.ts'
import { toCodeboxError } from '../http/errors.ts'
import type { Caller, SessionService } from '../services/sessions.ts'

const MAX_MESSAGE_BYTES = 140_000_000
const AUTH_WAIT_MS = 10_000

export function wsRoutes(app: FastifyInstance, auth: Authenticator, sessions: SessionService): void {
  app.get('/v1/ws', { websocket: true, config: { auth: false } }, (socket: WebSocket, request) => {
    const calls = new Map<string, AbortController>()
    const send = (msg: unknown): void => {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(msg))
    }
    const fail = (e: unknown, id?: string): void => send({ type: 'error', ...(id ? { id } : {}), error: toCodeboxError(e).toJSON(request.id).error })
    let caller: Caller | undefined
    let authTimer: NodeJS.Timeout | undefined
    // Authentication is asynchronous: messages are handled one at a time, in order, after the header's.
    let turn = (async () => {
      try {
        caller = await auth.authenticate(request.headers.authorization)
        send({ type: 'ready', tenant: caller.tenant })
      } catch (e) {
        if (request.headers.authorization) {
          fail(e)
          socket.close(4401, 'unauthorized')
          return
        }
        authTimer = setTimeout(() => socket.close(4401, 'no auth message'), AUTH_WAIT_MS)
      }
    })()

    const onMessage = async (data: Buffer, isBinary: boolean): Promise<void> => {
      // A socket being closed (refused, or gone) takes no more messages.
      if (socket.readyState !== socket.OPEN) return
      let msg: Record<string, unknown>
      try {
        if (isBinary || data.length > MAX_MESSAGE_BYTES) throw validationError('message', 'must be a JSON text message')
        const parsed = parseJsonBody(data.toString('utf8'))
        if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw validationError('message', 'must be a JSON object')
        msg = parsed as Record<string, unknown>
      } catch (e) {
        fail(e)
        return
      }
      const id = typeof msg.id === 'string' && msg.id.length <= 128 ? msg.id : undefined
      if (msg.type === 'auth') {
        try {
          caller = await auth.authenticate(`Bearer ${String(msg.apiKey)}`)
          clearTimeout(authTimer)
          send({ type: 'ready', tenant: caller.tenant })
        } catch (e) {
          fail(e)
          socket.close(4401, 'unauthorized')
        }
        return
      }
      if (!caller) return fail(new CodeboxError('Unauthorized', 'send {type:"auth", apiKey} first'), id)
      if (msg.type === 'cancel') {
        if (id) calls.get(id)?.abort()
        return
      }
      if (msg.type !== 'invoke') return fail(validationError('type', `must be auth, invoke or cancel, got ${JSON.stringify(msg.type)}`), id)
      if (!id) return fail(validationError('id', 'must be a string of at most 128 characters naming this call'))
      if (calls.has(id)) return fail(validationError('id', `call ${id} is still running`), id)
      if (typeof msg.sessionId !== 'string') return fail(validationError('sessionId', 'must be a string'), id)
      const abort = new AbortController()
      calls.set(id, abort)
      const run = async (): Promise<void> => {
        try {
          const events = sessions.invoke(
            caller!,
            msg.sessionId as string,
            { name: msg.name, arguments: msg.arguments, timeoutMs: typeof msg.timeoutMs === 'number' ? msg.timeoutMs : undefined },
            { signal: abort.signal, requestId: `${request.id}:${id}` },
          )
          for await (const event of events) send({ type: 'event', id, event })
        } catch (e) {
          fail(e, id)
        } finally {
          calls.delete(id)
        }
      }
      void run()
    }
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      turn = turn.then(() => onMessage(data, isBinary)).catch((e: unknown) => fail(e))
    })
    socket.on('close', () => {
      clearTimeout(authTimer)
      for (const c of calls.values()) c.abort()
    })
  })
}
