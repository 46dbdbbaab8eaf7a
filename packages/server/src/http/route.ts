/**
 * One way to declare a route: its zod schemas validate the request and the same declaration goes
 * into the OpenAPI document, so the docs cannot drift from what the server accepts. Handlers get
 * parsed params, query and body, and the authenticated caller.
 */
import { parseWire } from '@codebox/core'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { z } from 'zod'
import type { Caller } from '../services/sessions.ts'

export type ResponseKind = 'json' | 'binary' | 'sse' | 'text' | 'html' | 'empty'

export interface RouteSpec<P extends z.ZodType = z.ZodType, Q extends z.ZodType = z.ZodType, B extends z.ZodType = z.ZodType> {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  /** OpenAPI form: `/v1/sessions/{sessionId}`; a `{path}` parameter may contain slashes. */
  path: string
  operationId: string
  summary: string
  description?: string
  tag: string
  params?: P
  query?: Q
  body?: B | 'binary'
  /** Request headers the route reads, for the docs. */
  headers?: Record<string, string>
  responses: Record<number, { description: string; schema?: z.ZodType; kind?: ResponseKind }>
  /** Default true: the route needs the caller to be authenticated. */
  auth?: boolean
}

export interface RouteInput<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType> {
  params: z.infer<P>
  query: z.infer<Q>
  body: z.infer<B>
  caller: Caller
  request: FastifyRequest
  reply: FastifyReply
}

/** Every route declared so far, for the OpenAPI document. */
export class RouteRegistry {
  readonly routes: RouteSpec[] = []
}

export function fastifyPath(path: string): string {
  return path.replace(/\{path\}/g, '*').replace(/\{(\w+)\}/g, ':$1')
}

/** Declares a route on `app` and records it in `registry`. */
export function route<P extends z.ZodType, Q extends z.ZodType, B extends z.ZodType>(
  app: FastifyInstance,
  registry: RouteRegistry,
  spec: RouteSpec<P, Q, B>,
  handler: (input: RouteInput<P, Q, B>) => Promise<unknown>,
): void {
  registry.routes.push(spec as unknown as RouteSpec)
  app.route({
    method: spec.method,
    url: fastifyPath(spec.path),
    config: { auth: spec.auth !== false },
    handler: async (request, reply) => {
      const rawParams = { ...(request.params as Record<string, string>) }
      if ('*' in rawParams) {
        rawParams.path = rawParams['*'] ?? ''
        delete rawParams['*']
      }
      const params = spec.params ? parseWire(spec.params, rawParams, 'path') : rawParams
      const query = spec.query ? parseWire(spec.query, request.query ?? {}, 'query') : {}
      const body = spec.body && spec.body !== 'binary' ? parseWire(spec.body, request.body ?? {}, 'body') : undefined
      return handler({ params, query, body, caller: request.caller, request, reply } as RouteInput<P, Q, B>)
    },
  })
}

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller
  }
  interface FastifyContextConfig {
    auth?: boolean
  }
}
