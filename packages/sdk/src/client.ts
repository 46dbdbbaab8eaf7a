/**
 * CodeboxClient: the calls not tied to one session — sessions in bulk, interpreters, the audit
 * log and ping — and `session(id)` to work in an existing session.
 */
import type { AuditEntry, CreateInterpreterRequest, Interpreter, SessionInfo, SessionList, UpdateSessionRequest } from '@codebox/core'
import { CodeInterpreter } from './code-interpreter.ts'
import { HttpClient, type CallOptions, type ClientOptions } from './http.ts'
import * as routes from './routes.ts'
import { runtimesApi, type RuntimesApi } from './runtimes.ts'

/** `client.sessions`. */
export interface SessionsApi {
  /** Starts a session (a clientToken is generated when none is given, so retries are safe). */
  start(request?: routes.StartSessionOptions): Promise<SessionInfo>
  /** One session's record. */
  get(sessionId: string, options?: CallOptions): Promise<SessionInfo>
  /** One page of sessions, newest first; pass `nextToken` for the next. */
  list(options?: routes.ListSessionsOptions): Promise<SessionList>
  /** Every session, walking the pages: `for await (const s of client.sessions.listAll())`. */
  listAll(options?: Omit<routes.ListSessionsOptions, 'nextToken'>): AsyncGenerator<SessionInfo, void, undefined>
  /** Stops a session; idempotent (a stopped session answers with its record). */
  stop(sessionId: string, options?: CallOptions): Promise<SessionInfo>
  /**
   * Moves the end of a session's lifetime: `{endsInSeconds}` from now or `{endsAt}` (ISO-8601),
   * clamped to its interpreter's maximum; the answer's `endsAt` is the new end.
   */
  setDeadline(sessionId: string, update: UpdateSessionRequest, options?: CallOptions): Promise<SessionInfo>
}

/** `client.interpreters`: the configurations sessions start from. */
export interface InterpretersApi {
  /** All interpreters, the built-in `codebox.v1` included. */
  list(options?: CallOptions): Promise<routes.InterpreterList>
  /** One interpreter. */
  get(interpreterId: string, options?: CallOptions): Promise<Interpreter>
  /** Creates a custom interpreter (not retried: it has no idempotency token). */
  create(request: CreateInterpreterRequest, options?: CallOptions): Promise<Interpreter>
  /** Deletes a custom interpreter; returns its final record. */
  delete(interpreterId: string, options?: CallOptions): Promise<Interpreter>
}

/** `client.audit`: who ran what, when, with which outcome. */
export interface AuditApi {
  /** One page of entries; pass `nextToken` for the next. */
  list(options?: routes.ListAuditOptions): Promise<routes.AuditList>
  /** Every entry, walking the pages. */
  listAll(options?: Omit<routes.ListAuditOptions, 'nextToken'>): AsyncGenerator<AuditEntry, void, undefined>
}

/**
 * A client of one codebox server. Options default to `CODEBOX_URL` / `CODEBOX_API_KEY` (read at
 * construction, when a `process` global exists), else `http://127.0.0.1:8080` without a key.
 */
export class CodeboxClient {
  /** Sessions in bulk; work in one with `session(id)`. */
  readonly sessions: SessionsApi
  /** Interpreter configurations. */
  readonly interpreters: InterpretersApi
  /** The audit log. */
  readonly audit: AuditApi
  /** Hosted agent runtimes: deploys, versions, rollback, secrets. */
  readonly runtimes: RuntimesApi
  readonly #http: HttpClient
  readonly #options: ClientOptions

  constructor(options: ClientOptions = {}) {
    const http = new HttpClient(options)
    this.#http = http
    // Resolved once, so sessions attached later reach the same server with the same key.
    this.#options = { ...options, baseUrl: http.baseUrl }
    this.sessions = {
      start: (request) => routes.startSession(http, request),
      get: (sessionId, o) => routes.getSession(http, sessionId, o),
      list: (o) => routes.listSessions(http, o),
      listAll: (o = {}) => routes.allPages((page: routes.ListSessionsOptions) => routes.listSessions(http, page), o),
      stop: (sessionId, o) => routes.stopSession(http, sessionId, o),
      setDeadline: (sessionId, update, o) => routes.updateSession(http, sessionId, update, o),
    }
    this.interpreters = {
      list: (o) => routes.listInterpreters(http, o),
      get: (id, o) => routes.getInterpreter(http, id, o),
      create: (request, o) => routes.createInterpreter(http, request, o),
      delete: (id, o) => routes.deleteInterpreter(http, id, o),
    }
    this.runtimes = runtimesApi(http)
    this.audit = {
      list: (o) => routes.listAudit(http, o),
      listAll: (o = {}) => routes.allPages((page: routes.ListAuditOptions) => routes.listAudit(http, page), o),
    }
  }

  /** The server URL this client talks to. */
  get baseUrl(): string {
    return this.#http.baseUrl
  }

  /** `GET /ping`: whether the server is up, and busy. */
  ping(options: CallOptions = {}): Promise<routes.PingResult> {
    return routes.ping(this.#http, options)
  }

  /** A CodeInterpreter attached to an existing session (no call is made; `stop()` ends it). */
  session(sessionId: string): CodeInterpreter {
    return new CodeInterpreter({ ...this.#options, sessionId })
  }
}
