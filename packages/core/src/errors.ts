/**
 * The one registry of error codes shared by the engine, the server and the SDK: each code has
 * its HTTP status and a default hint for the user. `docs/errors.md` documents every code.
 */

export const errorCodes = {
  ValidationError: { status: 400, hint: 'Fix the named field and send the request again.' },
  Unauthorized: { status: 401, hint: 'Send a valid API key as `Authorization: Bearer <key>` (codebox keys create).' },
  Forbidden: {
    status: 403,
    hint: 'The request came from a host name or a web page this server does not answer; add it to CODEBOX_ALLOWED_HOSTS or CODEBOX_ALLOWED_ORIGINS.',
  },
  NotFound: { status: 404, hint: 'Check the id; stopped sessions cannot be used again.' },
  Conflict: { status: 409, hint: 'The resource is in a state that does not allow this call.' },
  Canceled: { status: 409, hint: 'The call was canceled: its caller interrupted or stopped it, or the server shut down. Send it again if it is still wanted.' },
  RequestTimeout: { status: 408, hint: 'The request body did not arrive in time; send it without pauses, or in smaller parts.' },
  SessionTerminated: { status: 410, hint: 'Start a new session; this one has ended.' },
  LimitExceeded: { status: 413, hint: 'Send less, or raise the limit within the configured maximum.' },
  RateLimited: { status: 429, hint: 'Too many requests for this tenant; wait Retry-After seconds and send again.' },
  QuotaExceeded: { status: 429, hint: 'The tenant is at its quota (for example concurrent sessions); stop a session or ask for a higher quota.' },
  Timeout: { status: 504, hint: 'The call ran out of time; raise timeoutMs or split the work.' },
  SandboxFailure: { status: 500, hint: 'The sandbox could not do this; see the message and the server log.' },
  Unavailable: {
    status: 503,
    hint: 'A required part (image, driver, the store) is missing or cannot serve now; see the message, and retry after Retry-After when it is given.',
  },
  HostCapacity: { status: 503, hint: 'The machine has no room for this session now; ask for smaller limits, stop a session, or try later.' },
  ModelNotConfigured: {
    status: 503,
    hint: 'Set CODEBOX_AGENT_MODELS (e.g. anthropic:claude-sonnet-4-5 with ANTHROPIC_API_KEY, or openai:llama3.1:8b@http://127.0.0.1:11434/v1) and restart the server; see docs/agent.md.',
  },
  ModelUnavailable: { status: 502, hint: 'Every model of the chain failed (down, throttled or refusing); see the message, and try again later.' },
  Internal: { status: 500, hint: 'A bug in codebox; the server log has the details.' },
} as const

export type ErrorCode = keyof typeof errorCodes

export interface CodeboxErrorOptions {
  details?: Record<string, unknown>
  cause?: unknown
}

/** The base error of codebox: a registry code, its HTTP status, details and the cause. */
export class CodeboxError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly details: Record<string, unknown>

  constructor(code: ErrorCode, message: string, options: CodeboxErrorOptions = {}) {
    super(message, { cause: options.cause })
    this.name = code
    this.code = code
    this.status = errorCodes[code].status
    this.details = options.details ?? {}
  }

  /** The wire shape of STYLE.md: `{error: {code, message, details, requestId}}`. */
  toJSON(requestId?: string): { error: { code: ErrorCode; message: string; details: Record<string, unknown>; requestId?: string } } {
    return { error: { code: this.code, message: this.message, details: this.details, ...(requestId ? { requestId } : {}) } }
  }
}

export const validationError = (field: string, message: string): CodeboxError =>
  new CodeboxError('ValidationError', `${field}: ${message}`, { details: { field } })

export const isCodeboxError = (e: unknown): e is CodeboxError => e instanceof CodeboxError

/**
 * Turns the wire shape back into a CodeboxError: the SDK's side of `toJSON`. A body that is not
 * the codebox shape (a proxy's HTML page, say) still becomes an error with the HTTP status.
 */
export function errorFromWire(status: number, body: unknown): CodeboxError {
  const e = (body as { error?: { code?: unknown; message?: unknown; details?: unknown; requestId?: unknown } } | null)?.error
  const code = typeof e?.code === 'string' && e.code in errorCodes ? (e.code as ErrorCode) : codeForStatus(status)
  const message = typeof e?.message === 'string' ? e.message : `HTTP ${status} without a codebox error body`
  const details = e?.details && typeof e.details === 'object' ? { ...(e.details as Record<string, unknown>) } : {}
  if (typeof e?.requestId === 'string') details.requestId = e.requestId
  return new CodeboxError(code, message, { details })
}

function codeForStatus(status: number): ErrorCode {
  if (status === 500) return 'Internal'
  if (status === 502) return 'Unavailable'
  const found = (Object.entries(errorCodes) as [ErrorCode, { status: number }][]).find(([, v]) => v.status === status)
  return found ? found[0] : status >= 500 ? 'Internal' : 'ValidationError'
}
