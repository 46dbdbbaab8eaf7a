/**
 * The browser guard: every request (WebSocket upgrades and /mcp included, keys or not) must name
 * an allowed Host, and a request from a browser page must come from an allowed Origin. A server
 * without keys is otherwise reachable from any web page the user opens, through DNS rebinding
 * (the page's own host name resolving to 127.0.0.1) or a cross-site WebSocket or form post.
 */
import os from 'node:os'
import { CodeboxError } from '@codebox/core'

export interface HostCheckOptions {
  /** The address the server listens on; a wildcard (0.0.0.0, ::) stands for every local address. */
  boundHost: string
  /** `CODEBOX_ALLOWED_HOSTS`: names (any port), `name:port`, or `*.domain` for its subdomains. */
  allowedHosts: readonly string[]
  /** `CODEBOX_ALLOWED_ORIGINS`: origins (`https://ide.example.com`) whose pages may call the server. */
  allowedOrigins: readonly string[]
}

interface HostPort {
  name: string
  port: string | undefined
}

const MAX_HEADER_CHARS = 512

/** Splits a Host header (`name`, `name:port`, `[v6]:port`) into a lowercase name and its port. */
export function parseHost(value: string): HostPort | undefined {
  if (value.length > MAX_HEADER_CHARS) return undefined
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(value.trim())
  if (!m) return undefined
  const name = m[1]!.toLowerCase().replace(/\.$/, '')
  return { name, port: m[2] }
}

const loopbackName = (name: string): boolean =>
  name === 'localhost' || name.endsWith('.localhost') || name === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name)

const bracket = (address: string): string => (address.includes(':') ? `[${address.toLowerCase()}]` : address.toLowerCase())

export class HostCheck {
  private readonly names = new Set<string>()
  private readonly hostPorts = new Set<string>()
  private readonly suffixes: string[] = []
  private readonly origins: Set<string>

  constructor(options: HostCheckOptions) {
    const bound = options.boundHost.replace(/^\[|\]$/g, '')
    if (bound === '0.0.0.0' || bound === '::') {
      for (const addresses of Object.values(os.networkInterfaces())) for (const a of addresses ?? []) this.names.add(bracket(a.address))
    } else {
      this.names.add(bracket(bound))
    }
    for (const entry of options.allowedHosts) {
      if (entry.startsWith('*.')) this.suffixes.push(entry.slice(1).toLowerCase())
      else if (/:\d+$/.test(entry) && !entry.endsWith(']')) this.hostPorts.add(entry.toLowerCase())
      else this.names.add(entry.toLowerCase())
    }
    this.origins = new Set(options.allowedOrigins)
  }

  /** Whether a parsed Host is one of this server's names. */
  private allowedHost(host: HostPort): boolean {
    if (loopbackName(host.name) || this.names.has(host.name)) return true
    if (host.port !== undefined && this.hostPorts.has(`${host.name}:${host.port}`)) return true
    return this.suffixes.some((s) => host.name.endsWith(s))
  }

  /** Throws a Forbidden CodeboxError for a Host or Origin header this server must not answer. */
  check(headers: { host?: string | undefined; origin?: string | string[] | undefined }): void {
    const hostHeader = headers.host
    // A client without a Host header is not a browser (browsers always send one).
    const host = hostHeader === undefined ? undefined : parseHost(hostHeader)
    if (hostHeader !== undefined && (!host || !this.allowedHost(host))) {
      throw new CodeboxError(
        'Forbidden',
        `Host ${JSON.stringify(hostHeader.slice(0, 200))} is not a name of this server (a DNS-rebinding page would send that); ` +
          'add it to CODEBOX_ALLOWED_HOSTS if clients reach the server by this name',
        { details: { host: hostHeader.slice(0, 200) } },
      )
    }
    const origin = headers.origin
    if (origin === undefined) return // not sent by a browser page
    const value = Array.isArray(origin) ? origin.join(',') : origin
    if (!this.allowedOrigin(value, host)) {
      throw new CodeboxError(
        'Forbidden',
        `Origin ${JSON.stringify(value.slice(0, 200))} may not call this server: only its own origin and CODEBOX_ALLOWED_ORIGINS may`,
        { details: { origin: value.slice(0, 200) } },
      )
    }
  }

  private allowedOrigin(value: string, host: HostPort | undefined): boolean {
    if (value.length > MAX_HEADER_CHARS || value === 'null') return false
    let url: URL
    try {
      url = new URL(value)
    } catch {
      return false
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return false
    if (this.origins.has(url.origin)) return true
    // The server's own origin: the page was served under the very Host this request names.
    if (!host) return false
    const port = url.port || (url.protocol === 'https:' ? '443' : '80')
    const hostPort = host.port ?? (url.protocol === 'https:' ? '443' : '80')
    return url.hostname.toLowerCase() === host.name && port === hostPort
  }
}

/** Normalizes `CODEBOX_ALLOWED_ORIGINS` entries; undefined for one that is not an http(s) origin. */
export function normalizeOrigin(entry: string): string | undefined {
  try {
    const url = new URL(entry)
    const bare = url.pathname === '/' && !url.search && !url.hash && !url.username && !url.password
    return (url.protocol === 'http:' || url.protocol === 'https:') && bare ? url.origin : undefined
  } catch {
    return undefined
  }
}
