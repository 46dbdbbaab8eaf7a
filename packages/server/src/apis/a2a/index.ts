/**
 * A2A on the codebox server (seed 002): the agent card at `/.well-known/agent-card.json` (public)
 * and JSON-RPC at `/a2a` (the same API keys as `/v1`): v1.0 `SendMessage`/`SendStreamingMessage`
 * and, through the SDK's v0.3 compatibility layer, `message/send`/`message/stream` (a request
 * without `A2A-Version`, or with 0.3, is v0.3, as the SDK's own server decides). The SDK
 * (`@a2a-js/sdk`) does the protocol: its DefaultRequestHandler, its JSON-RPC transport handlers,
 * their error mapping and SSE framing; this file is the thin Fastify mapping its Express adapter
 * would be. The agent itself is reached only through AgentDoor (executor.ts).
 */
import { once } from 'node:events'
import { A2A_VERSION_HEADER, Extensions, formatSSEErrorEvent, formatSSEEvent, HTTP_EXTENSION_HEADER, SSE_HEADERS } from '@a2a-js/sdk'
import { LEGACY_HTTP_EXTENSION_HEADER } from '@a2a-js/sdk/compat/v0_3'
import { LegacyJsonRpcTransportHandler } from '@a2a-js/sdk/compat/v0_3/server'
import { A2A_ERROR_CODE, JsonRpcContentTypeNotSupportedError, JsonRpcTransportError } from '@a2a-js/sdk/errors'
import { DefaultRequestHandler, JsonRpcTransportHandler, ServerCallContext, validateVersion, type User } from '@a2a-js/sdk/server'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Authenticator } from '../../http/auth.ts'
import { parseJsonBody, readBody, type BodyLimits } from '../../http/body.ts'
import { toCodeboxError } from '../../http/errors.ts'
import type { AgentDoor } from '../../services/agent-door.ts'
import type { Caller } from '../../services/sessions.ts'
import { agentCard, agentCardJson } from './card.ts'
import { callerKey, CodeboxAgentExecutor, requestIdKey } from './executor.ts'
import { BoundedTaskStore } from './task-store.ts'

/** Where the JSON-RPC endpoint is served. */
export const a2aPath = '/a2a'
/** Where A2A clients look for the card. */
export const agentCardPath = '/.well-known/agent-card.json'
const keepaliveMs = 15_000

export interface A2AOptions {
  agent: AgentDoor
  auth: Authenticator
  body: BodyLimits
  version: string
  /** Tasks kept in memory (see task-store.ts); default 10,000 per generation. */
  maxTasks?: number
}

type JsonRpcError = { code: number; message: string; data?: unknown }

/** A body the transport handler must answer with an error: not JSON, or not application/json. */
class RejectedBody {
  readonly error: Error
  constructor(error: Error) {
    this.error = error
  }
}

/** The A2A user of a codebox caller: tasks are scoped to the caller's tenant. */
class CallerUser implements User {
  readonly #tenant: string
  constructor(caller: Caller) {
    this.#tenant = caller.tenant
  }
  get isAuthenticated(): boolean {
    return true
  }
  get userName(): string {
    return this.#tenant
  }
}

/** Registers the agent card and the JSON-RPC endpoint. */
export async function a2aRoutes(app: FastifyInstance, options: A2AOptions): Promise<void> {
  const template = agentCard({ url: a2aPath, version: options.version, bearer: false })
  const handler = new DefaultRequestHandler(
    template,
    new BoundedTaskStore({ ...(options.maxTasks ? { maxTasks: options.maxTasks } : {}) }),
    new CodeboxAgentExecutor(options.agent),
  )
  const v1 = new JsonRpcTransportHandler(handler)
  const legacy = new LegacyJsonRpcTransportHandler(handler)

  app.get(agentCardPath, { config: { auth: false } }, async (request, reply) => {
    const card = agentCard({ url: `${request.protocol}://${request.host}${a2aPath}`, version: options.version, bearer: !(await options.auth.open()) })
    void reply.header('cache-control', 'no-cache').header('vary', A2A_VERSION_HEADER).type('application/json')
    return agentCardJson(card, header(request, A2A_VERSION_HEADER))
  })

  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers()
    // JSON-RPC framing errors (bad JSON, another media type) are answered by the SDK's own error envelopes, not codebox's error shape.
    scope.addContentTypeParser('*', async (request: FastifyRequest) => {
      const body = await readBody(request.raw, options.body)
      const media = (request.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase()
      if (media !== 'application/json') {
        return new RejectedBody(new JsonRpcContentTypeNotSupportedError({ message: `Unsupported Content-Type "${media}"; expected application/json.` }))
      }
      try {
        return parseJsonBody(body.toString('utf8'))
      } catch (e) {
        const message = `Invalid JSON payload: ${toCodeboxError(e).message}`
        return new RejectedBody(new JsonRpcTransportError({ jsonrpc: '2.0', id: null, error: { code: A2A_ERROR_CODE.PARSE_ERROR, message } }))
      }
    })
    // The same API keys as /v1, checked before the body is read.
    scope.addHook('onRequest', async (request) => {
      request.caller = await options.auth.authenticate(request.headers.authorization)
    })
    scope.post(a2aPath, { config: { auth: false } }, async (request, reply) => {
      const requested = header(request, A2A_VERSION_HEADER)
      const useLegacy = (requested || '0.3') === '0.3'
      const mapToError = (e: unknown): JsonRpcError =>
        useLegacy ? (LegacyJsonRpcTransportHandler.mapToLegacyJSONRPCError(e) as JsonRpcError) : JsonRpcTransportHandler.mapToJSONRPCError(e)
      const body = request.body
      const id = idOf(body)
      const errorReply = (e: unknown): object => {
        const error = mapToError(e)
        if (error.code === A2A_ERROR_CODE.INTERNAL_ERROR) {
          request.log.error({ err: e }, 'A2A request failed')
          void reply.code(500)
        }
        return { jsonrpc: '2.0', id, error }
      }
      if (body instanceof RejectedBody) return errorReply(body.error)
      try {
        const context = new ServerCallContext({
          requestedExtensions: Extensions.parseServiceParameter(
            useLegacy ? (header(request, LEGACY_HTTP_EXTENSION_HEADER) ?? header(request, HTTP_EXTENSION_HEADER)) : header(request, HTTP_EXTENSION_HEADER),
          ),
          user: new CallerUser(request.caller),
          ...(requested ? { requestedVersion: requested } : {}),
          state: new Map<string, unknown>([
            ['headers', request.headers],
            [callerKey, request.caller],
            [requestIdKey, request.id],
          ]),
        })
        validateVersion(context.requestedVersion, await handler.getAgentCard(), 'JSONRPC')
        const result = await (useLegacy ? legacy : v1).handle(body as Record<string, unknown>, context)
        if (context.activatedExtensions) {
          void reply.header(useLegacy ? LEGACY_HTTP_EXTENSION_HEADER : HTTP_EXTENSION_HEADER, Array.from(context.activatedExtensions))
        }
        if (!isAsyncIterable(result)) return result
        // v0.3 tasks/resubscribe answers in SSE even when it fails at once.
        const alwaysStream = useLegacy && (body as { method?: unknown }).method === 'tasks/resubscribe'
        await streamJsonRpc(request, reply, result, { id, alwaysStream, mapToError })
        return undefined
      } catch (e) {
        return errorReply(e)
      }
    })
  })
}

/**
 * Sends a JSON-RPC stream as SSE, framed by the SDK (`formatSSEEvent`); a failure before the first
 * event is a plain JSON-RPC error response, after it an SSE `error` event.
 */
async function streamJsonRpc(
  request: FastifyRequest,
  reply: FastifyReply,
  stream: AsyncIterable<unknown>,
  options: { id: string | number | null; alwaysStream: boolean; mapToError: (e: unknown) => JsonRpcError },
): Promise<void> {
  const iterator = stream[Symbol.asyncIterator]()
  let first: IteratorResult<unknown> | undefined
  let early: unknown
  try {
    first = await iterator.next()
  } catch (e) {
    if (!options.alwaysStream) {
      void reply.code(200).send({ jsonrpc: '2.0', id: options.id, error: options.mapToError(e) })
      return
    }
    early = e
  }
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, { ...SSE_HEADERS, 'x-request-id': request.id })
  const write = async (chunk: string): Promise<void> => {
    if (!res.write(chunk)) await Promise.race([once(res, 'drain'), once(res, 'close')])
  }
  // A cell may run for minutes without an event: a comment line keeps proxies from closing the stream.
  const keepalive = setInterval(() => res.write(': keep-alive\n\n'), keepaliveMs)
  try {
    if (early !== undefined) throw early
    let next = first!
    while (!next.done && !res.destroyed) {
      await write(formatSSEEvent(next.value))
      next = await iterator.next()
    }
  } catch (e) {
    request.log.warn({ err: e }, 'A2A stream failed')
    if (!res.destroyed) await write(formatSSEErrorEvent({ jsonrpc: '2.0', id: options.id, error: options.mapToError(e) }))
  } finally {
    clearInterval(keepalive)
    // A client that leaves stops reading; the task runs on (A2A tasks outlive their streams; tasks/cancel stops one).
    await iterator.return?.()
    res.end()
  }
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name.toLowerCase()]
  return (Array.isArray(value) ? value[0] : value) || undefined
}

function idOf(body: unknown): string | number | null {
  const id = (body as { id?: unknown } | null)?.id
  return typeof id === 'string' || typeof id === 'number' ? id : null
}

function isAsyncIterable(value: unknown): value is AsyncIterable<unknown> {
  return typeof (value as { [Symbol.asyncIterator]?: unknown } | null)?.[Symbol.asyncIterator] === 'function'
}
