/**
 * The AgentCore-compatible API under `/code-interpreters` (and, with the agent, `/runtimes`): a
 * Fastify scope per prefix with AWS's body handling (the raw body is hashed for SigV4), SigV4
 * authentication, AWS error shapes, and the data-plane, control-plane and runtime routes. Tenancy follows the native API: an open loopback
 * server (no key ever created) serves everyone as the `default` tenant; otherwise every request
 * must be signed with an access key from `codebox keys create --aws`.
 */
import { createHash } from 'node:crypto'
import { CodeboxError } from '@codebox/core'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { agentCaller } from '../http/agent-api.ts'
import { OPEN_TENANT } from '../http/auth.ts'
import { parseJsonBody, readBody, type BodyLimits } from '../http/body.ts'
import type { AgentDoor } from '../services/agent-door.ts'
import type { RuntimeService } from '../services/runtimes.ts'
import type { HostedRuntimes } from '../services/runtime-sessions.ts'
import type { SessionService } from '../services/sessions.ts'
import type { StoreApi } from '../store/index.ts'
import { dataPlaneRoutes } from './data-plane.ts'
import { sendAwsError } from './errors.ts'
import { controlPlaneRoutes } from './interpreters.ts'
import { runtimeRoutes } from './runtime.ts'
import { runtimeControlRoutes } from './runtimes-control.ts'
import { verifyPresignedSigV4, verifySigV4 } from './sigv4.ts'

export interface AgentCoreOptions {
  store: StoreApi
  sessions: SessionService
  body: BodyLimits
  /** How long an invoke's response headers wait for its result (see data-plane.ts). */
  holdMs: number
  /** Whether the server listens on loopback only (an open server is allowed only then). */
  loopbackOnly: boolean
  /** The codebox agent; when given, InvokeAgentRuntime and StopRuntimeSession are served under `/runtimes`. */
  agent?: AgentDoor
  /** The runtime registry; when given, the runtime control plane (Get/List/DeleteAgentRuntime, ...) is served under `/runtimes`. */
  runtimes?: RuntimeService
  /** Hosted agents: InvokeAgentRuntime and StopRuntimeSession of deployed runtimes. */
  hosted?: HostedRuntimes
}

/** Whether a request URL is under one of the AgentCore prefixes (its errors take AWS's shape). */
export const isAwsPath = (url: string): boolean => /^\/(code-interpreters|runtimes)(\/|\?|$)/.test(url)

const emptySha256 = createHash('sha256').digest('hex')

export async function agentCoreRoutes(app: FastifyInstance, options: AgentCoreOptions): Promise<void> {
  const { store, sessions } = options
  // Whatever the content type (the SDKs send application/json), the body is read, hashed for SigV4 and parsed as JSON.
  await app.register(
    async (scope) => {
      awsScope(scope, options, (body) => parseJsonBody(body.toString('utf8')))
      dataPlaneRoutes(scope, store, sessions, options.holdMs)
      controlPlaneRoutes(scope, store, sessions)
    },
    { prefix: '/code-interpreters' },
  )
  // InvokeAgentRuntime's payload is opaque bytes of any content type: the route parses it itself.
  const { agent, runtimes } = options
  if (agent || runtimes) {
    await app.register(
      async (scope) => {
        awsScope(scope, options, (body) => body)
        if (agent) runtimeRoutes(scope, agent, options.hosted)
        if (runtimes) runtimeControlRoutes(scope, runtimes)
      },
      { prefix: '/runtimes' },
    )
  }
}

/**
 * What every AgentCore prefix shares: AWS's body handling (`parse` turns the raw bytes, already
 * hashed for SigV4, into `request.body`), the SigV4 and tenancy hooks, AWS error shapes.
 */
function awsScope(scope: FastifyInstance, options: AgentCoreOptions, parse: (body: Buffer) => unknown): void {
  const { store } = options
  scope.removeAllContentTypeParsers()
  scope.addContentTypeParser('*', async (request: FastifyRequest) => {
    const body = await readBody(request.raw, options.body)
    request.bodySha256 = createHash('sha256').update(body).digest('hex')
    return parse(body)
  })
  scope.decorateRequest('bodySha256', '')
  scope.decorateRequest('awsRegion', '')
  scope.addHook('onRequest', async (request, reply) => {
    void reply.header('x-amzn-requestid', request.id)
    // An unsigned request is refused before its body is read; a hosted agent's call through its gateway is not signed by anyone.
    if (!agentCaller(request.raw) && (await store.keys.anyCreated()) && !request.headers.authorization && !isPresigned(request)) {
      throw new CodeboxError(
        'Unauthorized',
        'Missing Authentication Token: the request is not signed; sign it with SigV4 using an access key from `codebox keys create --aws`',
      )
    }
  })
  scope.addHook('preHandler', async (request) => authenticate(request, store, options.loopbackOnly))
  scope.setErrorHandler((error, request, reply) => sendAwsError(request, reply, error))
  scope.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .header('x-amzn-errortype', 'UnknownOperationException')
      .type('application/json')
      .send({ message: `codebox does not implement ${request.method} ${request.url.split('?')[0]}; docs/agentcore.md lists the supported operations` }),
  )
}

async function authenticate(request: FastifyRequest, store: StoreApi, loopbackOnly: boolean): Promise<void> {
  const fromAgent = agentCaller(request.raw)
  if (fromAgent) {
    // The agent's SDK signed with placeholder credentials: its region is taken as it said, the signature ignored.
    request.caller = fromAgent
    request.awsRegion = /Credential=[^/]+\/\d{8}\/([a-z0-9-]{1,32})\//.exec(String(request.headers.authorization ?? ''))?.[1] ?? 'us-east-1'
    request.bodySha256 ||= emptySha256
    return
  }
  if (!request.bodySha256) {
    const declared = Number(request.headers['content-length'] ?? 0)
    if (declared > 0 || request.headers['transfer-encoding'] !== undefined) {
      throw new CodeboxError('ValidationError', 'the request body was not read: send it as application/json')
    }
    request.bodySha256 = emptySha256
  }
  if (!(await store.keys.anyCreated())) {
    if (!loopbackOnly) {
      throw new CodeboxError('Unauthorized', 'this server listens beyond loopback and has no keys; create one with `codebox keys create --aws --tenant <name>`')
    }
    request.caller = { tenant: OPEN_TENANT }
    const credential = String(request.headers.authorization ?? (request.query as Record<string, unknown> | undefined)?.['X-Amz-Credential'] ?? '')
    request.awsRegion = /(?:Credential=|^)[^/]+\/\d{8}\/([a-z0-9-]{1,32})\//.exec(credential)?.[1] ?? 'us-east-1'
    return
  }
  let tenant: string | undefined
  // A presigned URL (SigV4 in the query) is how AgentCore's WebSocket is opened by clients that cannot set headers.
  const verify = isPresigned(request) ? verifyPresignedSigV4 : verifySigV4
  const signed = await verify({ method: request.method, url: request.raw.url ?? '/', headers: request.headers, bodySha256: request.bodySha256 }, async (id) => {
    const key = await store.awsKeys.lookup(id)
    tenant = key?.record.tenant
    return key?.secretAccessKey
  })
  request.caller = { tenant: tenant!, keyId: signed.accessKeyId }
  request.awsRegion = signed.region
}

/** Whether the request carries SigV4 in its query (a presigned URL) rather than an Authorization header. */
function isPresigned(request: FastifyRequest): boolean {
  return !request.headers.authorization && /[?&]X-Amz-Signature=/i.test(request.raw.url ?? '')
}
