/**
 * The native API v1 routes that are not tied to running code: sessions, interpreters, audit and
 * ping. Each function is one HTTP call; which ones may be retried is decided here.
 */
import type { AuditEntry, CreateInterpreterRequest, Interpreter, SessionInfo, SessionList, StartSessionRequest, UpdateSessionRequest } from '@codebox/core'
import type { CallOptions, HttpClient } from './http.ts'

/** A page of the audit log. */
export interface AuditList {
  items: AuditEntry[]
  /** Pass as `nextToken` to get the next page; absent on the last. */
  nextToken?: string
}

/** All interpreters (not paged). */
export interface InterpreterList {
  items: Interpreter[]
}

/** `GET /ping`: `HealthyBusy` while calls are running; `time_of_last_update` in Unix seconds. */
export interface PingResult {
  status: 'Healthy' | 'HealthyBusy'
  time_of_last_update: number
}

/** Query of `sessions.list`. */
export interface ListSessionsOptions extends CallOptions {
  /** Only sessions in this state. Default both. */
  status?: 'READY' | 'TERMINATED'
  /** Page size, 1-100. Default 50 (the server's). */
  limit?: number
  /** From the previous page. */
  nextToken?: string
}

/** Query of `audit.list`. */
export interface ListAuditOptions extends CallOptions {
  /** Only entries of this session. */
  sessionId?: string
  /** Page size, 1-1000. Default 100 (the server's). */
  limit?: number
  /** From the previous page. */
  nextToken?: string
}

/** `StartSessionRequest` plus the call options. */
export type StartSessionOptions = StartSessionRequest & CallOptions

/** `/v1/sessions/{id}` with the id encoded. */
export const sessionPath = (sessionId: string): string => `/v1/sessions/${encodeURIComponent(sessionId)}`

const callOptions = (o: CallOptions): CallOptions => ({ signal: o.signal, timeoutMs: o.timeoutMs })

/**
 * `POST /v1/sessions`. A clientToken is generated when none is given, which makes the call safe
 * to retry: the server returns the same session for the same token.
 */
export function startSession(http: HttpClient, options: StartSessionOptions = {}): Promise<SessionInfo> {
  const { signal, timeoutMs, ...request } = options
  const json: StartSessionRequest = { ...request, clientToken: request.clientToken ?? crypto.randomUUID() }
  return http.json<SessionInfo>({ method: 'POST', path: '/v1/sessions', json, retry: true }, { signal, timeoutMs })
}

/** `GET /v1/sessions/{id}`. */
export function getSession(http: HttpClient, sessionId: string, options: CallOptions = {}): Promise<SessionInfo> {
  return http.json<SessionInfo>({ method: 'GET', path: sessionPath(sessionId), retry: true }, callOptions(options))
}

/** `PATCH /v1/sessions/{id}`: moves the end of the session's lifetime (`{endsInSeconds}` from now, or `{endsAt}`); answers with its new `endsAt`. */
export function updateSession(http: HttpClient, sessionId: string, update: UpdateSessionRequest, options: CallOptions = {}): Promise<SessionInfo> {
  return http.json<SessionInfo>({ method: 'PATCH', path: sessionPath(sessionId), json: update, retry: true }, callOptions(options))
}

/** `DELETE /v1/sessions/{id}`: idempotent; a stopped session answers with its record. */
export function stopSession(http: HttpClient, sessionId: string, options: CallOptions = {}): Promise<SessionInfo> {
  return http.json<SessionInfo>({ method: 'DELETE', path: sessionPath(sessionId), retry: true }, callOptions(options))
}

/** `GET /v1/sessions`: one page. */
export function listSessions(http: HttpClient, options: ListSessionsOptions = {}): Promise<SessionList> {
  const query = { status: options.status, limit: options.limit, nextToken: options.nextToken }
  return http.json<SessionList>({ method: 'GET', path: '/v1/sessions', query, retry: true }, callOptions(options))
}

/** `GET /v1/interpreters`. */
export function listInterpreters(http: HttpClient, options: CallOptions = {}): Promise<InterpreterList> {
  return http.json<InterpreterList>({ method: 'GET', path: '/v1/interpreters', retry: true }, callOptions(options))
}

/** `GET /v1/interpreters/{id}`. */
export function getInterpreter(http: HttpClient, interpreterId: string, options: CallOptions = {}): Promise<Interpreter> {
  return http.json<Interpreter>({ method: 'GET', path: `/v1/interpreters/${encodeURIComponent(interpreterId)}`, retry: true }, callOptions(options))
}

/** `POST /v1/interpreters`. Not retried: it has no idempotency token. */
export function createInterpreter(http: HttpClient, request: CreateInterpreterRequest, options: CallOptions = {}): Promise<Interpreter> {
  return http.json<Interpreter>({ method: 'POST', path: '/v1/interpreters', json: request }, callOptions(options))
}

/** `DELETE /v1/interpreters/{id}`. */
export function deleteInterpreter(http: HttpClient, interpreterId: string, options: CallOptions = {}): Promise<Interpreter> {
  return http.json<Interpreter>({ method: 'DELETE', path: `/v1/interpreters/${encodeURIComponent(interpreterId)}`, retry: true }, callOptions(options))
}

/** `GET /v1/audit`: one page. */
export function listAudit(http: HttpClient, options: ListAuditOptions = {}): Promise<AuditList> {
  const query = { sessionId: options.sessionId, limit: options.limit, nextToken: options.nextToken }
  return http.json<AuditList>({ method: 'GET', path: '/v1/audit', query, retry: true }, callOptions(options))
}

/** `GET /ping`. */
export function ping(http: HttpClient, options: CallOptions = {}): Promise<PingResult> {
  return http.json<PingResult>({ method: 'GET', path: '/ping', retry: true }, callOptions(options))
}

/** Walks pages: calls `list` with each `nextToken` until there is none, yielding the items. */
export async function* allPages<T, O extends { nextToken?: string }>(
  list: (options: O) => Promise<{ items: T[]; nextToken?: string }>,
  options: O,
): AsyncGenerator<T, void, undefined> {
  let nextToken = options.nextToken
  do {
    const page = await list({ ...options, nextToken })
    yield* page.items
    nextToken = page.nextToken
  } while (nextToken)
}
