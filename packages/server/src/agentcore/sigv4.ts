/**
 * AWS Signature Version 4, verified the way AWS does for the AgentCore-compatible API: the
 * Authorization header's credential scope, the date window, the payload hash and the signature,
 * recomputed from the request as it arrived. Pure: the caller supplies the request, the body's
 * SHA-256 and a way to find a secret; every failure is an AccessDenied error that says which check
 * failed (the one difference from AWS, whose messages are vaguer on purpose).
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import { CodeboxError } from '@codebox/core'

/** The request as it arrived: `url` is the raw path and query, undecoded. */
export interface SignedRequest {
  method: string
  url: string
  headers: Record<string, string | string[] | undefined>
  /** Lowercase hex SHA-256 of the body bytes (of the empty string when there is none). */
  bodySha256: string
}

export interface VerifiedSignature {
  accessKeyId: string
  region: string
  service: string
}

/** Signing names a client may use: the data plane's and the control plane's. */
export const signingNames = new Set(['bedrock-agentcore', 'bedrock-agentcore-control'])
/** How far x-amz-date may be from the server's clock, as AWS allows. */
export const maxClockSkewMs = 15 * 60_000

const algorithm = 'AWS4-HMAC-SHA256'
const denied = (message: string): CodeboxError => new CodeboxError('Unauthorized', message, { details: { aws: 'AccessDeniedException' } })

/**
 * Checks the request's SigV4 signature; returns who signed it. `secretFor` answers the secret of
 * an access key id, or undefined for an unknown or revoked one; it is asked only once every other
 * check has passed.
 */
export async function verifySigV4(
  req: SignedRequest,
  secretFor: (accessKeyId: string) => Promise<string | undefined>,
  now: Date = new Date(),
): Promise<VerifiedSignature> {
  const authorization = header(req.headers, 'authorization')
  if (!authorization) {
    throw denied('Missing Authentication Token: the request is not signed; sign it with SigV4 using an access key from `codebox keys create --aws`')
  }
  const auth = parseAuthorization(authorization)
  const [accessKeyId, scopeDate, region, service, terminator] = auth.credential.split('/')
  if (!accessKeyId || !scopeDate || !region || !service || terminator !== 'aws4_request' || auth.credential.split('/').length !== 5) {
    throw denied(`the Credential in the Authorization header is malformed: expected <access key id>/<yyyymmdd>/<region>/<service>/aws4_request`)
  }
  if (!signingNames.has(service)) throw denied(`the credential scope names service ${JSON.stringify(service)}; sign for bedrock-agentcore`)

  const amzDate = header(req.headers, 'x-amz-date')
  if (!amzDate || !/^\d{8}T\d{6}Z$/.test(amzDate)) throw denied('the X-Amz-Date header is missing or not of the form yyyymmddThhmmssZ')
  const signedAt = Date.UTC(
    +amzDate.slice(0, 4),
    +amzDate.slice(4, 6) - 1,
    +amzDate.slice(6, 8),
    +amzDate.slice(9, 11),
    +amzDate.slice(11, 13),
    +amzDate.slice(13, 15),
  )
  if (Math.abs(now.getTime() - signedAt) > maxClockSkewMs) {
    throw denied(
      `Signature expired: the request was signed at ${amzDate}, more than 15 minutes from the server's time ${compact(now)}; check the client's clock and sign again`,
    )
  }
  if (scopeDate !== amzDate.slice(0, 8)) throw denied(`the credential scope date ${scopeDate} is not the date of X-Amz-Date ${amzDate}`)

  const signed = auth.signedHeaders.split(';')
  if (!signed.includes('host')) throw denied('SignedHeaders must include host')
  for (const name of signed) {
    if (name !== name.toLowerCase() || header(req.headers, name) === undefined) throw denied(`signed header ${JSON.stringify(name)} is not in the request`)
  }
  if (header(req.headers, 'x-amz-content-sha256') !== undefined && !signed.includes('x-amz-content-sha256')) {
    throw denied('X-Amz-Content-SHA256 is sent but not signed')
  }
  const declaredHash = header(req.headers, 'x-amz-content-sha256')
  if (declaredHash !== undefined && declaredHash !== req.bodySha256) {
    throw denied(
      declaredHash === 'UNSIGNED-PAYLOAD'
        ? 'unsigned payloads are not accepted: sign the body'
        : 'The provided x-amz-content-sha256 header does not match what was computed: the body is not the one that was signed',
    )
  }

  const secret = await secretFor(accessKeyId)
  if (secret === undefined) throw denied(`The security token included in the request is invalid: access key ${accessKeyId} is unknown or revoked`)

  checkSignature({ secret, amzDate, scope: [scopeDate, region, service], signature: auth.signature }, [canonicalRequest(req, signed)])
  return { accessKeyId, region, service }
}

/** The longest a presigned URL may be valid for, as SigV4 allows (7 days). */
export const maxPresignedExpiresSeconds = 604_800

/**
 * Checks a presigned request (SigV4 in the query: `X-Amz-Algorithm`, `X-Amz-Credential`,
 * `X-Amz-Date`, `X-Amz-Expires`, `X-Amz-SignedHeaders`, `X-Amz-Signature`), as AgentCore accepts for
 * its WebSocket (`wss://.../runtimes/{arn}/ws?X-Amz-...`). The payload is `UNSIGNED-PAYLOAD` (as
 * boto3 presigns) or the body's hash (as the JS SDK's SignatureV4.presign does); the URL is
 * refused once `X-Amz-Date` + `X-Amz-Expires` has passed.
 */
export async function verifyPresignedSigV4(
  req: SignedRequest,
  secretFor: (accessKeyId: string) => Promise<string | undefined>,
  now: Date = new Date(),
): Promise<VerifiedSignature> {
  const q = new URLSearchParams(req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '')
  const param = (name: string): string | undefined => {
    for (const [k, v] of q) if (k.toLowerCase() === name.toLowerCase()) return v
    return undefined
  }
  if (param('X-Amz-Algorithm') !== algorithm) throw denied("the presigned URL's X-Amz-Algorithm is not AWS4-HMAC-SHA256")
  const signature = param('X-Amz-Signature') ?? ''
  if (!/^[0-9a-f]{64}$/.test(signature)) throw denied("the presigned URL's X-Amz-Signature is not 64 hex digits")
  const credential = param('X-Amz-Credential') ?? ''
  const [accessKeyId, scopeDate, region, service, terminator] = credential.split('/')
  if (!accessKeyId || !scopeDate || !region || !service || terminator !== 'aws4_request' || credential.split('/').length !== 5) {
    throw denied(`the presigned URL's X-Amz-Credential is malformed: expected <access key id>/<yyyymmdd>/<region>/<service>/aws4_request`)
  }
  if (!signingNames.has(service)) throw denied(`the credential scope names service ${JSON.stringify(service)}; sign for bedrock-agentcore`)
  const amzDate = param('X-Amz-Date') ?? ''
  if (!/^\d{8}T\d{6}Z$/.test(amzDate)) throw denied("the presigned URL's X-Amz-Date is missing or not of the form yyyymmddThhmmssZ")
  if (scopeDate !== amzDate.slice(0, 8)) throw denied(`the credential scope date ${scopeDate} is not the date of X-Amz-Date ${amzDate}`)
  const expires = Number(param('X-Amz-Expires'))
  if (!Number.isInteger(expires) || expires < 1 || expires > maxPresignedExpiresSeconds) {
    throw denied(`the presigned URL's X-Amz-Expires must be a whole number of seconds from 1 to ${maxPresignedExpiresSeconds}`)
  }
  const signedAt = parseAmzDate(amzDate)
  if (signedAt - now.getTime() > maxClockSkewMs) throw denied(`the presigned URL is dated ${amzDate}, in the future of the server's time ${compact(now)}`)
  if (now.getTime() > signedAt + expires * 1000) {
    throw denied(`the presigned URL expired: it was signed at ${amzDate} for ${expires} s; presign it again`)
  }
  const signed = (param('X-Amz-SignedHeaders') ?? '').split(';')
  if (!signed.includes('host')) throw denied('X-Amz-SignedHeaders must include host')
  for (const name of signed) {
    if (name !== name.toLowerCase() || header(req.headers, name) === undefined) throw denied(`signed header ${JSON.stringify(name)} is not in the request`)
  }
  const secret = await secretFor(accessKeyId)
  if (secret === undefined) throw denied(`The security token included in the request is invalid: access key ${accessKeyId} is unknown or revoked`)
  const candidates = [
    canonicalRequest({ ...req, headers: { ...req.headers, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } }, signed),
    canonicalRequest({ ...req, headers: { ...req.headers, 'x-amz-content-sha256': undefined } }, signed),
  ]
  checkSignature({ secret, amzDate, scope: [scopeDate, region, service], signature }, candidates)
  return { accessKeyId, region, service }
}

/** The signature must be one of the canonical requests' (a presigned URL has two ways to state its payload). */
function checkSignature(s: { secret: string; amzDate: string; scope: [string, string, string]; signature: string }, canonicals: string[]): void {
  const key = hmac(
    s.scope.reduce<Buffer>((k, part) => hmac(k, part), Buffer.from(`AWS4${s.secret}`)),
    'aws4_request',
  )
  const given = Buffer.from(s.signature, 'hex')
  for (const canonical of canonicals) {
    const expected = hmac(key, [algorithm, s.amzDate, `${s.scope.join('/')}/aws4_request`, sha256(canonical)].join('\n'))
    if (given.length === expected.length && timingSafeEqual(given, expected)) return
  }
  throw denied(
    'The request signature we calculated does not match the signature you provided. Check your secret access key and signing method (SigV4, service bedrock-agentcore).',
  )
}

function parseAmzDate(d: string): number {
  return Date.UTC(+d.slice(0, 4), +d.slice(4, 6) - 1, +d.slice(6, 8), +d.slice(9, 11), +d.slice(11, 13), +d.slice(13, 15))
}

/** The canonical request of SigV4 for non-S3 services (path segments URI-encoded once more). */
export function canonicalRequest(req: SignedRequest, signedHeaders: string[]): string {
  const q = req.url.indexOf('?')
  const rawPath = q < 0 ? req.url : req.url.slice(0, q)
  const rawQuery = q < 0 ? '' : req.url.slice(q + 1)
  return [
    req.method.toUpperCase(),
    canonicalPath(rawPath),
    canonicalQuery(rawQuery),
    signedHeaders.map((h) => `${h}:${canonicalHeaderValue(req.headers[h])}\n`).join(''),
    signedHeaders.join(';'),
    header(req.headers, 'x-amz-content-sha256') ?? req.bodySha256,
  ].join('\n')
}

function canonicalPath(path: string): string {
  const segments: string[] = []
  for (const s of path.split('/')) {
    if (s === '' || s === '.') continue
    if (s === '..') segments.pop()
    else segments.push(s)
  }
  const normalized = `${path.startsWith('/') ? '/' : ''}${segments.join('/')}${segments.length > 0 && path.endsWith('/') ? '/' : ''}`
  return escapeUri(normalized).replace(/%2F/g, '/')
}

function canonicalQuery(query: string): string {
  if (query === '') return ''
  const pairs: [string, string][] = []
  for (const part of query.split('&')) {
    if (part === '') continue
    const eq = part.indexOf('=')
    const key = decode(eq < 0 ? part : part.slice(0, eq))
    const value = eq < 0 ? '' : decode(part.slice(eq + 1))
    if (key.toLowerCase() === 'x-amz-signature') continue
    pairs.push([escapeUri(key), escapeUri(value)])
  }
  pairs.sort(([ak, av], [bk, bv]) => (ak < bk ? -1 : ak > bk ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
  return pairs.map(([k, v]) => `${k}=${v}`).join('&')
}

function decode(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    throw denied('the query string is not valid percent-encoding')
  }
}

/** RFC 3986 unreserved characters stay; everything else is %XX, as the AWS SDKs encode. */
const escapeUri = (s: string): string => encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)

function canonicalHeaderValue(value: string | string[] | undefined): string {
  const values = Array.isArray(value) ? value : [value ?? '']
  return values.map((v) => v.trim().replace(/\s+/g, ' ')).join(',')
}

function parseAuthorization(value: string): { credential: string; signedHeaders: string; signature: string } {
  const m = /^AWS4-HMAC-SHA256\s+(.*)$/.exec(value.trim())
  if (!m) throw denied('the Authorization header is not AWS4-HMAC-SHA256 (SigV4); codebox accepts only SigV4 on the AgentCore API')
  const fields = new Map<string, string>()
  for (const part of m[1]!.split(',')) {
    const eq = part.indexOf('=')
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim())
  }
  const credential = fields.get('Credential')
  const signedHeaders = fields.get('SignedHeaders')
  const signature = fields.get('Signature')
  if (!credential || !signedHeaders || !signature || !/^[0-9a-f]{64}$/.test(signature)) {
    throw denied('the Authorization header lacks Credential, SignedHeaders or a 64-hex-digit Signature')
  }
  return { credential, signedHeaders, signature }
}

function header(headers: SignedRequest['headers'], name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v.join(',') : v
}

const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex')
const hmac = (key: Buffer, data: string): Buffer => createHmac('sha256', key).update(data, 'utf8').digest()
const compact = (d: Date): string => d.toISOString().replace(/[-:]|\.\d{3}/g, '')
