/**
 * `connectPort` for a sandbox pod: a tunnel through the executor's listen mode (docs/executor-
 * protocol.md, "Tunnels"). The driver dials the pod's executor port as for its channel, sends the
 * auth frame with `tunnel` set to the port, and the executor, once the token matched, hands the
 * connection to its inbound relay: that connects to 127.0.0.1:<port> inside the pod and answers
 * with the relay's status byte (0 connected, 1 nothing listens, 2 too many connections), after
 * which the connection carries the port's bytes both ways. A refused token looks as it does for
 * a channel: a close without a byte.
 *
 * What comes from the pod is hostile: one byte is read here and judged; the rest is the caller's
 * stream, as from the relay socket of a bwrap or gVisor sandbox.
 */
import type net from 'node:net'
import { CodeboxError, validationError } from '@codebox/core'
import { readPortStatus } from '@codebox/sandbox'
import { authFrame, openAuthenticated, type ConnectOptions } from './channel.ts'

/**
 * Connects to `port` on the loopback of the pod `options` dials. Resolves with the stream once the
 * executor said it connected; rejects with Unavailable naming why not (`details.reason`: refused,
 * busy, timeout, unreachable), or with the signal's reason (Canceled) when it aborts. The whole
 * exchange (dial, auth, the inner connect) is bounded by `options.timeoutMs`.
 */
export async function connectTunnel(options: ConnectOptions, port: number): Promise<net.Socket> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw validationError('port', `must be a whole number from 1 to 65535, got ${String(port)}`)
  const started = Date.now()
  let socket: net.Socket
  try {
    socket = await openAuthenticated(options, authFrame(options.token, port))
  } catch (e) {
    if (!(e instanceof CodeboxError) || e.code !== 'Unavailable') throw e
    const reason = e.details.reason === 'timeout' ? 'timeout' : 'unreachable'
    throw new CodeboxError('Unavailable', `port ${port} in the sandbox cannot be reached: ${e.message}`, { cause: e, details: { port, reason } })
  }
  try {
    // The status byte is buffered already (openAuthenticated waited for the first bytes).
    await readPortStatus(socket, port, options.signal, Math.max(1, options.timeoutMs - (Date.now() - started)))
  } catch (e) {
    socket.destroy()
    throw e
  }
  socket.setNoDelay(true)
  return socket
}
