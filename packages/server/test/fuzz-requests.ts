/**
 * The requests the API fuzz test sends, as fast-check arbitraries: every operation of the OpenAPI
 * document (walked from the document itself) and the AgentCore data plane, control plane and
 * runtime routes, each half clean (known ids, values the schema accepts: they reach the handlers
 * and the engine) and half dirty (odd ids, garbage at any node, odd headers and encodings).
 */
import fc from 'fast-check'
import { z } from 'zod'
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

export interface FuzzRequest {
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

/** The ids a generated request may name, so some requests reach real sessions and files. */
export interface Known {
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
export function nativeRequests(doc: Json, known: Known, auth: fc.Arbitrary<Record<string, string>>): fc.Arbitrary<FuzzRequest> {
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
export function awsRequests(known: Known, sign: fc.Arbitrary<boolean>): fc.Arbitrary<FuzzRequest> {
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
