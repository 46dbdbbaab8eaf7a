/**
 * Server-sent events for invocations: `event: <type>` + `data: <json>` per execution event, a
 * keep-alive comment every 15 s, an `error` event for a failure after the stream began, and
 * backpressure (a slow reader slows the writer instead of growing a buffer).
 */
import type { ExecutionEvent, ToolResult } from '@codebox/core'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { toCodeboxError } from './errors.ts'
import { firstOrHttpError, openStream, type StreamResponse } from './stream.ts'

const KEEPALIVE_MS = 15_000

/** An SSE response taken over from Fastify: `write` waits while the client is slow, a keep-alive comment goes out every 15 s. */
export interface SseResponse extends StreamResponse {
  /** Stops the keep-alive and ends the response. */
  end(): void
}

/** Hijacks `reply` and sends the SSE status and headers (plus `headers`). */
export function openSse(request: FastifyRequest, reply: FastifyReply, headers: Record<string, string> = {}): SseResponse {
  const { res, write } = openStream(request, reply, { 'content-type': 'text/event-stream; charset=utf-8', ...headers })
  const keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS)
  return {
    res,
    write,
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
  const started = await firstOrHttpError(request, reply, events)
  if (!started) return
  const { res, write, end } = openSse(request, reply)
  try {
    let next = await started.first
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
