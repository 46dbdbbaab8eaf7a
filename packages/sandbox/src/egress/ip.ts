/**
 * IP addresses as numbers: strict parsing of IPv4 and IPv6 text, CIDR ranges, and the special
 * ranges the egress proxy never connects to (loopback, private, link-local, metadata, ...).
 * Written out here rather than taken from node:net so every accepted spelling is known: only
 * dotted-decimal IPv4 without leading zeros, and IPv6 without zone ids.
 */

export type IpFamily = 4 | 6

export interface IpAddress {
  family: IpFamily
  value: bigint
}

export interface Cidr {
  family: IpFamily
  base: bigint
  bits: number
}

const V4_OCTET = /^(0|[1-9]\d{0,2})$/
const V6_GROUP = /^[0-9a-fA-F]{1,4}$/

export function parseIpv4(s: string): bigint | undefined {
  const parts = s.split('.')
  if (parts.length !== 4) return undefined
  let value = 0n
  for (const p of parts) {
    if (!V4_OCTET.test(p) || Number(p) > 255) return undefined
    value = (value << 8n) | BigInt(p)
  }
  return value
}

export function parseIpv6(s: string): bigint | undefined {
  if (s.length > 45 || s.split('::').length > 2) return undefined
  let groups: string[] = []
  const [head = '', tail] = s.split('::') as [string, string | undefined]
  const split = (t: string): string[] => (t === '' ? [] : t.split(':'))
  const left = split(head)
  const right = tail === undefined ? [] : split(tail)
  // A trailing dotted IPv4 part (::ffff:1.2.3.4) stands for the last two groups.
  const all = tail === undefined ? left : right
  const last = all.at(-1)
  if (last?.includes('.')) {
    const v4 = parseIpv4(last)
    if (v4 === undefined) return undefined
    all.splice(-1, 1, ((v4 >> 16n) & 0xffffn).toString(16), (v4 & 0xffffn).toString(16))
  }
  if (tail === undefined) {
    if (left.length !== 8) return undefined
    groups = left
  } else {
    const missing = 8 - left.length - right.length
    if (missing < 1) return undefined
    groups = [...left, ...Array<string>(missing).fill('0'), ...right]
  }
  let value = 0n
  for (const g of groups) {
    if (!V6_GROUP.test(g)) return undefined
    value = (value << 16n) | BigInt(`0x${g}`)
  }
  return value
}

/** An IPv4 or IPv6 address in its usual text form (IPv6 without brackets), or undefined. */
export function parseIp(s: string): IpAddress | undefined {
  const v4 = parseIpv4(s)
  if (v4 !== undefined) return { family: 4, value: v4 }
  const v6 = s.includes(':') ? parseIpv6(s) : undefined
  return v6 === undefined ? undefined : { family: 6, value: v6 }
}

/** `10.0.0.0/8`, `fd00::/8`, or a single address (a /32 or /128). Host bits must be zero. */
export function parseCidr(s: string): Cidr | string {
  const slash = s.indexOf('/')
  const ip = parseIp(slash < 0 ? s : s.slice(0, slash))
  if (!ip) return 'is not an IP address or CIDR range'
  const width = ip.family === 4 ? 32 : 128
  const bitsText = slash < 0 ? String(width) : s.slice(slash + 1)
  if (!/^\d{1,3}$/.test(bitsText) || Number(bitsText) > width) return `has a prefix length outside 0-${width}`
  const bits = Number(bitsText)
  if ((ip.value & ~mask(ip.family, bits)) !== 0n) return `has bits set after the /${bits} prefix`
  return { family: ip.family, base: ip.value, bits }
}

function mask(family: IpFamily, bits: number): bigint {
  const width = family === 4 ? 32n : 128n
  return ((1n << width) - 1n) ^ ((1n << (width - BigInt(bits))) - 1n)
}

export function cidrContains(range: Cidr, ip: IpAddress): boolean {
  return range.family === ip.family && (ip.value & mask(ip.family, range.bits)) === range.base
}

/** Text form of an address for messages and for connecting (IPv6 without brackets). */
export function formatIp(ip: IpAddress): string {
  const a = unmapIpv4(ip)
  if (a.family === 4) return [24n, 16n, 8n, 0n].map((s) => String((a.value >> s) & 0xffn)).join('.')
  const groups = Array.from({ length: 8 }, (_, i) => Number((a.value >> BigInt(112 - 16 * i)) & 0xffffn).toString(16))
  // RFC 5952: the longest run of two or more zero groups becomes `::`.
  let best = { at: -1, len: 1 }
  for (let i = 0; i < 8;) {
    let j = i
    while (j < 8 && groups[j] === '0') j++
    if (j - i > best.len) best = { at: i, len: j - i }
    i = j > i ? j : i + 1
  }
  if (best.at < 0) return groups.join(':')
  return `${groups.slice(0, best.at).join(':')}::${groups.slice(best.at + best.len).join(':')}`
}

const cidr = (s: string): Cidr => parseCidr(s) as Cidr

/** `::ffff:a.b.c.d` is the IPv4 address a.b.c.d: it is checked and connected to as that. */
export function unmapIpv4(ip: IpAddress): IpAddress {
  return ip.family === 6 && ip.value >> 32n === 0xffffn ? { family: 4, value: ip.value & 0xffffffffn } : ip
}

/** Cloud metadata endpoints: never reachable, whatever an operator trusts. */
const metadata = [
  '169.254.169.254', // AWS, GCP, Azure, OCI, OpenStack
  '169.254.170.2', // ECS task credentials
  '169.254.170.23', // EKS Pod Identity
  '169.254.0.23', // Tencent Cloud
  '100.100.100.200', // Alibaba Cloud
  'fd00:ec2::254', // AWS (IPv6)
  'fd00:ec2::23', // EKS Pod Identity (IPv6)
].map((a) => cidr(a))

/** Special-purpose ranges (IANA registries) and why each is refused. First match wins. */
const special: [Cidr, string][] = (
  [
    ['0.0.0.0/32', 'the unspecified address'],
    ['0.0.0.0/8', 'a "this network" address'],
    ['10.0.0.0/8', 'a private address'],
    ['100.64.0.0/10', 'a shared (CGNAT) address'],
    ['127.0.0.0/8', 'a loopback address'],
    ['169.254.0.0/16', 'a link-local address'],
    ['172.16.0.0/12', 'a private address'],
    ['192.0.0.0/24', 'a reserved (IETF protocol) address'],
    ['192.0.2.0/24', 'a documentation address'],
    ['192.88.99.0/24', 'a reserved (6to4 relay) address'],
    ['192.168.0.0/16', 'a private address'],
    ['198.18.0.0/15', 'a reserved (benchmarking) address'],
    ['198.51.100.0/24', 'a documentation address'],
    ['203.0.113.0/24', 'a documentation address'],
    ['224.0.0.0/4', 'a multicast address'],
    ['255.255.255.255/32', 'the broadcast address'],
    ['240.0.0.0/4', 'a reserved address'],
    ['::/128', 'the unspecified address'],
    ['::1/128', 'a loopback address'],
    ['::/96', 'an IPv4-compatible address (deprecated)'],
    ['64:ff9b::/96', 'a NAT64 address'],
    ['64:ff9b:1::/48', 'a NAT64 address'],
    ['100::/64', 'a discard-only address'],
    ['2001:db8::/32', 'a documentation address'],
    ['3fff::/20', 'a documentation address'],
    ['2001::/23', 'a reserved (IETF protocol, Teredo) address'],
    ['2002::/16', 'a 6to4 address'],
    ['fc00::/7', 'a private (unique local) address'],
    ['fe80::/10', 'a link-local address'],
    ['fec0::/10', 'a site-local address (deprecated)'],
    ['ff00::/8', 'a multicast address'],
  ] as const
).map(([range, why]) => [cidr(range), why])

const globalUnicastV6 = cidr('2000::/3')

export function isMetadataAddress(ip: IpAddress): boolean {
  const a = unmapIpv4(ip)
  return metadata.some((m) => cidrContains(m, a))
}

/**
 * Why connecting to `ip` is refused in every mode (`a loopback address`, ...), or undefined for
 * a public address. IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
 */
export function specialRange(ip: IpAddress): string | undefined {
  const a = unmapIpv4(ip)
  if (isMetadataAddress(a)) return 'a cloud metadata address'
  const found = special.find(([range]) => cidrContains(range, a))
  if (found) return found[1]
  if (a.family === 6 && !cidrContains(globalUnicastV6, a)) return 'not a global unicast address'
  return undefined
}
