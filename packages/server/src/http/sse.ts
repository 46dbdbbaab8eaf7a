/**
 * Server-sent events for invocations: `event: <type>` + `data: <json>` per execution event, a
 * keep-alive comment every 15 s, an `error` event for a failure after the stream began, and
 * backpressure (a slow reader slows the writer instead of growing a buffer).
 */
import { once } from 'node:events'
import type { ExecutionEvent, ToolResult } from '@codebox/core'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { sendError, toCodeboxError } from './errors.ts'

const KEEPALIVE_MS = 15_000

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
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    'x-accel-buffering': 'no',
    'x-request-id': request.id,
  })
  const write = async (chunk: string): Promise<void> => {
    if (!res.write(chunk)) await Promise.race([once(res, 'drain'), once(res, 'close')])
  }
  const keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS)
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
    clearInterval(keepalive)
    await events.return(undefined as never)
    res.end()
  }
}
