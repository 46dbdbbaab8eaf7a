/**
 * Native API v1 for the web IDE (seed 004): ask the agent, generate code to edit, list and read
 * conversations, stop or delete one, and the agent's status. Thin mappings onto the agent service;
 * ask and generate stream SSE (`data: <AgentEvent>`) when the client accepts it.
 */
import {
  agentEventSchema,
  agentStatusSchema,
  askRequestSchema,
  conversationHistorySchema,
  conversationIdSchema,
  conversationListSchema,
  generateRequestSchema,
  generateResponseSchema,
  invocationResponseSchema,
  type GenerateResponse,
} from '@codebox/core'
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { clientGone, collectTurn, invocationResponse, openTurn, streamTurn, turnErrors, wantsEventStream } from '../apis/runtime/turn-reply.ts'
import { route, type RouteRegistry } from '../http/route.ts'
import type { AgentDoor } from '../services/agent-door.ts'

const conversationParams = z.strictObject({ conversationId: conversationIdSchema })
const listQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  nextToken: z.string().max(200).optional().describe('From the previous page; absent on the first.'),
})
const errors = {
  400: { description: 'ValidationError: a field is wrong; the message names it.' },
  401: { description: 'Unauthorized: missing or invalid API key.' },
}
const notFound = { 404: { description: 'NotFound: no such conversation for this tenant.' } }

/** Registers the `/v1/agent` routes. */
export function agentRoutes(app: FastifyInstance, registry: RouteRegistry, agent: AgentDoor): void {
  route(
    app,
    registry,
    {
      method: 'POST',
      path: '/v1/agent/ask',
      operationId: 'askAgent',
      tag: 'Agent',
      summary: 'Ask the agent: it runs code in the conversation’s code session and answers from the output',
      description: 'The JSON reply is the same as `POST /invocations`. With `Accept: text/event-stream` the reply is SSE, `data: <AgentEvent>` per event.',
      body: askRequestSchema,
      responses: {
        200: { description: 'The answer (JSON), or the event stream (SSE)', schema: invocationResponseSchema },
        201: { description: 'SSE event data (one AgentEvent per event)', schema: agentEventSchema, kind: 'sse' },
        ...turnErrors,
        404: { description: 'NotFound: `sessionId` names no session of this tenant.' },
        410: { description: 'SessionTerminated: the `sessionId` session has ended.' },
      },
    },
    async ({ body, caller, request, reply }) => {
      const turn = await openTurn(agent, { caller, role: 'answer', ...body, signal: clientGone(reply), requestId: request.id })
      if (wantsEventStream(request.headers.accept)) {
        await streamTurn(request, reply, turn)
        return reply
      }
      return invocationResponse(await collectTurn(turn))
    },
  )
  route(
    app,
    registry,
    {
      method: 'POST',
      path: '/v1/agent/generate',
      operationId: 'generateCode',
      tag: 'Agent',
      summary: 'Generate code for the user to edit (not run)',
      description: 'With `Accept: text/event-stream` the reply is SSE; the `final` event carries `code` and `language`.',
      body: generateRequestSchema,
      responses: {
        200: { description: 'The code (JSON), or the event stream (SSE)', schema: generateResponseSchema },
        201: { description: 'SSE event data (one AgentEvent per event)', schema: agentEventSchema, kind: 'sse' },
        ...turnErrors,
      },
    },
    async ({ body, caller, request, reply }) => {
      const turn = await openTurn(agent, { caller, role: 'generate', ...body, signal: clientGone(reply), requestId: request.id })
      if (wantsEventStream(request.headers.accept)) {
        await streamTurn(request, reply, turn)
        return reply
      }
      const { final } = await collectTurn(turn)
      const response: GenerateResponse = {
        conversationId: turn.start.conversationId,
        code: final.code ?? final.text,
        language: final.language ?? body.language,
        text: final.text,
        model: final.model,
        skipped: final.skipped,
      }
      return response
    },
  )
  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/agent/conversations',
      operationId: 'listConversations',
      tag: 'Agent',
      summary: 'List the tenant’s conversations, most recently updated first',
      query: listQuery,
      responses: { 200: { description: 'A page of conversations', schema: conversationListSchema }, ...errors },
    },
    async ({ query, caller }) => agent.listConversations(caller, query),
  )
  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/agent/conversations/{conversationId}',
      operationId: 'getConversation',
      tag: 'Agent',
      summary: 'A conversation and its stored turns (short-term memory)',
      params: conversationParams,
      responses: { 200: { description: 'The conversation and its turns, oldest first', schema: conversationHistorySchema }, ...errors, ...notFound },
    },
    async ({ params, caller }) => agent.history(caller, params.conversationId),
  )
  route(
    app,
    registry,
    {
      method: 'POST',
      path: '/v1/agent/conversations/{conversationId}/stop',
      operationId: 'stopConversation',
      tag: 'Agent',
      summary: 'Stop a conversation’s running turn and end its code session; its memory stays',
      params: conversationParams,
      responses: { 204: { description: 'Stopped' }, ...errors, ...notFound },
    },
    async ({ params, caller, reply }) => {
      await agent.stopConversation(caller, params.conversationId)
      return reply.code(204).send()
    },
  )
  route(
    app,
    registry,
    {
      method: 'DELETE',
      path: '/v1/agent/conversations/{conversationId}',
      operationId: 'deleteConversation',
      tag: 'Agent',
      summary: 'Delete a conversation and its memory (its code session ends too)',
      params: conversationParams,
      responses: { 204: { description: 'Deleted' }, ...errors, ...notFound },
    },
    async ({ params, caller, reply }) => {
      await agent.deleteConversation(caller, params.conversationId)
      return reply.code(204).send()
    },
  )
  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/agent/status',
      operationId: 'agentStatus',
      tag: 'Agent',
      summary: 'The configured model chain, how each model fared, and which answered last',
      description: 'Works without a model: `configured` is false and `hint` says what to set.',
      responses: { 200: { description: 'The status', schema: agentStatusSchema }, 401: errors[401] },
    },
    async () => agent.status(),
  )
}
