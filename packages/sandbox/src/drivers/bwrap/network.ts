/**
 * A bwrap sandbox's network: always an empty network namespace (`lo` only). With network
 * `egress`, the host's per-sandbox egress socket (a listener of the egress proxy, opened by the
 * driver) appears at EGRESS_SOCKET: its directory, not the socket itself, is bound in (under the
 * read-only tmpfs /run the driver mounts), so a listener a restarted server opens there again is
 * seen by the sandbox. The environment points HTTP clients at the executor's relay on
 * 127.0.0.1:3128, which pipes to that socket. The socket belongs to the sandbox's uid, mode 0600
 * (prepareNetwork); the directory is root's, 0711.
 */
import { chmod, chown, lstat } from 'node:fs/promises'
import { CodeboxError } from '@codebox/core'
import { gatewayEnv } from '../../egress/gateway.ts'

/** Where the egress socket's directory appears inside the sandbox. */
export const EGRESS_DIR = '/run/codebox/egress'
/** Where the egress socket appears inside the sandbox. */
export const EGRESS_SOCKET = `${EGRESS_DIR}/egress.sock`
/** The relay's address inside the sandbox (executor/egress_relay.py). */
export const EGRESS_PROXY_URL = 'http://127.0.0.1:3128'

/**
 * Gives the session's egress socket to its sandbox uid alone (owner uid, mode 0600), so no other
 * sandbox's uid could connect to it even if it reached the path.
 */
export async function prepareNetwork(socketPath: string | undefined, uid: number): Promise<void> {
  if (socketPath === undefined) return
  const st = await lstat(socketPath)
  if (!st.isSocket()) throw new CodeboxError('SandboxFailure', `${socketPath} is not a unix socket`)
  await chown(socketPath, uid, uid)
  await chmod(socketPath, 0o600)
}

/**
 * The environment of a sandbox with egress: HTTP clients go through the relay, which reaches
 * `socket` (its path inside). With `gateway`, model clients are pointed at the model gateway too
 * (gatewayEnv: base URLs on the gateway's loopback port, which NO_PROXY covers so clients go there
 * directly, and placeholder credentials, no secret).
 */
export function egressEnv(socket: string, gateway = false): Record<string, string> {
  return {
    ...(gateway ? gatewayEnv() : {}),
    HTTP_PROXY: EGRESS_PROXY_URL,
    HTTPS_PROXY: EGRESS_PROXY_URL,
    http_proxy: EGRESS_PROXY_URL,
    https_proxy: EGRESS_PROXY_URL,
    NO_PROXY: 'localhost,127.0.0.1',
    no_proxy: 'localhost,127.0.0.1',
    // Node 24's fetch, http and https honour the variables above only with this set.
    NODE_USE_ENV_PROXY: '1',
    CODEBOX_EGRESS_SOCKET: socket,
  }
}

/** bwrap's arguments and the environment for a sandbox with egress (the host directory that holds its socket; `gateway`: it uses the model gateway) or without. */
export function networkSetup(socketDir: string | undefined, gateway = false): { args: string[]; env: Record<string, string> } {
  if (socketDir === undefined) return { args: [], env: {} }
  // Inside the read-only tmpfs /run the driver mounts.
  return { args: ['--bind', socketDir, EGRESS_DIR], env: egressEnv(EGRESS_SOCKET, gateway) }
}
