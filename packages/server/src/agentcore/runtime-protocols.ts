/**
 * The protocols of a hosted agent beyond the runtime contract's `POST /invocations`, reached on
 * AWS's paths as AgentCore Runtime serves them, so AWS's clients work unchanged:
 *
 * - MCP (`--protocol MCP`): the agent's streamable HTTP server at `/mcp` on port 8000. Clients use
 *   `/runtimes/{arn}/invocations?qualifier=...` as the MCP URL: POST (JSON-RPC), GET and DELETE go
 *   to `/mcp`. The runtime session is the `X-Amzn-Bedrock-AgentCore-Runtime-Session-Id` header,
 *   else the client's `Mcp-Session-Id`, else a new one; the agent gets both headers, and an answer
 *   without `Mcp-Session-Id` gets the runtime session's, so the client stays in its session.
 * - A2A (`--protocol A2A`): the agent's JSON-RPC server at `/` on port 9000; POST
 *   `/runtimes/{arn}/invocations[/]` reaches `/`, GetAgentCard (`GET
 *   /runtimes/{arn}/invocations/.well-known/agent-card.json`) reaches `/.well-known/agent-card.json`.
 * - WebSocket (`--protocol HTTP`): `GET /runtimes/{arn}/ws` upgraded, authenticated like every AWS
 *   route (SigV4 header or presigned query), the session id a header or a query parameter, and
 *   piped byte for byte to the agent's `/ws` on 8080 after the agent's own 101 (its handshake is
 *   passed through); bounded by the runtime's idle timeout, and keeping its runtime session busy.
 *
 * Which port and path a request reaches is services/runtime-protocols.ts'; the invocation itself
 * services/runtime-invoke.ts', the forwarding RuntimeSessions' (services/runtime-sessions.ts).
 */
import type { Duplex } from 'node:stream'
import { CodeboxError } from '@codebox/core'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { readBody } from '../services/runtime-http.ts'
import { forwardedHeaders, newRuntimeSessionId } from '../services/runtime-invoke.ts'
import { agentTarget, type HostedRoute } from '../services/runtime-protocols.ts'
import type { HostedRuntimes } from '../services/runtime-sessions.ts'
import { awsValidation } from './errors.ts'
import { awsNotFound, codeboxAgentRuntime, invokeHosted, notFound, runtimeOf, sessionIdOf, userIdOf } from './runtime.ts'

const SESSION_HEADER = 'x-amzn-bedrock-agentcore-runtime-session-id'
const CUSTOM_PREFIX = 'x-amzn-bedrock-agentcore-runtime-custom-'

/** The routes of MCP's GET and DELETE, A2A's trailing-slash POST and agent card, and the WebSocket. */
export function hostedProtocolRoutes(app: FastifyInstance, hosted: HostedRuntimes | undefined): void {
  const forward = (method: 'GET' | 'POST' | 'DELETE', route: Exclude<HostedRoute, 'ws'>) => async (request: FastifyRequest, reply: FastifyReply) => {
    const name = runtimeOf(request)
    if (name === codeboxAgentRuntime)
      throw awsValidation(
        `${codeboxAgentRuntime} serves HTTP: ${route === 'agent-card' ? 'it has no agent card' : method === 'POST' ? 'invoke it at /runtimes/{arn}/invocations' : 'invoke it with POST'}`,
        'agentRuntimeArn',
      )
    const qualifier = qualifierOf(request)
    await invokeHosted(hosted, { caller: request.caller, name, qualifier, request, reply, method, route })
    return undefined
  }
  const config = { auth: false }
  // Open WebSockets are ended when the server closes: an upgraded socket would otherwise hold its shutdown.
  const sockets = new Set<Duplex>()
  app.addHook('preClose', async () => {
    for (const socket of sockets) socket.destroy()
  })
  app.route({ method: 'GET', url: '/:agentRuntimeArn/invocations', config, handler: forward('GET', 'invocations') })
  app.route({ method: 'DELETE', url: '/:agentRuntimeArn/invocations', config, handler: forward('DELETE', 'invocations') })
  app.route({ method: 'POST', url: '/:agentRuntimeArn/invocations/', config, handler: forward('POST', 'invocations') })
  app.route({ method: 'GET', url: '/:agentRuntimeArn/invocations/.well-known/agent-card.json', config, handler: forward('GET', 'agent-card') })
  app.route({
    method: 'GET',
    url: '/:agentRuntimeArn/ws',
    config,
    // The upgrade is answered here, before the WebSocket plugin's handler would accept it itself:
    // the agent's own 101 is what the client gets.
    preHandler: async (request, reply) => {
      if (String(request.headers.upgrade ?? '').toLowerCase() !== 'websocket') return
      await openWebSocket(hosted, request, sockets)
      reply.hijack()
    },
    handler: async () => {
      throw awsValidation('GET /runtimes/{arn}/ws opens a WebSocket: send it as an upgrade (Connection: Upgrade, Upgrade: websocket)', 'upgrade')
    },
  })
}

function qualifierOf(request: FastifyRequest): string | undefined {
  const q = (request.query as Record<string, unknown> | undefined)?.qualifier
  if (q === undefined) return undefined
  if (typeof q !== 'string' || q.length > 256) throw awsValidation('qualifier must be one string of at most 256 characters', 'qualifier')
  return q
}

/** Handshake headers passed to the agent as the client sent them. */
const HANDSHAKE_HEADERS = ['sec-websocket-key', 'sec-websocket-version', 'sec-websocket-protocol', 'sec-websocket-extensions', 'origin']

/**
 * The WebSocket of a hosted agent: the agent's runtime session (started when new) gets the
 * client's handshake at `/ws`; its 101 goes back as it is, then bytes flow both ways until either
 * side closes, the session ends, or nothing passed for the runtime's idle timeout. An agent that
 * does not switch protocols is a RuntimeClientError with what it answered.
 */
async function openWebSocket(hosted: HostedRuntimes | undefined, request: FastifyRequest, sockets: Set<Duplex>): Promise<void> {
  const name = runtimeOf(request)
  if (name === codeboxAgentRuntime) {
    throw awsValidation(`${codeboxAgentRuntime}'s WebSocket is codebox's own /ws (docs/api.md), not /runtimes/{arn}/ws`, 'agentRuntimeArn')
  }
  if (!hosted)
    throw notFound(`No agent runtime named ${JSON.stringify(name)}: this codebox server hosts one runtime, ${codeboxAgentRuntime} (the codebox agent)`)
  const caller = request.caller
  const qualifier = qualifierOf(request)
  const query = (request.query ?? {}) as Record<string, unknown>
  // A browser cannot set headers on a WebSocket: AWS takes the session id and custom headers from the query too.
  for (const [k, v] of Object.entries(query)) {
    const lower = k.toLowerCase()
    if ((lower === SESSION_HEADER || lower.startsWith(CUSTOM_PREFIX)) && typeof v === 'string' && request.headers[lower] === undefined)
      request.headers[lower] = v
  }
  const { runtime, version } = await hosted.runtimes.resolve(caller, name, qualifier).catch(awsNotFound)
  const runtimeSessionId = sessionIdOf(request, false) ?? newRuntimeSessionId()
  const key = { tenant: caller.tenant, runtimeId: runtime.runtimeId, runtimeSessionId }
  // A running session keeps its version, and so its protocol.
  const target = agentTarget(hosted.sessions.find(key)?.protocol ?? version.settings.protocol, 'ws', 'GET', runtime.runtimeId)
  const userId = userIdOf(request)
  const headers: Record<string, string> = {
    ...forwardedHeaders(request.headers, { runtimeSessionId, requestId: request.id, ...(userId ? { userId } : {}) }),
    connection: 'Upgrade',
    upgrade: 'websocket',
  }
  delete headers['content-type']
  for (const h of HANDSHAKE_HEADERS) {
    const v = request.headers[h]
    if (typeof v === 'string') headers[h] = v
  }
  const client = request.raw.socket
  const gone = new AbortController()
  const onGone = (): void => gone.abort()
  client.once('close', onGone)
  const started = performance.now()
  const audit = (outcome: 'ok' | 'error' | 'rejected', detail: string): void =>
    void hosted
      .audit(caller, {
        action: 'invokeAgentRuntimeWebSocket',
        outcome,
        durationMs: performance.now() - started,
        detail: `${runtime.runtimeId} ${runtimeSessionId} ${detail}`.slice(0, 1000),
        requestId: request.id,
      })
      .catch(() => {})
  let opened: Awaited<ReturnType<HostedRuntimes['sessions']['upgrade']>>
  try {
    opened = await hosted.sessions.upgrade(key, { path: target.path, port: target.port, headers, signal: gone.signal, ...(qualifier ? { qualifier } : {}) })
  } catch (e) {
    client.off('close', onGone)
    const agentError = e instanceof CodeboxError && e.details.aws === 'RuntimeClientError'
    hosted.metrics.runtimeInvocations.inc({ runtime: runtime.runtimeId, outcome: agentError ? 'agent-error' : 'rejected' })
    audit(agentError ? 'error' : 'rejected', e instanceof CodeboxError ? e.code : 'Internal')
    throw e
  }
  client.off('close', onGone)
  const { response, socket: agent, head, done } = opened
  if (!agent) {
    const text = await readBody(response, 4096).then(
      (b) => b.toString('utf8'),
      () => '',
    )
    done()
    hosted.metrics.runtimeInvocations.inc({ runtime: runtime.runtimeId, outcome: 'agent-error' })
    audit('error', `ws ${response.statusCode}`)
    throw new CodeboxError(
      'SandboxFailure',
      `the agent did not accept the WebSocket at /ws: it answered ${response.statusCode} ${text.slice(0, 1000)}`.trim(),
      {
        details: { aws: 'RuntimeClientError' },
      },
    )
  }
  hosted.metrics.runtimeInvocations.inc({ runtime: runtime.runtimeId, outcome: 'ok' })
  audit('ok', 'ws 101')
  // The agent's handshake, as it answered (Node's parser bounded it and refused any CR or LF in it).
  const raw = response.rawHeaders
  let lines = `HTTP/1.1 101 ${response.statusMessage || 'Switching Protocols'}\r\n`
  for (let i = 0; i + 1 < raw.length; i += 2) lines += `${raw[i]}: ${raw[i + 1]}\r\n`
  lines += `x-amzn-requestid: ${request.id}\r\n${SESSION_HEADER}: ${runtimeSessionId}\r\n\r\n`
  client.write(lines)
  if (head && head.length > 0) client.write(head)
  const clientHead = upgradeHead(request)
  if (clientHead.length > 0) agent.write(clientHead)
  sockets.add(client)
  pipeBounded(client, agent, version.settings.idleTimeoutSeconds * 1000, () => {
    sockets.delete(client)
    done()
  })
}

/** Bytes the client sent after its handshake (kept by the WebSocket plugin on the raw request). */
function upgradeHead(request: FastifyRequest): Buffer {
  const raw = request.raw as unknown as Record<symbol, unknown>
  const symbol = Object.getOwnPropertySymbols(raw).find((s) => s.description === 'ws-head')
  const head = symbol ? raw[symbol] : undefined
  return Buffer.isBuffer(head) ? head : Buffer.alloc(0)
}

/** Pipes both ways; either side closing, an error, or `idleMs` without a byte either way ends both, then `done` is called. */
export function pipeBounded(a: Duplex, b: Duplex, idleMs: number, done: () => void): void {
  let last = Date.now()
  const touch = (): void => {
    last = Date.now()
  }
  let ended = false
  const end = (): void => {
    if (ended) return
    ended = true
    clearInterval(timer)
    a.destroy()
    b.destroy()
    done()
  }
  const timer = setInterval(
    () => {
      if (Date.now() - last >= idleMs) end()
    },
    Math.max(250, Math.min(idleMs / 4, 30_000)),
  )
  timer.unref()
  a.on('data', touch)
  b.on('data', touch)
  a.pipe(b)
  b.pipe(a)
  for (const s of [a, b]) {
    s.once('close', end)
    s.once('error', end)
    s.once('end', () => (s === a ? b : a).end())
  }
}
