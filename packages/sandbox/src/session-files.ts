/**
 * session.files: file operations done by the executor inside the sandbox, streamed both ways.
 * The host never resolves a sandbox path; it only passes the path along.
 */
import { CodeboxError, validationError, type FileEntry, type FileInfo, type WatchEvent, type WatchEventType } from '@codebox/core'
import type { Session } from './session.ts'
import { openStream } from './session-stream.ts'

/** A path in the workspace: relative to it (or absolute under `/workspace`), or its exact bytes in base64. */
export type FilePath = string | { pathBase64: string }

export interface ListOptions {
  /** Walk every subdirectory (64 levels); same as `depth: 64`. */
  recursive?: boolean
  /** Levels to list: 1 (default) is the directory's own entries, 2 also theirs, up to 64. */
  depth?: number
  /** Add mode, permissions, owner, group and symlink targets (FileInfo). */
  details?: boolean
  signal?: AbortSignal
}

export interface FileWatchOptions {
  /** Watch every directory below too (at most 4096 directories), including ones made later. */
  recursive?: boolean
  /** Aborting it stops the watch, as stop() does. */
  signal?: AbortSignal
}

/** Why a watch ended: stop() (or its signal), or the watched directory was removed or moved away. */
export type FileWatchEnd = 'stopped' | 'removed' | 'moved'

/** A directory watch (Session.files.watch): its changes as they happen, until stopped. */
export interface FileWatch {
  /** How the sandbox watches: `inotify`, or `poll` (a listing compared every 0.5 s) where inotify is unavailable. */
  readonly mode: 'inotify' | 'poll'
  /**
   * The changes, in the order they happened; ends once the watch has ended. Read them, or stop
   * the watch: events nobody reads wait on the host, and past 16 MiB the session's output pauses.
   */
  readonly events: AsyncIterable<WatchEvent>
  /** Whether the sandbox's event queue overflowed at some point: events were lost then. */
  readonly overflowed: boolean
  /** Why the watch ended, once it has (after `events` ended). */
  readonly ended: FileWatchEnd | undefined
  /** Stops the watch; idempotent. */
  stop(): Promise<void>
}

const watchTypes: readonly WatchEventType[] = ['create', 'write', 'remove', 'rename', 'chmod']
const fileTypes: readonly FileEntry['type'][] = ['file', 'directory', 'symlink', 'other']

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

  /**
   * Lists a directory (default the workspace): its own entries, or `depth` levels down
   * (`recursive`: 64). With `details`, the entries are FileInfo. Symlinks are listed, not followed.
   */
  async list(path: string, options: ListOptions & { details: true }): Promise<FileInfo[]>
  async list(path?: string, options?: ListOptions): Promise<FileEntry[]>
  async list(path = '', options: ListOptions = {}): Promise<FileEntry[]> {
    const fields: Record<string, unknown> = { path, recursive: options.recursive === true, maxEntries: 10_000, details: options.details === true }
    if (options.depth !== undefined) {
      if (!Number.isInteger(options.depth) || options.depth < 1 || options.depth > 64)
        throw validationError('depth', `must be a whole number from 1 to 64, got ${String(options.depth)}`)
      fields.depth = options.depth
    }
    const done = await this.op('files.list', fields, options)
    if (!options.details) return done.entries as FileEntry[]
    if (!Array.isArray(done.entries)) throw new CodeboxError('SandboxFailure', 'the executor answered files.list without entries')
    return done.entries.slice(0, 10_000).map(fileInfo)
  }

  /**
   * What is at `path` (the workspace itself for `''`): type, size, mode, permissions, owner,
   * group, modified time, and a symlink's target (the link is described, never followed).
   * NotFound when nothing is there; ValidationError for a path outside the workspace or through
   * a symlink.
   */
  async stat(path: FilePath, options: { signal?: AbortSignal } = {}): Promise<FileInfo> {
    const done = await this.op('files.stat', pathFields(path), options)
    return fileInfo(done.entry)
  }

  /**
   * Makes a directory, and its missing parents unless `parents` is false (then NotFound for a
   * missing parent). `created` is false when the directory was there already; Conflict when
   * something else (a file, a symlink) is.
   */
  async makeDir(path: FilePath, options: { parents?: boolean; signal?: AbortSignal } = {}): Promise<{ created: boolean; entry: FileInfo }> {
    const done = await this.op('files.mkdir', { ...pathFields(path), parents: options.parents !== false }, options)
    return { created: done.created === true, entry: fileInfo(done.entry) }
  }

  /**
   * Moves (renames) `from` to `to`, both in the workspace; `to`'s missing parents are made, a file
   * there is replaced (rename(2)), a non-empty directory there is a Conflict, and a directory
   * cannot move into itself (ValidationError). A symlink is moved as the link. Returns `to`'s entry.
   */
  async move(from: FilePath, to: FilePath, options: { signal?: AbortSignal } = {}): Promise<FileInfo> {
    const dest = typeof to === 'string' ? { to } : to && typeof to.pathBase64 === 'string' ? { toBase64: to.pathBase64 } : undefined
    if (!dest) throw validationError('to', 'must be a string or {pathBase64}')
    const done = await this.op('files.move', { ...pathFields(from), ...dest }, options)
    return fileInfo(done.entry)
  }

  /**
   * Watches a directory of the workspace (default the workspace) for changes: resolves once the
   * watch is in place, so every change after it is seen. Events name paths relative to the
   * directory; a file written through `write` is one `write`. At most 16 watches per session
   * (LimitExceeded); NotFound for a missing directory, ValidationError for a path outside the
   * workspace or through a symlink.
   */
  async watch(path: FilePath = '', options: FileWatchOptions = {}): Promise<FileWatch> {
    const opened = await openStream(
      this.session,
      'files.watch',
      { ...pathFields(path), recursive: options.recursive === true },
      'watch.started',
      options.signal,
    )
    const mode = opened.first.mode === 'poll' ? 'poll' : 'inotify'
    const state: { overflowed: boolean; ended: FileWatchEnd | undefined } = { overflowed: false, ended: undefined }
    async function* events(): AsyncGenerator<WatchEvent> {
      try {
        for (;;) {
          const n = await opened.rest.next()
          if (n.done) {
            const why = n.value.ended
            state.ended ??= why === 'removed' || why === 'moved' ? why : 'stopped'
            return
          }
          const e = n.value.kind === 'event' ? n.value.event : undefined
          if (e?.ev !== 'watch') continue
          if (e.overflow === true) state.overflowed = true
          if (!Array.isArray(e.events)) continue
          for (const raw of e.events.slice(0, 256) as unknown[]) {
            const v = raw as Record<string, unknown> | null
            if (typeof v?.name !== 'string' || !watchTypes.includes(v.type as WatchEventType)) continue
            yield { type: v.type as WatchEventType, name: v.name.slice(0, 4096) }
          }
        }
      } finally {
        // A reader that stopped reading (break) ends the watch.
        state.ended ??= 'stopped'
        await opened.close()
      }
    }
    const stream = events()
    return {
      mode,
      events: stream,
      get overflowed() {
        return state.overflowed
      },
      get ended() {
        return state.ended
      },
      stop: async () => {
        state.ended ??= 'stopped'
        await opened.close()
      },
    }
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

/** An entry with details from the executor, checked: it comes from the sandbox. */
function fileInfo(raw: unknown): FileInfo {
  const v = raw as Record<string, unknown> | null
  const bad = (field: string): never => {
    throw new CodeboxError('SandboxFailure', `the executor sent a file entry with a bad ${field}`)
  }
  const str = (field: string, max: number): string => (typeof v?.[field] === 'string' ? (v[field] as string).slice(0, max) : bad(field))
  const num = (field: string): number =>
    typeof v?.[field] === 'number' && Number.isSafeInteger(v[field]) && (v[field] as number) >= 0 ? (v[field] as number) : bad(field)
  if (v === null || typeof v !== 'object') return bad('value')
  const type = fileTypes.includes(v.type as FileEntry['type']) ? (v.type as FileEntry['type']) : bad('type')
  const info: FileInfo = {
    path: str('path', 8192),
    name: str('name', 1024),
    type,
    size: num('size'),
    mimeType: str('mimeType', 255),
    modifiedAt: str('modifiedAt', 64),
    mode: num('mode') & 0o7777,
    permissions: str('permissions', 16),
    owner: str('owner', 256),
    group: str('group', 256),
  }
  if (typeof v.pathBase64 === 'string') info.pathBase64 = v.pathBase64.slice(0, 16384)
  if (typeof v.symlinkTarget === 'string') info.symlinkTarget = v.symlinkTarget.slice(0, 8192)
  return info
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
