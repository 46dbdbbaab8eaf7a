/**
 * Frames of the executor protocol (docs/executor-protocol.md): `u32 length · u32 request id ·
 * u8 kind · payload`, with kinds J (JSON), B (bytes) and E (end of bytes).
 */

export const FrameKind = { Json: 0x4a, Bytes: 0x42, End: 0x45 } as const
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind]

export interface Frame {
  requestId: number
  kind: number
  payload: Buffer
}

/** Largest frame the host accepts from a sandbox; anything bigger is a protocol violation. */
export const MAX_FRAME_BYTES = 8 * 1024 * 1024

export function encodeFrame(requestId: number, kind: FrameKind, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.allocUnsafe(9)
  header.writeUInt32BE(5 + payload.length, 0)
  header.writeUInt32BE(requestId, 4)
  header.writeUInt8(kind, 8)
  return payload.length ? Buffer.concat([header, payload]) : header
}

export const encodeJson = (requestId: number, value: unknown): Buffer => encodeFrame(requestId, FrameKind.Json, Buffer.from(JSON.stringify(value), 'utf8'))

/** Incremental decoder: push chunks, get whole frames. Throws on a frame over the maximum. */
export class FrameDecoder {
  private chunks: Buffer[] = []
  private buffered = 0

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk)
    this.buffered += chunk.length
    const frames: Frame[] = []
    let buf = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered)
    let offset = 0
    while (buf.length - offset >= 9) {
      const length = buf.readUInt32BE(offset)
      if (length < 5 || length > MAX_FRAME_BYTES) throw new Error(`executor sent a frame of ${length} bytes`)
      if (buf.length - offset < 4 + length) break
      frames.push({
        requestId: buf.readUInt32BE(offset + 4),
        kind: buf.readUInt8(offset + 8),
        payload: buf.subarray(offset + 9, offset + 4 + length),
      })
      offset += 4 + length
    }
    buf = buf.subarray(offset)
    this.chunks = buf.length ? [buf] : []
    this.buffered = buf.length
    return frames
  }
}
