/**
 * From "a client asked for host:port" to "connect to these checked addresses", or a denial with
 * its HTTP status: the name is checked before it is resolved, every resolved address is checked,
 * and the caller connects to those exact addresses (never resolving again: no DNS rebinding).
 */
import { lookup } from 'node:dns/promises'
import net from 'node:net'
import { formatIp, parseIp, type IpAddress } from './ip.ts'
import { checkAddresses, checkName, normalizeHostName, type EgressRules } from './policy.ts'

/** Resolves a host name to its addresses (text form). Injectable for tests. */
export type EgressResolver = (host: string) => Promise<string[]>

/** getaddrinfo through libuv, like any program on the host would resolve. */
export const systemResolver: EgressResolver = async (host) => (await lookup(host, { all: true, verbatim: true })).map((a) => a.address)

export type Authorization = { ok: true; addresses: string[] } | { ok: false; status: 400 | 403 | 502 | 504; reason: string }

export interface AuthorizeOptions {
  rules: EgressRules
  resolve: EgressResolver
  resolveTimeoutMs: number
}

/** A host as a client wrote it (`example.com`, `1.2.3.4`, `[::1]`), normalized; undefined if invalid. */
export function parseHost(text: string): { host: string; ip?: IpAddress } | undefined {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text
  const ip = parseIp(bare)
  if (ip) return { host: bare, ip }
  const name = text.startsWith('[') ? undefined : normalizeHostName(bare)
  return name ? { host: name } : undefined
}

export async function authorize(options: AuthorizeOptions, hostText: string, port: number): Promise<Authorization> {
  const target = parseHost(hostText)
  if (!target) return { ok: false, status: 400, reason: `${JSON.stringify(hostText.slice(0, 100))} is not a host name or IP address` }
  let addresses: IpAddress[]
  if (target.ip) {
    addresses = [target.ip]
  } else {
    const named = checkName(options.rules, target.host, port)
    if (!named.allowed) return { ok: false, status: 403, reason: named.reason }
    const resolved = await resolveWithin(options, target.host)
    if (!Array.isArray(resolved)) return resolved
    addresses = resolved
  }
  const verdict = checkAddresses(options.rules, { host: target.host, isIp: Boolean(target.ip) }, port, addresses)
  if (!verdict.allowed) return { ok: false, status: 403, reason: verdict.reason }
  return { ok: true, addresses: [...new Set(addresses.map(formatIp))] }
}

async function resolveWithin(options: AuthorizeOptions, host: string): Promise<IpAddress[] | Authorization> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), options.resolveTimeoutMs).unref()))
  try {
    const answer = await Promise.race([options.resolve(host), late])
    if (answer === 'timeout') return { ok: false, status: 504, reason: `resolving ${host} timed out` }
    const addresses = answer.map((a) => parseIp(a))
    if (addresses.length === 0 || addresses.some((a) => a === undefined)) return { ok: false, status: 502, reason: `${host} did not resolve to IP addresses` }
    return addresses as IpAddress[]
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message
    return { ok: false, status: 502, reason: `cannot resolve ${host} (${code})` }
  } finally {
    clearTimeout(timer)
  }
}

/** Connects to the first of `addresses` (IP literals) that answers within `timeoutMs` each. */
export async function connectFirst(addresses: readonly string[], port: number, timeoutMs: number): Promise<net.Socket> {
  let last: unknown
  for (const address of addresses.slice(0, 4)) {
    try {
      return await connectOne(address, port, timeoutMs)
    } catch (e) {
      last = e
    }
  }
  throw last ?? new Error('no address to connect to')
}

function connectOne(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    const timer = setTimeout(() => {
      socket.destroy()
      reject(Object.assign(new Error(`connecting to ${host}:${port} timed out`), { code: 'ETIMEDOUT' }))
    }, timeoutMs)
    socket.once('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    socket.once('connect', () => {
      clearTimeout(timer)
      // From here on an error only ends the connection; whoever holds the socket sees 'close'.
      socket.on('error', () => socket.destroy())
      resolve(socket)
    })
  })
}
