/**
 * One MCP server per MCP connection, with codebox's nine agent tools (@codebox/tools). Each
 * tool takes an optional `session_id`; without one, the call runs in the connection's own session,
 * started on first use and stopped when the connection closes, so an agent need not manage ids.
 * Output streams as progress notifications when the client asks for progress; a cancelled
 * request stops its execution. Code that fails is an `isError` result, never a protocol error.
 */
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js'
import type { CallToolResult, ContentBlock as McpContent, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js'
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js'
import { z } from 'zod'
import type { ExecutionEvent, ToolResult } from '@codebox/core'
import { agentToolDescriptions, agentToolNames, agentToolSchemas, resultStatus, runAgentTool, type ToolTarget } from '@codebox/tools'

/** Where the tools run: sessions of the caller, in-process (the server's /mcp) or over HTTP (stdio). */
export interface McpBackend {
  /** Starts a session for a connection that named none. */
  startSession(options: { signal?: AbortSignal }): Promise<{ sessionId: string; target: ToolTarget }>
  /** A session the client named; throws (NotFound) for an unknown id or another tenant's. */
  session(sessionId: string): Promise<ToolTarget>
  /** Stops a session the connection started; an already ended one is not an error. */
  stopSession(sessionId: string): Promise<void>
}

export interface CodeboxMcpServer {
  readonly server: McpServer
  /** The connection's own session, once a call started it. */
  readonly sessionId: string | undefined
  /** Stops the connection's own session (if any) and closes the MCP server. Idempotent. */
  close(): Promise<void>
}

export interface McpServerOptions {
  name?: string
  version?: string
}

const instructions = `codebox runs code in isolated sandbox sessions. Call execute_code or execute_command directly: without a session_id, calls share one session that belongs to this connection, so variables, imports and files persist from call to call. Pass a session_id (from a tool result's structuredContent.sessionId, or one started elsewhere) to work in another session of yours. Files live in /workspace. Charts drawn with matplotlib come back as images.`

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>

export function createMcpServer(backend: McpBackend, options: McpServerOptions = {}): CodeboxMcpServer {
  const server = new McpServer({ name: options.name ?? 'codebox', version: options.version ?? '0.1.0' }, { instructions })
  let own: Promise<{ sessionId: string; target: ToolTarget }> | undefined
  let ownId: string | undefined
  let closed = false

  /**
   * The connection's session: started once, shared by concurrent first calls; a failed start is
   * retried next time. The start takes no caller's signal: a cancelled first call must not fail
   * the calls waiting on the same start, nor leave a session started that nobody stops.
   */
  const ownSession = (): Promise<{ sessionId: string; target: ToolTarget }> => {
    if (closed) return Promise.reject(new Error('this MCP connection is closed'))
    own ??= backend.startSession({}).then(
      (s) => {
        ownId = s.sessionId
        if (closed) void backend.stopSession(s.sessionId).catch(() => {})
        return s
      },
      (e: unknown) => {
        own = undefined
        throw e
      },
    )
    return own
  }

  for (const name of agentToolNames) {
    const inputSchema = agentToolSchemas[name].extend({
      session_id: z
        .string()
        .regex(/^[0-9a-zA-Z]{1,40}$/, 'is not a session id')
        .optional()
        .describe("A session to run in; omit it to use this connection's own session."),
    })
    server.registerTool(
      name,
      { description: agentToolDescriptions[name], inputSchema: inputSchema.shape },
      async (args: Record<string, unknown>, extra: Extra) => {
        const { session_id: named, ...input } = args as { session_id?: string } & Record<string, unknown>
        let sessionId: string
        let target: ToolTarget
        try {
          if (named !== undefined) {
            sessionId = named
            target = await backend.session(named)
          } else {
            ;({ sessionId, target } = await ownSession())
          }
        } catch (e) {
          return errorResult(e)
        }
        const progress = progressReporter(extra)
        try {
          const result = await runAgentTool(target, name, input, { signal: extra.signal, ...(progress ? { onEvent: progress } : {}) })
          return toMcpResult(result, sessionId)
        } catch (e) {
          // The connection's session ended (idle timeout, stopped elsewhere): the next call starts a new one.
          if (named === undefined && isEnded(e)) own = undefined
          return errorResult(
            e,
            named === undefined && isEnded(e) ? 'This connection’s session has ended and its state is gone; the next call starts a new session.' : undefined,
          )
        }
      },
    )
  }

  return {
    server,
    get sessionId() {
      return ownId
    },
    async close() {
      if (closed) return
      closed = true
      const started = own
      own = undefined
      try {
        if (started) {
          const s = await started.catch(() => undefined)
          if (s) await backend.stopSession(s.sessionId).catch(() => {})
        }
      } finally {
        await server.close()
      }
    },
  }
}

/** Sends each output event as a progress notification, when the request carries a progress token. */
function progressReporter(extra: Extra): ((event: ExecutionEvent) => void) | undefined {
  const token = extra._meta?.progressToken
  if (token === undefined) return undefined
  let progress = 0
  return (event) => {
    const message =
      event.type === 'stdout' || event.type === 'stderr'
        ? event.text
        : event.type === 'display'
          ? `[display: ${Object.keys(event.data).join(', ')}]`
          : undefined
    if (message === undefined) return
    progress++
    void extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress, message } }).catch(() => {})
  }
}

/** codebox's result as an MCP tool result: text, image, embedded resource and resource-link blocks. */
export function toMcpResult(result: ToolResult, sessionId: string): CallToolResult {
  const content: McpContent[] = []
  for (const block of result.content) {
    switch (block.type) {
      case 'text':
        if (block.text !== '') content.push({ type: 'text', text: block.text })
        break
      case 'image':
        content.push({ type: 'image', data: block.data, mimeType: block.mimeType })
        break
      case 'resource': {
        const r = block.resource
        content.push({
          type: 'resource',
          resource: r.text !== undefined ? { uri: r.uri, mimeType: r.mimeType, text: r.text } : { uri: r.uri, mimeType: r.mimeType, blob: r.blob ?? '' },
        })
        break
      }
      case 'resource_link':
        content.push({
          type: 'resource_link',
          uri: block.uri,
          name: block.name,
          ...(block.description ? { description: block.description } : {}),
          ...(block.mimeType ? { mimeType: block.mimeType } : {}),
          ...(block.size !== undefined ? { size: block.size } : {}),
        })
        break
    }
  }
  const status = resultStatus(result)
  if (status) content.push({ type: 'text', text: status })
  if (content.length === 0) content.push({ type: 'text', text: '(no output)' })
  return { content, structuredContent: { ...result.structuredContent, sessionId }, isError: result.isError }
}

function errorResult(e: unknown, hint?: string): CallToolResult {
  const err = e as { code?: unknown; message?: unknown }
  const code = typeof err?.code === 'string' ? `${err.code}: ` : ''
  const message = typeof err?.message === 'string' ? err.message : String(e)
  return { content: [{ type: 'text', text: `${code}${message}${hint ? `\n${hint}` : ''}` }], isError: true }
}

const isEnded = (e: unknown): boolean => {
  const code = (e as { code?: unknown })?.code
  return code === 'SessionTerminated' || code === 'NotFound'
}
