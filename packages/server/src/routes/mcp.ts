/**
 * MCP over Streamable HTTP at `/mcp`, authenticated like the native API. Each MCP connection (an
 * `Mcp-Session-Id`) gets its own MCP server whose tools run in the caller's sessions in this
 * process; the connection's own codebox session is stopped when the connection ends: a DELETE
 * /mcp from the client, or no request for `idleMs`. `?interpreter=<id>` on the first request picks
 * the interpreter of the connection's sessions.
 */
import { randomUUID } from 'node:crypto'
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js'
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js'
import { CodeboxError } from '@codebox/core'
import { createMcpServer, type CodeboxMcpServer, type McpBackend } from '@codebox/mcp'
import type { ToolTarget } from '@codebox/tools'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Caller, SessionService } from '../services/sessions.ts'

interface Connection {
  transport: StreamableHTTPServerTransport
  mcp: CodeboxMcpServer
  tenant: string
  lastSeen: number
}

export interface McpRouteOptions {
  version: string
  /** A connection without requests for this long is closed, and its session stopped. Default 15 min. */
  idleMs?: number
  /** Most MCP connections open at once. Default 1000. */
  maxConnections?: number
}

export function mcpRoutes(app: FastifyInstance, sessions: SessionService, options: McpRouteOptions): void {
  const idleMs = options.idleMs ?? 15 * 60_000
  const maxConnections = options.maxConnections ?? 1000
  const connections = new Map<string, Connection>()

  const close = async (id: string): Promise<void> => {
    const c = connections.get(id)
    if (!c) return
    connections.delete(id)
    await c.mcp.close().catch(() => {})
  }
  const sweep = setInterval(
    () => {
      const now = Date.now()
      for (const [id, c] of connections) if (now - c.lastSeen > idleMs) void close(id)
    },
    Math.min(60_000, idleMs),
  )
  sweep.unref()
  app.addHook('onClose', async () => {
    clearInterval(sweep)
    await Promise.all([...connections.keys()].map(close))
  })

  const handle = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const caller = request.caller
    const header = request.headers['mcp-session-id']
    const id = typeof header === 'string' ? header : undefined
    let connection = id === undefined ? undefined : connections.get(id)
    // Another tenant's connection id is as unknown as a made-up one.
    if (connection && connection.tenant !== caller.tenant) connection = undefined
    if (!connection) {
      if (id !== undefined || request.method !== 'POST' || !isInitializeRequest(request.body)) {
        throw new CodeboxError(
          'NotFound',
          id === undefined
            ? 'no MCP session: start one with an initialize request (POST /mcp without Mcp-Session-Id)'
            : `no MCP session ${JSON.stringify(id.slice(0, 64))}; it ended or never existed: initialize again`,
        )
      }
      if (connections.size >= maxConnections) {
        throw new CodeboxError('LimitExceeded', `${maxConnections} MCP connections are open, the most this server allows; close one (DELETE /mcp)`)
      }
      const interpreter = (request.query as { interpreter?: unknown }).interpreter
      const mcp = createMcpServer(inProcessBackend(sessions, caller, typeof interpreter === 'string' ? interpreter : 'codebox.v1'), {
        version: options.version,
      })
      const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (sid) => {
          connections.set(sid, { transport, mcp, tenant: caller.tenant, lastSeen: Date.now() })
        },
        onsessionclosed: (sid) => close(sid),
      })
      transport.onclose = () => {
        if (transport.sessionId) void close(transport.sessionId)
      }
      await mcp.server.connect(transport)
      reply.hijack()
      await transport.handleRequest(request.raw, reply.raw, request.body)
      return
    }
    connection.lastSeen = Date.now()
    cancelOnDisconnect(connection.transport, request, reply)
    reply.hijack()
    await connection.transport.handleRequest(request.raw, reply.raw, request.body)
  }

  app.post('/mcp', handle)
  app.get('/mcp', handle)
  app.delete('/mcp', handle)
}

/**
 * A client that goes away before its answer came cancels its requests, as if it had sent
 * `notifications/cancelled`: the execution stops instead of running on for no one.
 */
function cancelOnDisconnect(transport: StreamableHTTPServerTransport, request: FastifyRequest, reply: FastifyReply): void {
  const messages = Array.isArray(request.body) ? (request.body as unknown[]) : [request.body]
  const ids = messages.flatMap((m) => {
    const id = (m as { id?: unknown; method?: unknown } | null)?.id
    return (typeof id === 'string' || typeof id === 'number') && typeof (m as { method?: unknown }).method === 'string' ? [id] : []
  })
  if (ids.length === 0) return
  reply.raw.on('close', () => {
    if (reply.raw.writableFinished) return
    for (const requestId of ids)
      transport.onmessage?.({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason: 'the client disconnected' } })
  })
}

/** The MCP tools' sessions: the caller's own, through SessionService (quotas, audit, metrics). */
function inProcessBackend(sessions: SessionService, caller: Caller, interpreterId: string): McpBackend {
  const target = (sessionId: string): ToolTarget => ({
    invokeStream: (name, args, o) => sessions.invoke(caller, sessionId, { name, arguments: args }, { signal: o?.signal }),
    invoke: (name, args, o) => sessions.invokeResult(caller, sessionId, { name, arguments: args }, { signal: o?.signal }),
  })
  return {
    async startSession({ signal }) {
      const { info } = await sessions.start(caller, { interpreterId }, { signal })
      return { sessionId: info.sessionId, target: target(info.sessionId) }
    },
    async session(sessionId) {
      await sessions.live(caller, sessionId)
      return target(sessionId)
    },
    async stopSession(sessionId) {
      await sessions.stop(caller, sessionId)
    },
  }
}
