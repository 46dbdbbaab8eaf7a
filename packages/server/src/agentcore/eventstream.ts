/**
 * The AWS event-stream framing (`application/vnd.amazon.eventstream`) of InvokeCodeInterpreter's
 * response. A message is: total length and headers length (uint32 BE), a CRC32 of those 8 bytes,
 * the headers, the payload, and a CRC32 of everything before it. Headers here are all strings
 * (type 7). The payload is written in pieces as it is produced, so a large result (a readFiles of
 * a 50 MB file) is never copied into one more buffer of its size.
 */
import { randomBytes } from 'node:crypto'
import { crc32 } from 'node:zlib'

/** One header: name length (uint8), name, type 7 (string), value length (uint16 BE), value. */
function encodeHeaders(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = []
  for (const [name, value] of Object.entries(headers)) {
    const n = Buffer.from(name, 'utf8')
    const v = Buffer.from(value, 'utf8')
    const head = Buffer.alloc(1 + n.length + 1 + 2)
    head.writeUInt8(n.length, 0)
    n.copy(head, 1)
    head.writeUInt8(7, 1 + n.length)
    head.writeUInt16BE(v.length, 2 + n.length)
    parts.push(head, v)
  }
  return Buffer.concat(parts)
}

/**
 * The bytes of one message, as a sequence of buffers: the prelude and headers, the payload pieces
 * as given, then the message CRC. `payload` pieces are only read, never joined.
 */
export function* messageParts(headers: Record<string, string>, payload: Iterable<Buffer>, payloadLength: number): Generator<Buffer> {
  const h = encodeHeaders(headers)
  const total = 12 + h.length + payloadLength + 4
  const prelude = Buffer.alloc(12)
  prelude.writeUInt32BE(total, 0)
  prelude.writeUInt32BE(h.length, 4)
  prelude.writeUInt32BE(crc32(prelude.subarray(0, 8)), 8)
  let crc = crc32(h, crc32(prelude))
  yield prelude
  yield h
  let written = 0
  for (const piece of payload) {
    crc = crc32(piece, crc)
    written += piece.length
    yield piece
  }
  if (written !== payloadLength) throw new Error(`event-stream payload was ${written} bytes, announced ${payloadLength}`)
  const tail = Buffer.alloc(4)
  tail.writeUInt32BE(crc, 0)
  yield tail
}

/** An event message: `:message-type: event` with the event type and a JSON payload. */
export function eventHeaders(eventType: string): Record<string, string> {
  return { ':event-type': eventType, ':content-type': 'application/json', ':message-type': 'event' }
}

/** An exception message: `:message-type: exception`, the exception's member name, a JSON payload. */
export function exceptionHeaders(exceptionType: string): Record<string, string> {
  return { ':exception-type': exceptionType, ':content-type': 'application/json', ':message-type': 'exception' }
}

/**
 * A JSON value as UTF-8 pieces and their total length, without one string of the whole: large
 * string members (base64 file contents) are encoded separately from the JSON around them.
 */
export function jsonPieces(value: unknown): { pieces: Buffer[]; length: number } {
  const pieces: Buffer[] = []
  let length = 0
  const big: string[] = []
  // Strings over 64 KiB are replaced by placeholders (with a nonce no content can guess), then
  // spliced back in as their own buffers.
  const nonce = randomBytes(8).toString('hex')
  const text = JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'string' && v.length > 65_536) {
      big.push(v)
      return `\u0000${nonce}-${big.length - 1}\u0000`
    }
    return v
  })
  const marker = new RegExp(`"\\\\u0000${nonce}-(\\d+)\\\\u0000"`, 'g')
  let last = 0
  const push = (b: Buffer): void => {
    pieces.push(b)
    length += b.length
  }
  for (const m of text.matchAll(marker)) {
    push(Buffer.from(text.slice(last, m.index), 'utf8'))
    push(Buffer.from(JSON.stringify(big[Number(m[1])]), 'utf8'))
    last = m.index + m[0].length
  }
  push(Buffer.from(text.slice(last), 'utf8'))
  return { pieces, length }
}
