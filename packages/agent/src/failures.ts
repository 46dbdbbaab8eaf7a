/**
 * Why a model call failed, in words fit for events, status and stored turns: the provider's HTTP
 * status and message (429 throttled, 529 overloaded, 5xx unavailable, 400/401/403 refused),
 * connection errors and timeouts, with every credential scrubbed out. A provider's error message
 * can echo a key (OpenAI's "Incorrect API key provided: sk-…"), so nothing leaves unscrubbed.
 */

/** A classified model failure. `refused` (400/401/403/404...) is reported apart from `unavailable`. */
export interface ModelFailure {
  kind: 'unavailable' | 'refused'
  /** One line, scrubbed: `overloaded: HTTP 529 Overloaded`, `refused: HTTP 401 invalid x-api-key`. */
  reason: string
}

/** The environment variables whose values are secrets and must never appear in anything shown. */
export const secretVariables = [
  'ANTHROPIC_API_KEY',
  'ANTHROPIC_AUTH_TOKEN',
  'OPENAI_API_KEY',
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AWS_BEARER_TOKEN_BEDROCK',
] as const

const secretPatterns: [RegExp, string][] = [
  [/\bsk-[A-Za-z0-9_*.-]{6,}/g, 'sk-[redacted]'],
  [/\b(?:AKIA|ASIA|CBXA)[A-Z0-9]{12,}\b/g, '[redacted]'],
  [/\bBearer\s+[^\s"',}]+/gi, 'Bearer [redacted]'],
  [/((?:x-api-key|api[_-]?key|authorization|secret[_-]?access[_-]?key|session[_-]?token)["']?\s*[:=]\s*["']?)[^\s"',}]+/gi, '$1[redacted]'],
]

/** A scrubber for `env`'s secret values and anything shaped like a key. */
export function makeScrubber(env: Record<string, string | undefined>): (text: string) => string {
  const values = secretVariables.map((name) => env[name]).filter((v): v is string => typeof v === 'string' && v.length >= 4)
  return (text: string) => {
    let out = text
    for (const value of values) out = out.split(value).join('[redacted]')
    for (const [pattern, replacement] of secretPatterns) out = out.replace(pattern, replacement)
    return out
  }
}

const networkCodes: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EPIPE: 'connection closed',
  UND_ERR_SOCKET: 'connection closed',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  ERR_HTTP2_STREAM_CANCEL: 'stream canceled',
  ERR_HTTP2_SESSION_ERROR: 'HTTP/2 session error',
  ERR_HTTP2_GOAWAY_SESSION: 'HTTP/2 session closed',
}

/** Every error in `error`'s cause chain (and an AggregateError's members), outermost first. */
function chain(error: unknown): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = []
  const queue: unknown[] = [error]
  while (queue.length && out.length < 12) {
    const e = queue.shift()
    if (typeof e !== 'object' || e === null || out.includes(e as Record<string, unknown>)) continue
    const r = e as Record<string, unknown>
    out.push(r)
    if ('cause' in r) queue.push(r.cause)
    if (Array.isArray(r.errors)) queue.push(...(r.errors as unknown[]))
  }
  return out
}

function httpStatus(e: Record<string, unknown>): number | undefined {
  const meta = e.$metadata as { httpStatusCode?: unknown } | undefined
  for (const v of [e.status, e.statusCode, meta?.httpStatusCode]) if (typeof v === 'number' && v >= 100 && v < 600) return v
  return undefined
}

/** The provider's own message: Anthropic `{error: {message}}`, OpenAI `{message}`, Bedrock's `message`. */
function providerMessage(e: Record<string, unknown>, status: number): string {
  const body = e.error as { message?: unknown; error?: { message?: unknown } } | undefined
  const candidates = [body?.error?.message, body?.message, e.message]
  const text = candidates.find((c): c is string => typeof c === 'string' && c.trim() !== '') ?? ''
  return text.replace(new RegExp(`^${status}\\s+`), '').trim()
}

function label(status: number): { kind: ModelFailure['kind']; word: string } {
  if (status === 429) return { kind: 'unavailable', word: 'throttled' }
  if (status === 529) return { kind: 'unavailable', word: 'overloaded' }
  if (status === 408) return { kind: 'unavailable', word: 'timed out' }
  if (status >= 500) return { kind: 'unavailable', word: 'unavailable' }
  return { kind: 'refused', word: 'refused' }
}

/** Classifies a failed model call; `scrub` removes credentials from the text. */
export function classifyModelError(error: unknown, scrub: (text: string) => string): ModelFailure {
  const errors = chain(error)
  for (const e of errors) {
    const status = httpStatus(e)
    if (status === undefined) continue
    const { kind, word } = label(status)
    return { kind, reason: oneLine(scrub(`${word}: HTTP ${status} ${providerMessage(e, status)}`)) }
  }
  for (const e of errors) {
    const code = typeof e.code === 'string' ? e.code : undefined
    if (code && networkCodes[code]) return { kind: 'unavailable', reason: oneLine(scrub(`unavailable: ${networkCodes[code]}`)) }
  }
  const first = errors[0]
  const message = typeof first?.message === 'string' ? first.message : String(error)
  const lower = message.toLowerCase()
  if (lower.includes('api key is required') || lower.includes('credential')) return { kind: 'refused', reason: oneLine(scrub(`refused: ${message}`)) }
  return { kind: 'unavailable', reason: oneLine(scrub(`failed: ${message}`)) }
}

/** One line of at most 300 characters. */
export function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > 300 ? `${flat.slice(0, 297)}...` : flat
}
