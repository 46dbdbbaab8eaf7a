/**
 * The runtime routes (`/v1/runtime-bundles`, `/v1/runtimes/...`): bundle uploads (a gzipped tar,
 * streamed when given as a stream), deploys, versions, rollback, delete and secrets.
 */
import type {
  DeployRuntimeRequest,
  RuntimeBundleInfo,
  RuntimeInfo,
  RuntimeLogEntryView,
  RuntimeSecretInfo,
  RuntimeSessionView,
  RuntimeVersionInfo,
} from '@codebox/core'
import type { UploadData } from './files.ts'
import type { CallOptions, HttpClient } from './http.ts'
import { parseSse, type SseEvent } from './sse.ts'

/** All runtimes of the tenant, the built-in codebox agent first (not paged). */
export interface RuntimeList {
  items: RuntimeInfo[]
}

/** A runtime's versions, newest first. */
export interface RuntimeVersionList {
  items: RuntimeVersionInfo[]
}

/** A runtime's secrets: names and times, never values. */
export interface RuntimeSecretList {
  items: RuntimeSecretInfo[]
}

/** Options of `client.runtimes.invoke`. */
export interface RuntimeInvokeOptions extends CallOptions {
  /** The runtime session (33-256 letters, digits, _ . : -): the same id reaches the same agent process. Default a new one (see `runtimeSessionId`). */
  session?: string
  /** The endpoint (DEFAULT) or a version number. Default DEFAULT. */
  qualifier?: string
  /** The payload's Content-Type. Default application/json. */
  contentType?: string
  /** What the caller accepts. Default `application/json, text/event-stream`. */
  accept?: string
}

/** A hosted agent's answer, its body unread: read it once, with `body`, `text()`, `json()` or `events()`. */
export interface RuntimeInvocation {
  /** The runtime session that answered (the one given, or the new one): pass it as `session` to reach the same agent again. */
  runtimeSessionId: string
  /** The agent's status (below 500: a 5xx is thrown as SandboxFailureError). */
  status: number
  contentType: string
  /** Whether the answer is an event stream (SSE): read it with `events()`. */
  streaming: boolean
  /** The answer's bytes as they come. */
  body: ReadableStream<Uint8Array>
  text(): Promise<string>
  json(): Promise<unknown>
  /** The events of an SSE answer, as they come. */
  events(): AsyncGenerator<SseEvent, void, undefined>
}

/** `client.runtimes`: hosted agent runtimes. `id` is a runtime id, name or ARN. */
export interface RuntimesApi {
  /** Uploads a bundle (a gzipped tar); a stream is sent as it is read (and not retried). */
  uploadBundle(data: UploadData, options?: CallOptions): Promise<RuntimeBundleInfo>
  /** Deploys an uploaded bundle: a new runtime, or the next version of the one of that name. */
  deploy(request: DeployRuntimeRequest, options?: CallOptions): Promise<RuntimeInfo>
  /** The built-in agent and the tenant's runtimes. */
  list(options?: CallOptions): Promise<RuntimeList>
  /** One runtime with its DEFAULT version's settings. */
  get(id: string, options?: CallOptions): Promise<RuntimeInfo>
  /** Its versions, newest first. */
  versions(id: string, options?: CallOptions): Promise<RuntimeVersionList>
  /** Pins DEFAULT to `version` until the next deploy. */
  rollback(id: string, version: number, options?: CallOptions): Promise<RuntimeInfo>
  /** Deletes it with its versions, bundles and secrets; returns what it was. */
  delete(id: string, options?: CallOptions): Promise<RuntimeInfo>
  /** Its runtime sessions running now (one sandbox each). */
  sessions(id: string, options?: CallOptions): Promise<{ items: RuntimeSessionView[] }>
  /** Ends a runtime session now (AWS StopRuntimeSession); NotFound when it is not running. */
  stopSession(id: string, runtimeSessionId: string, options?: CallOptions): Promise<void>
  /** What its agents printed, per runtime session, newest first; one runtime session's when given. */
  logs(id: string, runtimeSessionId?: string, options?: CallOptions): Promise<{ items: RuntimeLogEntryView[] }>
  /**
   * Invokes a hosted agent (POST /v1/runtimes/{id}/invocations): `payload` (bytes and strings as
   * they are, anything else as JSON) reaches its `/invocations`; the answer comes back as the agent
   * writes it. Not retried. The agent's failures are SandboxFailureError or TimeoutError whose
   * message ends with what it printed.
   */
  invoke(id: string, payload: unknown, options?: RuntimeInvokeOptions): Promise<RuntimeInvocation>
  /** Its secrets (for the model gateway): set, list names, remove. */
  readonly secrets: {
    set(id: string, name: string, value: string, options?: CallOptions): Promise<RuntimeSecretInfo>
    list(id: string, options?: CallOptions): Promise<RuntimeSecretList>
    delete(id: string, name: string, options?: CallOptions): Promise<void>
  }
}

const runtimePath = (id: string): string => `/v1/runtimes/${encodeURIComponent(id)}`
const opts = (o: CallOptions = {}): CallOptions => ({ signal: o.signal, timeoutMs: o.timeoutMs })

/** The `client.runtimes` namespace over one HTTP client. */
export function runtimesApi(http: HttpClient): RuntimesApi {
  return {
    uploadBundle: (data, o) => {
      const body = data instanceof Uint8Array ? (data as Uint8Array<ArrayBuffer>) : data
      return http.json<RuntimeBundleInfo>(
        { method: 'POST', path: '/v1/runtime-bundles', body, headers: { 'content-type': 'application/gzip' }, retry: !(body instanceof ReadableStream) },
        opts(o),
      )
    },
    // Not retried: a retry after a lost answer would deploy a second version.
    deploy: (request, o) => http.json<RuntimeInfo>({ method: 'POST', path: '/v1/runtimes', json: request }, opts(o)),
    list: (o) => http.json<RuntimeList>({ method: 'GET', path: '/v1/runtimes', retry: true }, opts(o)),
    get: (id, o) => http.json<RuntimeInfo>({ method: 'GET', path: runtimePath(id), retry: true }, opts(o)),
    versions: (id, o) => http.json<RuntimeVersionList>({ method: 'GET', path: `${runtimePath(id)}/versions`, retry: true }, opts(o)),
    rollback: (id, version, o) => http.json<RuntimeInfo>({ method: 'POST', path: `${runtimePath(id)}/rollback`, json: { version }, retry: true }, opts(o)),
    delete: (id, o) => http.json<RuntimeInfo>({ method: 'DELETE', path: runtimePath(id) }, opts(o)),
    sessions: (id, o) => http.json<{ items: RuntimeSessionView[] }>({ method: 'GET', path: `${runtimePath(id)}/sessions`, retry: true }, opts(o)),
    stopSession: async (id, runtimeSessionId, o) => {
      await http.json<undefined>({ method: 'DELETE', path: `${runtimePath(id)}/sessions/${encodeURIComponent(runtimeSessionId)}` }, opts(o))
    },
    logs: (id, runtimeSessionId, o) =>
      http.json<{ items: RuntimeLogEntryView[] }>(
        {
          method: 'GET',
          path: `${runtimePath(id)}/logs${runtimeSessionId ? `?runtimeSessionId=${encodeURIComponent(runtimeSessionId)}` : ''}`,
          retry: true,
        },
        opts(o),
      ),
    invoke: async (id, payload, o = {}) => {
      const body = payload instanceof Uint8Array ? (payload as Uint8Array<ArrayBuffer>) : typeof payload === 'string' ? payload : JSON.stringify(payload)
      const { response, body: stream } = await http.open(
        {
          method: 'POST',
          path: `${runtimePath(id)}/invocations`,
          query: { qualifier: o.qualifier },
          body,
          headers: {
            'content-type': o.contentType ?? 'application/json',
            accept: o.accept ?? 'application/json, text/event-stream',
            ...(o.session ? { 'x-amzn-bedrock-agentcore-runtime-session-id': o.session } : {}),
          },
        },
        opts(o),
      )
      const contentType = response.headers.get('content-type') ?? ''
      return {
        runtimeSessionId: response.headers.get('x-amzn-bedrock-agentcore-runtime-session-id') ?? o.session ?? '',
        status: response.status,
        contentType,
        streaming: contentType.toLowerCase().startsWith('text/event-stream'),
        body: stream,
        text: () => new Response(stream).text(),
        json: async () => JSON.parse(await new Response(stream).text()) as unknown,
        events: () => parseSse(stream),
      }
    },
    secrets: {
      set: (id, name, value, o) =>
        http.json<RuntimeSecretInfo>({ method: 'PUT', path: `${runtimePath(id)}/secrets/${encodeURIComponent(name)}`, json: { value }, retry: true }, opts(o)),
      list: (id, o) => http.json<RuntimeSecretList>({ method: 'GET', path: `${runtimePath(id)}/secrets`, retry: true }, opts(o)),
      delete: async (id, name, o) => {
        await http.json<undefined>({ method: 'DELETE', path: `${runtimePath(id)}/secrets/${encodeURIComponent(name)}` }, opts(o))
      },
    },
  }
}
