/**
 * Python SDK parity without Python: the requests that boto3 (botocore) and AWS's `bedrock_agentcore`
 * package put on the wire for seed 000's workflows — boto3, `CodeInterpreter(...).invoke(...)`,
 * `code_session` + `upload_file` + pandas, the control plane, errors — replayed in the order those
 * workflows make them against the server with a codebox access key, and the answers read back the
 * way botocore reads them, so the assertions are what a Python caller sees in
 * `event["result"]["structuredContent"]["stdout"]`.
 *
 * The request builder, SigV4 signer and response parser below are written from botocore's source
 * (each rule cites its file in boto/botocore) and do not import src/agentcore/sigv4.ts, so the two
 * SigV4 implementations check each other. Header order, SignedHeaders and body bytes were
 * cross-checked against botocore 1.43.11 through a logging proxy; the known answers at the end are
 * from that capture. Over 500 lines because the botocore stand-in (model excerpts, serializer, signer,
 * parser, the `bedrock_agentcore` client) lives with the workflows it replays; move it to a module of its
 * own if another test needs it.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHash, createHmac, randomUUID } from 'node:crypto'
import http from 'node:http'
import { describe, test, type TestContext } from 'node:test'
import { EventStreamCodec } from '@smithy/eventstream-codec'
import { fromUtf8, toUtf8 } from '@smithy/util-utf8'
import { testServer, waitUntil, type TestServer } from './fixtures.ts'

/** A response as Python sees it: a dict, indexed like Python indexes it. */
type PyDict = Record<string, any>
type Shape = 'string' | 'integer' | 'long' | 'double' | 'boolean' | 'timestamp' | 'blob' | { struct: Record<string, Shape> } | { list: Shape }
const list = (member: Shape): Shape => ({ list: member })
/** A structure from `member member:type ...` in model order (type defaults to string; `:*` takes it from `nested`). */
const struct = (members: string, nested: Record<string, Shape> = {}): Shape => ({
  struct: Object.fromEntries(
    members.split(/\s+/).map((m) => {
      const [name, type = 'string'] = m.split(':') as [string, string?]
      return [name, type === '*' ? nested[name]! : (type as Shape)]
    }),
  ),
})

// Shapes from boto/botocore botocore/data/bedrock-agentcore/2024-02-28/service-2.json and
// bedrock-agentcore-control/2023-06-05/service-2.json, members in model order. botocore's parser keeps
// only these members (botocore/parsers.py BaseJSONParser._handle_structure): codebox's extra fields
// never reach Python.
const errorShapes: Record<string, Shape> = {
  ValidationException: struct('message reason fieldList:*', { fieldList: list(struct('name message')) }),
  ...Object.fromEntries(
    ['AccessDenied', 'Conflict', 'InternalServer', 'ResourceNotFound', 'ServiceQuotaExceeded', 'Throttling'].map((n) => [`${n}Exception`, struct('message')]),
  ),
}
const contentBlock = struct('type text data:blob mimeType uri name description size:long resource:*', { resource: struct('type uri mimeType text blob:blob') })
const structuredContent = struct('taskId taskStatus stdout stderr exitCode:integer executionTime:double')
/** CodeInterpreterStreamOutput: the `result` event and the exception members (`:exception-type`). */
const streamMembers: Record<string, Shape> = {
  result: struct('content:* structuredContent:* isError:boolean', { content: list(contentBlock), structuredContent }),
  ...Object.fromEntries(Object.entries(errorShapes).map(([n, shape]) => [n[0]!.toLowerCase() + n.slice(1), shape])),
}
const certificates = list(struct('location:*', { location: struct('secretsManager:*', { secretsManager: struct('secretArn') }) }))
const timestamps = 'createdAt:timestamp lastUpdatedAt:timestamp'

interface Operation {
  method: string
  uri: string
  /** `member@uri`, `member@querystring`, `member@header=Wire-Name`; everything else goes to the JSON body. */
  located: Record<string, [string, string]>
  /** Whether the input shape has body members at all (RestJSONSerializer._requires_empty_body). */
  hasBody: boolean
  /** The member botocore fills with a uuid4 when absent (`idempotencyToken` in the model). */
  token?: string
  output: Shape
  /** InvokeCodeInterpreter: `sessionId` from a header and the event-stream payload `stream`. */
  eventStream?: true
}
function op(route: string, located: string, o: { hasBody?: boolean; token?: string; output: Shape; eventStream?: true }): Operation {
  const [method, uri] = route.split(' ') as [string, string]
  const entries = located
    .split(/\s+/)
    .filter(Boolean)
    .map((l) => {
      const [member, where] = l.split('@') as [string, string]
      const [kind, wire = member] = where.split('=') as [string, string?]
      return [member, [kind, wire] as [string, string]] as const
    })
  return { method, uri, located: Object.fromEntries(entries), hasBody: o.hasBody ?? false, ...o }
}
const trace = 'traceId@header=X-Amzn-Trace-Id traceParent@header=traceparent'
const dataPlane: Record<string, Operation> = {
  StartCodeInterpreterSession: op('PUT /code-interpreters/{codeInterpreterIdentifier}/sessions/start', `codeInterpreterIdentifier@uri ${trace}`, {
    hasBody: true,
    token: 'clientToken',
    output: struct('codeInterpreterIdentifier sessionId createdAt:timestamp'),
  }),
  GetCodeInterpreterSession: op('GET /code-interpreters/{codeInterpreterIdentifier}/sessions/get', 'codeInterpreterIdentifier@uri sessionId@querystring', {
    output: struct('codeInterpreterIdentifier sessionId name createdAt:timestamp sessionTimeoutSeconds:integer status certificates:*', { certificates }),
  }),
  ListCodeInterpreterSessions: op('POST /code-interpreters/{codeInterpreterIdentifier}/sessions/list', 'codeInterpreterIdentifier@uri', {
    hasBody: true,
    output: struct('items:* nextToken', { items: list(struct(`codeInterpreterIdentifier sessionId name status ${timestamps}`)) }),
  }),
  StopCodeInterpreterSession: op(
    'PUT /code-interpreters/{codeInterpreterIdentifier}/sessions/stop',
    `codeInterpreterIdentifier@uri sessionId@querystring ${trace}`,
    {
      hasBody: true,
      token: 'clientToken',
      output: struct('codeInterpreterIdentifier sessionId lastUpdatedAt:timestamp'),
    },
  ),
  InvokeCodeInterpreter: op(
    'POST /code-interpreters/{codeInterpreterIdentifier}/tools/invoke',
    `codeInterpreterIdentifier@uri sessionId@header=x-amzn-code-interpreter-session-id ${trace}`,
    { hasBody: true, output: struct('sessionId'), eventStream: true },
  ),
}
const summary = `codeInterpreterId codeInterpreterArn name description status ${timestamps}`
const controlPlane: Record<string, Operation> = {
  CreateCodeInterpreter: op('PUT /code-interpreters', '', {
    hasBody: true,
    token: 'clientToken',
    output: struct('codeInterpreterId codeInterpreterArn createdAt:timestamp status'),
  }),
  GetCodeInterpreter: op('GET /code-interpreters/{codeInterpreterId}', 'codeInterpreterId@uri', {
    output: struct(
      `codeInterpreterId codeInterpreterArn name description executionRoleArn networkConfiguration:* status certificates:* failureReason ${timestamps}`,
      {
        networkConfiguration: struct('networkMode vpcConfig:*', {
          vpcConfig: struct('securityGroups:* subnets:*', { securityGroups: list('string'), subnets: list('string') }),
        }),
        certificates,
      },
    ),
  }),
  ListCodeInterpreters: op('POST /code-interpreters', 'maxResults@querystring nextToken@querystring type@querystring', {
    output: struct('codeInterpreterSummaries:* nextToken', { codeInterpreterSummaries: list(struct(summary)) }),
  }),
  DeleteCodeInterpreter: op('DELETE /code-interpreters/{codeInterpreterId}', 'codeInterpreterId@uri clientToken@querystring', {
    token: 'clientToken',
    output: struct('codeInterpreterId status lastUpdatedAt:timestamp'),
  }),
}

/** Python's `json.dumps(obj)` defaults, which botocore/serialize.py RestJSONSerializer uses: `", "` and `": "`, ensure_ascii. */
function pyJson(v: unknown): string {
  if (v === null) return 'null'
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  if (typeof v === 'number' && Number.isInteger(v)) return String(v)
  if (typeof v === 'string') return pyString(v)
  if (Buffer.isBuffer(v)) return pyString(v.toString('base64')) // blobs: Serializer._get_base64
  if (Array.isArray(v)) return `[${v.map(pyJson).join(', ')}]`
  if (typeof v === 'object')
    return `{${Object.entries(v)
      .map(([k, x]) => `${pyString(k)}: ${pyJson(x)}`)
      .join(', ')}}`
  throw new Error(`pyJson: unsupported ${typeof v}`)
}
const pyEscapes: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f' }
/** ensure_ascii: everything outside printable ASCII as \uXXXX (lowercase hex, UTF-16 units, as CPython's json.encoder). */
const pyString = (s: string): string => `"${s.replace(/[^\x20-\x7e]|["\\]/g, (c) => pyEscapes[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)}"`

/** urllib.parse.quote(s, safe): UTF-8 bytes, letters, digits and `_.-~` kept (botocore/utils.py percent_encode uses safe '-._~'). */
const pyQuote = (s: string, safe: string): string =>
  [...Buffer.from(s, 'utf8')]
    .map((b) =>
      /[A-Za-z0-9_.~-]/.test(String.fromCharCode(b)) || safe.includes(String.fromCharCode(b))
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`,
    )
    .join('')

/** botocore/utils.py remove_dot_segments (also drops empty segments). */
function removeDotSegments(path: string): string {
  const out: string[] = []
  for (const s of path.split('/'))
    if (s === '..') out.pop()
    else if (s && s !== '.') out.push(s)
  return `${path.startsWith('/') ? '/' : ''}${out.join('/')}${path.endsWith('/') && out.length ? '/' : ''}`
}

/** botocore/auth.py SIGNED_HEADERS_BLACKLIST: every other header present when signing is signed. */
const unsignedHeaders = new Set(
  'connection expect keep-alive proxy-authenticate proxy-authorization te trailer transfer-encoding upgrade user-agent x-amzn-trace-id'.split(' '),
)
interface Credentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

/** botocore/auth.py SigV4Auth.add_auth: the Authorization header for a request as botocore holds it when signing. */
function sigV4(
  req: { method: string; path: string; query: string; host: string; headers: [string, string][]; body: string; amzDate: string; region: string },
  key: Credentials,
): string {
  const toSign = new Map<string, string[]>() // headers_to_sign: lowercased, blacklist out, host from the URL
  for (const [name, value] of req.headers)
    if (!unsignedHeaders.has(name.toLowerCase())) toSign.set(name.toLowerCase(), [...(toSign.get(name.toLowerCase()) ?? []), value])
  if (!toSign.has('host')) toSign.set('host', [req.host])
  const names = [...toSign.keys()].sort()
  const canonicalHeaders = names
    .map(
      (n) =>
        `${n}:${toSign
          .get(n)!
          .map((v) => v.split(/\s+/).filter(Boolean).join(' '))
          .join(',')}`,
    )
    .join('\n')
  // _canonical_query_string_url: the URL's already-encoded pairs, sorted as (key, value) tuples.
  const pairs = req.query ? req.query.split('&').map((p) => [p.split('=')[0]!, p.includes('=') ? p.slice(p.indexOf('=') + 1) : ''] as const) : []
  const canonicalQuery = [...pairs].sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0)).map(([k, v]) => `${k}=${v}`)
  const canonical = [
    req.method,
    pyQuote(removeDotSegments(req.path), '/~'), // _normalize_url_path: the encoded path is quoted once more
    canonicalQuery.join('&'),
    `${canonicalHeaders}\n`,
    names.join(';'),
    createHash('sha256').update(req.body).digest('hex'), // payload(): http:// is always payload-signed
  ].join('\n')
  // The control plane's model also says signingName bedrock-agentcore.
  const scope = `${req.amzDate.slice(0, 8)}/${req.region}/bedrock-agentcore/aws4_request`
  const stringToSign = ['AWS4-HMAC-SHA256', req.amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n')
  const signingKey = [req.amzDate.slice(0, 8), req.region, 'bedrock-agentcore', 'aws4_request'].reduce<Buffer>(
    (k, part) => createHmac('sha256', k).update(part).digest(),
    Buffer.from(`AWS4${key.secretAccessKey}`),
  )
  const signature = createHmac('sha256', signingKey).update(stringToSign).digest('hex')
  return `AWS4-HMAC-SHA256 Credential=${key.accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`
}

/** botocore/parsers.py _parse_shape for rest-json: model members only; blobs decoded; timestamps as datetimes. */
function parseShape(shape: Shape, value: unknown): unknown {
  if (value === null || value === undefined) return undefined
  if (typeof shape === 'object') {
    if ('list' in shape) return (value as unknown[]).map((v) => parseShape(shape.list, v))
    const out: PyDict = {}
    for (const [name, member] of Object.entries(shape.struct)) {
      const parsed = parseShape(member, (value as PyDict)[name])
      if (parsed !== undefined) out[name] = parsed
    }
    return out
  }
  switch (shape) {
    case 'blob':
      return Buffer.from(value as string, 'base64')
    case 'timestamp': {
      // botocore/utils.py parse_timestamp: epoch seconds or an ISO 8601 string; anything else raises.
      const d = typeof value === 'number' ? new Date(value * 1000) : new Date(value as string)
      if (Number.isNaN(d.getTime())) throw new Error(`botocore cannot parse the timestamp ${JSON.stringify(value)}`)
      return d
    }
    case 'integer':
    case 'long':
      return Math.trunc(Number(value))
    case 'double':
      return Number(value)
    case 'boolean':
      return value === true || value === 'true'
    case 'string':
      return value
  }
}

/** botocore's ClientError (HTTP errors) and EventStreamError (exception events), with `e.response` as Python has it. */
class BotocoreError extends Error {
  readonly code: string
  readonly response: PyDict
  constructor(kind: 'ClientError' | 'EventStreamError', code: string, operation: string, response: PyDict) {
    super(`An error occurred (${code}) when calling the ${operation} operation: ${response.Error.Message}`)
    this.name = kind
    this.code = code
    this.response = response
  }
}

/** What the Python process has: its environment (credentials, endpoints) and its connection pool. */
interface PyEnv {
  env: Record<string, string>
  agent: http.Agent
}
interface SentRequest {
  method: string
  target: string
  headers: [string, string][]
  body: string
}
const codec = new EventStreamCodec(toUtf8, fromUtf8)

/** `boto3.client(service, region_name=..., endpoint_url=...)`: one botocore client over one model. */
class Boto3Client {
  readonly sent: SentRequest[] = []
  private readonly url: URL
  private readonly operations: Record<string, Operation>
  private readonly region: string
  private readonly key: Credentials
  private readonly agent: http.Agent
  /** botocore/useragent.py as captured from boto3 1.43.11, plus Config(user_agent_extra). */
  private readonly userAgent: string

  constructor(
    py: PyEnv,
    options: { service: 'bedrock-agentcore' | 'bedrock-agentcore-control'; region: string; endpointUrl: string; userAgentExtra?: string },
  ) {
    this.url = new URL(options.endpointUrl)
    this.operations = options.service === 'bedrock-agentcore' ? dataPlane : controlPlane
    this.region = options.region
    const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey, AWS_SESSION_TOKEN: sessionToken } = py.env
    this.key = { accessKeyId: accessKeyId!, secretAccessKey: secretAccessKey!, ...(sessionToken ? { sessionToken } : {}) }
    this.agent = py.agent
    this.userAgent = [
      'Boto3/1.43.11 md/Botocore#1.43.11 ua/2.1 os/linux#6.8.0 md/arch#x86_64 lang/python#3.11.7 md/pyimpl#CPython m/Z,b,D,N cfg/retry-mode#legacy Botocore/1.43.11',
      ...(options.userAgentExtra ? [options.userAgentExtra] : []),
    ].join(' ')
  }

  /** `client.<operation>(**params)`: serialize, sign, send, parse (botocore/client.py _make_api_call). */
  async call(operation: string, input: PyDict): Promise<PyDict> {
    const op = this.operations[operation]!
    const params = { ...input }
    // botocore/handlers.py generate_idempotent_uuid (before-parameter-build): appended after the caller's params.
    if (op.token && params[op.token] === undefined) params[op.token] = randomUUID()
    // botocore/serialize.py BaseRestSerializer: params partitioned in the order given; None is skipped.
    let path = op.uri
    const query: string[] = []
    const located: [string, string][] = []
    const body: PyDict = {}
    for (const [k, v] of Object.entries(params)) {
      const [where, wireName] = op.located[k] ?? ['body', k]
      if (v === undefined || v === null) continue
      if (where === 'uri') path = path.replace(`{${wireName}}`, pyQuote(String(v), ''))
      else if (where === 'querystring')
        query.push(`${pyQuote(wireName, '')}=${pyQuote(String(v), '')}`) // awsrequest.py: percent_encode_sequence
      else if (where === 'header') located.push([wireName, String(v)])
      else body[k] = v
    }
    // RestJSONSerializer: `{}` when the shape has body members but none was given; no body (and no Content-Type) when it has none.
    const bodyText = Object.keys(body).length > 0 ? pyJson(body) : op.hasBody ? '{}' : ''
    const amzDate = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '')
    const host = this.url.host
    // Headers present when the signer runs: botocore/client.py _register_handlers puts it on request-created.<service-id>,
    // and botocore/hooks.py calls the more specific handlers first. X-Amz-Date and X-Amz-Security-Token are auth.py's.
    const signing: [string, string][] = [...located, ...(bodyText ? [['Content-Type', 'application/json'] as [string, string]] : [])]
    signing.push(['User-Agent', this.userAgent], ['X-Amz-Date', amzDate])
    if (this.key.sessionToken) signing.push(['X-Amz-Security-Token', this.key.sessionToken])
    const target = `${path}${query.length ? `?${query.join('&')}` : ''}`
    const authorization = sigV4(
      { method: op.method, path, query: query.join('&'), host, headers: signing, body: bodyText, amzDate, region: this.region },
      this.key,
    )
    // On the wire: Host and Accept-Encoding: identity from CPython's http.client putrequest, then botocore's headers.
    // handlers.py add_retry_headers (on request-created) runs after signing, so amz-sdk-* are unsigned; the first
    // attempt says only `attempt=1` (retries/standard.py and retryhandler.py add `max` when weighing a retry).
    // awsrequest.py AWSRequestPreparer adds Content-Length for every method but GET/HEAD/OPTIONS.
    const headers: [string, string][] = [['Host', host], ['Accept-Encoding', 'identity'], ...signing, ['Authorization', authorization]]
    headers.push(['amz-sdk-invocation-id', randomUUID()], ['amz-sdk-request', 'attempt=1'])
    if (op.method !== 'GET') headers.push(['Content-Length', String(Buffer.byteLength(bodyText))])
    this.sent.push({ method: op.method, target, headers, body: bodyText })

    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = http.request(
        { agent: this.agent, host: this.url.hostname, port: this.url.port, method: op.method, path: target, headers: headers.flat(), setHost: false },
        resolve,
      )
      req.on('error', reject)
      req.end(bodyText || undefined)
    })
    const status = res.statusCode ?? 0
    const responseHeaders = res.headers as Record<string, string>
    const metadata = { RequestId: responseHeaders['x-amzn-requestid'], HTTPStatusCode: status }
    // endpoint.py convert_to_response_dict: an error body is read whole; an event stream is left on the socket.
    if (status >= 300) throw clientError(operation, await readAll(res), responseHeaders, metadata)
    if (op.eventStream) {
      return { ResponseMetadata: metadata, sessionId: responseHeaders['x-amzn-code-interpreter-session-id'], stream: eventStream(res, operation) }
    }
    const raw = await readAll(res)
    return { ResponseMetadata: metadata, ...(parseShape(op.output, raw.length ? JSON.parse(raw.toString('utf8')) : {}) as PyDict) }
  }
}

async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk)
  return Buffer.concat(chunks)
}

/** parsers.py RestJSONParser._do_error_parse + endpoint.py _add_modeled_error_fields. */
function clientError(operation: string, raw: Buffer, headers: Record<string, string>, metadata: PyDict): BotocoreError {
  const body = (raw.length ? JSON.parse(raw.toString('utf8')) : {}) as PyDict
  const code = String(headers['x-amzn-errortype'] ?? body.code ?? body.Code ?? body.__type ?? metadata.HTTPStatusCode)
    .split(':')[0]!
    .split('#')
    .at(-1)!
  const modeled = errorShapes[code] ? (parseShape(errorShapes[code], body) as PyDict) : {}
  return new BotocoreError('ClientError', code, operation, {
    Error: { Message: body.message ?? body.Message ?? '', Code: code },
    ResponseMetadata: metadata,
    ...modeled,
  })
}

/**
 * `response["stream"]`: botocore/eventstream.py EventStream over EventStreamBuffer (messages split by their
 * prelude, CRCs checked), each message parsed by parsers.py BaseEventStreamParser: an `event` becomes
 * `{<:event-type>: parsed}` (unknown types are skipped), an `exception` raises EventStreamError whose code is
 * the `:exception-type` member name. Bytes are read only when the caller iterates, as urllib3 does.
 */
function eventStream(res: http.IncomingMessage, operation: string): AsyncIterable<PyDict> {
  return {
    async *[Symbol.asyncIterator]() {
      let buffer = Buffer.alloc(0)
      for await (const chunk of res as AsyncIterable<Buffer>) {
        buffer = Buffer.concat([buffer, chunk])
        while (buffer.length >= 12 && buffer.length >= buffer.readUInt32BE(0)) {
          const { headers, body } = codec.decode(buffer.subarray(0, buffer.readUInt32BE(0)))
          buffer = buffer.subarray(buffer.readUInt32BE(0))
          const header = (name: string) => headers[name]?.value as string | undefined
          const payload = body.length ? (JSON.parse(Buffer.from(body).toString('utf8')) as PyDict) : {}
          if (header(':message-type') === 'exception' || header(':message-type') === 'error') {
            const exceptionType = header(':exception-type') ?? ''
            const shape = streamMembers[exceptionType]
            const code = shape ? exceptionType : (header(':error-code') ?? '')
            const text = shape ? ((parseShape(shape, payload) as PyDict).message ?? payload.Message ?? '') : (header(':error-message') ?? '')
            throw new BotocoreError('EventStreamError', code, operation, { Error: { Code: code, Message: text } })
          }
          const eventType = header(':event-type') ?? ''
          if (streamMembers[eventType]) yield { [eventType]: parseShape(streamMembers[eventType], payload) }
        }
      }
      // botocore would drop a truncated tail silently; a server that sends one is wrong.
      assert.equal(buffer.length, 0, 'the event stream ended in the middle of a message')
    },
  }
}

/**
 * aws/bedrock-agentcore-sdk-python src/bedrock_agentcore/tools/code_interpreter_client.py, the parts the
 * seed uses, making the same boto3 calls with the same arguments. Endpoints come from
 * BEDROCK_AGENTCORE_DP_ENDPOINT / _CP_ENDPOINT (src/bedrock_agentcore/_utils/endpoints.py); the user agent
 * gets `bedrock-agentcore/<version>` (_utils/user_agent.py).
 */
class CodeInterpreter {
  identifier: string | undefined
  sessionId: string | undefined
  readonly dataPlaneClient: Boto3Client
  readonly controlPlaneClient: Boto3Client

  constructor(region: string, py: PyEnv) {
    const userAgentExtra = 'bedrock-agentcore/1.0.0'
    this.controlPlaneClient = new Boto3Client(py, {
      service: 'bedrock-agentcore-control',
      region,
      endpointUrl: py.env.BEDROCK_AGENTCORE_CP_ENDPOINT!,
      userAgentExtra,
    })
    this.dataPlaneClient = new Boto3Client(py, { service: 'bedrock-agentcore', region, endpointUrl: py.env.BEDROCK_AGENTCORE_DP_ENDPOINT!, userAgentExtra })
  }

  async start(identifier = 'aws.codeinterpreter.v1', name?: string, sessionTimeoutSeconds = 900): Promise<string> {
    const r = await this.dataPlaneClient.call('StartCodeInterpreterSession', {
      codeInterpreterIdentifier: identifier,
      name: name ?? `code-session-${randomUUID().replaceAll('-', '').slice(0, 8)}`, // uuid.uuid4().hex[:8]
      sessionTimeoutSeconds,
    })
    this.identifier = r.codeInterpreterIdentifier
    this.sessionId = r.sessionId
    return r.sessionId
  }

  async stop(): Promise<boolean> {
    if (!this.sessionId || !this.identifier) return true
    await this.dataPlaneClient.call('StopCodeInterpreterSession', { codeInterpreterIdentifier: this.identifier, sessionId: this.sessionId })
    this.identifier = this.sessionId = undefined
    return true
  }

  async invoke(method: string, params?: PyDict): Promise<PyDict> {
    if (!this.sessionId || !this.identifier) await this.start()
    return this.dataPlaneClient.call('InvokeCodeInterpreter', {
      codeInterpreterIdentifier: this.identifier,
      sessionId: this.sessionId,
      name: method,
      arguments: params ?? {},
    })
  }

  uploadFile(path: string, content: string | Buffer): Promise<PyDict> {
    return this.invoke('writeFiles', { content: [typeof content === 'string' ? { path, text: content } : { path, blob: content }] })
  }

  /** download_file: the first resource's text, or its blob decoded as UTF-8 if it decodes, else the bytes. */
  async downloadFile(path: string): Promise<string | Buffer> {
    for await (const event of (await this.invoke('readFiles', { paths: [path] })).stream as AsyncIterable<PyDict>) {
      const resource = event.result?.content?.find((c: PyDict) => c.type === 'resource')?.resource
      if (resource?.text !== undefined) return resource.text as string
      if (resource?.blob) {
        try {
          return new TextDecoder('utf-8', { fatal: true }).decode(resource.blob as Buffer)
        } catch {
          return resource.blob as Buffer
        }
      }
    }
    throw new Error(`FileNotFoundError: Could not read file: ${path}`)
  }
}

/** `with code_session(region, identifier=...) as client:` — start, yield, stop in `finally`. */
async function codeSession<T>(py: PyEnv, body: (client: CodeInterpreter) => Promise<T>, identifier?: string): Promise<T> {
  const client = new CodeInterpreter('us-west-2', py)
  await client.start(identifier)
  try {
    return await body(client)
  } finally {
    await client.stop()
  }
}

const events = async (response: PyDict): Promise<PyDict[]> => {
  const out: PyDict[] = []
  for await (const event of response.stream as AsyncIterable<PyDict>) out.push(event)
  return out
}
const rejects = async (p: Promise<unknown>): Promise<BotocoreError> =>
  p.then(
    () => assert.fail('expected botocore to raise'),
    (e: unknown) => (e instanceof BotocoreError ? e : assert.fail(`expected a botocore error, got ${String(e)}`)),
  )

/** A server and a Python process pointed at it by the two lines docs/agentcore-python.md gives. */
async function pythonAgainst(t: TestContext, extraEnv: Record<string, string> = {}): Promise<{ server: TestServer; py: PyEnv }> {
  const server = await testServer(t)
  const { accessKeyId, secretAccessKey } = await server.store.awsKeys.create({ tenant: 'python' })
  const agent = new http.Agent({ keepAlive: true }) // urllib3's pool keeps connections too
  t.after(() => agent.destroy())
  const env = {
    AWS_ACCESS_KEY_ID: accessKeyId,
    AWS_SECRET_ACCESS_KEY: secretAccessKey,
    BEDROCK_AGENTCORE_DP_ENDPOINT: server.url,
    BEDROCK_AGENTCORE_CP_ENDPOINT: server.url,
  }
  return { server, py: { env: { ...env, ...extraEnv }, agent } }
}

const builtIn = 'aws.codeinterpreter.v1'
const uuid = '[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}'
// The fake driver runs the host's /usr/bin/python3 (packages/sandbox/src/drivers/fake/driver.ts).
const noPandas =
  spawnSync('/usr/bin/python3', ['-c', 'import pandas']).status !== 0 && 'python3-pandas is not installed on this host (the fake driver runs /usr/bin/python3)'
const csvContent = 'date,product,revenue\n2023-01-05,widget,120.5\n2023-02-11,gadget,80\n2023-03-20,widget,99.5\n2024-01-02,gadget,150\n'

describe('seed 000 workflows, replayed as the Python clients send them', () => {
  test('bedrock_agentcore: CodeInterpreter("us-west-2").start(), invoke("executeCode", ...), stop()', async (t) => {
    const { py } = await pythonAgainst(t)
    const client = new CodeInterpreter('us-west-2', py)
    const sessionId = await client.start()
    const [start] = client.dataPlaneClient.sent
    assert.equal(`${start!.method} ${start!.target}`, `PUT /code-interpreters/${builtIn}/sessions/start`)
    assert.match(start!.body, new RegExp(`^\\{"name": "code-session-[0-9a-f]{8}", "sessionTimeoutSeconds": 900, "clientToken": "${uuid}"\\}$`))
    assert.match(sessionId, /^[0-9a-zA-Z]{1,40}$/)

    const response = await client.invoke('executeCode', { language: 'python', code: 'print("Hello World!!!")', clearContext: false })
    assert.equal(
      client.dataPlaneClient.sent[1]!.body,
      '{"name": "executeCode", "arguments": {"language": "python", "code": "print(\\"Hello World!!!\\")", "clearContext": false}}',
    )
    assert.equal(response.sessionId, sessionId)
    const stream = await events(response)
    assert.deepEqual(stream, [
      { result: { content: [{ type: 'text', text: 'Hello World!!!\n' }], structuredContent: stream[0]!.result.structuredContent, isError: false } },
    ])
    assert.equal(stream[0]!.result.structuredContent.stdout, 'Hello World!!!\n')
    assert.equal(stream[0]!.result.structuredContent.exitCode, 0)
    assert.equal(typeof stream[0]!.result.structuredContent.executionTime, 'number')

    assert.equal(await client.stop(), true)
    const stop = client.dataPlaneClient.sent[2]!
    assert.equal(stop.target, `/code-interpreters/${builtIn}/sessions/stop?sessionId=${sessionId}`)
    assert.match(stop.body, new RegExp(`^\\{"clientToken": "${uuid}"\\}$`))
    const after = await client.dataPlaneClient.call('GetCodeInterpreterSession', { codeInterpreterIdentifier: builtIn, sessionId })
    assert.equal(after.status, 'TERMINATED')
  })

  test('boto3: start_code_interpreter_session, invoke_code_interpreter (pandas), get, list, stop', { skip: noPandas }, async (t) => {
    const { py } = await pythonAgainst(t)
    // The seed's create_code_interpreter_session / execute_code / delete_code_interpreter_session do not exist on
    // boto3's client; these are the operations of the model (botocore/data/bedrock-agentcore/2024-02-28).
    const client = new Boto3Client(py, { service: 'bedrock-agentcore', region: 'us-west-2', endpointUrl: py.env.BEDROCK_AGENTCORE_DP_ENDPOINT! })
    const sessionResponse = await client.call('StartCodeInterpreterSession', { codeInterpreterIdentifier: builtIn })
    assert.match(client.sent[0]!.body, new RegExp(`^\\{"clientToken": "${uuid}"\\}$`))
    const sessionId: string = sessionResponse.sessionId
    assert.ok(sessionResponse.createdAt instanceof Date && Math.abs(sessionResponse.createdAt.getTime() - Date.now()) < 60_000)

    const code =
      "\nimport pandas as pd\nimport numpy as np\n\n# 샘플 데이터 생성\ndata = {'name': ['Alice', 'Bob', 'Charlie'], 'age': [25, 30, 35]}\ndf = pd.DataFrame(data)\nprint(df.describe())\n"
    const executeResponse = await client.call('InvokeCodeInterpreter', {
      codeInterpreterIdentifier: builtIn,
      sessionId,
      name: 'executeCode',
      arguments: { code, language: 'python' },
    })
    // ensure_ascii: the Korean comment travels as \uXXXX escapes.
    assert.ok(client.sent[1]!.body.includes('# \\uc0d8\\ud50c \\ub370\\uc774\\ud130 \\uc0dd\\uc131\\n'), client.sent[1]!.body)
    const results = (await events(executeResponse)).filter((event) => 'result' in event).map((event) => event.result)
    assert.equal(results.length, 1)
    assert.equal(results[0]!.isError, false, results[0]!.structuredContent.stderr)
    assert.match(results[0]!.structuredContent.stdout, /^\s+age\ncount\s+3\.0\nmean\s+30\.0\nstd\s+5\.0\nmin\s+25\.0\n/)

    const got = await client.call('GetCodeInterpreterSession', { codeInterpreterIdentifier: builtIn, sessionId })
    assert.deepEqual(Object.keys(got), ['ResponseMetadata', 'codeInterpreterIdentifier', 'sessionId', 'createdAt', 'sessionTimeoutSeconds', 'status'])
    assert.equal(got.sessionTimeoutSeconds, 900)
    assert.equal(client.sent[2]!.body, '', 'a GET has no body and no Content-Type')
    const listed = await client.call('ListCodeInterpreterSessions', { codeInterpreterIdentifier: builtIn, maxResults: 10, status: 'READY' })
    assert.equal(client.sent[3]!.body, '{"maxResults": 10, "status": "READY"}')
    assert.deepEqual(
      listed.items.map((s: PyDict) => [s.sessionId, s.status, s.lastUpdatedAt instanceof Date]),
      [[sessionId, 'READY', true]],
    )
    const stopped = await client.call('StopCodeInterpreterSession', { codeInterpreterIdentifier: builtIn, sessionId })
    assert.equal(stopped.sessionId, sessionId)
    assert.ok(stopped.lastUpdatedAt instanceof Date)
  })

  test('bedrock_agentcore: code_session + upload_file + pandas analysis; the Strands tool reads its stream after stop', { skip: noPandas }, async (t) => {
    const { py } = await pythonAgainst(t)
    let sent: SentRequest[] = []
    const analysis = await codeSession(py, async (client) => {
      sent = client.dataPlaneClient.sent
      const uploaded = await events(await client.uploadFile('data.csv', csvContent))
      assert.equal(uploaded[0]!.result.isError, false)
      assert.equal(sent[1]!.body, `{"name": "writeFiles", "arguments": {"content": [{"path": "data.csv", "text": ${pyString(csvContent)}}]}}`)
      await events(await client.uploadFile('raw.bin', Buffer.from([0, 1, 255])))
      assert.equal(sent[2]!.body, '{"name": "writeFiles", "arguments": {"content": [{"path": "raw.bin", "blob": "AAH/"}]}}')

      const response = await client.invoke('executeCode', {
        language: 'python',
        code: '\nimport pandas as pd\ndf = pd.read_csv("data.csv")\nprint(df.head())\nprint(df.describe())\n',
        clearContext: false,
      })
      const out = (await events(response)).filter((event) => 'result' in event).map((event) => event.result)
      assert.equal(out[0]!.isError, false, out[0]!.structuredContent.stderr)
      assert.match(out[0]!.structuredContent.stdout, /date product\s+revenue\n0\s+2023-01-05\s+widget\s+120\.5\n/)
      assert.match(out[0]!.structuredContent.stdout, /mean\s+112\.50*\n/)

      assert.equal(await client.downloadFile('data.csv'), csvContent)
      assert.deepEqual(await client.downloadFile('raw.bin').then((b) => [...(b as Buffer)]), [0, 1, 255])
      const listing = await events(await client.invoke('listFiles'))
      assert.equal(sent.at(-1)!.body, '{"name": "listFiles", "arguments": {}}')
      const links = listing[0]!.result.content.map((c: PyDict) => [c.type, c.name, c.description, c.uri, c.size])
      assert.deepEqual(links, [
        ['resource_link', 'data.csv', 'File', 'file:///data.csv', Buffer.byteLength(csvContent)],
        ['resource_link', 'raw.bin', 'File', 'file:///raw.bin', 3],
      ])
      const command = await events(await client.invoke('executeCommand', { command: 'ls' }))
      assert.equal(command[0]!.result.structuredContent.stdout, 'data.csv\nraw.bin\n')
      return client.invoke('executeCode', {
        code: '# leap years\nprint(sum(1 for y in range(2020, 2025) if y % 4 == 0))',
        language: 'python',
        clearContext: false,
      })
    })
    // code_session has stopped the session; the tool now iterates the stream it was handed.
    assert.match(sent.at(-1)!.target, /\/sessions\/stop\?sessionId=/)
    for await (const event of analysis.stream as AsyncIterable<PyDict>) {
      // `return json.dumps(event["result"])`: plain JSON values only (no bytes, no datetimes) in a code result.
      assert.deepEqual(JSON.parse(JSON.stringify(event.result)), event.result)
      assert.equal(event.result.structuredContent.stdout, '2\n')
      break
    }
  })

  test('bedrock_agentcore control plane: create, get, list, a code_session on it, delete', async (t) => {
    const { py } = await pythonAgainst(t)
    const client = new CodeInterpreter('us-west-2', py)
    const cp = client.controlPlaneClient
    // create_code_interpreter: networkConfiguration defaults to PUBLIC; clientToken filled by botocore.
    const created = await cp.call('CreateCodeInterpreter', {
      name: 'analysis_env',
      executionRoleArn: 'arn:aws:iam::123456789012:role/AgentCoreCodeInterpreter',
      networkConfiguration: { networkMode: 'PUBLIC' },
    })
    assert.match(
      cp.sent[0]!.body,
      new RegExp(
        `^\\{"name": "analysis_env", "executionRoleArn": "arn:aws:iam::123456789012:role/AgentCoreCodeInterpreter", "networkConfiguration": \\{"networkMode": "PUBLIC"\\}, "clientToken": "${uuid}"\\}$`,
      ),
    )
    assert.match(
      cp.sent[0]!.headers.find(([n]) => n === 'Authorization')![1],
      /\/us-west-2\/bedrock-agentcore\/aws4_request, SignedHeaders=content-type;host;x-amz-date,/,
    )
    assert.equal(created.ResponseMetadata.HTTPStatusCode, 202)
    assert.equal(created.status, 'READY')
    const id: string = created.codeInterpreterId
    assert.match(id, /^analysis_env-[0-9a-zA-Z]{10}$/)

    const got = await cp.call('GetCodeInterpreter', { codeInterpreterId: id })
    assert.deepEqual(got.networkConfiguration, { networkMode: 'PUBLIC' })
    assert.equal(got.name, 'analysis_env')
    assert.equal('codebox' in got, false, "botocore drops members the model does not have (codebox's extension)")
    const listed = await cp.call('ListCodeInterpreters', { maxResults: 10, type: 'CUSTOM' })
    assert.equal(`${cp.sent[2]!.method} ${cp.sent[2]!.target} ${JSON.stringify(cp.sent[2]!.body)}`, 'POST /code-interpreters?maxResults=10&type=CUSTOM ""')
    assert.deepEqual(
      listed.codeInterpreterSummaries.map((s: PyDict) => s.codeInterpreterId),
      [id],
    )

    const stdout = await codeSession(
      py,
      async (session) => (await events(await session.invoke('executeCode', { code: "print('custom')" })))[0]!.result.structuredContent.stdout,
      id,
    )
    assert.equal(stdout, 'custom\n')
    const deleted = await cp.call('DeleteCodeInterpreter', { codeInterpreterId: id })
    assert.match(cp.sent[3]!.target, new RegExp(`^/code-interpreters/${id}\\?clientToken=${uuid}$`))
    assert.deepEqual([deleted.ResponseMetadata.HTTPStatusCode, deleted.status], [202, 'DELETED'])
  })
})

describe('errors as botocore raises them', () => {
  test('unknown tool, unknown interpreter, session stopped mid-cell, wrong secret; session credentials are signed', async (t) => {
    const { server, py } = await pythonAgainst(t)
    const client = new CodeInterpreter('us-west-2', py)
    await client.start()
    const unknownTool = await rejects(client.invoke('executeCodez', { code: '1' }))
    assert.equal(unknownTool.name, 'ClientError')
    assert.equal(unknownTool.code, 'ValidationException') // e.response["Error"]["Code"], from x-amzn-errortype
    assert.match(unknownTool.response.Error.Message, /unknown tool "executeCodez"/)
    assert.match(unknownTool.message, /^An error occurred \(ValidationException\) when calling the InvokeCodeInterpreter operation: /)
    assert.equal(unknownTool.response.reason, 'FieldValidationFailed')
    assert.deepEqual(
      unknownTool.response.fieldList.map((f: PyDict) => f.name),
      ['name'],
    )
    assert.equal(unknownTool.response.ResponseMetadata.HTTPStatusCode, 400)

    const notFound = await rejects(new CodeInterpreter('us-west-2', py).start('nope-0123456789'))
    assert.deepEqual([notFound.code, notFound.response.ResponseMetadata.HTTPStatusCode], ['ResourceNotFoundException', 404])

    // Another thread stops the session while a cell runs. The response headers wait for the result (up to
    // CODEBOX_AGENTCORE_HOLD_MS, 20 s), so the failure is still an HTTP error: botocore raises ClientError from the invoke.
    await events(await client.invoke('executeCode', { code: 'import time' })) // the kernel is up before the race below
    const running = client.invoke('executeCode', { code: 'print("early", flush=True)\ntime.sleep(30)' })
    await waitUntil(() => server.engine.list().some((s) => s.active > 0), 'the cell to run')
    const otherThread = new CodeInterpreter('us-west-2', py).dataPlaneClient
    await otherThread.call('StopCodeInterpreterSession', { codeInterpreterIdentifier: builtIn, sessionId: client.sessionId })
    const stopped = await rejects(running.then(events))
    assert.deepEqual([stopped.name, stopped.code], ['ClientError', 'ResourceNotFoundException'])
    assert.match(stopped.response.Error.Message, /session ended \(stopped\) while this call ran/)

    const wrongSecret = await rejects(
      new CodeInterpreter('us-west-2', { ...py, env: { ...py.env, AWS_SECRET_ACCESS_KEY: `${py.env.AWS_SECRET_ACCESS_KEY}x` } }).start(),
    )
    assert.deepEqual([wrongSecret.code, wrongSecret.response.ResponseMetadata.HTTPStatusCode], ['AccessDeniedException', 403])
    assert.match(wrongSecret.response.Error.Message, /signature we calculated does not match/)

    // AWS_SESSION_TOKEN set (say, left over from real AWS credentials): botocore signs X-Amz-Security-Token too.
    const withToken = new CodeInterpreter('us-west-2', { ...py, env: { ...py.env, AWS_SESSION_TOKEN: 'FwoGZXIvYXdzEXAMPLE//+=' } })
    await withToken.start()
    assert.match(
      withToken.dataPlaneClient.sent[0]!.headers.find(([n]) => n === 'Authorization')![1],
      /SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,/,
    )
    await withToken.stop()
  })
})

describe('the botocore stand-in against bytes recorded from botocore 1.43.11', () => {
  // A throwaway key of a test store, and two requests botocore signed with it (captured through a proxy).
  const key = { accessKeyId: 'CBXARJSCJN4GN3U24Z2P', secretAccessKey: 'bWo1mkeI8l4XcNISoJtbSTnwVLkbuNTtd3HTap2p' }
  const host = '127.0.0.1:38907'

  test('SigV4: a stop with a query and a body, and a start with a session token', () => {
    const stop = sigV4(
      {
        ...{ method: 'PUT', path: '/code-interpreters/aws.codeinterpreter.v1/sessions/stop', query: 'sessionId=dqn2rpxdahmh0u16zze4f76pdl', host },
        headers: [
          ['Content-Type', 'application/json'],
          ['User-Agent', 'Boto3/1.43.11'],
          ['X-Amz-Date', '20261121T031429Z'],
        ],
        ...{ body: '{"clientToken": "91eedaab-7681-41f3-9e7e-2ef26eb05fe1"}', amzDate: '20261121T031429Z', region: 'us-west-2' },
      },
      key,
    )
    assert.equal(stop.split('Signature=')[1], '8ae7fed2fa3ee862477ecb5617a401d2b74b64b4006d838606c4a59e60da5059')
    const token = 'FwoGZXIvYXdzEXAMPLETOKEN//+='
    const start = sigV4(
      {
        ...{ method: 'PUT', path: '/code-interpreters/nope-0123456789/sessions/start', query: '', host, amzDate: '20261121T031438Z', region: 'eu-central-1' },
        headers: [
          ['Content-Type', 'application/json'],
          ['X-Amz-Date', '20261121T031438Z'],
          ['X-Amz-Security-Token', token],
        ],
        body: '{"clientToken": "65f88b19-d44a-4df7-8c1d-94651315e46c"}',
      },
      { ...key, sessionToken: token },
    )
    assert.equal(
      start,
      'AWS4-HMAC-SHA256 Credential=CBXARJSCJN4GN3U24Z2P/20261121/eu-central-1/bedrock-agentcore/aws4_request, ' +
        'SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=134a9d7e55b32d91ee802d095b68a5bbac4ac42a1ea0775230b845b8a73a2c83',
    )
  })

  test("json.dumps: separators and ensure_ascii as botocore's body had them", () => {
    const code = "# 샘플 데이터 생성\nimport numpy as np\nprint(np.arange(3).sum(), 'é😀')"
    assert.equal(
      pyJson({ name: 'executeCode', arguments: { code, language: 'python' } }),
      '{"name": "executeCode", "arguments": {"code": "# \\uc0d8\\ud50c \\ub370\\uc774\\ud130 \\uc0dd\\uc131\\nimport numpy as np\\nprint(np.arange(3).sum(), \'\\u00e9\\ud83d\\ude00\')", "language": "python"}}',
    )
  })
})
