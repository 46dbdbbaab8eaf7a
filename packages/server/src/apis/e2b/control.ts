/**
 * E2B's control plane (`X-API-Key`): create, connect, get, list, set timeout and kill sandboxes,
 * each a codebox session of the caller's tenant, through the SessionService (same quotas, audit,
 * limits). Templates map onto interpreters: E2B's defaults (`base`, `code-interpreter-v1`) onto
 * the built-in one, any other name onto the tenant's interpreter with that id. The sandbox's
 * timeout is its session's lifetime end (`SessionService.setDeadline`). Field names follow the
 * e2b SDK's OpenAPI schema (`Sandbox`, `SandboxDetail`, `ListedSandbox`, `NewSandboxV2`).
 */
import { CodeboxError, parseWire, validationError } from '@codebox/core'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { z } from 'zod'
import type { Caller, SessionService } from '../../services/sessions.ts'
import { builtInInterpreterId, type SessionRecord } from '../../store/index.ts'
import { header, type E2bAuth } from './auth.ts'
import { checkSandboxEnvs } from './envs.ts'
import { sendE2bError } from './errors.ts'

/**
 * The envd version codebox advertises. The SDKs gate features on it: ≥ 0.5.2 lets them close a
 * process's stdin, ≥ 0.5.7 upload octet-stream (and gzip) bodies, both served here; file
 * metadata (0.6.2), entries in watch events (0.6.3) and network-mount watches (0.6.4) are not,
 * so the SDK refuses those itself with its own clear message.
 */
export const envdVersion = '0.5.7'

/** E2B's own default templates: both start the built-in interpreter. */
export const defaultTemplates: readonly string[] = ['base', 'code-interpreter-v1', 'code-interpreter']

const seconds = z.int().min(0).max(2_147_483_647)
const metadataSchema = z.record(z.string().min(1).max(128), z.string().max(1024)).refine((m) => Object.keys(m).length <= 64, 'has more than 64 entries')
const newSandboxSchema = z.looseObject({
  templateID: z.string().min(1).max(200),
  timeout: seconds.optional(),
  metadata: metadataSchema.nullish(),
  envVars: z.record(z.string(), z.string()).nullish(),
  autoPause: z.boolean().nullish(),
  autoResume: z.looseObject({ enabled: z.boolean().optional() }).nullish(),
  mcp: z.record(z.string(), z.unknown()).nullish(),
  volumeMounts: z.array(z.unknown()).nullish(),
})
const timeoutSchema = z.looseObject({ timeout: seconds })
const connectSchema = z.looseObject({ timeout: seconds.nullish() })
const idParams = z.object({ sandboxID: z.string().min(1).max(100) })
const listQuerySchema = z.looseObject({
  limit: z.coerce.number().int().min(1).max(100).default(100),
  nextToken: z.string().max(300).optional(),
  metadata: z.string().max(16_384).optional(),
  state: z.union([z.string(), z.array(z.string())]).optional(),
  order: z.enum(['asc', 'desc']).default('desc'),
  startedAfter: z.iso.datetime({ offset: true }).optional(),
  template: z.string().max(200).optional(),
})

export interface ControlOptions {
  sessions: SessionService
  auth: E2bAuth
}

export function controlRoutes(scope: FastifyInstance, options: ControlOptions): void {
  const { sessions, auth } = options
  scope.setErrorHandler((error, request, reply) => sendE2bError(request, reply, error))
  const open = { config: { auth: false } }
  const view = new SandboxView(auth)

  const create = (defaultTimeout: number) => async (request: FastifyRequest, reply: FastifyReply) => {
    const body = parseWire(newSandboxSchema, request.body ?? {}, 'body')
    const caller = await auth.caller(request.headers)
    refuseUnsupported(body)
    const envs = auth.envs.seal(caller.tenant, checkSandboxEnvs(body.envVars ?? {}))
    const interpreterId = defaultTemplates.includes(body.templateID) ? builtInInterpreterId : body.templateID
    const e2b = { template: body.templateID, metadata: body.metadata ?? {}, ...(envs ? { envs } : {}) }
    const { info } = await sessions.start(caller, { interpreterId, e2b }, { requestId: request.id }).catch((e: unknown) => {
      if (e instanceof CodeboxError && e.code === 'NotFound')
        throw new CodeboxError('NotFound', `no template ${JSON.stringify(body.templateID)}: use base, code-interpreter-v1, or the id of a codebox interpreter`)
      throw e
    })
    try {
      await sessions.setDeadline(caller, info.sessionId, endIn(body.timeout ?? defaultTimeout), { requestId: request.id })
    } catch (e) {
      await sessions.stop(caller, info.sessionId, { requestId: request.id }).catch(() => undefined)
      throw e
    }
    return reply.code(201).send(view.sandbox(await sessions.recordOf(caller, info.sessionId), request))
  }
  scope.post('/v2/sandboxes', open, create(300))
  scope.post('/sandboxes', open, create(15))

  const connect = async (request: FastifyRequest, reply: FastifyReply) => {
    const { sandboxID } = parseWire(idParams, request.params, 'path')
    const body = parseWire(connectSchema, request.body ?? {}, 'body')
    const caller = await auth.caller(request.headers)
    let record = await running(sessions, caller, sandboxID)
    // Connecting only ever extends the timeout, as in E2B.
    if (typeof body.timeout === 'number' && endIn(body.timeout).getTime() > endOf(record).getTime()) {
      await sessions.setDeadline(caller, sandboxID, endIn(body.timeout), { requestId: request.id })
      record = await running(sessions, caller, sandboxID)
    }
    return reply.code(200).send(view.sandbox(record, request))
  }
  scope.post('/v2/sandboxes/:sandboxID/connect', open, connect)
  scope.post('/sandboxes/:sandboxID/connect', open, connect)

  scope.get('/sandboxes/:sandboxID', open, async (request) => {
    const { sandboxID } = parseWire(idParams, request.params, 'path')
    const caller = await auth.caller(request.headers)
    return view.detail(await running(sessions, caller, sandboxID), request)
  })

  scope.delete('/sandboxes/:sandboxID', open, async (request, reply) => {
    const { sandboxID } = parseWire(idParams, request.params, 'path')
    const caller = await auth.caller(request.headers)
    await running(sessions, caller, sandboxID)
    await sessions.stop(caller, sandboxID, { requestId: request.id })
    return reply.code(204).send()
  })

  scope.post('/sandboxes/:sandboxID/timeout', open, async (request, reply) => {
    const { sandboxID } = parseWire(idParams, request.params, 'path')
    const body = parseWire(timeoutSchema, request.body ?? {}, 'body')
    const caller = await auth.caller(request.headers)
    await running(sessions, caller, sandboxID)
    await sessions.setDeadline(caller, sandboxID, endIn(body.timeout), { requestId: request.id })
    return reply.code(204).send()
  })

  scope.get('/v2/sandboxes', open, async (request, reply) => {
    const query = parseWire(listQuerySchema, request.query ?? {}, 'query')
    const caller = await auth.caller(request.headers)
    const page = listPage(await sessions.activeRecords(caller), query)
    if (page.nextToken) void reply.header('x-next-token', page.nextToken)
    return page.items.map((r) => view.listed(r))
  })
  scope.get('/sandboxes', open, async (request) => {
    const query = parseWire(listQuerySchema, request.query ?? {}, 'query')
    const caller = await auth.caller(request.headers)
    return listPage(await sessions.activeRecords(caller), { ...query, limit: 1000 }).items.map((r) => view.listed(r))
  })

  // What E2B has and codebox does not: a clear answer instead of a 404 the SDK would read as "sandbox not found".
  const unsupported: [string, string][] = [
    ['/sandboxes/:sandboxID/pause', 'codebox does not pause sandboxes: a sandbox runs until killed or timed out'],
    ['/sandboxes/:sandboxID/resume', 'codebox does not pause sandboxes, so there is nothing to resume'],
    ['/sandboxes/:sandboxID/snapshots', 'codebox does not snapshot sandboxes'],
    ['/sandboxes/:sandboxID/fork', 'codebox does not fork sandboxes'],
    ['/sandboxes/:sandboxID/metrics', 'codebox has no per-sandbox metrics over the E2B API; see its /metrics endpoint'],
    ['/sandboxes/:sandboxID/network', 'a codebox sandbox’s network is its interpreter’s; it does not change while it runs'],
    ['/sandboxes/:sandboxID/refreshes', 'use setTimeout (POST /sandboxes/{id}/timeout) to move a sandbox’s end'],
    ['/sandboxes/:sandboxID/logs', 'codebox keeps no sandbox logs over the E2B API'],
    ['/v2/sandboxes/:sandboxID/logs', 'codebox keeps no sandbox logs over the E2B API'],
  ]
  for (const [url, why] of unsupported) {
    scope.route({
      method: ['GET', 'POST', 'PUT', 'DELETE'],
      url,
      ...open,
      handler: async (request) => {
        await auth.caller(request.headers)
        throw validationError('path', `${why} (see docs/e2b.md)`)
      },
    })
  }
}

/** The caller's sandbox, READY: NotFound otherwise (E2B has no ended sandboxes to show). */
async function running(sessions: SessionService, caller: Caller, sandboxId: string): Promise<SessionRecord> {
  const record = await sessions.recordOf(caller, sandboxId)
  if (record.status !== 'READY' || record.runtimeId !== undefined) throw new CodeboxError('NotFound', `no sandbox ${JSON.stringify(sandboxId)}: it has ended`)
  return record
}

/** What codebox cannot do of a create request: a ValidationError naming the field, never silently dropped. */
function refuseUnsupported(body: z.infer<typeof newSandboxSchema>): void {
  if (body.autoPause === true) throw validationError('autoPause', 'codebox does not pause sandboxes: on timeout a sandbox is killed')
  if (body.autoResume?.enabled === true) throw validationError('autoResume', 'codebox does not pause sandboxes, so it cannot resume them')
  if (body.mcp && Object.keys(body.mcp).length > 0) throw validationError('mcp', 'codebox sandboxes have no MCP gateway; codebox serves MCP itself at /mcp')
  if (body.volumeMounts && body.volumeMounts.length > 0) throw validationError('volumeMounts', 'codebox sandboxes have no volumes; use the files API')
}

const endIn = (timeoutSeconds: number): Date => new Date(Date.now() + timeoutSeconds * 1000)
const endOf = (r: SessionRecord): Date => new Date(Date.parse(r.createdAt) + r.limits.maxLifetimeMs)

/** One page of the E2B list: filtered by state, metadata, template and start, ordered by start, cut after the cursor. */
function listPage(records: SessionRecord[], query: z.infer<typeof listQuerySchema>): { items: SessionRecord[]; nextToken?: string } {
  const states = (Array.isArray(query.state) ? query.state : (query.state ?? 'running').split(',')).map((s) => s.trim())
  for (const s of states) if (s !== 'running' && s !== 'paused') throw validationError('query.state', `must be running or paused, got ${JSON.stringify(s)}`)
  const wanted = parseMetadataQuery(query.metadata)
  const after = query.startedAfter === undefined ? undefined : Date.parse(query.startedAfter)
  const key = (r: SessionRecord): string => `${r.createdAt}\0${r.sessionId}`
  const sign = query.order === 'asc' ? 1 : -1
  // Every codebox sandbox runs: asking for paused ones only finds none.
  if (!states.includes('running')) return { items: [] }
  const matching = records
    .filter((r) => Object.entries(wanted).every(([k, v]) => r.e2b?.metadata[k] === v))
    .filter((r) => query.template === undefined || templateOf(r) === query.template)
    .filter((r) => after === undefined || Date.parse(r.createdAt) > after)
    .sort((a, b) => sign * (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0))
  let start = 0
  if (query.nextToken !== undefined) {
    let cursor: string
    try {
      cursor = Buffer.from(query.nextToken, 'base64url').toString('utf8')
    } catch {
      throw validationError('query.nextToken', 'is not a token this server gave')
    }
    start = matching.findIndex((r) => sign * (key(r) < cursor ? -1 : key(r) > cursor ? 1 : 0) > 0)
    if (start < 0) start = matching.length
  }
  const items = matching.slice(start, start + query.limit)
  const last = items.at(-1)
  return { items, ...(last && start + query.limit < matching.length ? { nextToken: Buffer.from(key(last)).toString('base64url') } : {}) }
}

/** The `metadata` list filter: `k=v&k2=v2`, whose keys and values the SDK percent-encoded once more. */
function parseMetadataQuery(text: string | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  if (!text) return out
  try {
    for (const [k, v] of new URLSearchParams(text)) out[decodeURIComponent(k)] = decodeURIComponent(v)
  } catch {
    throw validationError('query.metadata', 'must be key=value pairs joined by &, percent-encoded')
  }
  return out
}

const templateOf = (r: SessionRecord): string => r.e2b?.template ?? r.interpreterId

/** A session as E2B's schemas show a sandbox. */
class SandboxView {
  readonly #auth: E2bAuth

  constructor(auth: E2bAuth) {
    this.#auth = auth
  }

  /** `Sandbox` (create, connect): with the access token and codebox's own domain, so the SDK never builds a URL of E2B's cloud from it. */
  sandbox(r: SessionRecord, request: FastifyRequest): Record<string, unknown> {
    const token = this.#auth.accessToken(r.tenant, r.sessionId)
    return {
      sandboxID: r.sessionId,
      templateID: templateOf(r),
      clientID: 'codebox',
      envdVersion,
      envdAccessToken: token,
      trafficAccessToken: token,
      domain: header(request.headers, 'host') ?? null,
    }
  }

  /** `SandboxDetail` (getInfo). */
  detail(r: SessionRecord, request: FastifyRequest): Record<string, unknown> {
    return { ...this.listed(r), domain: header(request.headers, 'host') ?? null, envdAccessToken: this.#auth.accessToken(r.tenant, r.sessionId) }
  }

  /** `ListedSandbox` (list). */
  listed(r: SessionRecord): Record<string, unknown> {
    return {
      sandboxID: r.sessionId,
      templateID: templateOf(r),
      clientID: 'codebox',
      startedAt: r.createdAt,
      endAt: endOf(r).toISOString(),
      state: 'running',
      cpuCount: Math.max(1, Math.round(r.limits.cpuCores)),
      memoryMB: Math.round(r.limits.memoryBytes / 2 ** 20),
      diskSizeMB: Math.round(r.limits.workspaceBytes / 2 ** 20),
      envdVersion,
      metadata: r.e2b?.metadata ?? {},
      volumeMounts: [],
    }
  }
}
