/**
 * The file routes of a session (`/v1/sessions/{id}/files/...`): raw uploads and downloads that
 * stream, listings and deletes, and the helpers that shape file paths and bytes for the wire.
 */
import type { FileEntry } from '@codebox/core'
import { ValidationError } from './errors.ts'
import type { CallOptions, HttpBody, HttpClient } from './http.ts'
import { sessionPath } from './routes.ts'

/** What `uploadFile` sends: text (as UTF-8), bytes, a Blob, or a stream (sent as it is read; never retried). */
export type UploadData = string | Uint8Array | ArrayBuffer | Blob | ReadableStream<Uint8Array>

/** The answer of an upload: the path written and its size in bytes. */
export interface FileWriteResult {
  path: string
  size: number
}

/** An opened download: size (Content-Length; -1 when the server sent none), MIME type and the bytes as they arrive. */
export interface FileDownload {
  size: number
  mimeType: string
  stream: ReadableStream<Uint8Array>
}

/** The listing of a directory. */
export interface FileEntryList {
  items: FileEntry[]
}

/** Options of `listFileEntries`. */
export interface ListFileEntriesOptions extends CallOptions {
  /** List subdirectories too. Default false. */
  recursive?: boolean
}

/** Options of `deleteFile`. */
export interface DeleteFileOptions extends CallOptions {
  /** Delete a directory with its contents. Default false. */
  recursive?: boolean
}

/**
 * Encodes a workspace path for the URL: each segment on its own, `/` kept. `.` and `..` segments
 * are refused, because URL parsing would resolve them and silently reach another path or route.
 */
export function encodeFilePath(path: string): string {
  if (path === '') throw new ValidationError('path: must not be empty', { details: { field: 'path' } })
  return path
    .split('/')
    .map((segment) => {
      if (segment === '.' || segment === '..') {
        throw new ValidationError(`path: ${JSON.stringify(path)} has a "${segment}" segment; send the path without it`, { details: { field: 'path' } })
      }
      return encodeURIComponent(segment)
    })
    .join('/')
}

/** Bytes as base64, without Node's Buffer (browser-safe). */
export function bytesToBase64(bytes: Uint8Array): string {
  let binary = ''
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000))
  return btoa(binary)
}

const filesPath = (sessionId: string, path: string): string => `${sessionPath(sessionId)}/files/${encodeFilePath(path)}`

/** `PUT .../files/{path}`: retried only when the body can be sent again (not a stream). */
export function uploadFile(http: HttpClient, sessionId: string, path: string, data: UploadData, options: CallOptions = {}): Promise<FileWriteResult> {
  const body = toBody(data)
  return http.json<FileWriteResult>(
    {
      method: 'PUT',
      path: filesPath(sessionId, path),
      body,
      headers: { 'content-type': 'application/octet-stream' },
      retry: !(body instanceof ReadableStream),
    },
    { signal: options.signal, timeoutMs: options.timeoutMs },
  )
}

function toBody(data: UploadData): HttpBody {
  if (typeof data === 'string' || data instanceof Blob || data instanceof ArrayBuffer || data instanceof ReadableStream) return data
  if (data instanceof Uint8Array) return data as Uint8Array<ArrayBuffer>
  throw new ValidationError('data: must be a string, Uint8Array, ArrayBuffer, Blob or ReadableStream', { details: { field: 'data' } })
}

/** `GET .../files/{path}`, opened: the caller reads or cancels the stream. */
export async function downloadFileStream(http: HttpClient, sessionId: string, path: string, options: CallOptions = {}): Promise<FileDownload> {
  const { response, body } = await http.open(
    { method: 'GET', path: filesPath(sessionId, path), headers: { accept: '*/*' }, retry: true },
    { signal: options.signal, timeoutMs: options.timeoutMs },
  )
  const length = response.headers.get('content-length')
  return {
    size: length === null ? -1 : Number(length),
    mimeType: response.headers.get('content-type') ?? 'application/octet-stream',
    stream: body,
  }
}

/** `GET .../files/{path}`, read whole into memory. */
export async function downloadFile(http: HttpClient, sessionId: string, path: string, options: CallOptions = {}): Promise<Uint8Array> {
  const { stream } = await downloadFileStream(http, sessionId, path, options)
  const parts: Uint8Array[] = []
  let total = 0
  // A reader loop, not `for await`: Safari's ReadableStream is not async-iterable.
  const reader = stream.getReader()
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    parts.push(r.value)
    total += r.value.length
  }
  const bytes = new Uint8Array(total)
  let offset = 0
  for (const part of parts) {
    bytes.set(part, offset)
    offset += part.length
  }
  return bytes
}

/** `GET .../files?path=&recursive=`. */
export function listFileEntries(http: HttpClient, sessionId: string, path = '', options: ListFileEntriesOptions = {}): Promise<FileEntryList> {
  const query = { path: path || undefined, recursive: options.recursive ? true : undefined }
  return http.json<FileEntryList>(
    { method: 'GET', path: `${sessionPath(sessionId)}/files`, query, retry: true },
    { signal: options.signal, timeoutMs: options.timeoutMs },
  )
}

/** `DELETE .../files/{path}?recursive=`. */
export async function deleteFile(http: HttpClient, sessionId: string, path: string, options: DeleteFileOptions = {}): Promise<void> {
  const query = { recursive: options.recursive ? true : undefined }
  await http.json<undefined>(
    { method: 'DELETE', path: filesPath(sessionId, path), query, retry: true },
    { signal: options.signal, timeoutMs: options.timeoutMs },
  )
}
