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
import { errorCodes } from '@codebox/core'
import { awsRequests, nativeRequests, type FuzzRequest, type Known } from './fuzz-requests.ts'
import { expectJson, startSession, testServer, type TestServer } from './fixtures.ts'

const seed = Number(process.env.CODEBOX_FUZZ_SEED ?? 20261204)
const numRuns = Number(process.env.CODEBOX_FUZZ_RUNS ?? 1000)
/** Longest any one request may take to be answered in full. */
const answerWithinMs = 10_000

interface Answer {
  status: number
  headers: http.IncomingHttpHeaders
  text: string
  ms: number
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
function checkAnswer(r: FuzzRequest, a: Answer): void {
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
    const doc = await expectJson<Record<string, unknown>>(s.call('GET', '/openapi.json'), 200)
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
    const doc = await expectJson<Record<string, unknown>>(s.call('GET', '/openapi.json', { headers: bearer }), 200)
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
