/**
 * Token counts read from model responses as they stream through the gateway, without holding
 * more than a bounded window: Server-Sent Events (Anthropic `message_start`/`message_delta`,
 * OpenAI chunks with `usage`, the Responses API's `response.completed`), AWS event streams
 * (Bedrock ConverseStream's `metadata`, InvokeModelWithResponseStream's `chunk` with
 * `amazon-bedrock-invocationMetrics`), plain JSON bodies and Bedrock's token-count headers.
 * Everything here is a response the host merely observes: malformed input is ignored, never thrown.
 */

/** Tokens a response reported; a field is absent when it said nothing about it. */
export interface TokenCounts {
  input?: number
  output?: number
}

/** Reads one response's body chunks; `result()` once the body has ended. */
export interface TokenMeter {
  push(chunk: Buffer): void
  result(): TokenCounts
}

/** The most a meter holds at once: one SSE line, one event-stream message, or a whole JSON body. */
export const METER_WINDOW_BYTES = 1024 * 1024

const count = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined)
const obj = (v: unknown): Record<string, unknown> | undefined =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined

/** Counts in one decoded JSON value of any provider's shape; cumulative counts, so the largest seen wins. */
function countsIn(value: unknown, into: TokenCounts): void {
  const d = obj(value)
  if (!d) return
  const metrics = obj(d['amazon-bedrock-invocationMetrics'])
  const usages = [obj(d.usage), obj(obj(d.message)?.usage), obj(obj(d.response)?.usage)]
  for (const u of usages) {
    if (!u) continue
    keepMax(into, 'input', count(u.input_tokens) ?? count(u.prompt_tokens) ?? count(u.inputTokens))
    keepMax(into, 'output', count(u.output_tokens) ?? count(u.completion_tokens) ?? count(u.outputTokens))
  }
  if (metrics) {
    keepMax(into, 'input', count(metrics.inputTokenCount))
    keepMax(into, 'output', count(metrics.outputTokenCount))
  }
}

function keepMax(into: TokenCounts, key: 'input' | 'output', n: number | undefined): void {
  if (n !== undefined) into[key] = Math.max(into[key] ?? 0, n)
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

/** A meter for a response of this content type; Bedrock's token-count headers are read too. */
export function tokenMeter(contentType: string | undefined, headers: Record<string, string | string[] | undefined> = {}): TokenMeter {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase()
  const counts: TokenCounts = {}
  keepMax(counts, 'input', headerCount(headers['x-amzn-bedrock-input-token-count']))
  keepMax(counts, 'output', headerCount(headers['x-amzn-bedrock-output-token-count']))
  if (type === 'text/event-stream') return sseMeter(counts)
  if (type === 'application/vnd.amazon.eventstream') return eventStreamMeter(counts)
  if (type === 'application/json' || type.endsWith('+json')) return jsonMeter(counts)
  return { push: () => {}, result: () => counts }
}

function headerCount(v: string | string[] | undefined): number | undefined {
  return typeof v === 'string' && /^\d{1,15}$/.test(v) ? Number(v) : undefined
}

/** A whole JSON body, parsed at the end if it fit the window. */
function jsonMeter(counts: TokenCounts): TokenMeter {
  const parts: Buffer[] = []
  let size = 0
  return {
    push(chunk) {
      size += chunk.length
      if (size <= METER_WINDOW_BYTES) parts.push(chunk)
      else parts.length = 0
    },
    result() {
      if (size <= METER_WINDOW_BYTES) countsIn(parseJson(Buffer.concat(parts).toString('utf8')), counts)
      return counts
    },
  }
}

/** SSE: each `data:` line's JSON is looked at as it completes; a line over the window is skipped. */
function sseMeter(counts: TokenCounts): TokenMeter {
  let line: Buffer[] = []
  let lineBytes = 0
  let skipping = false
  const endLine = (): void => {
    if (!skipping) {
      const text = Buffer.concat(line).toString('utf8').replace(/\r$/, '')
      if (text.startsWith('data:')) countsIn(parseJson(text.slice(5).trim()), counts)
    }
    line = []
    lineBytes = 0
    skipping = false
  }
  return {
    push(chunk) {
      let from = 0
      for (let nl = chunk.indexOf(0x0a, from); ; nl = chunk.indexOf(0x0a, from)) {
        const piece = chunk.subarray(from, nl === -1 ? chunk.length : nl)
        if (!skipping && lineBytes + piece.length > METER_WINDOW_BYTES) {
          skipping = true
          line = []
        }
        if (!skipping && piece.length) line.push(piece)
        lineBytes += piece.length
        if (nl === -1) return
        endLine()
        from = nl + 1
      }
    },
    result() {
      if (lineBytes) endLine()
      return counts
    },
  }
}

/**
 * AWS event-stream messages (prelude: total length, headers length, CRC; headers; payload;
 * CRC): each message's `:event-type` and JSON payload. Messages over the window are skipped
 * unread; a prelude that makes no sense stops the metering (the bytes still pass untouched).
 */
function eventStreamMeter(counts: TokenCounts): TokenMeter {
  let buffer: Buffer = Buffer.alloc(0)
  let skip = 0
  let broken = false
  return {
    push(chunk) {
      if (broken) return
      if (skip) {
        const n = Math.min(skip, chunk.length)
        skip -= n
        chunk = chunk.subarray(n)
      }
      buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk
      while (buffer.length >= 12) {
        const total = buffer.readUInt32BE(0)
        const headersLength = buffer.readUInt32BE(4)
        if (total < 16 || headersLength > total - 16) {
          broken = true
          buffer = Buffer.alloc(0)
          return
        }
        if (total > METER_WINDOW_BYTES) {
          const n = Math.min(total, buffer.length)
          skip = total - n
          buffer = buffer.subarray(n)
          continue
        }
        if (buffer.length < total) break
        readMessage(buffer.subarray(0, total), headersLength, counts)
        buffer = buffer.subarray(total)
      }
      // What is kept is less than one message within the window.
      buffer = Buffer.from(buffer)
    },
    result: () => counts,
  }
}

function readMessage(message: Buffer, headersLength: number, counts: TokenCounts): void {
  const headers = readHeaders(message.subarray(12, 12 + headersLength))
  const payload = parseJson(message.subarray(12 + headersLength, message.length - 4).toString('utf8'))
  const type = headers.get(':event-type')
  if (type === 'chunk') {
    // InvokeModelWithResponseStream: the provider's own event, base64 in `bytes`.
    const bytes = obj(payload)?.bytes
    if (typeof bytes === 'string') countsIn(parseJson(Buffer.from(bytes, 'base64').toString('utf8')), counts)
  } else {
    countsIn(payload, counts)
  }
}

/** String-valued headers of an event-stream message (other types skipped by their sizes). */
function readHeaders(b: Buffer): Map<string, string> {
  const out = new Map<string, string>()
  const fixed: Record<number, number> = { 0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16 }
  let i = 0
  while (i < b.length) {
    const nameLength = b[i]!
    const name = b.subarray(i + 1, i + 1 + nameLength).toString('utf8')
    i += 1 + nameLength
    const type = b[i]
    i += 1
    if (type === undefined) break
    if (type === 6 || type === 7) {
      if (i + 2 > b.length) break
      const length = b.readUInt16BE(i)
      if (type === 7) out.set(name, b.subarray(i + 2, i + 2 + length).toString('utf8'))
      i += 2 + length
    } else if (fixed[type] !== undefined) {
      i += fixed[type]
    } else {
      break
    }
  }
  return out
}
