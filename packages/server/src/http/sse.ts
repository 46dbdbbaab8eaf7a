/**
 * Server-sent events for invocations: `event: <type>` + `data: <json>` per execution event, a
 * keep-alive comment every 15 s, an `error` event for a failure after the stream began, and
 * backpressure (a slow reader slows the writer instead of growing a buffer).
 */
import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import type { ExecutionEvent, ToolResult } from '@codebox/core'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { sendError, toCodeboxError } from './errors.ts'

const KEEPALIVE_MS = 15_000

/** An SSE response taken over from Fastify: `write` waits while the client is slow, a keep-alive comment goes out every 15 s. */
export interface SseResponse {
  readonly res: ServerResponse
  /** Writes one chunk; resolves once the socket took it (or closed). */
  write(chunk: string): Promise<void>
  /** Stops the keep-alive and ends the response. */
  end(): void
}

/** Hijacks `reply` and sends the SSE status and headers (plus `headers`). */
export function openSse(request: FastifyRequest, reply: FastifyReply, headers: Record<string, string> = {}): SseResponse {
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
    'x-request-id': request.id,
    ...headers,
  })
  const keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS)
  return {
    res,
    async write(chunk) {
      if (!res.write(chunk)) await Promise.race([once(res, 'drain'), once(res, 'close')])
    },
    end() {
      clearInterval(keepalive)
      res.end()
    },
  }
}

/**
 * Streams `events` as SSE. An error before the first event (a bad argument, an unknown session)
 * is answered as a normal HTTP error instead, so clients see the status code.
 */
export async function sendEventStream(request: FastifyRequest, reply: FastifyReply, events: AsyncGenerator<ExecutionEvent, ToolResult>): Promise<void> {
  const first = events.next()
  const early = await Promise.race([
    first.then(
      (r) => ({ r }),
      (e: unknown) => ({ e }),
    ),
    new Promise<undefined>((r) => setTimeout(() => r(undefined), 20)),
  ])
  if (early && 'e' in early) {
    await sendError(request, reply, early.e)
    return
  }
  const { res, write, end } = openSse(request, reply)
  try {
    let next = early ? early.r : await first
    while (!next.done) {
      if (res.destroyed) break
      await write(`event: ${next.value.type}\ndata: ${JSON.stringify(next.value)}\n\n`)
      next = await events.next()
    }
  } catch (e) {
    const err = toCodeboxError(e)
    if (err.status >= 500) request.log.error({ err: e }, 'invocation failed mid-stream')
    if (!res.destroyed) await write(`event: error\ndata: ${JSON.stringify(err.toJSON(request.id))}\n\n`)
  } finally {
    await events.return(undefined as never)
    end()
  }
}
