/**
 * A hosted agent's calls to codebox's own API, through its sandbox's gateway (seed 001: the agent
 * runs its code in codebox's code interpreter). `/agentcore/...` is the AgentCore API (what
 * `AWS_ENDPOINT_URL_BEDROCK_AGENTCORE` points the AWS SDKs at) and `/codebox/...` the native API
 * (`CODEBOX_URL`). The request never leaves the host: it is handed to this server's router with its
 * caller already known, the tenant of the runtime the sandbox runs, with no key or token in the
 * sandbox (whatever credentials the agent sent are ignored). The agent is held to the code
 * interpreter: its sessions, their tools and files, and reading interpreters; and it sees only the
 * sessions it started itself (`Caller.ownSessionsOnly`), never its tenant's others.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { FastifyInstance } from 'fastify'
import type { GatewayIdentity } from '@codebox/sandbox'
import type { LocalApi, LocalApiHandler } from '../services/gateway.ts'
import type { Caller } from '../services/sessions.ts'

const callers = new WeakMap<IncomingMessage, Caller>()

/** The caller of a request a hosted agent made through its gateway; undefined for every other request. */
export function agentCaller(raw: IncomingMessage): Caller | undefined {
  return callers.get(raw)
}

/** What a hosted agent may call: method and path (without the query) of each API. */
const allowed: Record<LocalApi, [RegExp, RegExp][]> = {
  agentcore: [
    // The data plane: sessions and their tools.
    [/^(GET|PUT|POST)$/, /^\/code-interpreters\/[^/]+\/(sessions\/(start|get|list|stop)|tools\/invoke)$/],
    // Reading interpreters (GetCodeInterpreter, ListCodeInterpreters); not creating or deleting them.
    [/^GET$/, /^\/code-interpreters\/[^/]+$/],
    [/^POST$/, /^\/code-interpreters\/?$/],
  ],
  codebox: [
    [/^(GET|POST|PUT|DELETE)$/, /^\/v1\/sessions(\/.*)?$/],
    [/^POST$/, /^\/v1\/invoke$/],
    [/^GET$/, /^\/v1\/interpreters(\/[^/]+)?$/],
  ],
}

export interface AgentApiOptions {
  /** The tenant and runtime of a hosted agent's live session; undefined for any other session. */
  hostedOwner: (sessionId: string) => Promise<{ tenant: string; runtimeId: string } | undefined>
}

/** The gateway's handler for `/agentcore` and `/codebox`: this server's own routes, as the agent's tenant. */
export function agentApiHandler(app: FastifyInstance, options: AgentApiOptions): LocalApiHandler {
  return async (api: LocalApi, req: IncomingMessage, res: ServerResponse, identity: GatewayIdentity) => {
    const owner = identity.sessionId ? await options.hostedOwner(identity.sessionId) : undefined
    if (!owner) return refuse(api, res, 403, "codebox's own API is reached through the gateway only from a hosted agent's sandbox")
    if (req.httpVersionMajor !== 1) return refuse(api, res, 505, "codebox's own API is served over HTTP/1.1 through the gateway")
    const method = req.method ?? 'GET'
    const path = (req.url ?? '/').split('?')[0]!
    if (!allowed[api].some(([m, p]) => m.test(method) && p.test(path))) {
      return refuse(
        api,
        res,
        403,
        `a hosted agent may use codebox's code interpreter only (sessions, their tools and files, reading interpreters): ${method} ${path.slice(0, 200)} is not part of it`,
      )
    }
    callers.set(req, { tenant: owner.tenant, keyId: `agent:${identity.sessionId!}`, ownSessionsOnly: true })
    app.routing(req, res)
  }
}

/** A refusal in the shape the API's clients read: AWS's for `/agentcore`, codebox's for `/codebox`. */
function refuse(api: LocalApi, res: ServerResponse, status: number, message: string): void {
  const text = `codebox gateway: ${message}`
  const aws = api === 'agentcore'
  const body = JSON.stringify(aws ? { message: text } : { error: { code: status === 403 ? 'Forbidden' : 'ValidationError', message: text, details: {} } })
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...(aws ? { 'x-amzn-errortype': status === 403 ? 'AccessDeniedException' : 'ValidationException' } : {}),
  })
  res.end(body)
}
