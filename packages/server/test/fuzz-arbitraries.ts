/**
 * fast-check arbitraries for the API fuzz tests: values that follow a JSON schema (taken from the
 * OpenAPI document or a route's zod shape) with garbage mixed in at any node, garbage of every
 * kind (wrong types, huge numbers, deep nesting, long and odd unicode strings, prototype keys),
 * body encodings, path parameters and header values. Fields that would run something on the host
 * under the fake driver (`code`, `command`) only ever get harmless snippets or wrong types.
 */
import fc from 'fast-check'

type Json = Record<string, unknown>

/** Harmless cells and shell commands: the fake driver runs them on this machine. */
const safeCode = ['print(1)', '1/0', 'x = 2', 'import os\nprint(os.getcwd())', 'raise SystemExit(3)', 'console.log(1)', '']
const safeCommands = ['true', 'echo hi', 'exit 3', 'ls', 'cat does-not-exist', 'echo x >&2', '']

/** Deeply nested arrays/objects around the 64-level limit of the body parser, as JSON text. */
const deepJson = fc
  .tuple(fc.integer({ min: 60, max: 70 }), fc.boolean())
  .map(([n, arrays]) => (arrays ? '['.repeat(n) + ']'.repeat(n) : '{"a":'.repeat(n) + '1' + '}'.repeat(n)))

/** Strings that have broken parsers and validators before. */
export const oddString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    '\uFEFF',
    '\uD800',
    '..',
    '../../etc/passwd',
    '/etc/passwd',
    '%00',
    '%zz',
    '\r\n',
    '𝔘𝔫𝔦',
    '😀',
    '__proto__',
    'constructor',
    'null',
    'NaN',
  ),
  fc.integer({ min: 300, max: 20_000 }).map((n) => 'x'.repeat(n)),
)

const hugeNumber = fc.constantFrom(1e308, -1e308, 2 ** 53 + 2, -(2 ** 53) - 2, 2 ** 31, -1, 0, -0, 0.5, 1e-320, Number.MAX_SAFE_INTEGER)

/** Any JSON value of the wrong kind for most fields. */
export const garbageValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  hugeNumber,
  oddString,
  fc.array(fc.oneof(fc.integer(), fc.string({ maxLength: 5 })), { maxLength: 4 }),
  fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.integer(), fc.string({ maxLength: 5 })), { maxKeys: 3 }),
  deepJson.map((text) => JSON.parse(text) as unknown),
)

/** JSON text with prototype-pollution keys, at the top or nested in a field of `base`. */
export const pollutedJson = (base: fc.Arbitrary<unknown>): fc.Arbitrary<string> =>
  fc
    .tuple(base, fc.constantFrom('{"__proto__":{"isAdmin":true}}', '{"constructor":{"prototype":{"polluted":1}}}', '{"__proto__":null}'), fc.boolean())
    .map(([value, poison, top]) => {
      if (top || typeof value !== 'object' || value === null || Array.isArray(value)) return poison
      const text = JSON.stringify(value)
      return text === '{}' ? poison : `{"x":${poison},${text.slice(1)}`
    })

/**
 * A value following `schema` (a JSON schema), with garbage at any node with probability
 * 1/`garbageOdds`; with `garbageOdds` 0, only values the schema accepts.
 */
export function fromSchema(schema: unknown, garbageOdds = 8, depth = 0): fc.Arbitrary<unknown> {
  const valid = validFromSchema((schema ?? {}) as Json, garbageOdds, depth)
  return garbageOdds === 0 ? valid : fc.oneof({ weight: garbageOdds - 1, arbitrary: valid }, { weight: 1, arbitrary: garbageValue })
}

function validFromSchema(s: Json, odds: number, depth: number): fc.Arbitrary<unknown> {
  if ('const' in s) return fc.constant(s.const)
  if (Array.isArray(s.enum)) return fc.constantFrom(...(s.enum as unknown[]))
  const alternatives = (s.anyOf ?? s.oneOf) as Json[] | undefined
  if (alternatives?.length) return fc.oneof(...alternatives.map((a) => validFromSchema(a, odds, depth)))
  switch (s.type) {
    case 'string':
      return stringFromSchema(s, odds === 0)
    case 'integer':
    case 'number': {
      const min = typeof s.minimum === 'number' ? Math.max(s.minimum, -(2 ** 40)) : -1000
      const max = typeof s.maximum === 'number' ? Math.min(s.maximum, 2 ** 40) : 1_000_000
      const inRange = fc.integer({ min: Math.ceil(min), max: Math.floor(max) })
      return odds === 0 ? inRange : fc.oneof(inRange, fc.constantFrom(min, max, min - 1, max + 1))
    }
    case 'boolean':
      return fc.boolean()
    case 'array':
      return depth > 4 ? fc.constant([]) : fc.array(fromSchema(s.items, odds, depth + 1), { maxLength: Math.min(Number(s.maxItems ?? 4), 4) })
    case 'object':
      return objectFromSchema(s, odds, depth)
    default:
      return fc.jsonValue({ maxDepth: 2 })
  }
}

function stringFromSchema(s: Json, clean: boolean): fc.Arbitrary<string> {
  const minLength = Number(s.minLength ?? 0)
  const maxLength = Math.min(Number(s.maxLength ?? 60), 300)
  let valid = fc.string({ minLength, maxLength })
  if (typeof s.pattern === 'string') {
    try {
      const re = new RegExp(s.pattern)
      valid = fc.stringMatching(re).filter((v) => v.length >= minLength && v.length <= Number(s.maxLength ?? Infinity))
    } catch {
      // A pattern fast-check cannot invert: plain strings then.
    }
  }
  return clean ? valid : fc.oneof(valid, oddString)
}

/** Field names whose values are special: code to run, commands, paths. */
const fieldOverrides: Record<string, fc.Arbitrary<unknown>> = {
  code: fc.oneof(
    fc.constantFrom(...safeCode),
    garbageValue.filter((v) => typeof v !== 'string'),
  ),
  command: fc.oneof(
    fc.constantFrom(...safeCommands),
    garbageValue.filter((v) => typeof v !== 'string'),
  ),
}

function objectFromSchema(s: Json, odds: number, depth: number): fc.Arbitrary<unknown> {
  const properties = (s.properties ?? {}) as Record<string, Json>
  const required = new Set((s.required ?? []) as string[])
  const shape: Record<string, fc.Arbitrary<unknown>> = {}
  for (const [name, sub] of Object.entries(properties)) shape[name] = fieldOverrides[name] ?? fromSchema(sub, odds, depth + 1)
  const record = fc.record(shape, { requiredKeys: Object.keys(shape).filter((k) => required.has(k)) })
  const extra = fc.dictionary(fc.oneof(fc.string({ maxLength: 10 }), fc.constantFrom('toString', 'hasOwnProperty', 'valueOf')), garbageValue, {
    maxKeys: 2,
  })
  if (odds === 0) return record
  return fc.tuple(record, fc.option(extra, { freq: 10 })).map(([r, more]) => (more ? { ...more, ...(r as object) } : r))
}

/** Calls of the nine tools as a client means them: harmless code and commands, plain file names. */
const fileName = fc.constantFrom('a.txt', 'dir/b.txt', 'c.csv', 'dir', '.')
export const cleanToolCall: fc.Arbitrary<{ name: string; arguments: unknown }> = fc.oneof(
  fc.record({
    name: fc.constant('executeCode'),
    arguments: fc.record({ code: fc.constantFrom(...safeCode), language: fc.constantFrom('python', 'javascript') }),
  }),
  fc.record({ name: fc.constantFrom('executeCommand', 'startCommandExecution'), arguments: fc.record({ command: fc.constantFrom(...safeCommands) }) }),
  fc.record({ name: fc.constantFrom('getTask', 'stopTask'), arguments: fc.record({ taskId: fc.constantFrom('task-1', 'task-2', 'task-999') }) }),
  fc.record({
    name: fc.constant('writeFiles'),
    arguments: fc.record({ content: fc.array(fc.record({ path: fileName, text: fc.string({ maxLength: 50 }) }), { minLength: 1, maxLength: 3 }) }),
  }),
  fc.record({ name: fc.constantFrom('readFiles', 'removeFiles'), arguments: fc.record({ paths: fc.array(fileName, { minLength: 1, maxLength: 3 }) }) }),
  fc.record({ name: fc.constant('listFiles'), arguments: fc.record({ directoryPath: fc.constantFrom('', '.', 'dir') }) }),
)

/** Valid-shaped `arguments` of each tool (code and commands harmless) with odd values, for the invoke routes. */
export const toolCall: fc.Arbitrary<{ name: string; arguments: unknown }> = fc.oneof(
  fc.record({
    name: fc.constant('executeCode'),
    arguments: fc.record(
      { code: fieldOverrides.code!, language: fc.constantFrom('python', 'javascript', 'typescript', 'cobol', 5) },
      { requiredKeys: ['code'] },
    ),
  }),
  fc.record({ name: fc.constantFrom('executeCommand', 'startCommandExecution'), arguments: fc.record({ command: fieldOverrides.command! }) }),
  fc.record({ name: fc.constantFrom('getTask', 'stopTask'), arguments: fc.record({ taskId: fc.oneof(oddString, garbageValue) }) }),
  fc.record({
    name: fc.constant('writeFiles'),
    arguments: fc.record({
      content: fc.oneof(fc.array(fc.record({ path: oddString, text: fc.oneof(oddString, garbageValue) }), { maxLength: 3 }), garbageValue),
    }),
  }),
  fc.record({
    name: fc.constantFrom('readFiles', 'removeFiles'),
    arguments: fc.record({ paths: fc.oneof(fc.array(oddString, { maxLength: 3 }), garbageValue) }),
  }),
  fc.record({
    name: fc.constant('listFiles'),
    arguments: fc.record({ directoryPath: fc.oneof(oddString, garbageValue), path: oddString }, { requiredKeys: [] }),
  }),
  fc.record({ name: fc.oneof(oddString, garbageValue), arguments: garbageValue }),
) as fc.Arbitrary<{ name: string; arguments: unknown }>

/** How a body goes on the wire: the JSON as is, or broken in one of the ways clients break it. */
export type BodyForm = { kind: 'json'; text: string } | { kind: 'raw'; bytes: Buffer } | { kind: 'none' }

export const bodyForm = (value: fc.Arbitrary<unknown>): fc.Arbitrary<BodyForm> =>
  fc.oneof(
    { weight: 8, arbitrary: value.map((v): BodyForm => ({ kind: 'json', text: JSON.stringify(v) ?? 'null' })) },
    { weight: 2, arbitrary: pollutedJson(value).map((text): BodyForm => ({ kind: 'json', text })) },
    { weight: 1, arbitrary: deepJson.map((text): BodyForm => ({ kind: 'json', text })) },
    {
      weight: 2,
      arbitrary: value
        .map((v) => JSON.stringify(v) ?? 'null')
        .chain((t) =>
          fc.constantFrom<BodyForm>(
            { kind: 'json', text: t.slice(0, Math.max(1, t.length - 1)) },
            { kind: 'json', text: `${t}${t}` },
            { kind: 'json', text: `\uFEFF${t}` },
            { kind: 'raw', bytes: Buffer.from(t, 'utf16le') },
            { kind: 'raw', bytes: Buffer.concat([Buffer.from('{"name":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"}')]) },
          ),
        ),
    },
    {
      weight: 1,
      arbitrary: fc.constantFrom<BodyForm>({ kind: 'none' }, { kind: 'json', text: '' }, { kind: 'json', text: '  ' }, { kind: 'json', text: 'null' }),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b): BodyForm => ({ kind: 'raw', bytes: Buffer.from(b) })) },
  )

/** A path segment, percent-encoded as a client would send it, or left raw and odd. */
export const pathSegment = (known: string[]): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...known) },
    { weight: 3, arbitrary: oddString.map((v) => encodeURIComponent(v.replace(/[\uD800-\uDFFF]/g, '?'))) },
    { weight: 1, arbitrary: fc.constantFrom('%zz', '%', '%00', '..', '.', '%2e%2e', 'a%2Fb', '%c0%ae', '%ff%fe', 'x'.repeat(6000)) },
  )

/** A query value, percent-encoded (or deliberately not). */
export const queryValue: fc.Arbitrary<string> = fc.oneof(
  oddString.map((v) => encodeURIComponent(v.replace(/[\uD800-\uDFFF]/g, '?'))),
  fc.constantFrom('%zz', '%', '1', '0', '-1', '1e400', '100', '101', 'true', 'READY', 'TERMINATED', 'SYSTEM', 'CUSTOM'),
)

export const contentType = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=utf-16',
  'APPLICATION/JSON',
  'application/json;;;',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/octet-stream',
  'application/vnd.amazon.eventstream',
  '',
  'é/ü',
)

export const accept = fc.constantFrom(
  undefined,
  '*/*',
  'application/json',
  'text/event-stream',
  'application/vnd.amazon.eventstream',
  'text/html',
  'nonsense;;q=x',
)

export const contentEncoding = fc.constantFrom(undefined, undefined, undefined, 'gzip', 'br', 'identity', 'bogus')
