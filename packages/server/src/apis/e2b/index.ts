/**
 * The E2B front door: the E2B SDKs, with `E2B_API_URL` and `E2B_SANDBOX_URL` set to codebox's URL,
 * send everything here. Requests without `E2b-Sandbox-Id` are the control plane (control.ts, at
 * E2B's own paths). Sandbox traffic is told apart by `E2b-Sandbox-Port`: envd's (49983) is served
 * under the internal prefix `/e2b/envd` (envd-http.ts; Connect-RPC in envd-connect.ts), the code
 * interpreter's (49999) under `/e2b/code` (code.ts). `e2bRewriteUrl` (Fastify's rewriteUrl in
 * app.ts) does the mapping (older SDKs' envd `/files` without the headers goes by its access
 * token, which names the sandbox), and marks the request: the internal prefixes answer nothing that did
 * not come through it. Every sandbox request is checked here first, once (auth.ts); a sandbox that
 * is not there is a 502 as E2B's proxy answers it, which the SDKs read as "sandbox not running".
 */
import type { IncomingMessage } from 'node:http'
import { CodeboxError } from '@codebox/core'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Authenticator } from '../../http/auth.ts'
import type { SessionService } from '../../services/sessions.ts'
import type { StoreApi } from '../../store/index.ts'
import { E2bAuth, sandboxOfToken } from './auth.ts'
import { controlRoutes } from './control.ts'
import type { E2bDeps, E2bSandbox } from './deps.ts'
import { envdHttpRoutes } from './envd-http.ts'
import { sendE2bError } from './errors.ts'
import { codeRoutes } from './code.ts'
import { envdConnectRoutes } from './envd-connect.ts'

/** The sandbox ports codebox serves, as E2B numbers them, and the internal prefix of each. */
export const e2bPorts: Readonly<Record<string, string>> = Object.freeze({ '49983': '/e2b/envd', '49999': '/e2b/code' })
/** Where a request for any other port of a sandbox goes (answered with a clear 502). */
const otherPortPrefix = '/e2b/port'

const sandboxTraffic = Symbol('codebox.e2bSandboxTraffic')
type Marked = IncomingMessage & { [sandboxTraffic]?: true }

/**
 * Fastify's `rewriteUrl`: a request with `E2b-Sandbox-Id` goes to the internal prefix of its
 * `E2b-Sandbox-Port` (and is marked as sandbox traffic); any other request keeps its URL.
 */
export function e2bRewriteUrl(req: IncomingMessage): string {
  const url = req.url ?? '/'
  if (typeof req.headers['e2b-sandbox-id'] !== 'string') {
    if (!isHeaderlessEnvd(req, url)) return url
    ;(req as Marked)[sandboxTraffic] = true
    return `${e2bPorts['49983']}${url}`
  }
  const port = req.headers['e2b-sandbox-port']
  const prefix = (typeof port === 'string' ? e2bPorts[port] : undefined) ?? otherPortPrefix
  ;(req as Marked)[sandboxTraffic] = true
  return `${prefix}${url.startsWith('/') ? url : `/${url}`}`
}

/**
 * envd's HTTP API as e2b SDKs 2.7.0 to 2.14.0 send it: `/files` or `/health` without the sandbox
 * headers, with the sandbox's access token (which names the sandbox, auth.ts). codebox's own
 * routes never take `X-Access-Token`, so such a request is nothing else.
 */
function isHeaderlessEnvd(req: IncomingMessage, url: string): boolean {
  const token = req.headers['x-access-token']
  if (typeof token !== 'string' || sandboxOfToken(token) === '') return false
  const pathname = url.split('?')[0]
  return pathname === '/files' || pathname === '/health'
}

/** Whether a request is E2B sandbox traffic (rewritten by `e2bRewriteUrl`): it authenticates with the sandbox's access token, not codebox's Authorization. */
export function isE2bSandboxTraffic(req: IncomingMessage): boolean {
  return (req as Marked)[sandboxTraffic] === true
}

/** Whether a request is for E2B's control plane as its SDKs send it (`X-API-Key`): a route codebox lacks is then answered in E2B's error shape. */
export function isE2bControlRequest(req: IncomingMessage): boolean {
  return req.headers['x-api-key'] !== undefined && !isE2bSandboxTraffic(req)
}

export interface E2bOptions {
  store: StoreApi
  sessions: SessionService
  auth: Authenticator
  /** The most one upload may carry, bytes. */
  maxUploadBytes: number
  bodyIdleTimeoutMs: number
}

export async function e2bRoutes(app: FastifyInstance, options: E2bOptions): Promise<void> {
  const { sessions } = options
  const auth = new E2bAuth({ store: options.store, auth: options.auth, sessions })
  const resolved = new WeakMap<FastifyRequest, E2bSandbox>()
  const deps: E2bDeps = {
    sessions,
    sandboxOf: async (request) => resolved.get(request) ?? auth.sandbox(request),
  }

  /** Before any sandbox route: only rewritten traffic, and only for a sandbox the credentials reach. */
  const gate = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (!isE2bSandboxTraffic(request.raw)) {
      return sendE2bError(
        request,
        reply,
        new CodeboxError('NotFound', `no route ${request.method} ${request.url.split('?')[0]}; the API reference is at /docs`),
      )
    }
    try {
      resolved.set(request, await auth.sandbox(request))
      return undefined
    } catch (e) {
      // E2B's proxy answers 502 for a sandbox that is not running; the SDKs turn that into their "sandbox not found / timed out" errors.
      return sendE2bError(request, reply, e, e instanceof CodeboxError && e.code === 'NotFound' ? 502 : undefined)
    }
  }
  const sandboxScope = (name: string) => (scope: FastifyInstance) => {
    scope.addHook('onRequest', gate)
    scope.setErrorHandler((error, request, reply) => sendE2bError(request, reply, error))
    scope.setNotFoundHandler((request, reply) =>
      sendE2bError(request, reply, new CodeboxError('NotFound', `the sandbox's ${name} has no route ${request.method} ${routePath(request)}`)),
    )
  }

  await app.register(async (scope) => controlRoutes(scope, { sessions, auth }))
  await app.register(
    async (scope) => {
      sandboxScope('envd')(scope)
      await scope.register(async (s) => envdHttpRoutes(s, deps, { maxUploadBytes: options.maxUploadBytes, bodyIdleTimeoutMs: options.bodyIdleTimeoutMs }))
      // envd's Connect-RPC services (process.Process, filesystem.Filesystem).
      await scope.register(async (s) => envdConnectRoutes(s, deps))
    },
    { prefix: '/e2b/envd' },
  )
  await app.register(
    async (scope) => {
      sandboxScope('code interpreter')(scope)
      // The code interpreter (/execute, /contexts).
      await scope.register(async (s) => codeRoutes(s, deps))
    },
    { prefix: '/e2b/code' },
  )
  await app.register(
    async (scope) => {
      sandboxScope('port')(scope)
      scope.all('/*', { config: { auth: false } }, async (request, reply) => {
        const port = String(request.headers['e2b-sandbox-port'] ?? '(none)').slice(0, 16)
        const why = `codebox serves only envd (port 49983) and the code interpreter (port 49999) of an E2B sandbox, not port ${port}`
        return sendE2bError(request, reply, new CodeboxError('Unavailable', why), 502)
      })
    },
    { prefix: otherPortPrefix },
  )
}

/** The path a sandbox request was sent to (without the internal prefix). */
function routePath(request: FastifyRequest): string {
  return request.url.split('?')[0]!.replace(/^\/e2b\/(envd|code|port)/, '') || '/'
}
