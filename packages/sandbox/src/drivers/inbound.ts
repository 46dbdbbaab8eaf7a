/**
 * The host's end of the inbound relay (executor/inbound_relay.py): a connection to a port inside
 * a sandbox through the unix socket the executor listens on in its channel directory, and the
 * relay's status byte read off its front (0 connected, 1 nothing listens, 2 too many connections).
 *
 * The socket lives in a directory the sandbox's code can write (it runs as the executor's uid),
 * so its name may have been swapped for a symlink to a host socket: it is opened with
 * O_PATH | O_NOFOLLOW, checked to be a socket, and connected through `/proc/self/fd/N`, so no
 * symlink is ever followed. What answers is still the sandbox, hostile like any of its output.
 */
import { closeSync, constants, fstatSync, openSync } from 'node:fs'
import net from 'node:net'
import { CodeboxError } from '@codebox/core'

/** Linux's O_PATH (not in Node's constants). */
const O_PATH = 0o10000000
/** How long a connection may take to say whether the port answered, ms. */
export const CONNECT_PORT_TIMEOUT_MS = 10_000

/** The relay socket's name for `port` in the executor's channel directory. */
export const portSocketName = (port: number): string => `port-${port}.sock`

/** Why a port could not be reached, as the caller sees it. */
export const nothingListens = (port: number): CodeboxError =>
  new CodeboxError('Unavailable', `nothing listens on port ${port} in the sandbox (is the server started, on 127.0.0.1:${port}?)`, {
    details: { port, reason: 'refused' },
  })

/**
 * Connects to the relay socket at `socketPath` (its directory must not be writable by the sandbox;
 * only the last component may be) and waits for its status byte. Resolves with the stream, the
 * port's bytes from there on; rejects with Unavailable naming why not (`details.reason`:
 * `no-socket` when the socket is missing, for the caller to open the port again).
 */
export async function connectRelay(socketPath: string, port: number, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<net.Socket> {
  let socket: net.Socket
  try {
    socket = await connectUnixNoFollow(socketPath)
  } catch (e) {
    throw noSocket(port, (e as Error).message)
  }
  try {
    await readPortStatus(socket, port, options.signal, options.timeoutMs ?? CONNECT_PORT_TIMEOUT_MS)
  } catch (e) {
    socket.destroy()
    throw e
  }
  return socket
}

/**
 * Connects to the unix socket at `socketPath` without following a symlink at its last component
 * (a name the sandbox may write): opened O_PATH | O_NOFOLLOW, checked to be a socket, connected
 * through `/proc/self/fd/N`. Rejects with the system's error, or one saying it is no socket.
 */
export async function connectUnixNoFollow(socketPath: string): Promise<net.Socket> {
  const fd = openSync(socketPath, O_PATH | constants.O_NOFOLLOW)
  try {
    if (!fstatSync(fd).isSocket()) throw new Error(`${socketPath} is not a socket`)
    const socket = net.connect(`/proc/self/fd/${fd}`)
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => {
        socket.off('error', reject)
        resolve()
      })
      socket.once('error', (e) => {
        socket.destroy()
        reject(e)
      })
    })
    return socket
  } finally {
    closeSync(fd)
  }
}

function noSocket(port: number, why: string): CodeboxError {
  return new CodeboxError('Unavailable', `port ${port} of the sandbox cannot be reached: its relay socket is not there (${why})`, {
    details: { port, reason: 'no-socket' },
  })
}

/**
 * Reads the relay's status byte (on a relay socket, or on a listen-mode tunnel: driver-kubernetes);
 * the bytes after it stay in the stream for its reader. Rejects with Unavailable naming why the
 * port cannot be reached (`details.reason`: refused, busy, timeout), SandboxFailure on a byte
 * that is no status, the signal's reason (or Canceled) when it aborts.
 */
export function readPortStatus(socket: net.Socket, port: number, signal: AbortSignal | undefined, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined
    const finish = (e?: Error): void => {
      clearTimeout(timer)
      socket.off('readable', onReadable)
      socket.off('end', onEnd)
      socket.off('error', finish)
      signal?.removeEventListener('abort', onAbort)
      if (e) reject(e)
      else resolve()
    }
    const onReadable = (): void => {
      const b = socket.read(1) as Buffer | null
      if (b === null) return
      if (b[0] === 0) return finish()
      if (b[0] === 1) return finish(nothingListens(port))
      if (b[0] === 2) {
        return finish(
          new CodeboxError('Unavailable', `the sandbox's relay for port ${port} holds its most connections; retry when some have ended`, {
            details: { port, reason: 'busy', retryAfterSeconds: 1 },
          }),
        )
      }
      finish(new CodeboxError('SandboxFailure', `the sandbox's relay for port ${port} answered with an unknown status ${b[0]}`))
    }
    const onEnd = (): void =>
      finish(new CodeboxError('Unavailable', `the sandbox's relay for port ${port} closed the connection at once`, { details: { port } }))
    const onAbort = (): void =>
      finish(signal?.reason instanceof Error ? signal.reason : new CodeboxError('Canceled', `the connection to port ${port} was cancelled`))
    timer = setTimeout(
      () =>
        finish(new CodeboxError('Unavailable', `port ${port} in the sandbox did not answer within ${timeoutMs} ms`, { details: { port, reason: 'timeout' } })),
      timeoutMs,
    )
    if (signal?.aborted) return onAbort()
    signal?.addEventListener('abort', onAbort, { once: true })
    socket.on('readable', onReadable)
    socket.once('end', onEnd)
    socket.once('error', finish)
  })
}

/**
 * A TCP connection to `port` on the host's loopback (the fake driver, whose "sandbox" is the
 * host): Unavailable "nothing listens" when refused.
 */
export function connectLoopback(port: number, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' })
    const timeoutMs = options.timeoutMs ?? CONNECT_PORT_TIMEOUT_MS
    const finish = (e?: Error): void => {
      clearTimeout(timer)
      options.signal?.removeEventListener('abort', onAbort)
      socket.off('error', onError)
      if (!e) return resolve(socket)
      socket.destroy()
      reject(e)
    }
    const onError = (e: NodeJS.ErrnoException): void =>
      finish(e.code === 'ECONNREFUSED' ? nothingListens(port) : new CodeboxError('Unavailable', `port ${port} cannot be reached: ${e.message}`, { cause: e }))
    const onAbort = (): void => finish(new CodeboxError('Canceled', `the connection to port ${port} was cancelled`))
    const timer = setTimeout(() => finish(new CodeboxError('Unavailable', `port ${port} did not answer within ${timeoutMs} ms`)), timeoutMs)
    if (options.signal?.aborted) return onAbort()
    options.signal?.addEventListener('abort', onAbort, { once: true })
    socket.once('connect', () => finish())
    socket.once('error', onError)
  })
}
