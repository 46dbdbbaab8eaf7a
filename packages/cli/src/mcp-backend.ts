/**
 * The MCP tools over HTTP: a backend whose sessions live on a codebox server reached through
 * @codebox/sdk (what `codebox mcp` serves over stdio). Each session is a CodeInterpreter, which
 * streams (`invokeStream`), so progress notifications carry output as it is produced, and an
 * aborted call closes its request, which makes the server interrupt the execution.
 */
import { CodeInterpreter, SessionTerminatedError, type ClientOptions, type StartSessionRequest } from '@codebox/sdk'
import type { McpBackend } from '@codebox/mcp'

/** Options of `sdkBackend`: how to reach codebox, and what a connection's own session starts with. */
export interface SdkBackendOptions extends ClientOptions {
  /** The start request of the connection's own session. Default `{name: 'mcp'}` (the server's interpreter and timeouts). */
  session?: Omit<StartSessionRequest, 'clientToken'>
}

/**
 * A backend over the codebox server at `options.baseUrl` (default `CODEBOX_URL`, then
 * http://127.0.0.1:8080), authenticated with `options.apiKey` (default `CODEBOX_API_KEY`): the
 * sessions are those of the key's tenant.
 */
export function sdkBackend(options: SdkBackendOptions = {}): McpBackend {
  const { session: startRequest = { name: 'mcp' }, ...client } = options
  const attach = (sessionId: string): CodeInterpreter => new CodeInterpreter({ ...client, sessionId })
  return {
    async startSession({ signal }) {
      const ci = new CodeInterpreter(client)
      const info = await ci.start({ ...startRequest, ...(signal ? { signal } : {}) })
      return { sessionId: info.sessionId, target: ci }
    },
    async session(sessionId) {
      const ci = attach(sessionId)
      // One GET, so that an unknown id (or another tenant's, which the server reports the same way) fails here as NotFound.
      const info = await ci.info()
      if (info.status === 'TERMINATED') throw new SessionTerminatedError(`session ${sessionId} has ended (${info.endReason ?? 'stopped'}); start a new session`)
      return ci
    },
    async stopSession(sessionId) {
      await attach(sessionId).stop()
    },
  }
}
