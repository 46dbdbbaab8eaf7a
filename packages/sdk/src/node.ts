/**
 * @codebox/sdk/node: Node-only helpers that move files between the local disk and a session
 * without holding them in memory on the way in or out.
 */
import { randomUUID } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as NodeReadableStream } from 'node:stream/web'
import type { CodeInterpreter } from './code-interpreter.ts'
import { ValidationError } from './errors.ts'
import type { FileWriteResult } from './files.ts'
import type { CallOptions } from './http.ts'

/** What `downloadFileToPath` wrote. */
export interface DownloadToPathResult {
  /** The local path written. */
  path: string
  /** Bytes written. */
  size: number
  /** The file's MIME type as the server reported it. */
  mimeType: string
}

/**
 * Uploads a local file to the session, streamed from disk (`fetch` with `duplex: 'half'`, so it
 * is not retried). `remotePath` defaults to the file's name in the working directory. Node's
 * fetch holds the bytes it has sent until the request ends (nodejs/undici#4058), so memory grows
 * with the file up to the server's file cap (100 MB by default).
 */
export async function uploadFileFromPath(ci: CodeInterpreter, localPath: string, remotePath?: string, options: CallOptions = {}): Promise<FileWriteResult> {
  // Fail before the request starts: a missing file would otherwise break the upload half-way.
  const info = await stat(localPath)
  if (!info.isFile()) throw new ValidationError(`localPath: ${localPath} is not a file`, { details: { field: 'localPath' } })
  const stream = Readable.toWeb(createReadStream(localPath)) as ReadableStream<Uint8Array>
  return ci.uploadFile(remotePath ?? basename(localPath), stream, options)
}

/**
 * Downloads a file of the session to `localPath`, streamed to disk. Atomic: the bytes go to a
 * temporary file beside `localPath` that is renamed over it only when complete, so a failed
 * download leaves the old file or none. Parent directories are created.
 */
export async function downloadFileToPath(ci: CodeInterpreter, remotePath: string, localPath: string, options: CallOptions = {}): Promise<DownloadToPathResult> {
  const dir = dirname(localPath)
  await mkdir(dir, { recursive: true })
  const { stream, mimeType } = await ci.downloadFileStream(remotePath, options)
  const temp = join(dir, `.${basename(localPath)}.${randomUUID()}.part`)
  let size = 0
  try {
    // The caller's signal and the timeout already error the stream; pipeline needs no signal.
    await pipeline(
      Readable.fromWeb(stream as NodeReadableStream<Uint8Array>),
      async function* (source: AsyncIterable<Uint8Array>) {
        for await (const chunk of source) {
          size += chunk.length
          yield chunk
        }
      },
      createWriteStream(temp, { flags: 'wx' }),
    )
    await rename(temp, localPath)
  } catch (e) {
    await rm(temp, { force: true })
    throw e
  }
  return { path: localPath, size, mimeType }
}
