/**
 * Native API v1: POST /v1/runtimes/{id}/invocations, the door to a hosted agent for API-key callers
 * (AWS's InvokeAgentRuntime is the other door; both call services/runtime-invoke.ts). Registered in
 * the runtime routes' raw-body scope: the payload is read as bytes, never parsed.
 */
import { runtimeSessionIdSchema, validationError } from '@codebox/core'
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import { clientGone } from '../apis/runtime/turn-reply.ts'
import { checkDeclaredLength, limitedBody } from '../http/body.ts'
import { route, type RouteRegistry } from '../http/route.ts'
import { passThroughHeaders } from '../services/runtime-http.ts'
import { invokeHostedRuntime, RUNTIME_SESSION_HEADER, RUNTIME_USER_HEADER } from '../services/runtime-invoke.ts'
import type { RuntimeRouteOptions } from './runtimes.ts'

const idParams = z.strictObject({ runtimeId: z.string().min(1).max(2048) })

const invokeQuery = z.strictObject({
  session: runtimeSessionIdSchema
    .optional()
    .describe('The runtime session (or the X-Amzn-Bedrock-AgentCore-Runtime-Session-Id header); a new one when neither is given.'),
  qualifier: z.string().min(1).max(256).optional().describe('The endpoint (DEFAULT) or a version number; default DEFAULT.'),
})

/**
 * POST /v1/runtimes/{id}/invocations: the native door to a hosted agent for API-key clients (the
 * AWS door is InvokeAgentRuntime). The payload goes to the agent byte for byte, its answer comes
 * back as it is written (JSON, SSE, anything); its failures are codebox errors with its log tail.
 */
export function runtimeInvokeRoute(scope: FastifyInstance, registry: RouteRegistry, options: RuntimeRouteOptions): void {
  route(
    scope,
    registry,
    {
      method: 'POST',
      path: '/v1/runtimes/{runtimeId}/invocations',
      operationId: 'invokeRuntime',
      tag: 'Runtimes',
      summary: 'Invoke a hosted agent: the payload to its POST /invocations, its answer streamed back',
      description: `The body (any content type, at most ${options.maxPayloadBytes} bytes) reaches the runtime session’s agent byte for byte, with Content-Type, Accept, the runtime session id, the request id and X-Amzn-Bedrock-AgentCore-Runtime-Custom-* headers; the first invocation of a runtime session starts its sandbox. The agent’s status, headers and body come back unbuffered (an SSE answer streams as it is written), with the runtime session id in X-Amzn-Bedrock-AgentCore-Runtime-Session-Id. The same as AWS’s InvokeAgentRuntime, for API-key callers.`,
      params: idParams,
      query: invokeQuery,
      body: 'binary',
      headers: {
        'X-Amzn-Bedrock-AgentCore-Runtime-Session-Id': 'The runtime session (33-256 letters, digits, _ . : -), or the session query parameter',
        'X-Amzn-Bedrock-AgentCore-Runtime-User-Id': 'Passed to the agent',
      },
      responses: {
        200: { description: 'The agent’s answer, as it wrote it (its status below 500, its headers and body)', kind: 'binary' },
        400: { description: 'ValidationError: the runtime session id, the qualifier, or the built-in agent (invoked at POST /invocations)' },
        404: { description: 'NotFound: no such runtime or endpoint' },
        413: { description: 'LimitExceeded: the payload is too large' },
        500: { description: 'SandboxFailure: the agent exited, never became healthy, or answered 5xx; the message ends with what it printed' },
        504: { description: 'Timeout: the agent did not become healthy or answer in time' },
      },
    },
    async ({ params, query, caller, request, reply }) => {
      const { hosted, runtimes } = options
      if (runtimes.isBuiltIn(params.runtimeId)) {
        throw validationError('runtimeId', `${params.runtimeId} is the built-in codebox agent: invoke it at POST /invocations or /v1/agent`)
      }
      const runtimeSessionId = sessionOf(request.headers[RUNTIME_SESSION_HEADER], query.session)
      const userId = userOf(request.headers[RUNTIME_USER_HEADER])
      checkDeclaredLength(request.raw, options.maxPayloadBytes, 'payload')
      const parts: Buffer[] = []
      for await (const part of limitedBody(request.raw, { maxBytes: options.maxPayloadBytes, idleTimeoutMs: options.bodyIdleTimeoutMs }, 'payload'))
        parts.push(part)
      const { response, runtimeSessionId: used } = await invokeHostedRuntime(hosted, {
        caller,
        runtime: params.runtimeId,
        ...(query.qualifier ? { qualifier: query.qualifier } : {}),
        ...(runtimeSessionId ? { runtimeSessionId } : {}),
        ...(userId ? { userId } : {}),
        callerHeaders: request.headers,
        request: { body: Buffer.concat(parts), signal: clientGone(reply) },
        requestId: request.id,
      })
      void reply.code(response.statusCode ?? 200).headers({ ...passThroughHeaders(response.headers), [RUNTIME_SESSION_HEADER]: used })
      return reply.send(response)
    },
  )
}

/** The runtime session id from the header or the query (the same one when both are given). */
function sessionOf(header: string | string[] | undefined, fromQuery: string | undefined): string | undefined {
  const raw = Array.isArray(header) ? header[0] : header
  if (raw === undefined || raw === '') return fromQuery
  const parsed = runtimeSessionIdSchema.safeParse(raw)
  if (!parsed.success)
    throw validationError('X-Amzn-Bedrock-AgentCore-Runtime-Session-Id', `must be 33-256 letters, digits, _ . : or - (got ${raw.length} characters)`)
  if (fromQuery !== undefined && fromQuery !== raw)
    throw validationError('session', 'differs from the X-Amzn-Bedrock-AgentCore-Runtime-Session-Id header; give one of them')
  return raw
}

function userOf(header: string | string[] | undefined): string | undefined {
  const raw = Array.isArray(header) ? header[0] : header
  if (raw === undefined || raw === '') return undefined
  if (raw.length > 256) throw validationError('X-Amzn-Bedrock-AgentCore-Runtime-User-Id', 'must be at most 256 characters')
  return raw
}
