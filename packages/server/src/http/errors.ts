/**
 * Every error leaves the server in the one wire shape of STYLE.md, with the request id: codebox
 * errors as they are, Fastify's own 4xx (bad media type, oversized body, ...) mapped to registry
 * codes, anything else an Internal 500 whose details stay in the log.
 */
import { STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { CodeboxError, validationError } from '@codebox/core'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'

export function toCodeboxError(e: unknown): CodeboxError {
  if (e instanceof CodeboxError) return e
  const fe = e as Partial<FastifyError> | undefined
  const status = fe?.statusCode ?? 500
  switch (fe?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new CodeboxError('LimitExceeded', 'request body is over the size limit', { cause: e })
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return validationError('content-type', 'must be application/json for this route')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return validationError('body', 'is empty; send a JSON object')
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return validationError('url', 'a path parameter is over the 5000-character limit')
    case 'FST_ERR_BAD_URL':
      return validationError('url', 'is not valid percent-encoding (a % must be followed by two hex digits of UTF-8)')
    default:
      if (status === 408) return new CodeboxError('RequestTimeout', 'the request did not arrive in time', { cause: e })
      if (status === 413) return new CodeboxError('LimitExceeded', fe?.message ?? 'request is too large', { cause: e })
      if (status >= 400 && status < 500) return new CodeboxError('ValidationError', fe?.message ?? 'bad request', { cause: e })
      return new CodeboxError('Internal', 'internal error; the server log has the details under this request id', { cause: e })
  }
}

/** Sends an error in the wire shape; closes the connection when an unread body may follow. */
export function sendError(request: FastifyRequest, reply: FastifyReply, e: unknown): FastifyReply {
  const err = toCodeboxError(e)
  if (err.code === 'Internal' || err.status >= 500) request.log.error({ err: e }, 'request failed')
  else request.log.info({ code: err.code, reason: err.message }, 'request rejected')
  const retry = err.details.retryAfterSeconds
  if (typeof retry === 'number') void reply.header('retry-after', String(retry))
  endUnreadBody(request, reply, err.code)
  return reply.code(err.status).type('application/json').send(err.toJSON(request.id))
}

/** A lingering close's bounds: how much more of a refused body is read and dropped, and for how long. */
export const LINGER_BYTES = 8 << 20
export const LINGER_MS = 2000

/**
 * What becomes of a body a refusal leaves unread. One that stalled (RequestTimeout) has its
 * connection closed. One refused as too large (LimitExceeded) that the client is still sending
 * is read and dropped, at most LINGER_BYTES more for at most LINGER_MS, then the connection is
 * closed (a lingering close): closing with bytes unread makes the kernel reset the connection,
 * and a client that writes its whole body before it reads (fetch does) would see EPIPE instead of
 * the answer. A body that ends within the bounds leaves the connection open for the next request.
 */
export function endUnreadBody(request: FastifyRequest, reply: FastifyReply, code: string): void {
  const req = request.raw
  if (code === 'RequestTimeout' || (code === 'LimitExceeded' && req.destroyed && !req.complete)) {
    void reply.header('connection', 'close')
    return
  }
  if (code !== 'LimitExceeded' || req.complete) return
  const socket = req.socket
  let dropped = 0
  const timer = setTimeout(() => socket.destroy(), LINGER_MS)
  timer.unref()
  const done = (): void => clearTimeout(timer)
  req.once('end', done)
  req.once('close', done)
  // A reader that gave up (an abandoned async iterator) holds the stream in paused mode.
  req.removeAllListeners('readable')
  req.on('data', (chunk: Buffer) => {
    dropped += chunk.length
    if (dropped > LINGER_BYTES) socket.destroy()
  })
  req.resume()
}

/**
 * Answers a request the HTTP parser refused before any route saw it (headers over the size
 * limit, a malformed request line, a request that took too long to arrive) in the wire shape,
 * with AWS's `message` and `x-amzn-errortype` too, since which API it was for is not known yet.
 */
export function clientErrorHandler(this: { log: { debug: (o: object, m: string) => void } }, err: NodeJS.ErrnoException, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const [status, error] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, new CodeboxError('LimitExceeded', 'the request headers are over the size limit (16 KiB); send fewer or shorter headers')]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, new CodeboxError('RequestTimeout', 'the request did not arrive in time')]
        : [400, validationError('request', `is not valid HTTP/1.1 (${err.code ?? 'parse error'}); check the request line and headers`)]
  this.log.debug({ code: err.code }, 'HTTP request refused by the parser')
  if (socket.writable) {
    const body = JSON.stringify({ message: error.message, ...error.toJSON() })
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\n` +
        `x-amzn-errortype: ValidationException\r\nConnection: close\r\n\r\n${body}`,
    )
  }
  socket.destroy(err)
}
