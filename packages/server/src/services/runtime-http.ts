/**
 * HTTP/1.1 into a hosted agent: one exchange over a byte stream to a port inside its sandbox (the
 * inbound relay a Session opens), and the runtime contract's `GET /ping`. The agent is hostile:
 * its answer's head is bounded by Node's parser (16 KiB), its `/ping` body by PING_MAX_BYTES, every
 * wait by a timeout, and a stream that never connects or never answers ends with a clear error.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http'
import type { Duplex, Readable } from 'node:stream'
import { CodeboxError } from '@codebox/core'

/** Opens a new byte stream to the agent's port (Session.openPort); `port` defaults to the one the agent serves. */
export type PortConnector = (signal?: AbortSignal, port?: number) => Promise<Duplex>

export interface Exchange {
  method: string
  path: string
  headers: Record<string, string>
  /** The request body: bytes, or a stream piped through as it comes. */
  body?: Buffer | Readable
  signal?: AbortSignal
  /** How long the agent may take to send its response head. */
  headTimeoutMs: number
}

/** An HTTP/1.1 request to the agent (Host: localhost) over a fresh stream from `connect`; its body and events are the caller's. */
function requestOver(connect: PortConnector, req: { method: string; path: string; headers: Record<string, string>; signal?: AbortSignal }): http.ClientRequest {
  return http.request({
    method: req.method,
    path: req.path,
    headers: { ...req.headers, host: 'localhost' },
    createConnection: ((_options: unknown, done: (err: Error | null, stream?: Duplex) => void) => {
      connect(req.signal).then(
        (stream) => done(null, stream),
        (e: unknown) => done(e as Error),
      )
      return undefined
    }) as unknown as http.RequestOptions['createConnection'],
    ...(req.signal ? { signal: req.signal } : {}),
  })
}

/**
 * Sends one request over a fresh stream and resolves with the response once its head arrived;
 * the body is the caller's to read (or destroy). Each exchange has its own stream (no keep-alive:
 * the relay opens one inner connection per stream).
 */
export function exchange(connect: PortConnector, req: Exchange): Promise<IncomingMessage> {
  return new Promise<IncomingMessage>((resolve, reject) => {
    let settled = false
    const fail = (e: unknown): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      reject(e instanceof CodeboxError ? e : new CodeboxError('SandboxFailure', `the agent's HTTP server failed: ${(e as Error).message}`, { cause: e }))
    }
    const outgoing = requestOver(connect, { ...req, headers: { ...req.headers, connection: 'close' } })
    const timer = setTimeout(() => {
      fail(new CodeboxError('Timeout', `the agent did not answer ${req.method} ${req.path} within ${req.headTimeoutMs} ms`))
      outgoing.destroy()
    }, req.headTimeoutMs)
    outgoing.once('response', (res) => {
      if (settled) return void res.destroy()
      settled = true
      clearTimeout(timer)
      resolve(res)
    })
    outgoing.once('error', fail)
    const body = req.body
    if (body === undefined) outgoing.end()
    else if (Buffer.isBuffer(body)) outgoing.end(body)
    else {
      body.once('error', (e) => outgoing.destroy(e))
      body.pipe(outgoing)
    }
  })
}

/** Reads a response body whole, up to `max` bytes (more is an error: the agent is not trusted). */
export async function readBody(res: IncomingMessage, max: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > max) {
      res.destroy()
      throw new CodeboxError('SandboxFailure', `the agent's answer is over ${max} bytes`)
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

export const PING_MAX_BYTES = 4096

export type PingStatus = 'Healthy' | 'HealthyBusy'

/**
 * The runtime contract's health check: `GET /ping` answering 200 with
 * `{"status": "Healthy" | "HealthyBusy", "time_of_last_update": <seconds>}`. Anything else (no
 * server yet, another status code, a body that is not that) is reported as `unhealthy` with why.
 * With `contract` false (MCP and A2A servers, whose contracts have no /ping), any HTTP answer
 * means the server is up (`Healthy`); one that does answer the contract's `HealthyBusy` is heard.
 */
export async function ping(
  connect: PortConnector,
  timeoutMs: number,
  signal?: AbortSignal,
  contract = true,
): Promise<{ status: PingStatus; timeOfLastUpdate?: number } | { status: 'unhealthy'; reason: string }> {
  let res: IncomingMessage
  try {
    res = await exchange(connect, {
      method: 'GET',
      path: '/ping',
      headers: { accept: 'application/json' },
      headTimeoutMs: timeoutMs,
      ...(signal ? { signal } : {}),
    })
  } catch (e) {
    return { status: 'unhealthy', reason: (e as Error).message }
  }
  let body: Buffer
  try {
    body = await readBody(res, PING_MAX_BYTES)
  } catch (e) {
    return contract ? { status: 'unhealthy', reason: (e as Error).message } : { status: 'Healthy' }
  }
  if (!contract) return { status: res.statusCode === 200 && /"status"\s*:\s*"HealthyBusy"/.test(body.toString('utf8')) ? 'HealthyBusy' : 'Healthy' }
  if (res.statusCode !== 200) return { status: 'unhealthy', reason: `GET /ping answered ${res.statusCode}` }
  let json: unknown
  try {
    json = JSON.parse(body.toString('utf8'))
  } catch {
    return { status: 'unhealthy', reason: 'GET /ping answered something that is not JSON' }
  }
  const status = (json as { status?: unknown } | null)?.status
  if (status !== 'Healthy' && status !== 'HealthyBusy') {
    return { status: 'unhealthy', reason: `GET /ping answered status ${JSON.stringify(status)?.slice(0, 40)}, not Healthy or HealthyBusy` }
  }
  const t = (json as { time_of_last_update?: unknown }).time_of_last_update
  return { status, ...(typeof t === 'number' && Number.isFinite(t) ? { timeOfLastUpdate: t } : {}) }
}

/** Response headers passed back to the caller: the agent's, minus hop-by-hop ones. */
export function passThroughHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const hop = new Set(['connection', 'keep-alive', 'transfer-encoding', 'proxy-connection', 'upgrade', 'te', 'trailer', 'content-length'])
  const out: Record<string, string | string[]> = {}
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !hop.has(k)) out[k] = v
  return out
}

/** What the agent answered to an upgrade request: its 101 with the upgraded stream, or another answer. */
export type UpgradeResult = { response: IncomingMessage; socket: Duplex; head: Buffer } | { response: IncomingMessage; socket?: undefined; head?: undefined }

/**
 * Sends an HTTP/1.1 upgrade request (a WebSocket handshake: `headers` carries Upgrade, Connection
 * and the Sec-WebSocket-* ones) over a fresh stream and resolves with the agent's answer: on
 * `101 Switching Protocols` the stream itself and any bytes that came after the head, else the
 * response (its body the caller's to read or destroy). The head is bounded by Node's parser.
 */
export function upgrade(
  connect: PortConnector,
  req: { path: string; headers: Record<string, string>; signal?: AbortSignal; headTimeoutMs: number },
): Promise<UpgradeResult> {
  return new Promise<UpgradeResult>((resolve, reject) => {
    let settled = false
    const settle = (fn: () => void): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      fn()
    }
    const outgoing = requestOver(connect, { ...req, method: 'GET' })
    const timer = setTimeout(() => {
      settle(() => reject(new CodeboxError('Timeout', `the agent did not answer the upgrade of ${req.path} within ${req.headTimeoutMs} ms`)))
      outgoing.destroy()
    }, req.headTimeoutMs)
    outgoing.once('upgrade', (response, socket, head) => {
      if (settled) return void socket.destroy()
      settle(() => resolve({ response, socket, head }))
    })
    outgoing.once('response', (response) => {
      if (settled) return void response.destroy()
      settle(() => resolve({ response }))
    })
    outgoing.once('error', (e) =>
      settle(() => reject(e instanceof CodeboxError ? e : new CodeboxError('SandboxFailure', `the agent's HTTP server failed: ${e.message}`, { cause: e }))),
    )
    outgoing.end()
  })
}
