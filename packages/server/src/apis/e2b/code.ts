/**
 * E2B's code interpreter (the sandbox's port 49999, served under `/e2b/code`): `POST /execute`
 * answers NDJSON lines as `@e2b/code-interpreter` reads them (stdout and stderr as they come,
 * `result` per display, `error`, `number_of_executions`, `end_of_execution`), and `/contexts`
 * creates, lists, restarts and removes contexts. A context is a kernel of the session
 * (session.contexts); each language's default kernel is the context named after it. A client that
 * goes away interrupts its cell; the kernel keeps its state.
 */
import { randomUUID } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import { CodeboxError, validationError, type ExecutionEvent, type ToolResult } from '@codebox/core'
import type { CellEnd, Session } from '@codebox/sandbox'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { sendError, toCodeboxError } from '../../http/errors.ts'
import { firstOrHttpError, openStream } from '../../http/stream.ts'
import type { E2bDeps, E2bSandbox } from './deps.ts'
import { E2B_HOME, isShellName, languageOf, resultOf, toE2bPath, toSandboxPath, type CodeLanguage } from './code-results.ts'

/** The contexts every sandbox has: each language's default kernel, named after it (JavaScript and TypeScript share Node's). */
const defaultContexts: Record<string, CodeLanguage> = { python: 'python', javascript: 'javascript', typescript: 'typescript', bash: 'bash' }

interface ExecuteBody {
  code: string
  contextId?: string
  language?: unknown
  env?: Record<string, string>
}

/** Registers `/execute` and `/contexts` relative to the scope (the app mounts it at `/e2b/code`). */
export async function codeRoutes(scope: FastifyInstance, deps: E2bDeps): Promise<void> {
  scope.post('/execute', async (request, reply) => {
    const sandbox = await deps.sandboxOf(request)
    const body = executeBody(request.body)
    const target = await targetOf(sandbox.session, body)
    await execute(request, reply, deps, sandbox, body, target)
  })

  scope.post('/contexts', async (request) => {
    const { session } = await deps.sandboxOf(request)
    const b = objectBody(request.body ?? {})
    const language = languageOf(b.language)
    if (b.cwd !== undefined && b.cwd !== null && typeof b.cwd !== 'string') throw validationError('cwd', 'must be a path')
    const cwd = toSandboxPath(typeof b.cwd === 'string' && b.cwd !== '' ? b.cwd : E2B_HOME)
    const info = await session.contexts.create({ id: randomUUID(), language, cwd })
    return { id: info.id, language: info.language, cwd: toE2bPath(info.cwd) }
  })

  scope.get('/contexts', async (request) => {
    const { session } = await deps.sandboxOf(request)
    const created = await session.contexts.list()
    return [
      ...Object.entries(defaultContexts).map(([id, language]) => ({ id, language, cwd: E2B_HOME })),
      ...created.map((c) => ({ id: c.id, language: c.language, cwd: toE2bPath(c.cwd) })),
    ]
  })

  scope.post<{ Params: { id: string } }>('/contexts/:id/restart', async (request, reply) => {
    const { session } = await deps.sandboxOf(request)
    const id = request.params.id
    const language = defaultContexts[id]
    if (language === 'javascript' || language === 'typescript') await session.contexts.restart({ kernel: 'nodejs' })
    else if (language !== undefined) await session.contexts.restart({ kernel: language })
    else await session.contexts.restart({ context: id })
    return reply.code(204).send()
  })

  scope.delete<{ Params: { id: string } }>('/contexts/:id', async (request, reply) => {
    const { session } = await deps.sandboxOf(request)
    const id = request.params.id
    if (defaultContexts[id] !== undefined) {
      throw new CodeboxError('Conflict', `context ${id} is the sandbox's default ${id} context and cannot be removed; restart it to drop its state`)
    }
    await session.contexts.remove(id)
    return reply.code(204).send()
  })
}

/** Where a cell runs: its language, and the context it names unless it is a default one. */
interface Target {
  language: CodeLanguage
  context?: string
}

async function targetOf(session: Session, body: ExecuteBody): Promise<Target> {
  const asked = body.language === undefined || body.language === null ? undefined : languageOf(body.language)
  if (body.contextId === undefined) return { language: asked ?? 'python' }
  const fixed = defaultContexts[body.contextId]
  let target: Target
  if (fixed !== undefined) target = { language: fixed }
  else {
    const found = (await session.contexts.list()).find((c) => c.id === body.contextId)
    if (!found) throw new CodeboxError('NotFound', `no context ${body.contextId} in this sandbox; create it with POST /contexts`)
    target = { language: found.language, context: found.id }
  }
  if (asked !== undefined && asked !== target.language) {
    throw validationError('language', `context ${body.contextId} runs ${target.language}, not ${asked}; send one of context_id and language`)
  }
  return target
}

function objectBody(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw validationError('body', 'must be a JSON object')
  return body as Record<string, unknown>
}

function executeBody(raw: unknown): ExecuteBody {
  const b = objectBody(raw)
  if (typeof b.code !== 'string') throw validationError('code', 'must be a string')
  const body: ExecuteBody = { code: b.code, language: b.language }
  if (b.context_id !== undefined && b.context_id !== null) {
    if (typeof b.context_id !== 'string' || b.context_id === '') throw validationError('context_id', 'must be the id of a context')
    body.contextId = b.context_id
  }
  if (b.env_vars !== undefined && b.env_vars !== null) {
    if (typeof b.env_vars !== 'object' || Array.isArray(b.env_vars)) throw validationError('env_vars', 'must be an object of names to strings')
    for (const [k, v] of Object.entries(b.env_vars)) if (typeof v !== 'string') throw validationError(`env_vars.${k.slice(0, 64)}`, 'must be a string')
    body.env = b.env_vars as Record<string, string>
  }
  return body
}

/** Runs the cell and streams its NDJSON lines; an error before the first event is an HTTP error. */
async function execute(request: FastifyRequest, reply: FastifyReply, deps: E2bDeps, sandbox: E2bSandbox, body: ExecuteBody, target: Target): Promise<void> {
  const gone = new AbortController()
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) gone.abort()
  })
  const pending: Record<string, unknown>[] = []
  const onCellEnd = (end: CellEnd): void => {
    if (end.error) pending.push({ type: 'error', name: end.error.name, value: end.error.message, traceback: end.error.traceback })
    if (end.executionCount !== undefined) pending.push({ type: 'number_of_executions', execution_count: end.executionCount })
  }
  let withEnvs: ExecuteBody
  try {
    // The sandbox's own variables, under the cell's env_vars.
    const env = { ...(await sandbox.envs()), ...body.env }
    withEnvs = { ...body, ...(Object.keys(env).length > 0 ? { env } : {}) }
  } catch (e) {
    await sendError(request, reply, e)
    return
  }
  const events = cellEvents(deps, request, sandbox, { body: withEnvs, target, signal: gone.signal, onCellEnd })
  // Validation and a missing context fail at once: answer them as HTTP errors, with the status.
  const started = await firstOrHttpError(request, reply, events)
  if (!started) return
  const { res, write } = openNdjson(request, reply)
  try {
    let next = await started.first
    while (!next.done && !res.destroyed) {
      // The cell's error and count (onCellEnd) come just before its final result: after all its output.
      for (const p of pending.splice(0)) await write(p)
      const line = lineOf(next.value)
      if (line) await write(line)
      next = await events.next()
    }
    for (const p of pending.splice(0)) await write(p)
  } catch (e) {
    const err = toCodeboxError(e)
    if (err.status >= 500) request.log.error({ err: e }, 'e2b execute failed mid-stream')
    await write({ type: 'error', name: err.code, value: err.message, traceback: '' })
  } finally {
    await events.return(undefined as never).catch(() => {})
    if (!res.destroyed) await write({ type: 'end_of_execution' })
    res.end()
  }
}

/** Takes the response over from Fastify and sends the NDJSON headers at once; `write` waits while the client is slow. */
function openNdjson(request: FastifyRequest, reply: FastifyReply): { res: ServerResponse; write: (line: Record<string, unknown>) => Promise<void> } {
  const { res, write } = openStream(request, reply, { 'content-type': 'application/x-ndjson' })
  // Now, not with the first line: the SDK's request timeout runs until the headers come, its `timeoutMs` after.
  res.flushHeaders()
  return { res, write: (line) => write(`${JSON.stringify(line)}\n`) }
}

/**
 * A cell's events, through the session service (the tenant's rate, the audit log, metrics), from
 * its context's kernel (bash's is a persistent shell). Whitespace-only code runs nothing, as in a notebook.
 */
function cellEvents(
  deps: E2bDeps,
  request: FastifyRequest,
  sandbox: E2bSandbox,
  cell: { body: ExecuteBody; target: Target; signal: AbortSignal; onCellEnd: (end: CellEnd) => void },
): AsyncGenerator<ExecutionEvent, ToolResult> {
  const { body, target } = cell
  if (body.code.trim() === '') return nothing()
  if (target.language === 'bash') {
    for (const name of Object.keys(body.env ?? {})) {
      if (!isShellName(name)) throw validationError(`env_vars.${name.slice(0, 64)}`, 'is not a shell variable name (letters, digits and _, not first a digit)')
    }
  }
  const options = {
    code: body.code,
    language: target.language,
    ...(target.context !== undefined ? { context: target.context } : {}),
    ...(body.env ? { env: body.env } : {}),
    onCellEnd: cell.onCellEnd,
    charts: target.language === 'python',
  }
  return deps.sessions.executeCell(sandbox.caller, sandbox.sessionId, options, { signal: cell.signal, requestId: request.id })
}

async function* nothing(): AsyncGenerator<ExecutionEvent, ToolResult> {
  const result: ToolResult = { content: [], structuredContent: { stdout: '', stderr: '', exitCode: 0, executionTime: 0 }, isError: false }
  yield { type: 'result', result }
  return result
}

/** The NDJSON line of one codebox event; the final result has none (its parts went out already). */
function lineOf(e: ExecutionEvent): Record<string, unknown> | undefined {
  const timestamp = new Date().toISOString()
  switch (e.type) {
    case 'stdout':
    case 'stderr':
      return { type: e.type, text: e.text, timestamp }
    case 'display':
      return resultOf(e.data, e.executeResult === true)
    case 'result':
      return undefined
  }
}
