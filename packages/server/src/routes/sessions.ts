/** Native API v1: sessions — start, get, list (paged, by status), stop — and tool invocation (JSON or SSE). */
import {
  executionEventSchema,
  invokeRequestSchema,
  listSessionsQuerySchema,
  sessionIdSchema,
  sessionInfoSchema,
  sessionListSchema,
  startSessionRequestSchema,
  toolResultSchema,
  updateSessionRequestSchema,
  validationError,
  type ExecutionEvent,
  type ToolResult,
} from '@codebox/core'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { sendEventStream } from '../http/sse.ts'
import { route, type RouteRegistry } from '../http/route.ts'
import type { Caller, SessionService } from '../services/sessions.ts'

const sessionParams = z.strictObject({ sessionId: sessionIdSchema })
const errors = {
  400: { description: 'ValidationError: a field is wrong; the message names it.' },
  401: { description: 'Unauthorized: missing or invalid API key.' },
  404: { description: 'NotFound: no such session for this tenant.' },
}

export function sessionRoutes(app: FastifyInstance, registry: RouteRegistry, sessions: SessionService): void {
  route(
    app,
    registry,
    {
      method: 'POST',
      path: '/v1/sessions',
      operationId: 'startSession',
      tag: 'Sessions',
      summary: 'Start a session',
      description: 'Hands over a warm sandbox (or boots one). A retried start with the same clientToken returns the first session with 200.',
      body: startSessionRequestSchema,
      responses: {
        201: { description: 'Started', schema: sessionInfoSchema },
        200: { description: 'The session an earlier request with this clientToken started', schema: sessionInfoSchema },
        ...errors,
        429: { description: 'QuotaExceeded or RateLimited; see Retry-After' },
      },
    },
    async ({ body, caller, request, reply }) => {
      const { info, created } = await sessions.start(caller, body, { requestId: request.id })
      return reply.code(created ? 201 : 200).send(info)
    },
  )
  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/sessions',
      operationId: 'listSessions',
      tag: 'Sessions',
      summary: 'List sessions, newest first',
      query: listSessionsQuerySchema,
      responses: { 200: { description: 'A page of sessions', schema: sessionListSchema }, 400: errors[400] },
    },
    async ({ query, caller }) => sessions.list(caller, query),
  )
  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/sessions/{sessionId}',
      operationId: 'getSession',
      tag: 'Sessions',
      summary: 'Get a session (also after it ended, with the reason)',
      params: sessionParams,
      responses: { 200: { description: 'The session', schema: sessionInfoSchema }, ...errors },
    },
    async ({ params, caller }) => sessions.get(caller, params.sessionId),
  )
  route(
    app,
    registry,
    {
      method: 'PATCH',
      path: '/v1/sessions/{sessionId}',
      operationId: 'updateSession',
      tag: 'Sessions',
      summary: 'Move the end of a session’s lifetime',
      description:
        'Sets when the session ends whatever its use (`endsAt` in the answer): `endsInSeconds` from now or an `endsAt` time, earlier or later than before, ' +
        'at most the interpreter’s maximum lifetime after the session started (a later time is clamped there). A time already past ends the session. ' +
        'The idle timeout still applies. A restarted server keeps the new end.',
      params: sessionParams,
      body: updateSessionRequestSchema,
      responses: {
        200: { description: 'The session, with its new endsAt', schema: sessionInfoSchema },
        ...errors,
        410: { description: 'SessionTerminated: the session has ended' },
      },
    },
    async ({ params, body, caller, request }) => {
      const endsAt = body.endsAt !== undefined ? new Date(body.endsAt) : new Date(Date.now() + (body.endsInSeconds ?? 0) * 1000)
      return sessions.setDeadline(caller, params.sessionId, endsAt, { requestId: request.id })
    },
  )
  route(
    app,
    registry,
    {
      method: 'DELETE',
      path: '/v1/sessions/{sessionId}',
      operationId: 'stopSession',
      tag: 'Sessions',
      summary: 'Stop a session',
      description: 'Kills every process and wipes the workspace. Stopping an ended session returns its record.',
      params: sessionParams,
      responses: { 200: { description: 'The stopped session', schema: sessionInfoSchema }, ...errors },
    },
    async ({ params, caller, request }) => sessions.stop(caller, params.sessionId, { requestId: request.id }),
  )

  const invokeDoc = {
    tag: 'Invoke',
    body: invokeRequestSchema,
    description:
      'Runs one of the nine AgentCore tools. With `Accept: text/event-stream` the response is SSE: `stdout`, `stderr`, `display` events as produced, then `result` (or `error`).',
    responses: {
      200: { description: 'The result (JSON), or the event stream (SSE)', schema: toolResultSchema },
      201: { description: 'SSE event data (one ExecutionEvent per event)', schema: executionEventSchema, kind: 'sse' as const },
      ...errors,
      410: { description: 'SessionTerminated: the session has ended' },
      429: { description: 'RateLimited; see Retry-After' },
    },
  }
  route(
    app,
    registry,
    {
      ...invokeDoc,
      method: 'POST',
      path: '/v1/sessions/{sessionId}/invoke',
      operationId: 'invoke',
      summary: 'Invoke a tool in a session',
      params: sessionParams,
    },
    async ({ params, body, caller, request, reply }) => invoke(sessions, caller, params.sessionId, body, request, reply),
  )
  route(
    app,
    registry,
    {
      ...invokeDoc,
      method: 'POST',
      path: '/v1/invoke',
      operationId: 'invokeWithHeader',
      summary: 'Invoke a tool in the session named by the x-codebox-session-id header',
      headers: { 'x-codebox-session-id': 'The session id' },
    },
    async ({ body, caller, request, reply }) => {
      const header = request.headers['x-codebox-session-id']
      if (typeof header !== 'string' || header === '') throw validationError('x-codebox-session-id', 'header is required: the id of the session to run in')
      return invoke(sessions, caller, header, body, request, reply)
    },
  )
}

async function invoke(
  sessions: SessionService,
  caller: Caller,
  sessionId: string,
  body: z.infer<typeof invokeRequestSchema>,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<unknown> {
  const abort = new AbortController()
  // A client that goes away cancels its call: the cell is interrupted, not left running.
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) abort.abort()
  })
  const ctx = { signal: abort.signal, requestId: request.id }
  if (String(request.headers.accept ?? '').includes('text/event-stream')) {
    await sendEventStream(request, reply, sessions.invoke(caller, sessionId, body, ctx))
    return reply
  }
  return sessions.invokeResult(caller, sessionId, body, ctx)
}
