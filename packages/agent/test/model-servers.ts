/**
 * Scripted model servers for tests: loopback servers that speak each provider's real wire format,
 * so the real client libraries (through Strands and the codebox agent) talk to them unchanged.
 * - Anthropic Messages: `POST /v1/messages`, Server-Sent Events (message_start, content_block_*,
 *   message_delta, message_stop; tool_use blocks streamed as input_json_delta).
 * - Bedrock ConverseStream: `POST /model/{id}/converse-stream`, AWS event-stream framing, over
 *   HTTP/2 cleartext, which is what the Bedrock runtime client's default handler speaks (or over
 *   HTTP/1.1 with `{http1: true}`, which is what a proxy such as codebox's gateway speaks upstream).
 * - OpenAI chat completions: `POST /v1/chat/completions`, SSE chunks with tool_calls deltas, `[DONE]`.
 * Each request is recorded as a `ModelRequestView` (system prompt, user texts, tool results, image
 * count, headers) and answered with the next scripted reply: text, a tool call, an HTTP error, or a hang.
 */
import http from 'node:http'
import http2 from 'node:http2'
import type { AddressInfo } from 'node:net'
import type { Duplex } from 'node:stream'
import { crc32 } from 'node:zlib'

export type ModelServerProvider = 'anthropic' | 'bedrock' | 'openai'

/** Token counts a reply reports (default: estimated from the request and reply sizes). */
export interface ScriptedUsage {
  inputTokens: number
  outputTokens: number
}

/** What the server answers to one request. */
export type ScriptedReply =
  | { text: string; usage?: ScriptedUsage } // streamed in a few chunks
  | { toolUse: { name: string; input: unknown; rawInput?: string }; text?: string; usage?: ScriptedUsage } // text before the call, optional; rawInput: arguments sent verbatim (e.g. broken JSON)
  | { status: number; message?: string } // an HTTP error: 429, 529, 500, 400...
  | { hang: true } // accepts and never answers

/** One request as the tests want to see it, whatever the provider's shape. */
export interface ModelRequestView {
  provider: ModelServerProvider
  model: string
  system: string
  /** Text the user wrote, in order (tool results excluded). */
  userTexts: string[]
  /** Text of each tool result sent back to the model, in order. */
  toolResults: string[]
  /** Images anywhere in the messages (user content or tool results). */
  imageCount: number
  /** The request body as the client sent it. */
  raw: unknown
  /** The request's path and query, as sent. */
  path: string
  /** The request's headers, names in lower case (HTTP/2 pseudo-headers left out). */
  headers: Record<string, string>
  /** The request body's bytes. */
  body: Buffer
}

export interface ModelServer {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  url: string
  requests: ModelRequestView[]
  close(): Promise<void>
}

type Script = ScriptedReply[] | ((req: ModelRequestView, index: number) => ScriptedReply)

export interface ModelServerOptions {
  /** Bedrock only: serve HTTP/1.1 instead of HTTP/2 cleartext (default false). */
  http1?: boolean
}

/** The fake credentials `modelEnv` hands out; tests check they never leak into events, errors or status. */
export const fakeKeys = {
  anthropic: 'sk-ant-codebox-test-SECRET-a1b2c3d4e5f6',
  openai: 'sk-codebox-test-SECRET-0f9e8d7c6b5a',
  awsAccessKeyId: 'AKIACODEBOXTESTKEY01',
  awsSecretAccessKey: 'codebox-test-SECRET-aws-secret-key-0123456789',
} as const

/** env for createAgent/agentOptionsFromEnv pointing a provider at the server (base URL, fake key / AWS creds and region). */
export function modelEnv(provider: ModelServerProvider, server: ModelServer): Record<string, string> {
  switch (provider) {
    case 'anthropic':
      return { ANTHROPIC_API_KEY: fakeKeys.anthropic, ANTHROPIC_BASE_URL: server.url }
    case 'openai':
      return { OPENAI_API_KEY: fakeKeys.openai, OPENAI_BASE_URL: `${server.url}/v1` }
    case 'bedrock':
      return {
        AWS_ACCESS_KEY_ID: fakeKeys.awsAccessKeyId,
        AWS_SECRET_ACCESS_KEY: fakeKeys.awsSecretAccessKey,
        AWS_REGION: 'us-east-1',
        AWS_ENDPOINT_URL_BEDROCK_RUNTIME: server.url,
      }
  }
}

/** Starts a scripted server for `provider` on 127.0.0.1 (an ephemeral port). */
export async function startModelServer(provider: ModelServerProvider, script: Script, options: ModelServerOptions = {}): Promise<ModelServer> {
  const requests: ModelRequestView[] = []
  const replyFor = (view: ModelRequestView): ScriptedReply => {
    const index = requests.length
    requests.push(view)
    if (typeof script === 'function') return script(view, index)
    return script[index] ?? { status: 500, message: `scripted model server: no reply scripted for request ${index + 1} (script has ${script.length})` }
  }
  const handle = (method: string | undefined, path: string, headers: Record<string, string>, body: Buffer, res: Responder): void => {
    const route = routeOf(provider, method, path)
    if (!route) {
      res.json(404, { message: `scripted ${provider} server: no route ${method} ${path}` })
      return
    }
    let raw: unknown
    try {
      raw = JSON.parse(body.toString('utf8'))
    } catch {
      res.json(400, { message: 'body is not JSON' })
      return
    }
    const view = viewOf(provider, route.model, raw, { path, headers, body })
    const reply = replyFor(view)
    if ('hang' in reply) return
    if ('status' in reply) {
      sendError(provider, res, reply.status, reply.message ?? defaultMessage(reply.status))
      return
    }
    const usage = reply.usage ?? { inputTokens: Math.ceil(body.length / 4), outputTokens: Math.ceil(JSON.stringify(reply).length / 4) }
    if (provider === 'anthropic') sendAnthropic(res, view.model, reply, usage, requests.length)
    else if (provider === 'openai') sendOpenAI(res, view.model, reply, usage, requests.length)
    else sendBedrock(res, reply, usage, requests.length)
  }
  return provider === 'bedrock' && !options.http1 ? startHttp2(requests, handle) : startHttp1(requests, handle)
}

/** A response being written, over HTTP/1.1 or HTTP/2. */
interface Responder {
  json(status: number, body: unknown, headers?: Record<string, string>): void
  start(status: number, headers: Record<string, string>): void
  write(chunk: string | Buffer): void
  end(): void
}

type Handler = (method: string | undefined, path: string, headers: Record<string, string>, body: Buffer, res: Responder) => void

/** Headers as one string each, lower-case names, HTTP/2 pseudo-headers dropped. */
function headersOf(headers: http.IncomingHttpHeaders | http2.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(':') && value !== undefined) out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value
  }
  return out
}

function routeOf(provider: ModelServerProvider, method: string | undefined, path: string): { model: string } | undefined {
  if (method !== 'POST') return undefined
  const p = path.split('?')[0]!
  if (provider === 'anthropic' && p === '/v1/messages') return { model: '' }
  if (provider === 'openai' && p === '/v1/chat/completions') return { model: '' }
  const m = /^\/model\/([^/]+)\/converse-stream$/.exec(p)
  if (provider === 'bedrock' && m) return { model: decodeURIComponent(m[1]!) }
  return undefined
}

function startHttp1(requests: ModelRequestView[], handle: Handler): Promise<ModelServer> {
  const sockets = new Set<Duplex>()
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      handle(req.method, req.url ?? '/', headersOf(req.headers), Buffer.concat(chunks), {
        json(status, body, headers = {}) {
          res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body))
        },
        start(status, headers) {
          res.writeHead(status, headers)
          res.flushHeaders()
        },
        write: (chunk) => void res.write(chunk),
        end: () => void res.end(),
      })
    })
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  return listen(server, requests, () => {
    for (const s of sockets) s.destroy()
  })
}

function startHttp2(requests: ModelRequestView[], handle: Handler): Promise<ModelServer> {
  const sessions = new Set<http2.ServerHttp2Session>()
  const server = http2.createServer()
  server.on('session', (session) => {
    sessions.add(session)
    session.on('close', () => sessions.delete(session))
  })
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('error', () => {})
    stream.on('end', () => {
      const ok = () => !stream.destroyed && !stream.closed
      handle(headers[':method'], headers[':path'] ?? '/', headersOf(headers), Buffer.concat(chunks), {
        json(status, body, extra = {}) {
          if (!ok()) return
          stream.respond({ ':status': status, 'content-type': 'application/json', ...extra })
          stream.end(JSON.stringify(body))
        },
        start(status, extra) {
          if (ok()) stream.respond({ ':status': status, ...extra })
        },
        write: (chunk) => void (ok() && stream.write(chunk)),
        end: () => void (ok() && stream.end()),
      })
    })
  })
  return listen(server, requests, () => {
    for (const s of sessions) s.destroy()
  })
}

function listen(server: http.Server | http2.Http2Server, requests: ModelRequestView[], dropAll: () => void): Promise<ModelServer> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        requests,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done())
            dropAll()
          }),
      })
    })
  })
}

function defaultMessage(status: number): string {
  if (status === 429) return 'Too many requests'
  if (status === 529) return 'Overloaded'
  if (status === 401) return 'invalid x-api-key'
  if (status === 403) return 'permission denied'
  if (status === 400) return 'invalid request'
  return 'internal server error'
}

function sendError(provider: ModelServerProvider, res: Responder, status: number, message: string): void {
  if (provider === 'anthropic') {
    const type =
      {
        400: 'invalid_request_error',
        401: 'authentication_error',
        403: 'permission_error',
        404: 'not_found_error',
        429: 'rate_limit_error',
        529: 'overloaded_error',
      }[status] ?? 'api_error'
    res.json(status, { type: 'error', error: { type, message } }, { 'request-id': 'req_scripted' })
  } else if (provider === 'openai') {
    res.json(status, {
      error: { message, type: status === 429 ? 'rate_limit_exceeded' : status < 500 ? 'invalid_request_error' : 'server_error', param: null, code: null },
    })
  } else {
    const type =
      {
        400: 'ValidationException',
        403: 'AccessDeniedException',
        404: 'ResourceNotFoundException',
        408: 'ModelTimeoutException',
        429: 'ThrottlingException',
        503: 'ServiceUnavailableException',
      }[status] ?? (status >= 500 ? 'InternalServerException' : 'ValidationException')
    res.json(status, { message }, { 'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/`, 'x-amzn-requestid': 'scripted' })
  }
}

/** `text` in three pieces (fewer when short), so clients see several deltas. */
function chunks(text: string): string[] {
  if (text.length < 3) return text ? [text] : []
  const n = Math.ceil(text.length / 3)
  return [text.slice(0, n), text.slice(n, 2 * n), text.slice(2 * n)].filter((c) => c !== '')
}

type Answer = Exclude<ScriptedReply, { status: number } | { hang: true }>
const toolOf = (reply: Answer) => ('toolUse' in reply ? reply.toolUse : undefined)
/** The tool call's arguments as the wire carries them: JSON of `input`, or `rawInput` verbatim. */
const argsOf = (tool: { input: unknown; rawInput?: string }) => tool.rawInput ?? JSON.stringify(tool.input ?? {})

function sendAnthropic(res: Responder, model: string, reply: Answer, usage: ScriptedUsage, n: number): void {
  res.start(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'request-id': `req_${n}` })
  const event = (type: string, data: Record<string, unknown>) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`)
  event('message_start', {
    message: {
      id: `msg_scripted_${n}`,
      type: 'message',
      role: 'assistant',
      content: [],
      model: model || 'scripted',
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: usage.inputTokens, output_tokens: 1 },
    },
  })
  let index = 0
  if (reply.text) {
    event('content_block_start', { index, content_block: { type: 'text', text: '' } })
    for (const c of chunks(reply.text)) event('content_block_delta', { index, delta: { type: 'text_delta', text: c } })
    event('content_block_stop', { index })
    index++
  }
  const tool = toolOf(reply)
  if (tool) {
    event('content_block_start', { index, content_block: { type: 'tool_use', id: `toolu_scripted_${n}`, name: tool.name, input: {} } })
    for (const c of chunks(argsOf(tool))) event('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: c } })
    event('content_block_stop', { index })
  }
  event('message_delta', { delta: { stop_reason: tool ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: usage.outputTokens } })
  event('message_stop', {})
  res.end()
}

function sendOpenAI(res: Responder, model: string, reply: Answer, usage: ScriptedUsage, n: number): void {
  res.start(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
  const base = { id: `chatcmpl-scripted-${n}`, object: 'chat.completion.chunk', created: Math.floor(Date.now() / 1000), model: model || 'scripted' }
  const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
    res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`)
  chunk({ role: 'assistant', content: '' })
  for (const c of chunks(reply.text ?? '')) chunk({ content: c })
  const tool = toolOf(reply)
  if (tool) {
    chunk({ tool_calls: [{ index: 0, id: `call_scripted_${n}`, type: 'function', function: { name: tool.name, arguments: '' } }] })
    for (const c of chunks(argsOf(tool))) chunk({ tool_calls: [{ index: 0, function: { arguments: c } }] })
  }
  chunk({}, tool ? 'tool_calls' : 'stop')
  const u = { prompt_tokens: usage.inputTokens, completion_tokens: usage.outputTokens, total_tokens: usage.inputTokens + usage.outputTokens }
  res.write(`data: ${JSON.stringify({ ...base, choices: [], usage: u })}\n\n`)
  res.write('data: [DONE]\n\n')
  res.end()
}

function sendBedrock(res: Responder, reply: Answer, usage: ScriptedUsage, n: number): void {
  res.start(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': `scripted-${n}` })
  const event = (type: string, payload: unknown) => res.write(eventStreamMessage(type, payload))
  event('messageStart', { role: 'assistant' })
  let index = 0
  if (reply.text) {
    for (const c of chunks(reply.text)) event('contentBlockDelta', { contentBlockIndex: index, delta: { text: c } })
    event('contentBlockStop', { contentBlockIndex: index })
    index++
  }
  const tool = toolOf(reply)
  if (tool) {
    event('contentBlockStart', { contentBlockIndex: index, start: { toolUse: { toolUseId: `tooluse_scripted_${n}`, name: tool.name } } })
    for (const c of chunks(argsOf(tool))) event('contentBlockDelta', { contentBlockIndex: index, delta: { toolUse: { input: c } } })
    event('contentBlockStop', { contentBlockIndex: index })
  }
  event('messageStop', { stopReason: tool ? 'tool_use' : 'end_turn' })
  event('metadata', {
    usage: { inputTokens: usage.inputTokens, outputTokens: usage.outputTokens, totalTokens: usage.inputTokens + usage.outputTokens },
    metrics: { latencyMs: 1 },
  })
  res.end()
}

/** One AWS event-stream message: prelude (lengths + CRC), string headers, JSON payload, message CRC. */
function eventStreamMessage(eventType: string, payload: unknown): Buffer {
  const headers: Buffer[] = []
  for (const [name, value] of Object.entries({ ':event-type': eventType, ':content-type': 'application/json', ':message-type': 'event' })) {
    const n = Buffer.from(name)
    const v = Buffer.from(value)
    const head = Buffer.alloc(4 + n.length)
    head.writeUInt8(n.length, 0)
    n.copy(head, 1)
    head.writeUInt8(7, 1 + n.length)
    head.writeUInt16BE(v.length, 2 + n.length)
    headers.push(head, v)
  }
  const h = Buffer.concat(headers)
  const body = Buffer.from(JSON.stringify(payload))
  const prelude = Buffer.alloc(12)
  prelude.writeUInt32BE(12 + h.length + body.length + 4, 0)
  prelude.writeUInt32BE(h.length, 4)
  prelude.writeUInt32BE(crc32(prelude.subarray(0, 8)), 8)
  const message = Buffer.concat([prelude, h, body, Buffer.alloc(4)])
  message.writeUInt32BE(crc32(message.subarray(0, message.length - 4)), message.length - 4)
  return message
}

/** Reads the provider's request body into the common view. */
function viewOf(
  provider: ModelServerProvider,
  bedrockModel: string,
  raw: unknown,
  request: Pick<ModelRequestView, 'path' | 'headers' | 'body'>,
): ModelRequestView {
  const body = (raw ?? {}) as Record<string, unknown>
  const view: ModelRequestView = { provider, model: bedrockModel, system: '', userTexts: [], toolResults: [], imageCount: 0, raw, ...request }
  const messages = Array.isArray(body.messages) ? (body.messages as Record<string, unknown>[]) : []
  if (provider === 'anthropic') {
    view.model = String(body.model ?? '')
    view.system = typeof body.system === 'string' ? body.system : textsOf(body.system, 'text').join('\n')
    for (const m of messages) {
      if (m.role !== 'user') continue
      if (typeof m.content === 'string') view.userTexts.push(m.content)
      for (const b of asBlocks(m.content)) {
        if (b.type === 'text') view.userTexts.push(String(b.text))
        else if (b.type === 'image') view.imageCount++
        else if (b.type === 'tool_result') {
          view.toolResults.push(typeof b.content === 'string' ? b.content : textsOf(b.content, 'text').join('\n'))
          view.imageCount += asBlocks(b.content).filter((x) => x.type === 'image').length
        }
      }
    }
  } else if (provider === 'openai') {
    view.model = String(body.model ?? '')
    for (const m of messages) {
      const texts = typeof m.content === 'string' ? [m.content] : textsOf(m.content, 'text')
      view.imageCount += asBlocks(m.content).filter((x) => x.type === 'image_url').length
      if (m.role === 'system' || m.role === 'developer') view.system = [view.system, ...texts].filter(Boolean).join('\n')
      else if (m.role === 'user') view.userTexts.push(...texts)
      else if (m.role === 'tool') view.toolResults.push(texts.join('\n'))
    }
  } else {
    view.system = asBlocks(body.system)
      .map((b) => b.text)
      .filter((t) => typeof t === 'string')
      .join('\n')
    for (const m of messages) {
      if (m.role !== 'user') continue
      for (const b of asBlocks(m.content)) {
        if (typeof b.text === 'string') view.userTexts.push(b.text)
        else if (b.image) view.imageCount++
        else if (b.toolResult) {
          const content = asBlocks((b.toolResult as Record<string, unknown>).content)
          view.toolResults.push(
            content
              .map((c) => c.text)
              .filter((t) => typeof t === 'string')
              .join('\n'),
          )
          view.imageCount += content.filter((c) => c.image).length
        }
      }
    }
  }
  return view
}

function asBlocks(value: unknown): Record<string, unknown>[] {
  return Array.isArray(value) ? value.filter((b): b is Record<string, unknown> => typeof b === 'object' && b !== null) : []
}

function textsOf(value: unknown, type: string): string[] {
  return asBlocks(value)
    .filter((b) => b.type === type && typeof b.text === 'string')
    .map((b) => b.text as string)
}
