/**
 * Code mounts for sandbox pods (a hosted agent's bundle at CODE_DIR): a pod cannot bind the API
 * host's directory, so the driver reads the directory (scanCode: only files, directories and
 * symbolic links, bounded), sizes the pod's code volume from it, and once the pod's code receiver
 * (its init container) listens, streams it there as an uncompressed tar over an authenticated
 * connection (sendCode; docs/executor-protocol.md, "The code receiver"). The receiver's answers
 * come from a pod: they are bounded and validated like anything else a pod says.
 */
import { lstat, readdir } from 'node:fs/promises'
import type net from 'node:net'
import path from 'node:path'
import { create } from 'tar'
import type { V1Pod } from '@kubernetes/client-node'
import { CodeboxError, type CodeMount } from '@codebox/core'
import { MAX_CODE_BYTES, MAX_CODE_ENTRIES, type CodeVolumeOptions } from '../manifests/sandbox-pod.ts'
import { connectExecutor, type Dial } from './channel.ts'
import { clean, podIPOf } from './pod-state.ts'

/** The name of the code receiver's init container. */
export const CODE_CONTAINER = 'code'
/** The largest frame the receiver may answer with. */
const MAX_ANSWER_BYTES = 16 * 1024
const KIND_JSON = 0x4a

/** A directory to send: what the pod's code volume is sized for, and the entries in the order they are sent (parents first). */
export interface CodeBundle extends CodeVolumeOptions {
  hostPath: string
  paths: string[]
}

const unavailable = (message: string, cause?: unknown): CodeboxError => new CodeboxError('Unavailable', message, cause === undefined ? {} : { cause })

/**
 * Reads the code mount's directory: its entries (files, directories, symbolic links; anything else
 * is refused), their file bytes and count, within MAX_CODE_BYTES and MAX_CODE_ENTRIES. Unavailable
 * naming the path when the directory is missing, holds something else, or is too large.
 */
export async function scanCode(code: CodeMount): Promise<CodeBundle> {
  const root = code.hostPath
  if (typeof root !== 'string' || !path.isAbsolute(root)) throw unavailable(`the code mount ${JSON.stringify(root)} is not an absolute path`)
  try {
    const st = await lstat(root)
    if (!st.isDirectory()) throw unavailable(`the code mount ${root} is not a directory`)
  } catch (e) {
    if (e instanceof CodeboxError) throw e
    throw unavailable(`cannot read the code mount ${root}: ${(e as Error).message}`, e)
  }
  const paths: string[] = []
  let bytes = 0
  const walk = async (rel: string): Promise<void> => {
    let names: string[]
    try {
      names = (await readdir(path.join(root, rel))).sort()
    } catch (e) {
      throw unavailable(`cannot read the code mount's directory ${path.join(root, rel)}: ${(e as Error).message}`, e)
    }
    for (const name of names) {
      const entry = rel === '' ? name : `${rel}/${name}`
      if (paths.length >= MAX_CODE_ENTRIES) throw unavailable(`the code mount ${root} has more than ${MAX_CODE_ENTRIES} entries`)
      const st = await lstat(path.join(root, entry)).catch((e: unknown) => {
        throw unavailable(`cannot read ${path.join(root, entry)} in the code mount: ${(e as Error).message}`, e)
      })
      paths.push(entry)
      if (st.isDirectory()) await walk(entry)
      else if (st.isFile()) {
        bytes += st.size
        if (bytes > MAX_CODE_BYTES)
          throw unavailable(`the code mount ${root} holds more than ${MAX_CODE_BYTES} bytes of files (a kubernetes sandbox pod's code volume)`)
      } else if (!st.isSymbolicLink()) throw unavailable(`${path.join(root, entry)} in the code mount is not a file, directory or symbolic link`)
    }
  }
  await walk('')
  return { hostPath: root, paths, bytes, entries: Math.max(1, paths.length) }
}

/** The pod's IP once its code receiver runs (the init container `code`, started and not ended); undefined before. */
export function receiverIP(pod: V1Pod): string | undefined {
  const status = pod.status?.initContainerStatuses?.find((s) => s?.name === CODE_CONTAINER)
  return status?.state?.running ? podIPOf(pod) : undefined
}

/** Whether the pod's code receiver has exited 0: the volume is filled (a retried create that found the pod). */
export function receiverDone(pod: V1Pod): boolean {
  const status = pod.status?.initContainerStatuses?.find((s) => s?.name === CODE_CONTAINER)
  return status?.state?.terminated?.exitCode === 0
}

export interface SendCodeOptions {
  dial: Dial
  host: string
  port: number
  token: string
  /** For messages: `pod <namespace>/<name>`. */
  what: string
  bundle: CodeBundle
  timeoutMs: number
  signal?: AbortSignal
}

/** What the receiver unpacked. */
export interface SendCodeResult {
  files: number
  bytes: number
}

/**
 * Connects to the pod's code receiver with its token, streams the bundle as a tar, and waits for
 * its answer. Unavailable naming the pod when the connection fails, the receiver refuses the
 * bundle (its reason, bounded), or it does not answer within `timeoutMs`.
 */
export async function sendCode(options: SendCodeOptions): Promise<SendCodeResult> {
  const { what } = options
  const deadline = Date.now() + options.timeoutMs
  const socket = await connectExecutor({
    dial: options.dial,
    host: options.host,
    port: options.port,
    token: options.token,
    what,
    timeoutMs: Math.min(options.timeoutMs, 10_000),
    ...(options.signal ? { signal: options.signal } : {}),
  })
  const reader = new FrameReader(socket)
  const abort = (): void => void socket.destroy(options.signal?.reason instanceof Error ? options.signal.reason : new Error('the start was cancelled'))
  options.signal?.addEventListener('abort', abort, { once: true })
  const timer = setTimeout(() => socket.destroy(new Error(`no answer within ${Math.round(options.timeoutMs / 1000)} s`)), Math.max(0, deadline - Date.now()))
  try {
    const ready = await reader.next()
    if (ready?.op !== 'ready' || ready.receiver !== 'code')
      throw unavailable(`${what} did not answer as a code receiver (its executor port said ${clean(JSON.stringify(ready ?? null), 120)})`)
    // A bundle that cannot be read (a file gone since the scan) ends the connection with why.
    const sent = write(socket, options.bundle).catch((e: unknown) => void socket.destroy(e as Error))
    const answer = await reader.next()
    await sent
    if (answer?.op === 'done') {
      const files = Number(answer.files)
      const bytes = Number(answer.bytes)
      if (!Number.isSafeInteger(files) || !Number.isSafeInteger(bytes)) throw unavailable(`the code receiver of ${what} answered a malformed done`)
      return { files, bytes }
    }
    if (answer?.op === 'error')
      throw unavailable(`the code receiver of ${what} refused the code mount ${options.bundle.hostPath}: ${clean(answer.message, 500)}`)
    throw unavailable(`the code receiver of ${what} ${answer ? `answered ${clean(JSON.stringify(answer), 120)}` : 'closed the connection without answering'}`)
  } catch (e) {
    if (e instanceof CodeboxError) throw e
    if (options.signal?.aborted) throw options.signal.reason instanceof Error ? options.signal.reason : new CodeboxError('Canceled', 'the start was cancelled')
    throw unavailable(`cannot send the code mount ${options.bundle.hostPath} to ${what}: ${(e as Error).message}`, e)
  } finally {
    clearTimeout(timer)
    options.signal?.removeEventListener('abort', abort)
    socket.destroy()
  }
}

/** Writes the bundle's tar to the socket (backpressure kept), then ends the socket's sending side. */
async function write(socket: net.Socket, bundle: CodeBundle): Promise<void> {
  // Directories without their entries: the scan's list is the archive, parents first; links as links.
  const tar = create({ cwd: bundle.hostPath, portable: true, noDirRecurse: true, follow: false, strict: true }, ['.', ...bundle.paths])
  for await (const chunk of tar) {
    if (socket.destroyed) return
    if (!socket.write(chunk)) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          socket.off('drain', done).off('close', done)
          resolve()
        }
        socket.on('drain', done).on('close', done)
      })
    }
  }
  socket.end()
}

/** Reads J frames (rid 0) from the socket, each at most MAX_ANSWER_BYTES; undefined when the socket ends first. */
class FrameReader {
  #buffer = Buffer.alloc(0)
  #socket: net.Socket
  #waiting: (() => void) | undefined
  #ended = false
  #error: Error | undefined

  constructor(socket: net.Socket) {
    this.#socket = socket
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk])
      if (this.#buffer.length > MAX_ANSWER_BYTES + 9) socket.destroy(new Error(`the receiver sent more than ${MAX_ANSWER_BYTES} bytes`))
      this.#wake()
    })
    socket.on('end', () => ((this.#ended = true), this.#wake()))
    socket.on('close', () => ((this.#ended = true), this.#wake()))
    socket.on('error', (e) => ((this.#error = e), this.#wake()))
  }

  #wake(): void {
    const w = this.#waiting
    this.#waiting = undefined
    w?.()
  }

  async next(): Promise<Record<string, unknown> | undefined> {
    for (;;) {
      if (this.#buffer.length >= 9) {
        const length = this.#buffer.readUInt32BE(0)
        if (length < 5 || length > MAX_ANSWER_BYTES + 5 || this.#buffer.readUInt32BE(4) !== 0 || this.#buffer[8] !== KIND_JSON)
          throw new Error('the receiver sent a malformed frame')
        if (this.#buffer.length >= 4 + length) {
          const payload = this.#buffer.subarray(9, 4 + length).toString('utf8')
          this.#buffer = this.#buffer.subarray(4 + length)
          let value: unknown
          try {
            value = JSON.parse(payload)
          } catch {
            throw new Error('the receiver sent a frame that is not JSON')
          }
          if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error('the receiver sent a frame that is not a JSON object')
          return value as Record<string, unknown>
        }
      }
      if (this.#error) throw this.#error
      if (this.#ended) return undefined
      await new Promise<void>((resolve) => (this.#waiting = resolve))
    }
  }
}
