/**
 * Property-based fuzzing of the native and AgentCore APIs (issue 13, faults): every route of the
 * OpenAPI document (walked, not listed by hand), the AgentCore data and control planes (SigV4
 * signed with a real key, and unsigned) and the runtime paths get generated path parameters, query
 * strings, headers and bodies, valid-shaped and garbage. Whatever arrives, the server answers
 * within a bound, never 5xx but 503/504, with that API's error shape on every 4xx, and still
 * answers /ping at the end. Fixed seed and run count (CODEBOX_FUZZ_SEED, CODEBOX_FUZZ_RUNS);
 * a failure prints the seed and the request that broke it.
 */
import assert from 'node:assert/strict'
import http from 'node:http'
import { describe, test } from 'node:test'
import { Sha256 } from '@aws-crypto/sha256-js'
import { SignatureV4 } from '@smithy/signature-v4'
import fc from 'fast-check'
import { z } from 'zod'
import { errorCodes } from '@codebox/core'
import { createInterpreterBodySchema, invokeBodySchema, listBodySchema, startBodySchema, stopBodySchema } from '../src/agentcore/shapes.ts'
import {
  accept,
  bodyForm,
  cleanToolCall,
  contentEncoding,
  contentType,
  fromSchema,
  garbageValue,
  oddString,
  pathSegment,
  queryValue,
  toolCall,
  type BodyForm,
} from './fuzz-arbitraries.ts'
import { expectJson, startSession, testServer, type TestServer } from './fixtures.ts'

const seed = Number(process.env.CODEBOX_FUZZ_SEED ?? 20261204)
const numRuns = Number(process.env.CODEBOX_FUZZ_RUNS ?? 600)
/** Longest any one request may take to be answered in full. */
const answerWithinMs = 10_000

interface FuzzRequest {
  api: 'native' | 'aws'
  method: string
  /** Raw path and query, as sent. */
  path: string
  /** Decoded query pairs, for the SigV4 signer. */
  query: [string, string][]
  headers: Record<string, string>
  body: BodyForm
  /** Sign with the server's AWS key (AgentCore routes on a server with keys). */
  sign: boolean
}

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
  ms: number
}

/** The ids a generated request may name, so some requests reach real sessions and files. */
interface Known {
  sessionId: string[]
  interpreterId: string[]
  conversationId: string[]
  path: string[]
  awsInterpreter: string[]
  awsSession: string[]
  runtime: string[]
}

type Json = Record<string, unknown>

/**
 * Every operation of the OpenAPI document, as a generator of requests to it: half of them clean
 * (known ids, values the schema accepts, usual headers: they reach the handlers and the engine),
 * half dirty (odd ids, garbage at any node, odd headers and encodings).
 */
function nativeRequests(doc: Json, known: Known, auth: fc.Arbitrary<Record<string, string>>): fc.Arbitrary<FuzzRequest> {
  const ops: { weight: number; arbitrary: fc.Arbitrary<FuzzRequest> }[] = []
  for (const [template, methods] of Object.entries(doc.paths as Record<string, Record<string, Json>>)) {
    for (const [method, op] of Object.entries(methods)) {
      const arbitrary = fc.oneof(
        nativeRequest(template, method.toUpperCase(), op, known, auth, true),
        nativeRequest(template, method.toUpperCase(), op, known, auth, false),
      )
      // The invoke routes carry the most input (nine tools' arguments): they get more of the runs.
      ops.push({ weight: template.endsWith('invoke') ? 5 : 1, arbitrary })
    }
  }
  return fc.oneof(...ops)
}

function nativeRequest(
  template: string,
  method: string,
  op: Json,
  known: Known,
  auth: fc.Arbitrary<Record<string, string>>,
  clean: boolean,
): fc.Arbitrary<FuzzRequest> {
  const params = (op.parameters ?? []) as { name: string; in: string; schema?: Json }[]
  const segments: Record<string, fc.Arbitrary<string>> = {}
  for (const p of params.filter((x) => x.in === 'path')) {
    const ids = known[p.name as keyof Known] ?? ['x']
    const one = clean ? fc.constantFrom(...ids) : pathSegment(ids)
    segments[p.name] = p.name === 'path' ? fc.array(one, { minLength: 1, maxLength: 3 }).map((s) => s.join('/')) : one
  }
  const queryParams = params.filter((x) => x.in === 'query')
  const query = clean ? cleanQuery(queryParams) : queryPairs(queryParams.map((x) => x.name))
  const headerParams = params.filter((x) => x.in === 'header').map((x) => x.name)
  const content = (op.requestBody as { content?: Record<string, { schema?: Json }> } | undefined)?.content
  const jsonSchema = content?.['application/json']?.schema
  const odds = clean ? 0 : 8
  const value = template.endsWith('invoke') ? fc.oneof(fromSchema(jsonSchema, odds), clean ? cleanToolCall : toolCall) : fromSchema(jsonSchema, odds)
  const body: fc.Arbitrary<BodyForm> = jsonSchema
    ? clean
      ? value.map((v): BodyForm => ({ kind: 'json', text: JSON.stringify(v) }))
      : bodyForm(value)
    : content?.['application/octet-stream']
      ? fc.uint8Array({ maxLength: 2048 }).map((b): BodyForm => ({ kind: 'raw', bytes: Buffer.from(b) }))
      : clean
        ? fc.constant<BodyForm>({ kind: 'none' })
        : fc.oneof({ weight: 5, arbitrary: fc.constant<BodyForm>({ kind: 'none' }) }, { weight: 1, arbitrary: bodyForm(garbageValue) })
  const usualType = jsonSchema ? 'application/json' : 'application/octet-stream'
  return fc
    .record({
      method: clean
        ? fc.constant(method)
        : fc.oneof({ weight: 6, arbitrary: fc.constant(method) }, { weight: 1, arbitrary: fc.constantFrom('PATCH', 'OPTIONS', 'PUT', 'DELETE') }),
      segments: fc.record(segments),
      query,
      auth,
      extra: fc.record<Record<string, string | undefined>>(
        {
          ...Object.fromEntries(
            headerParams.map((h) => [h, clean ? fc.constantFrom(...known.sessionId) : fc.oneof(fc.constantFrom(...known.sessionId), headerValue)]),
          ),
          ...(clean ? { 'content-type': fc.constant(usualType), accept } : commonHeaders(usualType)),
          ...(clean ? {} : { 'x-amzn-bedrock-agentcore-runtime-session-id': fc.oneof(headerValue, fc.constant('c'.repeat(40))), 'x-request-id': headerValue }),
        },
        { requiredKeys: clean ? [...headerParams, 'content-type'] : [] },
      ),
      body,
    })
    .map(({ method: m, segments: seg, query: q, auth: a, extra, body: b }) => ({
      api: 'native' as const,
      method: m,
      path: template.replace(/\{(\w+)\}/g, (_, name: string) => seg[name] ?? 'x') + queryString(q),
      query: q,
      headers: dropUndefined({ ...a, ...extra }),
      body: b,
      sign: false,
    }))
}

/** Query parameters as the schema wants them, each present or not. */
function cleanQuery(params: { name: string; schema?: Json }[]): fc.Arbitrary<[string, string][]> {
  const one = params.map((p) =>
    fc.option(
      fromSchema(p.schema, 0).map((v): [string, string] => [p.name, encodeURIComponent(String(v))]),
      { nil: undefined },
    ),
  )
  return fc.tuple(...one).map((pairs) => pairs.filter((x): x is [string, string] => x !== undefined))
}

/** Header values a client can send (visible latin-1, no line breaks); rarely one over the 16 KiB header limit. */
const headerValue = fc.oneof(
  { weight: 30, arbitrary: oddString.map((v) => v.replace(/[^\t\x20-\x7e\x80-\xff]/g, '?').slice(0, 200)) },
  { weight: 1, arbitrary: fc.constant('h'.repeat(17_000)) },
)

function commonHeaders(usual: string): Record<string, fc.Arbitrary<string | undefined>> {
  return {
    'content-type': fc.oneof({ weight: 3, arbitrary: fc.constant(usual) }, { weight: 2, arbitrary: contentType }),
    accept,
    'content-encoding': contentEncoding,
  }
}

function queryPairs(names: string[]): fc.Arbitrary<[string, string][]> {
  const name = fc.oneof(
    { weight: 4, arbitrary: names.length ? fc.constantFrom(...names) : fc.constant('x') },
    { weight: 1, arbitrary: fc.constantFrom('__proto__', 'constructor', 'a[b]', 'x', '') },
  )
  return fc.array(fc.tuple(name, queryValue), { maxLength: 4 })
}

const queryString = (pairs: [string, string][]): string => (pairs.length ? `?${pairs.map(([k, v]) => `${k}=${v}`).join('&')}` : '')

const dropUndefined = (o: Record<string, string | undefined>): Record<string, string> =>
  Object.fromEntries(Object.entries(o).filter((e): e is [string, string] => e[1] !== undefined))

const toSchema = (s: z.ZodType): Json => z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Json

/** The AgentCore data plane, control plane and runtime routes (not in the OpenAPI document), clean and dirty. */
function awsRequests(known: Known, sign: fc.Arbitrary<boolean>): fc.Arbitrary<FuzzRequest> {
  return fc.oneof(awsRequest(known, sign, true), awsRequest(known, sign, false))
}

function awsRequest(known: Known, sign: fc.Arbitrary<boolean>, clean: boolean): fc.Arbitrary<FuzzRequest> {
  const odds = clean ? 0 : 8
  const interpreter = clean ? fc.constantFrom(...known.awsInterpreter) : pathSegment(known.awsInterpreter)
  const knownSession = fc.constantFrom(...known.awsSession).map((id): [string, string][] => [['sessionId', id]])
  const sessionQuery = clean ? knownSession : fc.oneof(knownSession, queryPairs(['sessionId']))
  const noQuery = fc.constant<[string, string][]>([])
  const ops: [string, (id: string, runtime: string) => string, fc.Arbitrary<[string, string][]>, fc.Arbitrary<unknown> | undefined][] = [
    ['PUT', (id) => `/code-interpreters/${id}/sessions/start`, noQuery, fromSchema(toSchema(startBodySchema), odds)],
    ['GET', (id) => `/code-interpreters/${id}/sessions/get`, sessionQuery, undefined],
    ['POST', (id) => `/code-interpreters/${id}/sessions/list`, noQuery, fromSchema(toSchema(listBodySchema), odds)],
    ['PUT', (id) => `/code-interpreters/${id}/sessions/stop`, sessionQuery, fromSchema(toSchema(stopBodySchema), odds)],
    ['POST', (id) => `/code-interpreters/${id}/tools/invoke`, noQuery, clean ? cleanToolCall : fc.oneof(fromSchema(toSchema(invokeBodySchema)), toolCall)],
    ['PUT', () => '/code-interpreters', noQuery, fromSchema(toSchema(createInterpreterBodySchema), odds)],
    ['GET', (id) => `/code-interpreters/${id}`, noQuery, undefined],
    ['POST', () => '/code-interpreters', clean ? noQuery : queryPairs(['maxResults', 'nextToken', 'type']), undefined],
    ['DELETE', (id) => `/code-interpreters/${id}`, noQuery, undefined],
    [
      'POST',
      (_, runtime) => `/runtimes/${runtime}/invocations`,
      clean ? noQuery : queryPairs(['qualifier', 'accountId']),
      fc.record({ prompt: clean ? fc.string() : fc.oneof(oddString, garbageValue) }),
    ],
    ['POST', (_, runtime) => `/runtimes/${runtime}/stopruntimesession`, clean ? noQuery : queryPairs(['qualifier']), fc.constant({})],
    ['GET', () => '/code-interpreters/x/nothing', noQuery, undefined],
  ]
  const noBody = fc.constant<BodyForm>({ kind: 'none' })
  const op = fc.oneof(...ops.map((o) => ({ weight: o[1]('x', 'y').endsWith('invoke') ? 5 : 1, arbitrary: fc.constant(o) })))
  return fc.tuple(op, interpreter, fc.constantFrom(...known.runtime), sign).chain(([[method, path, query, value], id, runtime, signed]) =>
    fc
      .record({
        query,
        body: value
          ? clean
            ? value.map((v): BodyForm => ({ kind: 'json', text: JSON.stringify(v) }))
            : bodyForm(value)
          : clean
            ? noBody
            : fc.oneof({ weight: 4, arbitrary: noBody }, { weight: 1, arbitrary: bodyForm(garbageValue) }),
        headers: fc.record<Record<string, string | undefined>>(
          {
            ...(clean ? { 'content-type': fc.constant('application/json') } : commonHeaders('application/json')),
            'x-amzn-code-interpreter-session-id': clean ? fc.constantFrom(...known.awsSession) : fc.oneof(fc.constantFrom(...known.awsSession), headerValue),
            'x-amzn-bedrock-agentcore-runtime-session-id': fc.oneof(clean ? fc.constant('r'.repeat(40)) : headerValue, fc.constant('r'.repeat(40))),
          },
          { requiredKeys: clean ? ['content-type', 'x-amzn-code-interpreter-session-id'] : [] },
        ),
      })
      .map(({ query: q, body, headers }) => ({
        api: 'aws' as const,
        method,
        path: path(id, runtime) + queryString(q),
        query: q,
        headers: dropUndefined(headers),
        body,
        sign: signed,
      })),
  )
}

/** Sends the request exactly as generated (raw path, raw body bytes) and reads the whole answer. */
async function send(url: string, r: FuzzRequest, aws?: { accessKeyId: string; secretAccessKey: string }): Promise<Answer> {
  const { hostname, port } = new URL(url)
  const bytes = r.body.kind === 'json' ? Buffer.from(r.body.text, 'utf8') : r.body.kind === 'raw' ? r.body.bytes : undefined
  let headers: Record<string, string> = { ...r.headers, ...(bytes ? { 'content-length': String(bytes.length) } : {}) }
  if (r.sign && aws) {
    const signer = new SignatureV4({ credentials: aws, region: 'us-east-1', service: 'bedrock-agentcore', sha256: Sha256 })
    const query = Object.create(null) as Record<string, string[]>
    for (const [k, v] of r.query) (query[decodeOr(k)] ??= []).push(decodeOr(v))
    const signed = await signer.sign({
      method: r.method,
      protocol: 'http:',
      hostname,
      port: Number(port),
      path: r.path.split('?')[0]!,
      query,
      headers: { host: `${hostname}:${port}`, ...headers },
      ...(bytes ? { body: bytes } : {}),
    })
    headers = signed.headers
  }
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, method: r.method, path: r.path, headers, agent: false }, (res) => {
      const parts: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size < 2_000_000) parts.push(c)
      })
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(parts).toString('utf8'), ms: performance.now() - started }),
      )
      res.on('error', reject)
    })
    req.setTimeout(answerWithinMs, () => req.destroy(new Error(`no complete answer within ${answerWithinMs} ms`)))
    req.on('error', reject)
    req.end(bytes)
  })
}

function decodeOr(s: string): string {
  try {
    return decodeURIComponent(s)
  } catch {
    return s
  }
}

const awsStatus: Record<string, number> = {
  ValidationException: 400,
  AccessDeniedException: 403,
  ResourceNotFoundException: 404,
  UnknownOperationException: 404,
  ConflictException: 409,
  ThrottlingException: 429,
  ServiceQuotaExceededException: 402,
  RuntimeClientError: 424,
  ServiceUnavailableException: 503,
}

/** The checks every answer must pass; throws naming what was wrong. */
export function checkAnswer(r: FuzzRequest, a: Answer): void {
  const what = `${r.method} ${r.path.slice(0, 300)} → ${a.status} ${a.text.slice(0, 400)}`
  assert.ok(a.status < 500 || a.status === 503 || a.status === 504, `a 5xx other than 503/504: ${what}`)
  assert.ok(a.ms < answerWithinMs, `answered after ${Math.round(a.ms)} ms: ${what}`)
  assert.doesNotMatch(a.text, /"code":"Internal"|internalServerException|InternalServerException/, `an internal error in the body: ${what}`)
  if (a.status < 400) return
  let body: unknown
  try {
    body = JSON.parse(a.text)
  } catch {
    assert.fail(`a ${a.status} without a JSON body: ${what}`)
  }
  // Refused by the HTTP parser before any route: one body for both APIs (codebox's shape plus AWS's message and type).
  const parserLevel = a.headers['x-request-id'] === undefined && a.headers['x-amzn-requestid'] === undefined
  if (parserLevel) {
    const b = body as { message?: unknown; error?: { code?: string } }
    assert.ok(
      [400, 408, 431].includes(a.status) && typeof b.message === 'string' && b.error?.code && b.error.code in errorCodes,
      `a parser-level error out of shape: ${what}`,
    )
    assert.equal(a.headers['x-amzn-errortype'], 'ValidationException', what)
    return
  }
  const awsShaped = r.api === 'aws' || a.headers['x-amzn-errortype'] !== undefined
  if (awsShaped) {
    const type = String(a.headers['x-amzn-errortype'] ?? '')
    assert.equal(awsStatus[type], a.status, `AWS error type ${JSON.stringify(type)} with status ${a.status}: ${what}`)
    assert.equal(typeof (body as { message?: unknown }).message, 'string', `AWS error without a message: ${what}`)
    return
  }
  const e = (body as { error?: { code?: string; message?: unknown; requestId?: unknown } }).error
  assert.ok(e && typeof e.code === 'string' && e.code in errorCodes, `not the codebox error shape: ${what}`)
  assert.equal(errorCodes[e.code as keyof typeof errorCodes].status, a.status, `code ${e.code} with status ${a.status}: ${what}`)
  assert.ok(typeof e.message === 'string' && e.message.length > 0 && typeof e.requestId === 'string', `error without message or requestId: ${what}`)
  assert.notEqual(e.code, 'Internal', what)
}

/** Runs `property` with the fixed seed; a failure names the seed, the request and what was wrong, briefly. */
async function fuzz(property: fc.IAsyncProperty<[FuzzRequest]>, runs: number): Promise<void> {
  const shrink = process.env.CODEBOX_FUZZ_SHRINK === '1'
  const details = await fc.check(property, { seed, numRuns: runs, endOnFailure: !shrink })
  if (!details.failed) return
  const request = JSON.stringify(details.counterexample?.[0] ?? null, (_, v: unknown) =>
    typeof v === 'string' && v.length > 200 ? `${v.slice(0, 200)}…(${v.length})` : v,
  )
  throw new Error(
    `API fuzzing failed (replay: CODEBOX_FUZZ_SEED=${seed}, run ${details.numRuns}; CODEBOX_FUZZ_SHRINK=1 to shrink): ` +
      `${(details.errorInstance as Error | undefined)?.message ?? 'failed'}\nrequest: ${request.slice(0, 3000)}`,
  )
}

/** Stands for the live session in generated requests; replaced when sent, by a new session once a request has stopped it. */
const LIVE = 'livesessionplaceholder0'

/** `r` with the current live session (started anew, with its file, when the last one ended). */
async function withLive(s: TestServer, r: FuzzRequest, state: { live: string; headers: Record<string, string> }): Promise<FuzzRequest> {
  if (s.engine.list().find((x) => x.id === state.live)?.status !== 'ready') {
    const res = await s.call('POST', '/v1/sessions', { json: {}, headers: state.headers })
    if (res.status === 201) {
      state.live = ((await res.json()) as { sessionId: string }).sessionId
      await s.call('PUT', `/v1/sessions/${state.live}/files/a.txt`, {
        body: 'hello',
        headers: { ...state.headers, 'content-type': 'application/octet-stream' },
      })
    } else await res.body?.cancel()
  }
  const put = (v: string): string => v.replaceAll(LIVE, state.live)
  return {
    ...r,
    path: put(r.path),
    query: r.query.map(([k, v]) => [k, put(v)]),
    headers: Object.fromEntries(Object.entries(r.headers).map(([k, v]) => [k, put(v)])),
    body: r.body.kind === 'json' ? { kind: 'json', text: put(r.body.text) } : r.body,
  }
}

/** A stopped session and a custom interpreter (the live session is LIVE), so generated ids sometimes hit. */
async function knownIds(s: TestServer, headers: Record<string, string>): Promise<Known> {
  const ended = await startSession(s, {}, headers.authorization?.slice(7))
  await expectJson(s.call('DELETE', `/v1/sessions/${ended}`, { headers }), 200)
  const interp = await expectJson<{ interpreterId: string }>(s.call('POST', '/v1/interpreters', { json: { name: 'fuzz' }, headers }), 201)
  return {
    sessionId: [LIVE, ended],
    interpreterId: ['codebox.v1', interp.interpreterId],
    conversationId: ['conv-1'],
    path: ['a.txt', 'dir'],
    awsInterpreter: [
      'aws.codeinterpreter.v1',
      interp.interpreterId,
      `arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3Aaws%3Acode-interpreter%2Faws.codeinterpreter.v1`,
    ],
    awsSession: [LIVE, ended],
    runtime: ['codebox-agent', 'arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fcodebox-agent'],
  }
}

const env = { CODEBOX_TENANT_MAX_SESSIONS: '6', CODEBOX_AGENTCORE_HOLD_MS: '2000' }

describe('API fuzzing', { timeout: 120_000 }, () => {
  test('an open loopback server: every OpenAPI route, the AgentCore and runtime paths', async (t) => {
    const s = await testServer(t, { env })
    const doc = await expectJson<Json>(s.call('GET', '/openapi.json'), 200)
    const known = await knownIds(s, {})
    const state = { live: '', headers: {} }
    const auth = fc.oneof(
      { weight: 8, arbitrary: fc.constant({}) },
      {
        weight: 1,
        arbitrary: fc.constantFrom<Record<string, string>>({ authorization: 'Bearer nonsense' }, { authorization: 'AWS4-HMAC-SHA256 Credential=x' }),
      },
    )
    await fuzz(
      fc.asyncProperty(
        fc.oneof({ weight: 3, arbitrary: nativeRequests(doc, known, auth) }, { weight: 2, arbitrary: awsRequests(known, fc.constant(false)) }),
        async (generated) => {
          const r = await withLive(s, generated, state)
          checkAnswer(r, await send(s.url, r))
        },
      ),
      numRuns,
    )
    await expectJson(s.call('GET', '/ping'), 200)
  })

  test('a server with keys: bearer and SigV4-signed requests reach the handlers, unsigned ones are refused in shape', async (t) => {
    const s = await testServer(t, { env })
    const key = await s.store.keys.create({ tenant: 'fuzz' })
    const aws = await s.store.awsKeys.create({ tenant: 'fuzz' })
    const bearer = { authorization: `Bearer ${key.secret}` }
    const doc = await expectJson<Json>(s.call('GET', '/openapi.json', { headers: bearer }), 200)
    const known = await knownIds(s, bearer)
    const state = { live: '', headers: bearer }
    const auth: fc.Arbitrary<Record<string, string>> = fc.oneof(
      { weight: 6, arbitrary: fc.constant<Record<string, string>>(bearer) },
      { weight: 1, arbitrary: fc.constantFrom<Record<string, string>>({}, { authorization: `Bearer ${key.secret}x` }) },
    )
    let signedOk = 0
    await fuzz(
      fc.asyncProperty(
        fc.oneof(
          { weight: 3, arbitrary: nativeRequests(doc, known, auth) },
          { weight: 2, arbitrary: awsRequests(known, fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) })) },
        ),
        async (generated) => {
          const r = await withLive(s, generated, state)
          const a = await send(s.url, r, aws)
          checkAnswer(r, a)
          if (r.sign && a.status < 300) signedOk++
        },
      ),
      numRuns,
    )
    // The signer and the server agree on enough requests that the handlers were fuzzed, not only SigV4.
    assert.ok(signedOk > 0, 'no signed AgentCore request succeeded')
    await expectJson(s.call('GET', '/ping'), 200)
  })

  test('what fuzzing found: refused before routing, still in the API’s error shape', async (t) => {
    const s = await testServer(t, { env })
    const plain = (path: string, headers: Record<string, string> = {}): FuzzRequest => ({
      api: path.startsWith('/code') ? 'aws' : 'native',
      method: 'GET',
      path,
      query: [],
      headers,
      body: { kind: 'none' },
      sign: false,
    })
    // Headers over Node's 16 KiB limit: the parser answers, for both APIs at once.
    const big = plain('/v1/sessions', { 'x-request-id': 'h'.repeat(17_000) })
    const a = await send(s.url, big)
    checkAnswer(big, a)
    assert.equal(a.status, 431)
    assert.match(a.text, /"code":"LimitExceeded".*headers are over the size limit/)
    // Broken percent-encoding: refused before routing, in each API's own shape.
    const native = await send(s.url, plain('/v1/sessions/%zz'))
    checkAnswer(plain('/v1/sessions/%zz'), native)
    assert.match(native.text, /"code":"ValidationError".*not valid percent-encoding/)
    const aws = await send(s.url, plain('/code-interpreters/%zz'))
    checkAnswer(plain('/code-interpreters/%zz'), aws)
    assert.equal(aws.headers['x-amzn-errortype'], 'ValidationException')
    // A path parameter over the 5000-character limit: a short message, not the URL echoed back.
    const long = await send(s.url, plain(`/v1/sessions/${'x'.repeat(6000)}`))
    checkAnswer(plain('/v1/sessions/x'), long)
    assert.match(long.text, /over the 5000-character limit/)
    assert.ok(long.text.length < 500)
    await expectJson(s.call('GET', '/ping'), 200)
  })
})
