/**
 * The model gateway's HTTP plumbing: which headers go upstream and back, where a provider path
 * goes, the gateway's own answers in each provider's error shape, and SHA-256 for SigV4 from
 * node:crypto.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto'
import type { ServerResponse } from 'node:http'

type Provider = 'anthropic' | 'openai' | 'bedrock'

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'expect'])
/** Request headers never forwarded: credentials of any kind (the gateway adds its own), routing and framing it sets itself. */
const DROPPED = new Set([
  'host',
  'content-length',
  'accept-encoding',
  'authorization',
  'proxy-authorization',
  'x-api-key',
  'api-key',
  'cookie',
  'openai-organization',
  'openai-project',
])

/** `base` (with its own path, e.g. a proxy's `/v1` prefix) followed by the rest of the gateway path. */
export function joinUrl(base: string, rest: string): URL {
  const b = new URL(base)
  return new URL(`${b.origin}${b.pathname.replace(/\/$/, '')}${rest}`)
}

/** The agent's headers minus hop-by-hop ones (and those Connection names) and DROPPED; repeated ones joined. */
export function forwardHeaders(raw: readonly string[]): Record<string, string> {
  const named = new Set<string>()
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.toLowerCase() === 'connection') for (const t of raw[i + 1]!.split(',')) named.add(t.trim().toLowerCase())
  }
  const out: Record<string, string> = {}
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    // HTTP/2's pseudo-headers (`:path`, `:authority`, ...) are the request's own, not headers to forward.
    if (HOP_BY_HOP.has(name) || named.has(name) || DROPPED.has(name) || name.startsWith('proxy-') || name.startsWith(':')) continue
    out[name] = out[name] === undefined ? raw[i + 1]! : `${out[name]}, ${raw[i + 1]!}`
  }
  return out
}

/** Upstream response headers as raw pairs, minus hop-by-hop ones. */
export function endToEnd(raw: readonly string[]): string[] {
  const out: string[] = []
  for (let i = 0; i < raw.length; i += 2) if (!HOP_BY_HOP.has(raw[i]!.toLowerCase())) out.push(raw[i]!, raw[i + 1]!)
  return out
}

/** An answer of the gateway's own, in the shape the provider's SDKs read errors from. */
export function reply(res: ServerResponse, provider: Provider | undefined, status: number, message: string, extra: Record<string, string> = {}): void {
  if (res.headersSent) return void res.destroy()
  const text = `codebox gateway: ${message}`
  let body: unknown
  const headers: Record<string, string> = { 'content-type': 'application/json', ...extra }
  if (provider === 'anthropic') {
    const type = status === 413 ? 'request_too_large' : status === 404 ? 'not_found_error' : status < 500 ? 'invalid_request_error' : 'api_error'
    body = { type: 'error', error: { type, message: text } }
  } else if (provider === 'openai') {
    body = { error: { message: text, type: status < 500 ? 'invalid_request_error' : 'codebox_gateway_error', param: null, code: null } }
  } else if (provider === 'bedrock') {
    const type = status === 413 || status < 500 ? 'ValidationException' : status === 503 ? 'ServiceUnavailableException' : 'InternalServerException'
    headers['x-amzn-errortype'] = type
    body = { message: text }
  } else {
    body = { error: { code: status === 404 ? 'NotFound' : 'ValidationError', message: text } }
  }
  const json = JSON.stringify(body)
  res.writeHead(status, { ...headers, 'content-length': Buffer.byteLength(json) })
  res.end(json)
}

type SourceData = string | ArrayBuffer | ArrayBufferView

const bytesOf = (data: SourceData): Buffer =>
  typeof data === 'string'
    ? Buffer.from(data, 'utf8')
    : ArrayBuffer.isView(data)
      ? Buffer.from(data.buffer, data.byteOffset, data.byteLength)
      : Buffer.from(data)

/** SHA-256 (or HMAC-SHA-256 with a secret) from node:crypto, in the shape SignatureV4 asks for. */
export class NodeSha256 {
  private readonly secret: SourceData | undefined
  private hash: Hash | Hmac

  constructor(secret?: SourceData) {
    this.secret = secret
    this.hash = this.fresh()
  }

  update(data: SourceData): void {
    this.hash.update(bytesOf(data))
  }

  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.hash.digest()))
  }

  reset(): void {
    this.hash = this.fresh()
  }

  private fresh(): Hash | Hmac {
    return this.secret === undefined ? createHash('sha256') : createHmac('sha256', bytesOf(this.secret))
  }
}
