/**
 * What a hosted agent's protocol means for a request (AgentCore Runtime's service contract): the
 * port and path it reaches (HTTP: `/invocations` and `/ws` on 8080; MCP: `/mcp` on 8000; A2A: `/`
 * and `/.well-known/agent-card.json` on 9000), MCP's session header both ways, and a clear
 * ValidationError for what the protocol does not serve. Used by every door of hosted agents
 * (services/runtime-invoke.ts, agentcore/runtime-protocols.ts).
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { CodeboxError, type RuntimeProtocol } from '@codebox/core'
import { AGENT_PORTS } from './runtime-launcher.ts'

/** Which of a hosted agent's doors a request came through: its invocations, A2A's agent card, or the WebSocket. */
export type HostedRoute = 'invocations' | 'agent-card' | 'ws'

/** MCP's session header: it names the runtime session when no runtime session header does. */
export const MCP_SESSION_HEADER = 'mcp-session-id'

/** AWS's runtime session ids: 33-256 of these characters. */
const sessionIdPattern = /^[0-9a-zA-Z_.:-]{33,256}$/

const refused = (message: string): CodeboxError => new CodeboxError('ValidationError', message, { details: { field: 'agentRuntimeArn' } })

/** The agent's port and path for a route of a protocol; a route the protocol does not serve is a ValidationError saying which does. */
export function agentTarget(protocol: RuntimeProtocol, route: HostedRoute, method: string, runtimeId: string): { path: string; port: number } {
  const serves = `runtime ${runtimeId} serves ${protocol}`
  const port = AGENT_PORTS[protocol]
  if (route === 'ws') {
    if (protocol !== 'HTTP') throw refused(`${serves}: the WebSocket (/ws) is served by HTTP runtimes (deploy with --protocol HTTP)`)
    return { path: '/ws', port }
  }
  if (route === 'agent-card') {
    if (protocol !== 'A2A') throw refused(`${serves}: only A2A runtimes have an agent card (deploy with --protocol A2A)`)
    return { path: '/.well-known/agent-card.json', port }
  }
  if (protocol === 'MCP') return { path: '/mcp', port }
  if (method !== 'POST') throw refused(`${serves}: ${method} /runtimes/{arn}/invocations is for MCP runtimes; invoke this one with POST`)
  return { path: protocol === 'A2A' ? '/' : '/invocations', port }
}

/** The caller's `Mcp-Session-Id`, checked as a runtime session id (ValidationError when it cannot be one). */
export function mcpSessionIdOf(headers: IncomingHttpHeaders): string | undefined {
  const raw = headers[MCP_SESSION_HEADER]
  const value = Array.isArray(raw) ? raw[0] : raw
  if (value === undefined || value === '') return undefined
  if (!sessionIdPattern.test(value)) {
    throw new CodeboxError('ValidationError', `Mcp-Session-Id names the runtime session: 33-256 letters, digits, _ . : or - (got ${value.length} characters)`, {
      details: { field: 'runtimeSessionId', reason: 'FieldValidationFailed' },
    })
  }
  return value
}

/** Headers the protocol adds for the agent: MCP's session (the caller's, else the runtime session's), protocol version and resumption point. */
export function protocolHeaders(protocol: RuntimeProtocol, headers: IncomingHttpHeaders, runtimeSessionId: string): Record<string, string> {
  if (protocol !== 'MCP') return {}
  const out: Record<string, string> = { [MCP_SESSION_HEADER]: mcpSessionIdOf(headers) ?? runtimeSessionId }
  for (const h of ['mcp-protocol-version', 'last-event-id']) {
    const v = headers[h]
    if (typeof v === 'string') out[h] = v.slice(0, 256)
  }
  return out
}

/** Headers the protocol adds to the agent's answer: an MCP answer without a session gets the runtime session's, so the client stays in it. */
export function protocolReplyHeaders(protocol: RuntimeProtocol, response: IncomingMessage, runtimeSessionId: string): Record<string, string> {
  return protocol === 'MCP' && response.headers[MCP_SESSION_HEADER] === undefined ? { [MCP_SESSION_HEADER]: runtimeSessionId } : {}
}
