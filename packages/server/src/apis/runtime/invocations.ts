/**
 * `POST /invocations`, the AgentCore Runtime contract (seed 002): a JSON payload with `prompt` (or
 * `{input: {prompt}}`) in, the agent's answer out as JSON, or as SSE when the client accepts
 * `text/event-stream`. The runtime session header picks the conversation and comes back on the
 * response; the user header names the actor.
 */
import { agentEventSchema, conversationIdSchema, invocationRequestSchema, invocationResponseSchema, parseWire, validationError } from '@codebox/core'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { route, type RouteRegistry } from '../../http/route.ts'
import type { AgentDoor, TurnRequest } from '../../services/agent-door.ts'
import { SESSION_HEADER, USER_HEADER, clientGone, collectTurn, invocationResponse, openTurn, streamTurn, turnErrors, wantsEventStream } from './turn-reply.ts'

/** An actor name: 1-256 visible characters (no controls, no spaces at the ends). */
const actorSchema = z.string().regex(/^[^\s\p{Cc}](?:[^\p{Cc}]{0,254}[^\s\p{Cc}])?$/u, 'must be 1-256 characters without control characters')

/** The conversation id and actor a request names in the AgentCore headers (both optional). */
export function runtimeHeaders(headers: FastifyRequest['headers']): Pick<TurnRequest, 'conversationId' | 'actor'> {
  const one = (name: string): string | undefined => {
    const v = headers[name]
    if (Array.isArray(v)) throw validationError(name, 'header must be sent once')
    return v === undefined || v === '' ? undefined : v
  }
  const session = one(SESSION_HEADER)
  const user = one(USER_HEADER)
  return {
    ...(session !== undefined ? { conversationId: parseWire(conversationIdSchema, session, SESSION_HEADER) } : {}),
    ...(user !== undefined ? { actor: parseWire(actorSchema, user, USER_HEADER) } : {}),
  }
}

/** The prompt of an invocation payload: `prompt`, else `input.prompt`. */
export function invocationPrompt(body: z.infer<typeof invocationRequestSchema>): string {
  const prompt = body.prompt ?? body.input?.prompt
  if (prompt === undefined) throw validationError('prompt', 'is required: send {"prompt": "..."} (or {"input": {"prompt": "..."}})')
  return prompt
}

/** Registers `POST /invocations`. */
export function invocationRoutes(app: FastifyInstance, registry: RouteRegistry, agent: AgentDoor): void {
  route(
    app,
    registry,
    {
      method: 'POST',
      path: '/invocations',
      operationId: 'invokeAgent',
      tag: 'Agent runtime',
      summary: 'Ask the codebox agent (AgentCore Runtime contract)',
      description:
        'Runs one answer turn: the agent writes and runs code in the conversation’s code session and answers from the output. ' +
        '`X-Amzn-Bedrock-AgentCore-Runtime-Session-Id` (optional) continues that conversation (a new one when absent); the id is returned in the same response header. ' +
        '`X-Amzn-Bedrock-AgentCore-Runtime-User-Id` (optional) names the actor. With `Accept: text/event-stream` the reply is SSE, `data: <AgentEvent>` per event.',
      body: invocationRequestSchema,
      responses: {
        200: { description: 'The answer (JSON), or the event stream (SSE)', schema: invocationResponseSchema },
        201: { description: 'SSE event data (one AgentEvent per event)', schema: agentEventSchema, kind: 'sse' },
        ...turnErrors,
      },
    },
    async ({ body, caller, request, reply }) => {
      const turn = await openTurn(agent, {
        caller,
        role: 'answer',
        prompt: invocationPrompt(body),
        ...runtimeHeaders(request.headers),
        signal: clientGone(reply),
        requestId: request.id,
      })
      if (wantsEventStream(request.headers.accept)) {
        await streamTurn(request, reply, turn)
        return reply
      }
      void reply.header(SESSION_HEADER, turn.start.conversationId)
      return invocationResponse(await collectTurn(turn))
    },
  )
}
