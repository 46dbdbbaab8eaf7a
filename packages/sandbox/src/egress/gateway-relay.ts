/**
 * The model gateway relayed from another process: the cluster's egress proxy (which sandbox pods
 * reach) hands a pod's `http://codebox-gateway/...` request to an API replica on the internal
 * route `/internal/gateway/<path>`, and the replica serves it with the same gateway handler as on
 * one host. The proxy tells who asked (the pod's identity) in a header and signs identity,
 * method, path and time with a key derived from the sealing key both share; the replica believes
 * nothing of a request it cannot verify. The body is not signed: it streams, and the gateway
 * bounds it as on one host.
 *
 * Here because both sides import it: the kubernetes driver package (the proxy) and the server
 * (the route), neither of which may depend on the other.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { validationError } from '@codebox/core'
import { checkGatewayTag, type GatewayIdentity } from './gateway.ts'

/** The internal route's prefix on the API: `/internal/gateway/anthropic/v1/messages` is the gateway's `/anthropic/v1/messages`. */
export const GATEWAY_RELAY_PREFIX = '/internal/gateway'

/** The relay's headers; a sandbox's own are dropped before these are set. */
export const GATEWAY_RELAY_HEADERS = {
  identity: 'x-codebox-gateway-identity',
  time: 'x-codebox-gateway-time',
  signature: 'x-codebox-gateway-signature',
} as const

/** How far a signature's time may be from the verifier's clock, either way. Default of verifyGatewayRelay. */
export const GATEWAY_RELAY_WINDOW_MS = 60_000

const PURPOSE = 'codebox gateway relay v1'
/** Session and sandbox ids as codebox makes them (and the pod labels hold). */
const idShape = /^[0-9A-Za-z_-]{1,64}$/

/** The relay's key, shared by the egress proxies and the API replicas: HMAC-SHA256(sealingKey, `codebox gateway relay v1`). */
export function gatewayRelayKey(sealingKey: Buffer): Buffer {
  if (sealingKey.length !== 32) throw validationError('sealingKey', `must be 32 bytes, got ${sealingKey.length}`)
  return createHmac('sha256', sealingKey).update(PURPOSE).digest()
}

/** An identity as the relay carries it, checked: ids of codebox's shape, the tag as checkGatewayTag. Throws a ValidationError. */
export function checkRelayIdentity(value: unknown): GatewayIdentity {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw validationError('identity', 'must be an object')
  const v = value as Record<string, unknown>
  for (const k of Object.keys(v)) if (!['sandboxId', 'sessionId', 'tag'].includes(k)) throw validationError(`identity.${k}`, 'is not a field of an identity')
  if (typeof v.sandboxId !== 'string' || !idShape.test(v.sandboxId)) throw validationError('identity.sandboxId', 'must be 1-64 letters, digits, - or _')
  if (v.sessionId !== undefined && (typeof v.sessionId !== 'string' || !idShape.test(v.sessionId)))
    throw validationError('identity.sessionId', 'must be 1-64 letters, digits, - or _')
  return {
    sandboxId: v.sandboxId,
    ...(v.sessionId !== undefined ? { sessionId: v.sessionId as string } : {}),
    ...(v.tag !== undefined ? { tag: checkGatewayTag(v.tag, 'identity.tag') } : {}),
  }
}

function mac(key: Buffer, method: string, path: string, time: string, identity: string): Buffer {
  return createHmac('sha256', key).update(`${PURPOSE}\n${method}\n${path}\n${time}\n${identity}`).digest()
}

/**
 * The headers that make a request to the internal route `path` (from GATEWAY_RELAY_PREFIX on,
 * with its query) stand for `identity`: the identity as base64url JSON, the time in ms, and
 * base64url(HMAC-SHA256(key, purpose, method, path, time, identity)).
 */
export function signGatewayRelay(key: Buffer, request: { method: string; path: string; identity: GatewayIdentity; nowMs?: number }): Record<string, string> {
  const identity = Buffer.from(JSON.stringify(checkRelayIdentity(request.identity))).toString('base64url')
  const time = String(Math.trunc(request.nowMs ?? Date.now()))
  return {
    [GATEWAY_RELAY_HEADERS.identity]: identity,
    [GATEWAY_RELAY_HEADERS.time]: time,
    [GATEWAY_RELAY_HEADERS.signature]: mac(key, request.method, request.path, time, identity).toString('base64url'),
  }
}

/** The identity a relayed request stands for, or why it is refused (a message for the 403; it names no secret). */
export type RelayVerdict = { ok: true; identity: GatewayIdentity } | { ok: false; reason: string }

const single = (headers: IncomingHttpHeaders, name: string): string | undefined => {
  const v = headers[name]
  return typeof v === 'string' && v.length <= 4096 ? v : undefined
}

/**
 * Checks a relayed request: all three headers once each, a time within `windowMs` of now, and the
 * signature (compared in constant time) over this method and path; then the identity's shape. A
 * captured request replays only within the window, and only with its own method and path.
 */
export function verifyGatewayRelay(
  key: Buffer,
  request: { method: string; path: string; headers: IncomingHttpHeaders; nowMs?: number; windowMs?: number },
): RelayVerdict {
  const identity = single(request.headers, GATEWAY_RELAY_HEADERS.identity)
  const time = single(request.headers, GATEWAY_RELAY_HEADERS.time)
  const signature = single(request.headers, GATEWAY_RELAY_HEADERS.signature)
  if (identity === undefined || time === undefined || signature === undefined)
    return { ok: false, reason: 'this route serves the cluster egress proxy only: the request carries no relay signature' }
  const at = /^\d{1,16}$/.test(time) ? Number(time) : NaN
  const now = request.nowMs ?? Date.now()
  const windowMs = request.windowMs ?? GATEWAY_RELAY_WINDOW_MS
  if (!Number.isSafeInteger(at) || Math.abs(now - at) > windowMs)
    return { ok: false, reason: `the relay signature's time is not within ${windowMs / 1000} s of this server's clock` }
  const expected = mac(key, request.method, request.path, time, identity)
  const given = /^[A-Za-z0-9_-]{43}$/.test(signature) ? Buffer.from(signature, 'base64url') : Buffer.alloc(0)
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'the relay signature does not match' }
  try {
    return { ok: true, identity: checkRelayIdentity(JSON.parse(Buffer.from(identity, 'base64url').toString('utf8'))) }
  } catch (e) {
    return { ok: false, reason: `the relayed identity is malformed (${(e as Error).message})` }
  }
}
