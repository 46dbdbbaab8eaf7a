/**
 * session.files: file operations done by the executor inside the sandbox, streamed both ways.
 * The host never resolves a sandbox path; it only passes the path along.
 */
import { CodeboxError, validationError, type FileEntry } from '@codebox/core'
import type { Session } from './session.ts'

export class SessionFiles {
  private readonly session: Session

  constructor(session: Session) {
    this.session = session
  }

  /** Writes a file (parents created), atomically: a failed write leaves the old file or none. */
  async write(
    path: string | { pathBase64: string },
    data: string | Uint8Array | AsyncIterable<Uint8Array>,
    options: { signal?: AbortSignal } = {},
  ): Promise<{ size: number }> {
    if (
      typeof data !== 'string' &&
      !(data instanceof Uint8Array) &&
      typeof (data as Partial<AsyncIterable<Uint8Array>> | null)?.[Symbol.asyncIterator] !== 'function'
    ) {
      throw validationError('data', 'must be a string, a Uint8Array or an async iterable of Uint8Array')
    }
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data instanceof Uint8Array ? data.length : undefined
    const max = this.session.limits.fileBytes
    if (size !== undefined && size > max) {
      throw new CodeboxError('LimitExceeded', `file is ${size} bytes, over the ${max}-byte file limit`, { details: { limit: max } })
    }
    const body =
      typeof data === 'string'
        ? single(Buffer.from(data))
        : data instanceof Uint8Array
          ? single(Buffer.from(data.buffer, data.byteOffset, data.length))
          : toBuffers(data)
    const done = await this.op('files.write', { ...pathFields(path), size, maxBytes: max }, options, body)
    return { size: Number(done.size) }
  }

  /** Reads a whole file into memory (up to the file limit). */
  async read(path: string | { pathBase64: string }, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const { stream } = await this.readStream(path, options)
    const parts: Buffer[] = []
    for await (const c of stream) parts.push(c)
    return Buffer.concat(parts)
  }

  /**
   * Opens a file for streaming: its size and MIME type, then its bytes. The stream never yields
   * more than that size (which is within the file limit), whatever the executor sends: more is a
   * LimitExceeded error that ends the read, fewer an error at the end.
   */
  async readStream(
    path: string | { pathBase64: string },
    options: { signal?: AbortSignal; maxBytes?: number } = {},
  ): Promise<{ size: number; mimeType: string; stream: AsyncIterable<Buffer> }> {
    this.session.enter()
    let left = true
    const limit = this.session.limits.fileBytes
    const it = this.session.client.request('files.read', { ...pathFields(path), maxBytes: limit }, { signal: options.signal })
    try {
      const first = await it.next()
      if (first.done || first.value.kind !== 'event' || first.value.event.ev !== 'file')
        throw new CodeboxError('SandboxFailure', 'executor did not open the file')
      const meta = first.value.event
      const announced = meta.size
      if (typeof announced !== 'number' || !Number.isSafeInteger(announced) || announced < 0)
        throw new CodeboxError('SandboxFailure', 'executor sent a file size that is not a whole number')
      const size: number = announced
      if (size > limit) throw new CodeboxError('LimitExceeded', `the file is ${size} bytes, over the ${limit}-byte file limit`, { details: { limit } })
      const shown = typeof path === 'string' ? path : '(a base64 path)'
      if (options.maxBytes !== undefined && size > options.maxBytes) {
        throw new CodeboxError('LimitExceeded', `${shown} is ${size} bytes, more than the ${options.maxBytes} bytes this read may return`, {
          details: { limit: options.maxBytes, size, path: shown },
        })
      }
      const session = this.session
      async function* bytes(): AsyncGenerator<Buffer> {
        let received = 0
        try {
          for (;;) {
            const n = await it.next()
            if (n.done) break
            if (n.value.kind !== 'bytes') continue
            received += n.value.data.length
            if (received > size) {
              throw new CodeboxError(
                'LimitExceeded',
                `${shown}: the sandbox sent more than the ${size} bytes it announced (file limit ${limit}); the read was stopped`,
                {
                  details: { limit, size, path: shown },
                },
              )
            }
            yield n.value.data
          }
          if (received < size)
            throw new CodeboxError('SandboxFailure', `${shown}: the read ended after ${received} of ${size} bytes`, { details: { size, path: shown } })
        } finally {
          await it.return(undefined as never)
          session.leave()
        }
      }
      left = false
      return { size, mimeType: String(meta.mimeType).slice(0, 255), stream: bytes() }
    } finally {
      if (left) {
        await it.return(undefined as never)
        this.session.leave()
      }
    }
  }

  /** Lists a directory (default the workspace); `recursive` walks into subdirectories. */
  async list(path = '', options: { recursive?: boolean; signal?: AbortSignal } = {}): Promise<FileEntry[]> {
    const done = await this.op('files.list', { path, recursive: options.recursive === true, maxEntries: 10_000 }, options)
    return done.entries as FileEntry[]
  }

  /** Removes a file, or a directory (`recursive` for one that is not empty). */
  async remove(path: string | { pathBase64: string }, options: { recursive?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    await this.op('files.remove', { ...pathFields(path), recursive: options.recursive === true }, options)
  }

  private async op(
    op: string,
    fields: Record<string, unknown>,
    options: { signal?: AbortSignal },
    body?: AsyncIterable<Buffer>,
  ): Promise<Record<string, unknown>> {
    this.session.enter()
    try {
      const it = this.session.client.request(op, fields, { signal: options.signal, body })
      for (;;) {
        const n = await it.next()
        if (n.done) return n.value
      }
    } finally {
      this.session.leave()
    }
  }
}

function pathFields(path: string | { pathBase64: string }): Record<string, string> {
  if (typeof path === 'string') return { path }
  if (path && typeof path.pathBase64 === 'string') return { pathBase64: path.pathBase64 }
  throw validationError('path', 'must be a string or {pathBase64}')
}

async function* single(b: Buffer): AsyncGenerator<Buffer> {
  yield b
}

async function* toBuffers(src: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  for await (const c of src) yield Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.length)
}
