/**
 * One invocation of a deployed runtime, whatever door it came through (AWS's InvokeAgentRuntime,
 * the native POST /v1/runtimes/{id}/invocations, and the other paths of a hosted agent): the
 * runtime resolved for the caller's tenant, the runtime session id defaulted, the request passed to
 * the port and path the runtime's protocol serves it on (services/runtime-protocols.ts) of the
 * runtime session's agent (RuntimeSessions.invoke launches it on first use), metrics and the
 * audit entry, and an agent's 5xx turned into its failure with what it printed. The doors only map
 * their wire forms onto this and stream the answer back.
 */
import { randomUUID } from 'node:crypto'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { CodeboxError } from '@codebox/core'
import { readBody } from './runtime-http.ts'
import { agentTarget, mcpSessionIdOf, protocolHeaders, protocolReplyHeaders, type HostedRoute } from './runtime-protocols.ts'
import { agentFailure, type HostedRuntimes, type RuntimeSessions } from './runtime-sessions.ts'
import type { Caller } from './sessions.ts'

/** The runtime contract's session header (AWS's name), sent to the agent and back to the caller. */
export const RUNTIME_SESSION_HEADER = 'x-amzn-bedrock-agentcore-runtime-session-id'
/** The runtime contract's user header. */
export const RUNTIME_USER_HEADER = 'x-amzn-bedrock-agentcore-runtime-user-id'
/** The caller's own headers with this prefix reach the agent too (AWS's custom headers). */
const customHeaderPrefix = 'x-amzn-bedrock-agentcore-runtime-custom-'

/** What RuntimeSessions.invoke takes for the agent: path, headers, body, signal, and whatever else it learns to take. */
export type AgentRequest = Parameters<RuntimeSessions['invoke']>[1]

export interface HostedInvocation {
  caller: Caller
  /** The runtime's id or name (an ARN's last part). */
  runtime: string
  /** The endpoint or version (default DEFAULT). */
  qualifier?: string
  /** The runtime session; a new one (AWS's form, 33+ characters) when absent. */
  runtimeSessionId?: string
  /** The caller's request headers: the runtime contract's and the custom ones are forwarded (forwardedHeaders). */
  callerHeaders: IncomingHttpHeaders
  /** The user id to forward (`X-Amzn-Bedrock-AgentCore-Runtime-User-Id`), when the door read one. */
  userId?: string
  /**
   * The request to the agent, passed through to RuntimeSessions.invoke; `path` and `port` default
   * to the route's under the runtime's protocol (POST /invocations on 8080 for HTTP), `headers` are
   * added to the forwarded ones.
   */
  request: Omit<AgentRequest, 'path' | 'headers' | 'qualifier'> & { path?: string; headers?: Record<string, string> }
  /** The request id: forwarded to the agent and in the audit entry. */
  requestId: string
  /** The audit action. Default `invokeAgentRuntime` (`getAgentCard` for the agent card). */
  action?: string
  /** Which of the agent's doors: its invocations (default) or A2A's agent card. */
  route?: Exclude<HostedRoute, 'ws'>
}

export interface HostedInvocationResult {
  /** The agent's response, its head arrived; the door streams the body on (its end frees the invocation). */
  response: IncomingMessage
  runtimeId: string
  runtimeSessionId: string
  /** Headers for the caller's answer besides the agent's (MCP's session). */
  headers: Record<string, string>
}

/** A new runtime session id: 45 characters, within AWS's 33-256. */
export const newRuntimeSessionId = (): string => `${randomUUID()}-${randomUUID().slice(0, 8)}`

/** Request headers a hosted agent gets: the runtime contract's, and the caller's custom ones. */
export function forwardedHeaders(headers: IncomingHttpHeaders, c: { runtimeSessionId: string; requestId: string; userId?: string }): Record<string, string> {
  const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v)
  const out: Record<string, string> = {
    'content-type': (first(headers['content-type']) ?? 'application/json').slice(0, 1024),
    accept: (first(headers.accept) ?? '*/*').slice(0, 1024),
    [RUNTIME_SESSION_HEADER]: c.runtimeSessionId,
    'x-amzn-bedrock-agentcore-runtime-request-id': c.requestId,
  }
  if (c.userId) out[RUNTIME_USER_HEADER] = c.userId
  for (const [k, v] of Object.entries(headers)) {
    if (k.startsWith(customHeaderPrefix) && typeof v === 'string') out[k] = v.slice(0, 4096)
  }
  return out
}

/**
 * Invokes a deployed runtime: resolves the response once the agent's head arrived. Throws the
 * registry's NotFound for an unknown runtime or qualifier, and the agent's own failures (it never
 * became healthy, crashed, did not answer, answered 5xx) as SandboxFailure or Timeout with
 * `details.aws = 'RuntimeClientError'` and the end of what it printed.
 */
export async function invokeHostedRuntime(hosted: HostedRuntimes, inv: HostedInvocation): Promise<HostedInvocationResult> {
  const { caller } = inv
  const { runtime, version } = await hosted.runtimes.resolve(caller, inv.runtime, inv.qualifier)
  // MCP clients carry their session in Mcp-Session-Id: it names the runtime session when nothing else does.
  const mcpSessionId = version.settings.protocol === 'MCP' ? mcpSessionIdOf(inv.callerHeaders) : undefined
  const runtimeSessionId = inv.runtimeSessionId ?? mcpSessionId ?? newRuntimeSessionId()
  const key = { tenant: caller.tenant, runtimeId: runtime.runtimeId, runtimeSessionId }
  // A running session keeps its version, and so its protocol.
  const protocol = hosted.sessions.find(key)?.protocol ?? version.settings.protocol
  const route = inv.route ?? 'invocations'
  const target = agentTarget(protocol, route, inv.request.method ?? 'POST', runtime.runtimeId)
  const started = performance.now()
  const count = (outcome: 'ok' | 'agent-error' | 'rejected', detail?: string): void => {
    hosted.metrics.runtimeInvocations.inc({ runtime: runtime.runtimeId, outcome })
    void hosted
      .audit(caller, {
        action: inv.action ?? (route === 'agent-card' ? 'getAgentCard' : 'invokeAgentRuntime'),
        outcome: outcome === 'ok' ? 'ok' : outcome === 'rejected' ? 'rejected' : 'error',
        durationMs: performance.now() - started,
        detail: `${runtime.runtimeId} ${runtimeSessionId}${detail ? ` ${detail}` : ''}`.slice(0, 1000),
        requestId: inv.requestId,
      })
      .catch(() => {})
  }
  const { path, headers, ...rest } = inv.request
  const forwarded = forwardedHeaders(inv.callerHeaders, { runtimeSessionId, requestId: inv.requestId, ...(inv.userId ? { userId: inv.userId } : {}) })
  if ((rest.method ?? 'POST') !== 'POST') delete forwarded['content-type']
  let invoked: Awaited<ReturnType<RuntimeSessions['invoke']>>
  try {
    invoked = await hosted.sessions.invoke(key, {
      port: target.port,
      ...rest,
      path: path ?? target.path,
      headers: { ...forwarded, ...protocolHeaders(protocol, inv.callerHeaders, runtimeSessionId), ...headers },
      ...(inv.qualifier ? { qualifier: inv.qualifier } : {}),
    })
  } catch (e) {
    count(e instanceof CodeboxError && e.details.aws === 'RuntimeClientError' ? 'agent-error' : 'rejected', e instanceof CodeboxError ? e.code : 'Internal')
    throw e
  }
  const { response } = invoked
  hosted.metrics.runtimeInvokeDuration.observe({ runtime: runtime.runtimeId }, (performance.now() - started) / 1000)
  const status = response.statusCode ?? 502
  count(status >= 500 ? 'agent-error' : 'ok', String(status))
  if (status >= 500) {
    const text = await readBody(response, 64 * 1024).then(
      (b) => b.toString('utf8'),
      () => '',
    )
    const tail = ((await hosted.sessions.logTail({ tenant: caller.tenant, runtimeId: runtime.runtimeId, runtimeSessionId })) ?? '').trim()
    throw agentFailure(`the agent answered ${status}: ${text.slice(0, 2000)}${tail ? `; its output ends with:\n${tail.slice(-2000)}` : ''}`)
  }
  return { response, runtimeId: runtime.runtimeId, runtimeSessionId, headers: protocolReplyHeaders(protocol, response, runtimeSessionId) }
}
