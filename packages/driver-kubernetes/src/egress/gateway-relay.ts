/**
 * The cluster egress proxy's model gateway: a pod's `http://codebox-gateway/<path>` request is
 * relayed to an API replica's internal route (`<api>/internal/gateway/<path>`), signed for the
 * pod's identity (signGatewayRelay), and the answer streams back as it arrives (SSE included).
 * The proxy adds no credential of any provider: the API's gateway does that, as on one host, and
 * bounds the body. What the pod sent as relay headers is dropped; so are hop-by-hop headers.
 */
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http'
import https from 'node:https'
import { validationError } from '@codebox/core'
import { GATEWAY_RELAY_HEADERS, GATEWAY_RELAY_PREFIX, signGatewayRelay, type GatewayHandler } from '@codebox/sandbox'

export interface GatewayRelayOptions {
  /** The API as the proxy reaches it (the codebox-api Service): `http://codebox-api:8080`. */
  apiUrl: string
  /** gatewayRelayKey(sealing key). */
  key: Buffer
  /** An exchange with no bytes either way for this long is ended. Default 10 min, the gateway's own upstream timeout. */
  idleTimeoutMs?: number
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect', 'host'])
const relayHeaders = new Set<string>(Object.values(GATEWAY_RELAY_HEADERS))

/** A pod's request headers to pass on: no hop-by-hop ones (nor those Connection names), no proxy or relay headers, no HTTP/2 pseudo-headers. */
function passOn(raw: readonly string[]): OutgoingHttpHeaders {
  const named = new Set<string>()
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === 'connection') for (const t of raw[i + 1]!.split(',')) named.add(t.trim().toLowerCase())
  const out: Record<string, string> = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (HOP_BY_HOP.has(name) || named.has(name) || relayHeaders.has(name) || name.startsWith('proxy-') || name.startsWith(':')) continue
    out[name] = out[name] === undefined ? raw[i + 1]! : `${out[name]}, ${raw[i + 1]!}`
  }
  return out
}

/** The API's URL checked: http(s), no credentials, path, query or fragment (the internal route is at the API's root). Throws a ValidationError naming `field`. */
export function checkApiUrl(value: string, field = 'apiUrl'): URL {
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw validationError(field, `must be the API's URL, e.g. http://codebox-api:8080, got ${JSON.stringify(value.slice(0, 200))}`)
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.username || url.password || url.search || url.hash || url.pathname !== '/')
    throw validationError(field, `must be an http:// or https:// URL without credentials, path, query or fragment, got ${JSON.stringify(value.slice(0, 200))}`)
  return url
}

/** The gateway handler of the cluster's egress proxy: relays each request to the API, signed for the pod. */
export function gatewayRelay(options: GatewayRelayOptions): { handler: GatewayHandler; close(): void } {
  const api = checkApiUrl(options.apiUrl)
  const secure = api.protocol === 'https:'
  const agent = new (secure ? https : http).Agent({ keepAlive: true, maxSockets: 256 })
  const idleTimeoutMs = options.idleTimeoutMs ?? 600_000

  const handler: GatewayHandler = (req: IncomingMessage, res, identity) =>
    new Promise<void>((resolve) => {
      const target = new URL(req.url ?? '/', 'http://codebox-gateway')
      const path = `${GATEWAY_RELAY_PREFIX}${target.pathname}${target.search}`
      const method = req.method ?? 'GET'
      const headers = { ...passOn(req.rawHeaders), ...signGatewayRelay(options.key, { method, path, identity }) }
      const out = (secure ? https : http).request({
        protocol: api.protocol,
        hostname: api.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: api.port || (secure ? 443 : 80),
        method,
        path,
        headers,
        agent,
        maxHeaderSize: 64 * 1024,
      })
      const answer = (status: number, message: string): void => {
        if (res.headersSent) return void res.destroy()
        const body = JSON.stringify({ error: { code: status === 504 ? 'Timeout' : 'Unavailable', message: `codebox gateway: ${message}` } })
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
        res.end(body)
      }
      out.setTimeout(idleTimeoutMs, () => out.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })))
      out.on('error', (e: NodeJS.ErrnoException) => {
        answer(e.code === 'ETIMEDOUT' ? 504 : 502, `the codebox API at ${api.host} could not be reached (${e.code ?? 'error'})`)
        resolve()
      })
      out.on('response', (up) => {
        const pairs: string[] = []
        for (let i = 0; i < up.rawHeaders.length; i += 2)
          if (!HOP_BY_HOP.has(up.rawHeaders[i]!.toLowerCase())) pairs.push(up.rawHeaders[i]!, up.rawHeaders[i + 1]!)
        // HTTP/2 (a tunnel of the AWS SDK for JavaScript) has no status message.
        if (req.httpVersionMajor === 2) res.writeHead(up.statusCode ?? 502, pairs)
        else res.writeHead(up.statusCode ?? 502, up.statusMessage, pairs)
        res.flushHeaders()
        up.on('error', () => res.destroy())
        up.pipe(res)
        res.once('close', () => {
          if (!up.complete) up.destroy()
          resolve()
        })
      })
      res.once('close', () => {
        if (!res.writableFinished) out.destroy()
      })
      req.on('error', () => out.destroy())
      req.pipe(out)
    })
  return { handler, close: () => agent.destroy() }
}
