/**
 * Egress policy: parsing allow-list entries and the operator's trusted list, and the decisions
 * the proxy takes on them — first on the name a client asked for (before any DNS query), then on
 * every address that name resolved to.
 */
import { validationError, type EgressPolicy } from '@codebox/core'
import { cidrContains, formatIp, isMetadataAddress, parseCidr, specialRange, unmapIpv4, type Cidr, type IpAddress } from './ip.ts'

/** One parsed allow-list entry; `port` undefined means any port. */
export type EgressEntry =
  | { kind: 'name'; name: string; port?: number }
  /** `*.example.com`: `suffix` is `example.com`; matches its subdomains, not itself. */
  | { kind: 'wildcard'; suffix: string; port?: number }
  | { kind: 'range'; range: Cidr; port?: number }

/** A private or loopback destination (CODEBOX_EGRESS_TRUSTED) that `allowlist` entries may reach. */
export interface TrustedDestination {
  range: Cidr
  port?: number
}

export interface EgressRules {
  mode: EgressPolicy['mode']
  entries: readonly EgressEntry[]
  trusted: readonly TrustedDestination[]
}

export type EgressVerdict = { allowed: true } | { allowed: false; reason: string }

const MAX_ENTRIES = 256
const MAX_ENTRY_LENGTH = 300
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/

/** A DNS host name, lower-cased without a trailing dot, or undefined when `s` is not one. */
export function normalizeHostName(s: string): string | undefined {
  const name = s.toLowerCase().replace(/\.$/, '')
  if (name.length === 0 || name.length > 253) return undefined
  const labels = name.split('.')
  if (!labels.every((l) => LABEL.test(l))) return undefined
  // An all-numeric last label is not a name: getaddrinfo would read `127.1` as an address.
  return /^\d+$/.test(labels.at(-1)!) ? undefined : name
}

/** Splits `host:port`, `[v6]:port`, `[v6]` or a bare host/IPv6 into host and optional port. */
function splitPort(s: string): { host: string; port?: string } {
  const bracketed = /^\[([^\]]*)\](?::([^:]*))?$/.exec(s)
  if (bracketed) return { host: bracketed[1]!, port: bracketed[2] }
  const colons = s.split(':').length - 1
  if (colons === 1) return { host: s.slice(0, s.indexOf(':')), port: s.slice(s.indexOf(':') + 1) }
  return { host: s } // no port, or a bare IPv6 address / range
}

/** A TCP port 1-65535 from its decimal text, or undefined. */
export function parsePort(s: string): number | undefined {
  return /^[1-9]\d{0,4}$/.test(s) && Number(s) <= 65535 ? Number(s) : undefined
}

/**
 * Parses one allow-list entry: a host name (`example.com`), a wildcard (`*.example.com`,
 * subdomains only), an IP or a CIDR (`10.1.0.0/16`, `2001:db8::/32`), each optionally with
 * `:port` (IPv6 with a port in brackets: `[::1]:8080`). Throws a ValidationError naming `field`.
 */
export function parseEgressEntry(s: string, field = 'allow'): EgressEntry {
  const bad = (why: string): Error => validationError(field, `${JSON.stringify(s)} ${why}`)
  if (typeof s !== 'string') throw validationError(field, 'must be a string')
  if (s.length === 0 || s.length > MAX_ENTRY_LENGTH) throw bad(`must be 1 to ${MAX_ENTRY_LENGTH} characters`)
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) throw bad('is a URL; give the host name (and :port) only')
  const { host, port: portText } = splitPort(s.trim())
  const port = portText === undefined ? undefined : parsePort(portText)
  if (portText !== undefined && port === undefined) throw bad('has a port outside 1-65535')
  const withPort = <T extends object>(e: T): T & { port?: number } => (port === undefined ? e : { ...e, port })
  if (/^[\d.]+(\/\d+)?$/.test(host) || host.includes(':')) {
    const range = parseCidr(host)
    if (typeof range === 'string') throw bad(range)
    return withPort({ kind: 'range' as const, range })
  }
  if (host.startsWith('*.')) {
    const suffix = normalizeHostName(host.slice(2))
    if (!suffix) throw bad('is not a wildcard of the form *.example.com')
    return withPort({ kind: 'wildcard' as const, suffix })
  }
  const name = normalizeHostName(host)
  if (!name) throw bad('is not a host name, wildcard (*.example.com), IP address or CIDR range (non-ASCII names go in their xn-- form)')
  return withPort({ kind: 'name' as const, name })
}

/** Checks an EgressPolicy's shape and every entry; returns a copy. Throws a ValidationError. */
export function parseEgressPolicy(policy: unknown, field = 'egress'): EgressPolicy {
  const p = policy as Partial<EgressPolicy> | null
  if (typeof p !== 'object' || p === null) throw validationError(field, 'must be an object {mode, allow}')
  if (p.mode !== 'public' && p.mode !== 'allowlist' && p.mode !== 'none')
    throw validationError(`${field}.mode`, `must be public, allowlist or none, got ${JSON.stringify(p.mode)}`)
  const allow = p.allow ?? []
  if (!Array.isArray(allow) || allow.length > MAX_ENTRIES) throw validationError(`${field}.allow`, `must be a list of at most ${MAX_ENTRIES} entries`)
  if (p.mode === 'none' && allow.length) throw validationError(`${field}.allow`, 'a none policy reaches nothing: its list must be empty')
  allow.forEach((e, i) => parseEgressEntry(e, `${field}.allow[${i}]`))
  if (p.mode === 'allowlist' && allow.length === 0) throw validationError(`${field}.allow`, 'an allowlist policy needs at least one entry')
  return { mode: p.mode, allow: [...allow] }
}

/**
 * Parses CODEBOX_EGRESS_TRUSTED: comma-separated IPs or CIDRs, each optionally with `:port`
 * (`10.0.0.0/8`, `127.0.0.1:5432`, `[fd00::1]:443`). Host names are refused: trust is by address.
 */
export function parseTrustedList(raw: string, field = 'CODEBOX_EGRESS_TRUSTED'): TrustedDestination[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const e = parseEgressEntry(s, field)
      if (e.kind !== 'range') throw validationError(field, `${JSON.stringify(s)} must be an IP address or CIDR range (optionally with :port), not a name`)
      return e.port === undefined ? { range: e.range } : { range: e.range, port: e.port }
    })
}

export function compileEgressRules(policy: EgressPolicy, trusted: readonly TrustedDestination[] = []): EgressRules {
  const checked = parseEgressPolicy(policy)
  return { mode: checked.mode, entries: checked.allow.map((e) => parseEgressEntry(e)), trusted }
}

const portMatches = (entry: { port?: number }, port: number): boolean => entry.port === undefined || entry.port === port
const deny = (reason: string): EgressVerdict => ({ allowed: false, reason })
const notListed = (target: string): EgressVerdict => deny(`${target} is not on this interpreter's allow-list`)
const noEgress: EgressVerdict = deny('this session has no network egress; only the model gateway (http://codebox-gateway/) answers here')

/**
 * The decision on a host name before it is resolved: in `allowlist` mode only names on the list
 * (by name or wildcard) are ever looked up, so DNS cannot carry data out for sandbox code.
 */
export function checkName(rules: EgressRules, name: string, port: number): EgressVerdict {
  if (rules.mode === 'none') return noEgress
  if (rules.mode === 'public') return { allowed: true }
  const listed = rules.entries.some(
    (e) => portMatches(e, port) && ((e.kind === 'name' && e.name === name) || (e.kind === 'wildcard' && name.endsWith(`.${e.suffix}`))),
  )
  return listed ? { allowed: true } : notListed(`${name}:${port}`)
}

/**
 * The decision on the addresses a connection may go to: every one must pass. `target` is what
 * the client asked for; when it is an IP literal, `allowlist` needs a range entry holding it.
 */
export function checkAddresses(rules: EgressRules, target: { host: string; isIp: boolean }, port: number, addresses: readonly IpAddress[]): EgressVerdict {
  if (rules.mode === 'none') return noEgress
  for (const raw of addresses) {
    const ip = unmapIpv4(raw)
    const shown = target.isIp ? `${target.host} is` : `${target.host} resolves to ${formatIp(raw)},`
    if (isMetadataAddress(ip)) return deny(`${shown} a cloud metadata address`)
    if (rules.mode === 'allowlist' && target.isIp) {
      const listed = rules.entries.some((e) => e.kind === 'range' && portMatches(e, port) && cidrContains(e.range, ip))
      if (!listed) return notListed(ip.family === 6 ? `[${formatIp(ip)}]:${port}` : `${formatIp(ip)}:${port}`)
    }
    const why = specialRange(ip)
    if (why === undefined) continue
    const trusted = rules.mode === 'allowlist' && rules.trusted.some((t) => portMatches(t, port) && cidrContains(t.range, ip))
    if (!trusted) return deny(`${shown} ${why}`)
  }
  return addresses.length ? { allowed: true } : deny(`${target.host} has no address`)
}
