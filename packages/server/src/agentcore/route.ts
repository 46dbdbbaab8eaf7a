/**
 * How an AgentCore route is declared: AWS path, zod shapes for the query and body (a mismatch is a
 * ValidationException naming the field), the caller that SigV4 authenticated, and the path's
 * interpreter identifier. Not in the OpenAPI document: these routes speak AWS's protocol and are
 * documented in docs/agentcore.md.
 */
import { parseWire } from '@codebox/core'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { z } from 'zod'
import type { Caller } from '../services/sessions.ts'

export interface AwsRouteSpec<Q extends z.ZodType, B extends z.ZodType> {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  /** Fastify form, with `:codeInterpreterIdentifier` or `:codeInterpreterId` when it has one. */
  url: string
  query?: Q
  body?: B
  /** Status of a successful answer; default 200. */
  status?: number
}

export interface AwsRouteInput<Q extends z.ZodType, B extends z.ZodType> {
  caller: Caller
  /** The interpreter identifier of the path, as the client sent it (an id or an ARN). */
  identifier: string
  /** The region the client signed for (`us-east-1` when unsigned on an open server). */
  region: string
  query: z.infer<Q>
  body: z.infer<B>
  request: FastifyRequest
  reply: FastifyReply
}

export function awsRoute<Q extends z.ZodType, B extends z.ZodType>(
  app: FastifyInstance,
  spec: AwsRouteSpec<Q, B>,
  /** Returns the JSON answer, or undefined after answering through `reply` itself. */
  handler: (input: AwsRouteInput<Q, B>) => Promise<unknown>,
): void {
  app.route({
    method: spec.method,
    url: spec.url,
    config: { auth: false },
    handler: async (request, reply) => {
      const params = request.params as Record<string, string | undefined>
      const identifier = params.codeInterpreterIdentifier ?? params.codeInterpreterId ?? ''
      const query = spec.query ? parseWire(spec.query, request.query ?? {}, '') : {}
      const body = spec.body ? parseWire(spec.body, request.body ?? {}, '') : undefined
      const result = await handler({ caller: request.caller, identifier, region: request.awsRegion, query, body, request, reply } as AwsRouteInput<Q, B>)
      // A handler that answered itself (hijacked the reply and streamed) must not be answered twice.
      // It returns undefined: a returned FastifyReply would be awaited as a thenable, never seen here.
      if (reply.sent || reply.raw.headersSent) return
      return reply.code(spec.status ?? 200).send(result)
    },
  })
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The region of the request's SigV4 credential scope. */
    awsRegion: string
    /** Lowercase hex SHA-256 of the raw body (of the empty string when there is none). */
    bodySha256: string
  }
}
