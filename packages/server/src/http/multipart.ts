/**
 * A streaming multipart/form-data reader: parts as they arrive, each part's bytes streamed, so an
 * upload of many files is never held in memory whole. Bounded: a part's headers at 16 KiB, at
 * most 1000 parts; what does not follow the format is a ValidationError naming what was wrong.
 */
import { validationError } from '@codebox/core'

export interface MultipartPart {
  /** The form field's name (`Content-Disposition: form-data; name=...`). */
  name: string | undefined
  /** The file name a file part carries; undefined for a plain field. */
  filename: string | undefined
  /** The part's bytes. Read them to the end (or not at all) before asking for the next part. */
  data: AsyncIterable<Buffer>
}

const maxHeaderBytes = 16 * 1024
const maxParts = 1000
const CRLF = Buffer.from('\r\n')
const HEADER_END = Buffer.from('\r\n\r\n')

/** The boundary of a `multipart/form-data; boundary=...` content type; ValidationError without one. */
export function multipartBoundary(contentType: string | undefined): string {
  const m = /;\s*boundary=(?:"([^"]{1,70})"|([^\s;]{1,70}))/i.exec(contentType ?? '')
  const boundary = m?.[1] ?? m?.[2]
  if (!boundary) throw validationError('content-type', 'multipart/form-data needs a boundary parameter (1-70 characters)')
  return boundary
}

/** Reads `source` as a multipart body with `boundary`, yielding its parts in order. */
export async function* multipartParts(source: AsyncIterable<Buffer>, boundary: string): AsyncGenerator<MultipartPart> {
  const reader = new ByteReader(source)
  const delimiter = Buffer.from(`--${boundary}`)
  const partEnd = Buffer.concat([CRLF, delimiter])
  try {
    // The preamble, up to the first delimiter (at the very start, or after a CRLF).
    if (!(await reader.skipPast(delimiter, 16 * 1024))) throw validationError('body', `has no multipart boundary ${JSON.stringify(boundary)}`)
    for (let count = 0; ; count++) {
      const after = await reader.take(2)
      if (after.equals(Buffer.from('--'))) return
      if (!after.equals(CRLF)) throw validationError('body', 'a multipart boundary must be followed by CRLF or --')
      if (count >= maxParts) throw validationError('body', `has more than ${maxParts} parts`)
      const head = await reader.takeUntil(HEADER_END, maxHeaderBytes)
      if (head === undefined) throw validationError('body', `a multipart part's headers are over ${maxHeaderBytes} bytes or never end`)
      const disposition = partHeaders(head.toString('latin1'))['content-disposition'] ?? ''
      let finished = false
      const data = async function* (): AsyncGenerator<Buffer> {
        for (;;) {
          const { chunk, found } = await reader.streamUntil(partEnd)
          if (chunk.length) yield chunk
          if (found) break
        }
        finished = true
      }
      const iterator = data()
      yield {
        name: dispositionParam(disposition, 'name'),
        filename: dispositionParam(disposition, 'filename'),
        data: { [Symbol.asyncIterator]: () => iterator },
      }
      // Whatever of the part the caller left unread is skipped.
      if (!finished) for await (const chunk of iterator) void chunk
    }
  } finally {
    await reader.close()
  }
}

/** A part's headers, by lower-case name (the body is UTF-8 in practice; latin1 keeps every byte). */
function partHeaders(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\r\n')) {
    const i = line.indexOf(':')
    if (i > 0) out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
  }
  return out
}

/** A parameter of Content-Disposition, unquoted; `%22`, `%0D`, `%0A` are how browsers and undici escape `"` and newlines. */
function dispositionParam(disposition: string, name: string): string | undefined {
  const m = new RegExp(`;\\s*${name}="((?:[^"\\\\]|\\\\.)*)"|;\\s*${name}=([^;\\s]+)`, 'i').exec(disposition)
  const raw = m?.[1] ?? m?.[2]
  if (raw === undefined) return undefined
  const bytes = Buffer.from(raw.replace(/\\(.)/g, '$1'), 'latin1').toString('utf8')
  return bytes.replace(/%22/g, '"').replace(/%0D/gi, '\r').replace(/%0A/gi, '\n')
}

/** Buffered reading of a byte stream: exact takes, searches, and streaming up to a delimiter. */
class ByteReader {
  #buf = Buffer.alloc(0)
  #ended = false
  readonly #it: AsyncIterator<Buffer>

  constructor(source: AsyncIterable<Buffer>) {
    this.#it = source[Symbol.asyncIterator]()
  }

  /** Reads more; false once the source has ended. */
  async #fill(): Promise<boolean> {
    if (this.#ended) return false
    const n = await this.#it.next()
    if (n.done) {
      this.#ended = true
      return false
    }
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, n.value]) : Buffer.from(n.value)
    return true
  }

  async take(n: number): Promise<Buffer> {
    while (this.#buf.length < n) if (!(await this.#fill())) throw validationError('body', 'ended in the middle of a multipart body')
    const out = this.#buf.subarray(0, n)
    this.#buf = this.#buf.subarray(n)
    return out
  }

  /** Skips up to and past `needle`, looking at most `limit` bytes ahead; false when it is not there. */
  async skipPast(needle: Buffer, limit: number): Promise<boolean> {
    let skipped = 0
    for (;;) {
      const i = this.#buf.indexOf(needle)
      if (i >= 0) {
        this.#buf = this.#buf.subarray(i + needle.length)
        return true
      }
      // Only a tail that could begin the needle is kept, so a trickled body costs no copying.
      const drop = Math.max(0, this.#buf.length - (needle.length - 1))
      skipped += drop
      this.#buf = this.#buf.subarray(drop)
      if (skipped > limit || !(await this.#fill())) return false
    }
  }

  /** The bytes before `needle` (consumed with it), or undefined if it is not within `limit` bytes. */
  async takeUntil(needle: Buffer, limit: number): Promise<Buffer | undefined> {
    for (;;) {
      const i = this.#buf.indexOf(needle)
      if (i >= 0 && i <= limit) {
        const out = this.#buf.subarray(0, i)
        this.#buf = this.#buf.subarray(i + needle.length)
        return out
      }
      if (this.#buf.length > limit + needle.length || !(await this.#fill())) return undefined
    }
  }

  /** What can be handed on before `needle`: all of it up to the needle (found), or all but a tail that could begin it. */
  async streamUntil(needle: Buffer): Promise<{ chunk: Buffer; found: boolean }> {
    for (;;) {
      const i = this.#buf.indexOf(needle)
      if (i >= 0) {
        const chunk = this.#buf.subarray(0, i)
        this.#buf = this.#buf.subarray(i + needle.length)
        return { chunk, found: true }
      }
      // All but a tail that could begin the needle goes on now, so the buffer stays small however the body is chunked.
      const safe = this.#buf.length - (needle.length - 1)
      if (safe > 0) {
        const chunk = this.#buf.subarray(0, safe)
        this.#buf = this.#buf.subarray(safe)
        return { chunk, found: false }
      }
      if (!(await this.#fill())) throw validationError('body', 'ended inside a multipart part (its closing boundary is missing)')
    }
  }

  async close(): Promise<void> {
    if (!this.#ended) await this.#it.return?.()
  }
}
