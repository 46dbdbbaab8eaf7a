/**
 * Reading request bodies without trusting the client: the size cap is checked against
 * Content-Length before a byte is read and again while reading; a body that stalls gets
 * RequestTimeout; JSON nested deeper than 64 levels or carrying `__proto__`/`constructor` keys is
 * refused before it reaches any handler.
 */
import type { IncomingMessage } from 'node:http'
import sjson from 'secure-json-parse'
import { CodeboxError, validationError } from '@codebox/core'

/** JSON nesting allowed in a request body; real requests need fewer than 10 levels. */
export const MAX_JSON_DEPTH = 64

export interface BodyLimits {
  maxBytes: number
  idleTimeoutMs: number
}

/** Too large by its Content-Length: the 413 to send before reading the body at all. */
export function checkDeclaredLength(req: IncomingMessage, maxBytes: number, what = 'request body'): void {
  const declared = Number(req.headers['content-length'])
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge(declared, maxBytes, what)
}

export function tooLarge(size: number, maxBytes: number, what: string): CodeboxError {
  return new CodeboxError('LimitExceeded', `${what} is ${size} bytes, over the ${maxBytes}-byte limit`, { details: { limit: maxBytes } })
}

/**
 * Yields a body's chunks, failing with LimitExceeded past `maxBytes` and RequestTimeout when
 * nothing arrives for `idleTimeoutMs`.
 */
export async function* limitedBody(req: IncomingMessage, limits: BodyLimits, what = 'request body'): AsyncGenerator<Buffer> {
  checkDeclaredLength(req, limits.maxBytes, what)
  let total = 0
  const it = req[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  for (;;) {
    let timer: NodeJS.Timeout | undefined
    const stalled = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new CodeboxError('RequestTimeout', `the ${what} sent nothing for ${limits.idleTimeoutMs} ms after ${total} bytes; send it without pauses`)),
        limits.idleTimeoutMs,
      )
    })
    let n: IteratorResult<Buffer>
    try {
      n = await Promise.race([it.next(), stalled])
    } finally {
      clearTimeout(timer)
    }
    if (n.done) return
    total += n.value.length
    if (total > limits.maxBytes) throw tooLarge(total, limits.maxBytes, what)
    yield n.value
  }
}

export async function readBody(req: IncomingMessage, limits: BodyLimits): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const c of limitedBody(req, limits)) parts.push(c)
  return Buffer.concat(parts)
}

/** Parses a JSON body: depth-limited, prototype keys refused, errors that say what to fix. */
export function parseJsonBody(text: string): unknown {
  if (text.trim() === '') return undefined
  const depth = jsonDepth(text)
  if (depth > MAX_JSON_DEPTH)
    throw validationError('body', `JSON is nested ${depth > 10_000 ? 'more than 10000' : depth} levels deep; at most ${MAX_JSON_DEPTH} are allowed`)
  try {
    return sjson.parse(text, undefined, { protoAction: 'error', constructorAction: 'error' })
  } catch (e) {
    const message = (e as Error).message
    if (/prototype|constructor/i.test(message)) throw validationError('body', 'JSON keys __proto__ and constructor.prototype are not allowed')
    throw validationError('body', `not valid JSON: ${message}`)
  }
}

/** Deepest nesting of objects and arrays, counted without parsing (strings are skipped). */
export function jsonDepth(text: string): number {
  let depth = 0
  let max = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 92)
        i++ // backslash: skip the escaped character
      else if (c === 34) inString = false
    } else if (c === 34) inString = true
    else if (c === 123 || c === 91) {
      if (++depth > max) max = depth
      if (max > 10_001) return max
    } else if (c === 125 || c === 93) depth--
  }
  return max
}
