/**
 * envd's HTTP routes (served under `/e2b/envd`, for requests with `E2b-Sandbox-Port: 49983`):
 * `GET /health`, and `GET`/`POST /files` to download and upload files of the sandbox through the
 * session's file operations (done by the executor inside the sandbox). E2B's user `user` and its
 * home `/home/user` are the session's user and `/workspace`; `root` is refused.
 */
import { Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import { CodeboxError, parseWire, validationError } from '@codebox/core'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { z } from 'zod'
import { checkDeclaredLength, limitedBody } from '../../http/body.ts'
import { multipartBoundary, multipartParts } from '../../http/multipart.ts'
import type { E2bDeps, E2bSandbox } from './deps.ts'
import { sendE2bError } from './errors.ts'

/** E2B's home directory, which is codebox's /workspace. */
export const e2bHome = '/home/user'

/**
 * An E2B path as the session's file operations take it: `/home/user/x`, `~/x` and `x` are `x`
 * (relative to /workspace); `/workspace/x` stays; any other absolute path is passed on for the
 * executor to refuse (it is outside the workspace).
 */
export function workspacePath(path: string): string {
  if (path === e2bHome || path === `${e2bHome}/` || path === '~' || path === '~/') return ''
  if (path.startsWith(`${e2bHome}/`)) return path.slice(e2bHome.length + 1)
  if (path.startsWith('~/')) return path.slice(2)
  return path
}

/** A workspace path (relative, or absolute under /workspace) as E2B shows it: under /home/user. */
export function e2bPath(path: string): string {
  const rel = path === '/workspace' ? '' : path.startsWith('/workspace/') ? path.slice('/workspace/'.length) : path.replace(/^\/+/, '')
  return rel ? `${e2bHome}/${rel.replace(/^\.\//, '')}` : e2bHome
}

/** Refuses any user but E2B's default one: codebox runs sandbox code as one unprivileged user. */
export function checkUser(user: string | undefined, field = 'username'): void {
  if (user === undefined || user === '' || user === 'user') return
  throw validationError(
    field,
    user === 'root'
      ? 'root is not available: codebox runs sandbox code as one unprivileged user (leave the user out, or use "user")'
      : `must be "user", the one user of a codebox sandbox, got ${JSON.stringify(user.slice(0, 64))}`,
  )
}

const filesQuery = z.looseObject({ path: z.string().max(4096).optional(), username: z.string().max(256).optional() })

export interface EnvdHttpOptions {
  /** The most one upload request may carry, bytes (CODEBOX_MAX_UPLOAD_BYTES). */
  maxUploadBytes: number
  bodyIdleTimeoutMs: number
}

export async function envdHttpRoutes(scope: FastifyInstance, deps: E2bDeps, options: EnvdHttpOptions): Promise<void> {
  // Uploads are multipart or raw bytes: the route reads the body stream itself.
  scope.removeAllContentTypeParsers()
  scope.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined))
  scope.setErrorHandler((error, request, reply) => sendE2bError(request, reply, error))
  const open = { config: { auth: false } }

  scope.get('/health', open, async (_request, reply) => reply.code(204).send())

  scope.get('/files', open, async (request, reply) => {
    const query = parseWire(filesQuery, request.query ?? {}, 'query')
    checkUser(query.username)
    if (!query.path) throw validationError('path', 'is required: name the file to read')
    const sandbox = await deps.sandboxOf(request)
    const audit = auditor(deps, sandbox, 'downloadFile', request)
    try {
      const { size, mimeType, stream } = await sandbox.session.files.readStream(workspacePath(query.path))
      await audit('ok', { codeBytes: size })
      return reply.type(plainMimeType(mimeType)).header('content-length', String(size)).send(Readable.from(stream))
    } catch (e) {
      await audit(outcomeOf(e), { detail: (e as { code?: string }).code })
      throw e
    }
  })

  scope.post('/files', open, async (request, reply) => {
    const query = parseWire(filesQuery, request.query ?? {}, 'query')
    checkUser(query.username)
    const sandbox = await deps.sandboxOf(request)
    const type = (request.headers['content-type'] ?? '').toLowerCase()
    const audit = auditor(deps, sandbox, 'uploadFile', request)
    const abort = new AbortController()
    request.raw.on('close', () => {
      if (!request.raw.complete) abort.abort()
    })
    try {
      checkDeclaredLength(request.raw, options.maxUploadBytes, 'upload')
      const limits = { maxBytes: options.maxUploadBytes, idleTimeoutMs: options.bodyIdleTimeoutMs }
      const written: { name: string; type: 'file'; path: string }[] = []
      let bytes = 0
      const write = async (path: string, data: Uint8Array | AsyncIterable<Uint8Array>): Promise<void> => {
        const target = workspacePath(path)
        const { size } = await sandbox.session.files.write(target, data, { signal: abort.signal })
        bytes += size
        const shown = e2bPath(target)
        written.push({ name: shown.slice(shown.lastIndexOf('/') + 1), type: 'file', path: shown })
      }
      if (type.startsWith('application/octet-stream')) {
        if (!query.path) throw validationError('path', 'is required for an application/octet-stream upload')
        const encoding = (request.headers['content-encoding'] ?? 'identity').toLowerCase()
        if (encoding !== 'identity' && encoding !== 'gzip') throw validationError('content-encoding', `must be gzip or none, got ${JSON.stringify(encoding)}`)
        const body = limitedBody(request.raw, limits, 'upload')
        await write(query.path, encoding === 'gzip' ? gunzip(body, sandbox.session.limits.fileBytes) : body)
      } else if (type.startsWith('multipart/form-data')) {
        await writeParts(request, limitedBody(request.raw, limits, 'upload'), query.path, write)
      } else {
        throw validationError('content-type', 'must be multipart/form-data or application/octet-stream for an upload')
      }
      await audit('ok', { codeBytes: bytes })
      return reply.code(200).send(written)
    } catch (e) {
      await audit(outcomeOf(e), { detail: (e as { code?: string }).code })
      throw e
    }
  })
}

/**
 * Writes the files of a multipart body as they stream in (the SDK sends each as a part named
 * `file` whose filename is its path; `path` in the query names a lone file). Plain fields are skipped.
 */
async function writeParts(
  request: FastifyRequest,
  body: AsyncIterable<Buffer>,
  queryPath: string | undefined,
  write: (path: string, data: AsyncIterable<Uint8Array>) => Promise<void>,
): Promise<void> {
  let files = 0
  for await (const part of multipartParts(body, multipartBoundary(request.headers['content-type']))) {
    if (part.filename === undefined) continue
    if (++files > 1 && queryPath) throw validationError('path', 'names one file, but the body has several: send several files without a path in the query')
    const path = queryPath || part.filename
    if (!path) throw validationError('body', 'a file part has no filename and the query no path: name where to write it')
    await write(path, part.data)
  }
  if (files === 0) throw validationError('body', 'has no file part: send each file as a part with a filename')
}

/** A gzip body unpacked as it streams, cut at `maxBytes` of output (a small body may unpack to a great deal). */
async function* gunzip(source: AsyncIterable<Buffer>, maxBytes: number): AsyncGenerator<Buffer> {
  const input = Readable.from(source)
  const unzip = createGunzip()
  input.on('error', (e) => unzip.destroy(e))
  input.pipe(unzip)
  let total = 0
  try {
    for await (const chunk of unzip as AsyncIterable<Buffer>) {
      total += chunk.length
      if (total > maxBytes)
        throw new CodeboxError('LimitExceeded', `the unpacked upload is over the ${maxBytes}-byte file limit`, { details: { limit: maxBytes } })
      yield chunk
    }
  } catch (e) {
    if (e instanceof CodeboxError) throw e
    throw validationError('body', `is not valid gzip (Content-Encoding: gzip): ${e instanceof Error ? e.message : String(e)}`)
  } finally {
    input.destroy()
    unzip.destroy()
  }
}

/** The sandbox named the type: only a plain `type/subtype` goes into the header. */
function plainMimeType(mimeType: string): string {
  return /^[\w.+-]{1,100}\/[\w.+-]{1,100}$/.test(mimeType) ? mimeType : 'application/octet-stream'
}

/** Records a file transfer in the audit log when it ends. */
function auditor(deps: E2bDeps, sandbox: E2bSandbox, action: string, request: FastifyRequest) {
  const started = performance.now()
  return (outcome: 'ok' | 'rejected' | 'failed', extra: Record<string, unknown> = {}): Promise<void> =>
    deps.sessions.audit(sandbox.caller, {
      action,
      sessionId: sandbox.sessionId,
      outcome,
      durationMs: performance.now() - started,
      requestId: request.id,
      ...extra,
    })
}

function outcomeOf(e: unknown): 'rejected' | 'failed' {
  const status = (e as { status?: number }).status
  return status !== undefined && status < 500 ? 'rejected' : 'failed'
}
