/**
 * The one registry of error codes shared by the engine, the server and the SDK: each code has
 * its HTTP status and a default hint for the user. `docs/errors.md` documents every code.
 */

export const errorCodes = {
  ValidationError: { status: 400, hint: 'Fix the named field and send the request again.' },
  NotFound: { status: 404, hint: 'Check the id; stopped sessions cannot be used again.' },
  Conflict: { status: 409, hint: 'The resource is in a state that does not allow this call.' },
  SessionTerminated: { status: 410, hint: 'Start a new session; this one has ended.' },
  LimitExceeded: { status: 413, hint: 'Send less, or raise the limit within the configured maximum.' },
  Timeout: { status: 504, hint: 'The call ran out of time; raise timeoutMs or split the work.' },
  SandboxFailure: { status: 500, hint: 'The sandbox could not do this; see the message and the server log.' },
  Unavailable: { status: 503, hint: 'A required part (image, driver) is missing; see the message.' },
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
