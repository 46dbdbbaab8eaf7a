/**
 * A connection to a sandbox pod's executor: dialled at the pod's IP and executor port (through the
 * driver's `dial`, `net.connect` on a cluster), authenticated with the pod's token as the first
 * frame (docs/kubernetes.md, "The executor's listen mode"), and returned once the executor has
 * answered, so a refused token is an error here rather than a channel that closes later.
 */
import type net from 'node:net'
import { CodeboxError } from '@codebox/core'

/** How the driver reaches a pod's port: `net.connect` on a cluster; the fake API server's `dial` in tests. */
export type Dial = (options: { host: string; port: number }) => net.Socket

/** The auth frame's kind (J, JSON) and request id (0), as docs/executor-protocol.md frames them. */
const KIND_JSON = 0x4a
const MAX_AUTH_PAYLOAD = 4096

/**
 * The first frame of a connection: `{"op":"auth","token":...}` on request id 0; with `tunnel` (a
 * port) the connection becomes a tunnel to that port on the pod's loopback (tunnel.ts).
 */
export function authFrame(token: string, tunnel?: number): Buffer {
  const payload = Buffer.from(JSON.stringify(tunnel === undefined ? { op: 'auth', token } : { op: 'auth', token, tunnel }), 'utf8')
  if (payload.length > MAX_AUTH_PAYLOAD) throw new Error('the executor token is too long for an auth frame')
  const head = Buffer.alloc(9)
  head.writeUInt32BE(payload.length + 5, 0)
  head.writeUInt32BE(0, 4)
  head.writeUInt8(KIND_JSON, 8)
  return Buffer.concat([head, payload])
}

export interface ConnectOptions {
  dial: Dial
  host: string
  port: number
  token: string
  /** For messages: `pod <namespace>/<name>`. */
  what: string
  timeoutMs: number
  signal?: AbortSignal
}

/**
 * Dials, authenticates, and waits for the executor's first bytes (its `ready`, left unread for
 * the caller). Unavailable when the connection fails or closes without a word (a refused token
 * looks exactly like that: the executor closes without answering).
 */
export function connectExecutor(options: ConnectOptions): Promise<net.Socket> {
  return openAuthenticated(options, authFrame(options.token))
}

/**
 * Dials, sends `first` (an auth frame) once connected, and resolves once the executor sent its
 * first bytes, left unread. Unavailable when the connection fails, closes without a byte, or
 * stays silent past `timeoutMs` (`details.reason` "timeout"); the signal's reason (or Canceled)
 * when it aborts.
 */
export function openAuthenticated(options: ConnectOptions, first: Buffer): Promise<net.Socket> {
  const { what, timeoutMs } = options
  return new Promise<net.Socket>((resolve, reject) => {
    let socket: net.Socket
    try {
      socket = options.dial({ host: options.host, port: options.port })
    } catch (e) {
      reject(new CodeboxError('Unavailable', `cannot connect to the executor of ${what}: ${(e as Error).message}`, { cause: e }))
      return
    }
    let settled = false
    const finish = (err?: Error): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
      socket.off('readable', onReadable)
      socket.off('close', onClose)
      socket.off('connect', onConnect)
      if (err) {
        socket.destroy()
        reject(err)
      } else resolve(socket)
    }
    const onAbort = (): void =>
      finish(options.signal?.reason instanceof Error ? options.signal.reason : new CodeboxError('Canceled', 'the start was cancelled'))
    const timer = setTimeout(
      () =>
        finish(
          new CodeboxError('Unavailable', `the executor of ${what} did not answer within ${timeoutMs} ms`, {
            details: { retryAfterSeconds: 5, reason: 'timeout' },
          }),
        ),
      timeoutMs,
    )
    let lastError: Error | undefined
    const onClose = (): void =>
      finish(
        new CodeboxError(
          'Unavailable',
          lastError
            ? `cannot connect to the executor of ${what}: ${lastError.message}`
            : `the executor of ${what} closed the connection without answering: it refused the token (every replica must have the same CODEBOX_SEALING_KEY) or is ending`,
        ),
      )
    const onConnect = (): void => {
      socket.write(first)
    }
    // The first bytes are the executor's `ready`: they stay buffered for the caller's reader.
    const onReadable = (): void => {
      if (socket.readableLength > 0) finish()
    }
    socket.on('error', (e) => (lastError = e))
    socket.on('close', onClose)
    socket.once('connect', onConnect)
    socket.on('readable', onReadable)
    if (options.signal?.aborted) onAbort()
    else options.signal?.addEventListener('abort', onAbort, { once: true })
  })
}
