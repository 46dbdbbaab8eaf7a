/**
 * Native API v1: streaming file transfer. Uploads stream from the request into the sandbox (the
 * cap is checked on Content-Length before reading, and again while reading; a cut-off upload
 * leaves no file); downloads stream out of the sandbox with their size and MIME type.
 */
import { Readable } from 'node:stream'
import { fileWriteResultSchema, sessionIdSchema } from '@codebox/core'
import type { FastifyInstance } from 'fastify'
import { z } from 'zod'
import type { ServerConfig } from '../config.ts'
import { checkDeclaredLength, limitedBody } from '../http/body.ts'
import { route, type RouteRegistry } from '../http/route.ts'
import type { Caller, SessionService } from '../services/sessions.ts'

const fileParams = z.strictObject({ sessionId: sessionIdSchema, path: z.string().min(1, 'is empty: name a file').max(4096) })
const listQuery = z.strictObject({ path: z.string().max(4096).default(''), recursive: z.enum(['true', 'false']).default('false') })
const removeQuery = z.strictObject({ recursive: z.enum(['true', 'false']).default('false') })
const fileEntrySchema = z.object({
  path: z.string(),
  pathBase64: z.string().optional(),
  name: z.string(),
  type: z.enum(['file', 'directory', 'symlink', 'other']),
  size: z.number(),
  mimeType: z.string(),
  modifiedAt: z.string(),
})
const errors = { 400: { description: 'ValidationError' }, 404: { description: 'NotFound: no such session or file' }, 410: { description: 'SessionTerminated' } }

export async function fileRoutes(app: FastifyInstance, registry: RouteRegistry, sessions: SessionService, config: ServerConfig): Promise<void> {
  await app.register(async (scope) => {
    // Uploads are raw bytes of any type: hand the body stream to the route instead of parsing it.
    scope.removeAllContentTypeParsers()
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined))

    route(
      scope,
      registry,
      {
        method: 'PUT',
        path: '/v1/sessions/{sessionId}/files/{path}',
        operationId: 'uploadFile',
        tag: 'Files',
        summary: 'Upload a file (raw body, streamed)',
        description: `Writes the request body to \`path\` under the working directory, creating parents; atomic. At most ${config.maxUploadBytes} bytes (CODEBOX_MAX_UPLOAD_BYTES): a larger Content-Length gets 413 before any byte is read.`,
        params: fileParams,
        body: 'binary',
        responses: {
          201: { description: 'Written', schema: fileWriteResultSchema },
          ...errors,
          408: { description: 'RequestTimeout: the body stalled' },
          413: { description: 'LimitExceeded' },
        },
      },
      async ({ params, caller, request, reply }) => {
        const audit = auditor(sessions, caller, 'uploadFile', params.sessionId, request.id)
        try {
          const maxBytes = Math.min(config.maxUploadBytes, sessions.maxFileBytes)
          checkDeclaredLength(request.raw, maxBytes, 'upload')
          const session = await sessions.live(caller, params.sessionId)
          const abort = new AbortController()
          request.raw.on('close', () => {
            if (!request.raw.complete) abort.abort()
          })
          const body = limitedBody(request.raw, { maxBytes, idleTimeoutMs: config.bodyIdleTimeoutMs }, 'upload')
          const { size } = await session.files.write(params.path, body, { signal: abort.signal })
          await audit('ok', { codeBytes: size })
          return reply.code(201).send({ path: params.path, size })
        } catch (e) {
          await audit((e as { status?: number }).status !== undefined && (e as { status: number }).status < 500 ? 'rejected' : 'failed', {
            detail: (e as { code?: string }).code,
          })
          throw e
        }
      },
    )
  })

  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/sessions/{sessionId}/files/{path}',
      operationId: 'downloadFile',
      tag: 'Files',
      summary: 'Download a file (streamed)',
      params: fileParams,
      responses: { 200: { description: 'The bytes, with Content-Type and Content-Length', kind: 'binary' }, ...errors },
    },
    async ({ params, caller, request, reply }) => {
      const audit = auditor(sessions, caller, 'downloadFile', params.sessionId, request.id)
      try {
        const { size, mimeType, stream } = await (await sessions.live(caller, params.sessionId)).files.readStream(params.path)
        await audit('ok', { codeBytes: size })
        return reply.type(mimeType).header('content-length', String(size)).send(Readable.from(stream))
      } catch (e) {
        await audit(outcomeOf(e), { detail: (e as { code?: string }).code })
        throw e
      }
    },
  )

  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/v1/sessions/{sessionId}/files',
      operationId: 'listFiles',
      tag: 'Files',
      summary: 'List a directory of the workspace',
      params: z.strictObject({ sessionId: sessionIdSchema }),
      query: listQuery,
      responses: { 200: { description: 'Entries', schema: z.object({ items: z.array(fileEntrySchema) }) }, ...errors },
    },
    async ({ params, query, caller }) => ({
      items: await (await sessions.live(caller, params.sessionId)).files.list(query.path, { recursive: query.recursive === 'true' }),
    }),
  )

  route(
    app,
    registry,
    {
      method: 'DELETE',
      path: '/v1/sessions/{sessionId}/files/{path}',
      operationId: 'deleteFile',
      tag: 'Files',
      summary: 'Remove a file, or a directory with recursive=true',
      params: fileParams,
      query: removeQuery,
      responses: { 204: { description: 'Removed', kind: 'empty' }, ...errors, 409: { description: 'Conflict: a non-empty directory without recursive' } },
    },
    async ({ params, query, caller, reply }) => {
      await (await sessions.live(caller, params.sessionId)).files.remove(params.path, { recursive: query.recursive === 'true' })
      return reply.code(204).send()
    },
  )
}

/** Records a file transfer in the audit log when it ends, with its duration. */
function auditor(sessions: SessionService, caller: Caller, action: string, sessionId: string, requestId: string) {
  const started = performance.now()
  return (outcome: 'ok' | 'rejected' | 'failed', extra: Record<string, unknown> = {}): Promise<void> =>
    sessions.audit(caller, { action, sessionId, outcome, durationMs: performance.now() - started, requestId, ...extra })
}

/** A 4xx is the caller's mistake (rejected), anything else a failure of ours. */
function outcomeOf(e: unknown): 'rejected' | 'failed' {
  const status = (e as { status?: number }).status
  return status !== undefined && status < 500 ? 'rejected' : 'failed'
}
