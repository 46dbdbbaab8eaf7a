/**
 * The SDK's HTTP layer over `fetch`: options and their defaults, auth, the per-call timeout, the
 * caller's abort signal, retries of the calls that are safe to repeat, and error mapping.
 * Browser-safe: it reads `process.env` only when a `process` global exists, and only when a
 * client is constructed.
 */
import { connectionError, connectionLostError, errorFromResponse, InternalError, RateLimitedError, TimeoutError, ValidationError } from './errors.ts'
import type { CodeboxError } from '@codebox/core'

/** How a client reaches codebox. */
export interface ClientOptions {
  /** Server URL. Default `CODEBOX_URL` from the environment, else `http://127.0.0.1:8080`. */
  baseUrl?: string
  /** Sent as `Authorization: Bearer <apiKey>`. Default `CODEBOX_API_KEY` from the environment, else none. */
  apiKey?: string
  /** Client-side limit of each call, ms, unless the call gives its own. Default 900000 (15 min). */
  timeoutMs?: number
  /** Retries of a call that is safe to repeat (network error, 429, 502, 503, 504). Default 3. */
  maxRetries?: number
  /** The fetch to use. Default `globalThis.fetch`. */
  fetch?: typeof fetch
  /** Extra headers sent with every request. Default none. */
  headers?: Record<string, string>
}

/** What every call takes last. */
export interface CallOptions {
  /** Aborts the call; the abort reason (an AbortError by default) is thrown as is. */
  signal?: AbortSignal
  /** Client-side limit of this call, ms. Default the client's `timeoutMs`. */
  timeoutMs?: number
}

/** Default server URL. */
export const defaultBaseUrl = 'http://127.0.0.1:8080'
/** Default client-side limit of a call, ms (15 min). */
export const defaultTimeoutMs = 15 * 60_000
/** Default retries of a safe call. */
export const defaultMaxRetries = 3

/** The longest `Retry-After` the SDK waits out; a longer one is thrown as RateLimitedError. */
const maxRetryAfterMs = 60_000
const backoffBaseMs = 250
/** setTimeout's largest delay; a longer timeoutMs waits this long. */
const maxTimerMs = 2 ** 31 - 1
const backoffMaxMs = 8_000

/** A request body fetch accepts. */
export type HttpBody = NonNullable<RequestInit['body']>

/** One request as the SDK's route functions describe it. */
export interface RequestSpec {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  /** Path with its segments already encoded, e.g. `/v1/sessions/abc`. */
  path: string
  query?: Record<string, string | number | boolean | undefined>
  /** A JSON body. */
  json?: unknown
  /** A raw body (file uploads). A ReadableStream is sent with `duplex: 'half'`. */
  body?: HttpBody
  headers?: Record<string, string>
  /** Added to the method and path in messages, e.g. the tool name of an invoke. */
  label?: string
  /** Whether the call may be sent again after a network error, 429, 502, 503 or 504. Default false. */
  retry?: boolean
}

/** A response whose body is still to be read; the call's timer runs until `body` ends or is cancelled. */
export interface OpenResponse {
  response: Response
  body: ReadableStream<Uint8Array>
}

interface Scope {
  call: string
  signal: AbortSignal
  deadline: number
  dispose(): void
}

function envOf(): Record<string, string | undefined> {
  return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {}
}

/** Sends requests to one codebox server. Shared by CodeInterpreter and CodeboxClient. */
export class HttpClient {
  /** The server URL, without a trailing slash. */
  readonly baseUrl: string
  readonly #apiKey: string | undefined
  readonly #timeoutMs: number
  readonly #maxRetries: number
  readonly #fetch: typeof fetch
  readonly #headers: Record<string, string>

  constructor(options: ClientOptions = {}) {
    const env = envOf()
    const baseUrl = (options.baseUrl ?? env.CODEBOX_URL ?? defaultBaseUrl).replace(/\/+$/, '')
    if (!URL.canParse(baseUrl)) throw new ValidationError(`baseUrl: ${JSON.stringify(baseUrl)} is not a URL`, { details: { field: 'baseUrl' } })
    this.baseUrl = baseUrl
    this.#apiKey = options.apiKey ?? (env.CODEBOX_API_KEY || undefined)
    this.#timeoutMs = positive(options.timeoutMs, 'timeoutMs') ?? defaultTimeoutMs
    this.#maxRetries = Math.max(0, Math.floor(options.maxRetries ?? defaultMaxRetries))
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis)
    this.#headers = { ...options.headers }
  }

  /** Sends a request and returns its parsed JSON body (undefined for 204). */
  async json<T>(spec: RequestSpec, options: CallOptions = {}): Promise<T> {
    const scope = this.#scope(spec, options)
    try {
      const res = await this.#send(spec, scope)
      const text = await this.#guard(scope, () => res.text())
      if (res.status === 204 || text === '') return undefined as T
      try {
        return JSON.parse(text) as T
      } catch (e) {
        throw new InternalError(`codebox at ${this.baseUrl} answered ${scope.call} with a body that is not JSON`, {
          cause: e,
          details: { body: text.slice(0, 200) },
        })
      }
    } finally {
      scope.dispose()
    }
  }

  /**
   * Sends a request and returns the response with its body unread. The timeout and the caller's
   * signal keep watching the body until it ends or is cancelled.
   */
  async open(spec: RequestSpec, options: CallOptions = {}): Promise<OpenResponse> {
    const scope = this.#scope(spec, options)
    try {
      const response = await this.#send(spec, scope)
      if (!response.body) {
        scope.dispose()
        return { response, body: new ReadableStream({ start: (c) => c.close() }) }
      }
      return { response, body: this.#watch(scope, response.body) }
    } catch (e) {
      scope.dispose()
      throw e
    }
  }

  #scope(spec: RequestSpec, options: CallOptions): Scope {
    const call = `${spec.method} ${spec.path}${spec.label ? ` (${spec.label})` : ''}`
    const timeoutMs = positive(options.timeoutMs, 'timeoutMs') ?? this.#timeoutMs
    const timer = new AbortController()
    const handle = setTimeout(
      () => timer.abort(new TimeoutError(`${call} timed out after ${timeoutMs} ms (timeoutMs)`, { details: { timeoutMs } })),
      Math.min(timeoutMs, maxTimerMs),
    )
    // A forgotten stream must not keep a Node process alive; browsers have no unref.
    ;(handle as { unref?: () => void }).unref?.()
    const signal = options.signal ? AbortSignal.any([options.signal, timer.signal]) : timer.signal
    return { call, signal, deadline: Date.now() + timeoutMs, dispose: () => clearTimeout(handle) }
  }

  async #send(spec: RequestSpec, scope: Scope): Promise<Response> {
    const url = this.#url(spec)
    const init = this.#init(spec, scope.signal)
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.#attempt(url, init, scope)
      if (outcome instanceof Response) return outcome
      if (!spec.retry || attempt >= this.#maxRetries) throw outcome
      const delayMs = retryDelayMs(attempt, outcome)
      if (delayMs === undefined || Date.now() + delayMs >= scope.deadline) throw outcome
      await sleep(delayMs, scope.signal)
    }
  }

  /** One try: the response when it succeeded, the error when another try may help; throws otherwise. */
  async #attempt(url: string, init: RequestInit, scope: Scope): Promise<Response | CodeboxError> {
    let res: Response
    try {
      res = await this.#fetch(url, init)
    } catch (e) {
      if (scope.signal.aborted) throw scope.signal.reason
      if (!(e instanceof TypeError)) throw e
      return connectionError(this.baseUrl, e)
    }
    if (res.ok) return res
    const error = await this.#guard(scope, () => errorFromResponse(res))
    if (!retryableStatus(res.status, error)) throw error
    return error
  }

  /** Runs a body read; a failure is the abort reason when the call was aborted or timed out. */
  async #guard<T>(scope: Scope, read: () => Promise<T>): Promise<T> {
    try {
      return await read()
    } catch (e) {
      if (scope.signal.aborted) throw scope.signal.reason
      throw connectionLostError(this.baseUrl, scope.call, e)
    }
  }

  #watch(scope: Scope, body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    const reader = body.getReader()
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        const { done, value } = await this.#guard(scope, () => reader.read()).catch((e: unknown) => {
          scope.dispose()
          throw e
        })
        if (done) {
          scope.dispose()
          controller.close()
        } else controller.enqueue(value)
      },
      cancel: async (reason) => {
        scope.dispose()
        await reader.cancel(reason)
      },
    })
  }

  #url(spec: RequestSpec): string {
    const url = new URL(this.baseUrl + spec.path)
    for (const [k, v] of Object.entries(spec.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v))
    return url.href
  }

  #init(spec: RequestSpec, signal: AbortSignal): RequestInit {
    const headers: Record<string, string> = { accept: 'application/json', ...this.#headers, ...spec.headers }
    if (this.#apiKey) headers.authorization = `Bearer ${this.#apiKey}`
    let body = spec.body
    if (spec.json !== undefined) {
      headers['content-type'] = 'application/json'
      body = JSON.stringify(spec.json)
    }
    const init: RequestInit & { duplex?: 'half' } = { method: spec.method, headers, body, signal }
    if (body instanceof ReadableStream) init.duplex = 'half'
    return init
  }
}

function positive(value: number | undefined, field: string): number | undefined {
  if (value === undefined) return undefined
  if (!(value > 0) || !Number.isFinite(value)) throw new ValidationError(`${field}: must be a positive number of ms, got ${value}`, { details: { field } })
  return value
}

function retryableStatus(status: number, error: CodeboxError): boolean {
  if (status === 429) return error.code !== 'QuotaExceeded'
  // A full machine stays full for a while: HostCapacity is the caller's to decide on, not retried.
  if (error.code === 'HostCapacity') return false
  return status === 502 || status === 503 || status === 504
}

/** Exponential backoff with full jitter, or the server's Retry-After; undefined: do not wait that long. */
function retryDelayMs(attempt: number, error: CodeboxError): number | undefined {
  if (error instanceof RateLimitedError && error.retryAfterSeconds !== undefined) {
    const ms = error.retryAfterSeconds * 1000
    return ms <= maxRetryAfterMs ? ms : undefined
  }
  const cap = Math.min(backoffMaxMs, backoffBaseMs * 2 ** attempt)
  return cap / 2 + Math.random() * (cap / 2)
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason as Error)
    const onAbort = (): void => {
      clearTimeout(handle)
      reject(signal.reason as Error)
    }
    const handle = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
