/**
 * The AgentCore data plane at AWS's paths: Start/Get/List/Stop CodeInterpreterSession and
 * InvokeCodeInterpreter, each a view of SessionService (so tenancy, quotas, audit and metrics are
 * the native API's). Invoke answers with an AWS event stream: one `result` event carrying the
 * whole result (clients such as the seeds' `for event in stream: return event["result"]` read
 * only the first), or an exception event for a failure after the stream began.
 */
import { once } from 'node:events'
import { CodeboxError, type SessionInfo, type ToolResult } from '@codebox/core'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Caller, SessionService } from '../services/sessions.ts'
import type { StoreApi } from '../store/index.ts'
import { awsValidation, streamMemberOf, toAwsError } from './errors.ts'
import { eventHeaders, exceptionHeaders, jsonPieces, messageParts } from './eventstream.ts'
import { resolveInterpreter } from './interpreters.ts'
import { awsRoute } from './route.ts'
import { invokeBodySchema, listBodySchema, sessionIdQuerySchema, startBodySchema, stopBodySchema } from './shapes.ts'

const sessionHeader = 'x-amzn-code-interpreter-session-id'

export function dataPlaneRoutes(app: FastifyInstance, store: StoreApi, sessions: SessionService, holdMs: number): void {
  /** The caller's session, if it was started from this interpreter; else ResourceNotFound. */
  const sessionOf = async (caller: Caller, interpreterId: string, sessionId: string): Promise<SessionInfo> => {
    const info = await sessions.get(caller, sessionId)
    if (info.interpreterId !== interpreterId) throw notFound(sessionId)
    return info
  }

  awsRoute(app, { method: 'PUT', url: '/:codeInterpreterIdentifier/sessions/start', body: startBodySchema }, async ({ caller, identifier, body, request }) => {
    const interpreter = await resolveInterpreter(store, caller, identifier)
    const { info } = await sessions.start(
      caller,
      {
        interpreterId: interpreter.interpreterId,
        ...(body.name !== undefined ? { name: body.name } : {}),
        ...(body.sessionTimeoutSeconds !== undefined ? { timeoutSeconds: body.sessionTimeoutSeconds } : {}),
        ...(body.clientToken !== undefined ? { clientToken: body.clientToken } : {}),
        ...(body.limits !== undefined ? { limits: body.limits } : {}),
      },
      { requestId: request.id },
    )
    if (info.interpreterId !== interpreter.interpreterId) {
      throw awsValidation('clientToken was used before to start a session of another code interpreter', 'clientToken', 'IdempotentParameterMismatchException')
    }
    return { codeInterpreterIdentifier: identifier, sessionId: info.sessionId, createdAt: info.createdAt }
  })

  awsRoute(app, { method: 'GET', url: '/:codeInterpreterIdentifier/sessions/get', query: sessionIdQuerySchema }, async ({ caller, identifier, query }) => {
    const { interpreterId } = await resolveInterpreter(store, caller, identifier)
    const info = await sessionOf(caller, interpreterId, query.sessionId)
    return {
      codeInterpreterIdentifier: identifier,
      sessionId: info.sessionId,
      ...(info.name ? { name: info.name } : {}),
      status: info.status,
      createdAt: info.createdAt,
      sessionTimeoutSeconds: info.timeoutSeconds,
    }
  })

  awsRoute(app, { method: 'POST', url: '/:codeInterpreterIdentifier/sessions/list', body: listBodySchema }, async ({ caller, identifier, body }) => {
    const { interpreterId } = await resolveInterpreter(store, caller, identifier)
    const page = await sessions.list(caller, {
      interpreterId,
      limit: body.maxResults ?? 10,
      ...(body.status ? { status: body.status } : {}),
      ...(body.nextToken ? { nextToken: body.nextToken } : {}),
    })
    return {
      items: page.items.map((s) => ({
        codeInterpreterIdentifier: identifier,
        sessionId: s.sessionId,
        ...(s.name ? { name: s.name } : {}),
        status: s.status,
        createdAt: s.createdAt,
        lastUpdatedAt: s.lastUpdatedAt,
      })),
      ...(page.nextToken ? { nextToken: page.nextToken } : {}),
    }
  })

  awsRoute(
    app,
    { method: 'PUT', url: '/:codeInterpreterIdentifier/sessions/stop', query: sessionIdQuerySchema, body: stopBodySchema },
    async ({ caller, identifier, query, request }) => {
      const { interpreterId } = await resolveInterpreter(store, caller, identifier)
      await sessionOf(caller, interpreterId, query.sessionId)
      const info = await sessions.stop(caller, query.sessionId, { requestId: request.id })
      return { codeInterpreterIdentifier: identifier, sessionId: info.sessionId, lastUpdatedAt: info.endedAt ?? info.lastUpdatedAt }
    },
  )

  awsRoute(
    app,
    { method: 'POST', url: '/:codeInterpreterIdentifier/tools/invoke', body: invokeBodySchema },
    async ({ caller, identifier, body, request, reply }) => {
      const { interpreterId } = await resolveInterpreter(store, caller, identifier)
      const sessionId = request.headers[sessionHeader]
      if (typeof sessionId !== 'string' || sessionId === '') {
        throw awsValidation(`the ${sessionHeader} header is required: start a session with StartCodeInterpreterSession and pass its sessionId`, 'sessionId')
      }
      if (!/^[0-9a-zA-Z]{1,40}$/.test(sessionId)) throw awsValidation('sessionId must be 1-40 letters and digits', 'sessionId')
      const info = await sessionOf(caller, interpreterId, sessionId)
      if (info.status === 'TERMINATED') throw notFound(sessionId, `session ${sessionId} has ended (${info.endReason ?? 'stopped'}); start a new session`)
      const abort = new AbortController()
      // A client that goes away cancels its call: the cell is interrupted, not left running.
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) abort.abort()
      })
      const result = sessions.invokeResult(
        caller,
        sessionId,
        { name: body.name, arguments: body.arguments ?? {} },
        { signal: abort.signal, requestId: request.id },
      )
      await sendResultStream(request, reply, sessionId, result, holdMs)
      return undefined
    },
  )
}

const notFound = (sessionId: string, message = `session ${sessionId} was not found`): CodeboxError => new CodeboxError('NotFound', message)

/**
 * Runs the invocation to its result and writes it as one `result` event. The response headers
 * wait for the result, for up to `holdMs`: clients read the stream lazily, and the seed's Strands
 * tool reads it only after stopping the session, so a short call must be complete before the
 * client sees the response. A call still running after `holdMs` gets its headers then, so that
 * a client's read timeout (botocore: 60 s) does not fire and retry the call, running it again.
 * A failure before the headers is an HTTP error; after them, an exception event.
 */
async function sendResultStream(request: FastifyRequest, reply: FastifyReply, sessionId: string, result: Promise<ToolResult>, holdMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const held = await Promise.race([
    result.then(
      () => 'done' as const,
      () => 'failed' as const,
    ),
    new Promise<'held'>((resolve) => (timer = setTimeout(() => resolve('held'), holdMs))),
  ])
  clearTimeout(timer)
  // Refused or failed while the headers were still held: an ordinary AWS error response.
  if (held === 'failed') await result
  reply.hijack()
  const res = reply.raw
  res.writeHead(200, {
    'content-type': 'application/vnd.amazon.eventstream',
    [sessionHeader]: sessionId,
    'x-amzn-requestid': request.id,
    'x-request-id': request.id,
  })
  res.flushHeaders()
  const write = async (parts: Iterable<Buffer>): Promise<void> => {
    for (const part of parts) {
      if (res.destroyed) return
      if (!res.write(part)) await Promise.race([once(res, 'drain'), once(res, 'close')])
    }
  }
  try {
    const { pieces, length } = jsonPieces(await result)
    await write(messageParts(eventHeaders('result'), pieces, length))
  } catch (e) {
    const { error } = toAwsError(e)
    if (error.status >= 500) request.log.error({ err: e }, 'invocation failed mid-stream')
    const payload = Buffer.from(JSON.stringify({ message: error.body.message }))
    await write(messageParts(exceptionHeaders(streamMemberOf(error.name)), [payload], payload.length))
  } finally {
    res.end()
  }
}
