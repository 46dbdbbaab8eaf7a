/**
 * `POST /v1/sessions/{id}/invoke`: one tool call, answered as one ToolResult or streamed as
 * Server-Sent Events. Never retried: running code twice is not safe.
 */
import type { ExecutionEvent, ToolArguments, ToolName, ToolResult } from '@codebox/core'
import { errorFromEvent, InternalError, UnavailableError } from './errors.ts'
import type { CallOptions, HttpClient, RequestSpec } from './http.ts'
import { sessionPath } from './routes.ts'
import { parseSse } from './sse.ts'

/**
 * How much longer than the call's own `timeoutMs` the client waits: the server ends the call at
 * `timeoutMs` and still has to send the result (with `limitsExceeded: ['TIMEOUT']`).
 */
export const invokeGraceMs = 10_000

function invokeSpec(sessionId: string, name: ToolName, args: unknown, timeoutMs: number | undefined, stream: boolean): RequestSpec {
  return {
    method: 'POST',
    path: `${sessionPath(sessionId)}/invoke`,
    json: { name, arguments: args, ...(timeoutMs !== undefined ? { timeoutMs } : {}) },
    headers: stream ? { accept: 'text/event-stream' } : {},
    label: timeoutMs === undefined ? name : `${name}, timeoutMs ${timeoutMs} + ${invokeGraceMs} ms grace`,
    retry: false,
  }
}

function clientOptions(options: CallOptions): CallOptions {
  return { signal: options.signal, timeoutMs: options.timeoutMs === undefined ? undefined : options.timeoutMs + invokeGraceMs }
}

/**
 * Runs one tool and returns its result. `options.timeoutMs` is sent to the server as the call's
 * limit (default the session's, 300 s); the client gives up `invokeGraceMs` after it.
 */
export function invoke<N extends ToolName>(
  http: HttpClient,
  sessionId: string,
  name: N,
  args: ToolArguments[N],
  options: CallOptions = {},
): Promise<ToolResult> {
  return http.json<ToolResult>(invokeSpec(sessionId, name, args, options.timeoutMs, false), clientOptions(options))
}

/**
 * Runs one tool and yields its events as the server produces them: stdout, stderr and display,
 * then the `result` event, whose ToolResult is also the generator's return value. A failure after
 * the stream began (an `error` event) is thrown as its typed error. Leaving the loop early closes
 * the stream; the call itself goes on in the session until it ends.
 */
export async function* invokeStream<N extends ToolName>(
  http: HttpClient,
  sessionId: string,
  name: N,
  args: ToolArguments[N],
  options: CallOptions = {},
): AsyncGenerator<ExecutionEvent, ToolResult, undefined> {
  const spec = invokeSpec(sessionId, name, args, options.timeoutMs, true)
  const { response, body } = await http.open(spec, clientOptions(options))
  if (!(response.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    // A server that answers with plain JSON still gives one result.
    const result = JSON.parse(await new Response(body).text()) as ToolResult
    yield { type: 'result', result }
    return result
  }
  for await (const event of parseSse(body)) {
    if (event.event === 'error') throw errorFromEvent(event.data)
    const parsed = parseEvent(event.data)
    if (!parsed) continue
    yield parsed
    if (parsed.type === 'result') return parsed.result
  }
  throw new UnavailableError(`the event stream of ${spec.method} ${spec.path} (${name}) ended before its result; the connection was cut`)
}

const eventTypes = new Set(['stdout', 'stderr', 'display', 'result'])

/** An ExecutionEvent, or undefined for an event type this SDK does not know (a newer server). */
function parseEvent(data: string): ExecutionEvent | undefined {
  let value: unknown
  try {
    value = JSON.parse(data)
  } catch (e) {
    throw new InternalError(`the event stream sent data that is not JSON: ${data.slice(0, 200)}`, { cause: e })
  }
  const type = (value as { type?: unknown } | null)?.type
  return typeof type === 'string' && eventTypes.has(type) ? (value as ExecutionEvent) : undefined
}
