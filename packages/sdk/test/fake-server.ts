/**
 * A real HTTP server on 127.0.0.1 (port 0) that a test scripts request by request, so the SDK's
 * calls cross a real wire: real headers, real chunked bodies, real connection failures.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** A request as the server saw it, body read whole. */
export interface Recorded {
  method: string
  /** Path and query, as sent. */
  url: string
  headers: IncomingMessage['headers']
  body: Buffer
  /** Milliseconds since the server started, when the body had arrived. */
  at: number
}

/** Answers one request; may leave `res` open to simulate a hung server. */
export type Handler = (req: Recorded, res: ServerResponse) => void | Promise<void>

export interface FakeServer {
  url: string
  requests: Recorded[]
  close(): Promise<void>
  [Symbol.asyncDispose](): Promise<void>
}

/** Starts a server that records every request and answers with `handler`. */
export async function startServer(handler: Handler): Promise<FakeServer> {
  const started = Date.now()
  const requests: Recorded[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const recorded: Recorded = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks), at: Date.now() - started }
      requests.push(recorded)
      Promise.resolve(handler(recorded, res)).catch((e: unknown) => {
        res.writeHead(599).end(String(e))
      })
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  const close = async (): Promise<void> => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
  return { url: `http://127.0.0.1:${port}`, requests, close, [Symbol.asyncDispose]: close }
}

/** Sends a JSON answer with an `x-request-id`. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-request-id': 'req-test', ...headers })
  res.end(text)
}

/** Sends a codebox error body. */
export function sendError(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error: { code, message, details: {}, requestId: 'req-err' } }, headers)
}

/** A SessionInfo as the server would send it. */
export function sessionInfo(sessionId: string, status: 'READY' | 'TERMINATED' = 'READY'): Record<string, unknown> {
  const limits = {
    memoryBytes: 1,
    cpuCores: 1,
    pids: 1,
    workspaceBytes: 1,
    tmpBytes: 1,
    openFiles: 1,
    outputBytes: 1,
    fileBytes: 1,
    callTimeoutMs: 1,
    idleTimeoutMs: 1,
    maxLifetimeMs: 1,
  }
  const now = new Date().toISOString()
  return { sessionId, interpreterId: 'codebox.v1', name: 'test', status, createdAt: now, lastUpdatedAt: now, timeoutSeconds: 900, limits }
}

/** A ToolResult with this stdout. */
export function toolResult(stdout: string): Record<string, unknown> {
  return { content: [{ type: 'text', text: stdout }], structuredContent: { stdout, stderr: '', exitCode: 0, executionTime: 1 }, isError: false }
}
