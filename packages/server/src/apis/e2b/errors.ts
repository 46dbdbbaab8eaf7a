/**
 * Errors in E2B's shape, `{code, message}` with the HTTP status as `code` (its control plane and
 * envd's HTTP routes answer so, and the SDKs read `message`). The message is codebox's own, naming
 * what was wrong; the request id stays in the `x-request-id` header.
 */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { endUnreadBody, toCodeboxError } from '../../http/errors.ts'

/** Sends `e` as an E2B error; `status` overrides the registry's (the sandbox proxy answers 502 for a sandbox that is not there). */
export function sendE2bError(request: FastifyRequest, reply: FastifyReply, e: unknown, status?: number): FastifyReply {
  const err = toCodeboxError(e)
  if (err.code === 'Internal' || err.status >= 500) request.log.error({ err: e }, 'E2B request failed')
  else request.log.info({ code: err.code, reason: err.message }, 'E2B request rejected')
  const retry = err.details.retryAfterSeconds
  if (typeof retry === 'number') void reply.header('retry-after', String(retry))
  endUnreadBody(request, reply, err.code)
  const code = status ?? err.status
  return reply.code(code).type('application/json').send({ code, message: err.message })
}
