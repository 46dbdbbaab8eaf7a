/**
 * Streamed answers (SSE, NDJSON) taken over from Fastify: the status and the headers that keep
 * caches and proxies from holding them back, a write that waits while the client is slow
 * (backpressure instead of a growing buffer), and the rule that a stream's error before its first
 * item is answered as a normal HTTP error, so clients see its status code.
 */
import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { sendError } from './errors.ts'

/** How long a stream's first item is awaited before the answer becomes a stream. */
const FIRST_ITEM_MS = 20

/** A streamed response taken over from Fastify. */
export interface StreamResponse {
  readonly res: ServerResponse
  /** Writes one chunk; resolves once the socket took it, or closed (a closed response writes nothing). */
  write(chunk: string): Promise<void>
}

/** Hijacks `reply` and sends status 200 with `headers` (the content type among them), no-cache, no proxy buffering and the request id. */
export function openStream(request: FastifyRequest, reply: FastifyReply, headers: Record<string, string>): StreamResponse {
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, { 'cache-control': 'no-cache, no-transform', 'x-accel-buffering': 'no', 'x-request-id': request.id, ...headers })
  // Made once: a 'close' that came before a write waits for drain must still end the wait.
  const closed = new Promise<void>((resolve) => (res.destroyed ? resolve() : res.once('close', () => resolve())))
  return {
    res,
    async write(chunk) {
      if (res.destroyed) return
      if (!res.write(chunk)) await Promise.race([once(res, 'drain'), closed])
    },
  }
}

/**
 * Starts `events` and waits briefly (20 ms) for its first item. A failure by then (a bad argument,
 * an unknown session, a missing context) is answered as a normal HTTP error and undefined comes
 * back: nothing is to be streamed. Otherwise `first` is the first item, to be awaited inside the
 * stream, where a later failure is the stream's to report.
 */
export async function firstOrHttpError<T, R>(
  request: FastifyRequest,
  reply: FastifyReply,
  events: AsyncIterator<T, R>,
): Promise<{ first: Promise<IteratorResult<T, R>> } | undefined> {
  const first = events.next()
  const early = await Promise.race([
    first.then(
      () => undefined,
      (e: unknown) => ({ e }),
    ),
    new Promise<undefined>((r) => setTimeout(() => r(undefined), FIRST_ITEM_MS)),
  ])
  if (early) {
    await sendError(request, reply, early.e)
    return undefined
  }
  return { first }
}
