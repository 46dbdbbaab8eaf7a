/**
 * Frames of the executor protocol (docs/executor-protocol.md): `u32 length · u32 request id ·
 * u8 kind · payload`, with kinds J (JSON), B (bytes) and E (end of bytes). Everything decoded
 * here came from a sandbox: it is parsed defensively and never trusted to be well formed.
 */

export const FrameKind = { Json: 0x4a, Bytes: 0x42, End: 0x45 } as const
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind]

export interface Frame {
  requestId: number
  kind: number
  payload: Buffer
}

/** Largest frame the host accepts from a sandbox; anything bigger breaks the framing and ends the sandbox. */
export const MAX_FRAME_BYTES = 8 * 1024 * 1024

export function encodeFrame(requestId: number, kind: FrameKind, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.allocUnsafe(9)
  header.writeUInt32BE(5 + payload.length, 0)
  header.writeUInt32BE(requestId, 4)
  header.writeUInt8(kind, 8)
  return payload.length ? Buffer.concat([header, payload]) : header
}

export const encodeJson = (requestId: number, value: unknown): Buffer => encodeFrame(requestId, FrameKind.Json, Buffer.from(JSON.stringify(value), 'utf8'))

/** Incremental decoder: push chunks, get whole frames. Throws on a length outside 5..MAX_FRAME_BYTES. */
export class FrameDecoder {
  private chunks: Buffer[] = []
  private buffered = 0
  /** Bytes the frame at the head of the buffer needs; chunks are joined only once they are all here. */
  private needed = 9

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    if (this.buffered < this.needed) return []
    const frames: Frame[] = []
    let buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered)
    let offset = 0
    this.needed = 9
    while (buf.length - offset >= 9) {
      const length = buf.readUInt32BE(offset)
      if (length < 5 || length > MAX_FRAME_BYTES) {
        // Nothing after a broken length can be framed again: keep none of it.
        this.chunks = []
        this.buffered = 0
        throw new Error(`executor sent a frame of ${length} bytes (at most ${MAX_FRAME_BYTES})`)
      }
      if (buf.length - offset < 4 + length) {
        this.needed = 4 + length
        break
      }
      frames.push({
        requestId: buf.readUInt32BE(offset + 4),
        kind: buf.readUInt8(offset + 8),
        // A copy, so a small frame kept by a slow consumer does not pin the whole chunk.
        payload: Buffer.from(buf.subarray(offset + 9, offset + 4 + length)),
      })
      offset += 4 + length
    }
    buf = buf.subarray(offset)
    this.chunks = buf.length ? [buf] : []
    this.buffered = buf.length
    return frames
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * The JSON object of a J frame, or why it is not one: invalid UTF-8, not JSON (NaN, Infinity,
 * truncated), not an object, or an event without a string `ev`.
 */
export function parseJsonFrame(payload: Buffer): { event: Record<string, unknown> } | { problem: string } {
  let text: string
  try {
    text = utf8.decode(payload)
  } catch {
    return { problem: 'a frame that is not valid UTF-8' }
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (e) {
    return { problem: `a frame that is not JSON (${(e as Error).message.slice(0, 120)})` }
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { problem: 'a frame that is not a JSON object' }
  const event = value as Record<string, unknown>
  const problem = eventProblem(event)
  return problem ? { problem } : { event }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v)

/** What is wrong with the fields of an event the host reads, or undefined when they have the right types. */
function eventProblem(e: Record<string, unknown>): string | undefined {
  if (typeof e.ev !== 'string') return 'an event without a string `ev`'
  switch (e.ev) {
    case 'stdout':
    case 'stderr':
      return typeof e.text === 'string' ? undefined : `a ${e.ev} event whose text is not a string`
    case 'display':
      return isObject(e.data) ? undefined : 'a display event whose data is not an object'
    case 'error':
      return typeof e.code === 'string' && typeof e.message === 'string' ? undefined : 'an error event without a string code and message'
    default:
      return undefined
  }
}
