/**
 * The SDK's errors: one class per code of core's registry, all extending CodeboxError, and the
 * mapping into them from an HTTP error response, an SSE `error` event, a failed connection and a
 * client-side timeout. `instanceof NotFoundError` and `err.code === 'NotFound'` both work.
 */
import { CodeboxError, errorCodes, errorFromWire, type CodeboxErrorOptions, type ErrorCode } from '@codebox/core'

/** A request field is wrong (HTTP 400); `details.field` names it. */
export class ValidationError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('ValidationError', message, options)
    this.name = 'ValidationError'
  }
}

/** The API key is missing or wrong (HTTP 401). */
export class UnauthorizedError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('Unauthorized', message, options)
    this.name = 'UnauthorizedError'
  }
}

/** No such session, interpreter, file or task (HTTP 404). */
export class NotFoundError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('NotFound', message, options)
    this.name = 'NotFoundError'
  }
}

/** The request body did not arrive in time (HTTP 408); send it without pauses, or in smaller parts. */
export class RequestTimeoutError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('RequestTimeout', message, options)
    this.name = 'RequestTimeoutError'
  }
}

/** The resource is in a state that does not allow the call (HTTP 409); also the local error of a session method called before `start()`. */
export class ConflictError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('Conflict', message, options)
    this.name = 'ConflictError'
  }
}

/** The session has ended (HTTP 410); start a new one. */
export class SessionTerminatedError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('SessionTerminated', message, options)
    this.name = 'SessionTerminatedError'
  }
}

/** The request is over a limit, such as the 100 MB file cap (HTTP 413). */
export class LimitExceededError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('LimitExceeded', message, options)
    this.name = 'LimitExceededError'
  }
}

/** Options of RateLimitedError: the server's `Retry-After`, in seconds, when it sent one. */
export interface RateLimitedErrorOptions extends CodeboxErrorOptions {
  retryAfterSeconds?: number
}

/** Too many requests for the tenant (HTTP 429); thrown after the SDK's own retries are used up. */
export class RateLimitedError extends CodeboxError {
  /** The server's `Retry-After` in seconds; undefined when it sent none. */
  readonly retryAfterSeconds: number | undefined

  constructor(message: string, options: RateLimitedErrorOptions = {}) {
    super('RateLimited', message, options)
    this.name = 'RateLimitedError'
    this.retryAfterSeconds = options.retryAfterSeconds
  }
}

/** The tenant is at a quota, such as its concurrent sessions (HTTP 429). Not retried: stop a session first. */
export class QuotaExceededError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('QuotaExceeded', message, options)
    this.name = 'QuotaExceededError'
  }
}

/** The call ran out of time, on the server (HTTP 504) or in the client (`timeoutMs`). */
export class TimeoutError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('Timeout', message, options)
    this.name = 'TimeoutError'
  }
}

/** The sandbox could not do the call (HTTP 500). */
export class SandboxFailureError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('SandboxFailure', message, options)
    this.name = 'SandboxFailureError'
  }
}

/** The server lacks a required part (HTTP 503), or the server could not be reached at all. */
export class UnavailableError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('Unavailable', message, options)
    this.name = 'UnavailableError'
  }
}

/**
 * The request named a Host, or came from a web page (Origin), that the server does not answer
 * (HTTP 403): DNS-rebinding and cross-site protection. An API key does not change it.
 */
export class ForbiddenError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('Forbidden', message, options)
    this.name = 'ForbiddenError'
  }
}

/**
 * The server's machine has no room for the session now (HTTP 503): memory or pids are taken.
 * Not retried by the SDK: ask for smaller limits, stop a session, or try later. `details.asked`
 * and `details.left` say what the start asked for and what is left.
 */
export class HostCapacityError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('HostCapacity', message, options)
    this.name = 'HostCapacityError'
  }
}

/**
 * The server has no model for its agent (HTTP 503): the operator sets CODEBOX_AGENT_MODELS (and
 * the provider's key) and restarts it. The message says what to set. Not retried.
 */
export class ModelNotConfiguredError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('ModelNotConfigured', message, options)
    this.name = 'ModelNotConfiguredError'
  }
}

/** Every model of the agent's chain failed (HTTP 502): down, throttled or refusing. The message names each model and why. */
export class ModelUnavailableError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('ModelUnavailable', message, options)
    this.name = 'ModelUnavailableError'
  }
}

/** The call was canceled (HTTP 409): its caller interrupted or stopped it, or the server shut down (an agent turn's `error` event with code `Canceled`). */
export class CanceledError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('Canceled', message, options)
    this.name = 'CanceledError'
  }
}

/** A bug in codebox (HTTP 500), or an answer the SDK could not read. */
export class InternalError extends CodeboxError {
  constructor(message: string, options?: CodeboxErrorOptions) {
    super('Internal', message, options)
    this.name = 'InternalError'
  }
}

const classes: { [C in ErrorCode]: new (message: string, options?: CodeboxErrorOptions) => CodeboxError } = {
  ValidationError,
  Unauthorized: UnauthorizedError,
  Forbidden: ForbiddenError,
  NotFound: NotFoundError,
  Conflict: ConflictError,
  RequestTimeout: RequestTimeoutError,
  SessionTerminated: SessionTerminatedError,
  LimitExceeded: LimitExceededError,
  RateLimited: RateLimitedError,
  QuotaExceeded: QuotaExceededError,
  Timeout: TimeoutError,
  SandboxFailure: SandboxFailureError,
  Unavailable: UnavailableError,
  HostCapacity: HostCapacityError,
  ModelNotConfigured: ModelNotConfiguredError,
  ModelUnavailable: ModelUnavailableError,
  Canceled: CanceledError,
  Internal: InternalError,
}

/** Re-creates a CodeboxError as the SDK class of its code (same message, details and cause). */
export function toTypedError(e: CodeboxError, extra: RateLimitedErrorOptions = {}): CodeboxError {
  const options: RateLimitedErrorOptions = { details: e.details, cause: e.cause, ...extra }
  return new classes[e.code](e.message, options)
}

/**
 * Turns an HTTP error response into a typed error: the codebox body when there is one, else the
 * status (a proxy's 502 page becomes UnavailableError and keeps its first 200 characters in
 * `details.body`). `details.requestId`
 * comes from the body or the `x-request-id` header.
 */
export async function errorFromResponse(res: Response): Promise<CodeboxError> {
  const text = await res.text().catch(() => '')
  let body: unknown = null
  try {
    body = JSON.parse(text)
  } catch {
    // Not JSON: errorFromWire falls back to the status.
  }
  const base = errorFromWire(res.status, body)
  const code = isWireError(body) ? base.code : (statusCodes[res.status] ?? base.code)
  const details = { ...base.details }
  const requestId = res.headers.get('x-request-id')
  if (requestId && details.requestId === undefined) details.requestId = requestId
  if (!isWireError(body) && text) details.body = text.slice(0, 200)
  const retryAfterSeconds = parseRetryAfter(res.headers.get('retry-after'))
  if (retryAfterSeconds !== undefined) details.retryAfterSeconds = retryAfterSeconds
  return toTypedError(new CodeboxError(code, base.message, { details }), { retryAfterSeconds })
}

/**
 * Codes of a status without a codebox body (a proxy's page), where the registry's first match
 * would mislead: a bare 500 is not a SandboxFailure, and a 502 means codebox is not answering.
 */
const statusCodes: Partial<Record<number, ErrorCode>> = { 500: 'Internal', 502: 'Unavailable' }

function isWireError(body: unknown): boolean {
  const e = (body as { error?: { code?: unknown } } | null)?.error
  return typeof e?.code === 'string' && e.code in errorCodes
}

/** The error of an SSE `error` event: `{error: {code, message, details, requestId}}`. */
export function errorFromEvent(data: string): CodeboxError {
  let body: unknown = null
  try {
    body = JSON.parse(data)
  } catch {
    return new InternalError(`the event stream sent an error event that is not JSON: ${data.slice(0, 200)}`)
  }
  const code = (body as { error?: { code?: unknown } } | null)?.error?.code
  const status = typeof code === 'string' && code in errorCodes ? errorCodes[code as ErrorCode].status : 500
  return toTypedError(errorFromWire(status, body))
}

/** `Retry-After` as seconds: a number of seconds or an HTTP date. */
export function parseRetryAfter(value: string | null): number | undefined {
  if (value === null || value.trim() === '') return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds)
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, (at - Date.now()) / 1000)
}

/** Why a fetch failed, in a word when the platform gives one (`ECONNREFUSED`, `ENOTFOUND`). */
function reasonOf(e: unknown): string {
  const cause = (e as { cause?: { code?: unknown; message?: unknown } } | null)?.cause
  if (typeof cause?.code === 'string') return cause.code
  if (typeof cause?.message === 'string') return cause.message
  return e instanceof Error ? e.message : String(e)
}

/** The server could not be reached: an UnavailableError naming the URL and how to start codebox. */
export function connectionError(baseUrl: string, e: unknown): UnavailableError {
  return new UnavailableError(`could not reach codebox at ${baseUrl}: ${reasonOf(e)}; is it running? (npm start / codebox serve)`, {
    cause: e,
    details: { baseUrl },
  })
}

/** The connection broke while a response body was being read. */
export function connectionLostError(baseUrl: string, call: string, e: unknown): UnavailableError {
  return new UnavailableError(`the connection to codebox at ${baseUrl} was lost during ${call}: ${reasonOf(e)}`, { cause: e, details: { baseUrl } })
}
