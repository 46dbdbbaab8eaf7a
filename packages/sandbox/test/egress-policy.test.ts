/**
 * Egress policy, pure: which addresses are refused in every mode (every special range, their
 * IPv4-mapped forms, metadata even when trusted), how allow-list entries match names,
 * wildcards, ranges and ports, and that bad entries are refused with a message naming them.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { CodeboxError } from '@codebox/core'
import { loadEngineConfig, parseEgressEntry, parseEgressPolicy, parseTrustedList } from '@codebox/sandbox'
import { parseIp, specialRange, type IpAddress } from '../src/egress/ip.ts'
import { checkAddresses, checkName, compileEgressRules, type EgressRules } from '../src/egress/policy.ts'

const ip = (s: string): IpAddress => {
  const a = parseIp(s)
  assert.ok(a, `${s} should parse`)
  return a
}

/** The verdict on connecting to the IP literal `address`:`port` under `rules`. */
const onIp = (rules: EgressRules, address: string, port = 443): string => {
  const v = checkAddresses(rules, { host: address, isIp: true }, port, [ip(address)])
  return v.allowed ? 'allowed' : v.reason
}

/** The verdict on `name`:`port` resolving to `addresses`: the name check, then the addresses. */
const onName = (rules: EgressRules, name: string, addresses: string[], port = 443): string => {
  const named = checkName(rules, name, port)
  if (!named.allowed) return named.reason
  const v = checkAddresses(rules, { host: name, isIp: false }, port, addresses.map(ip))
  return v.allowed ? 'allowed' : v.reason
}

const publicRules = compileEgressRules({ mode: 'public', allow: [] })

describe('addresses refused in every mode', () => {
  const cases: [string, string][] = [
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['::1', 'loopback'],
    ['0.0.0.0', 'unspecified'],
    ['::', 'unspecified'],
    ['0.1.2.3', '"this network"'],
    ['10.0.0.1', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['100.64.0.1', 'CGNAT'],
    ['100.127.255.255', 'CGNAT'],
    ['169.254.1.1', 'link-local'],
    ['fe80::1', 'link-local'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.0.8', 'reserved'],
    ['198.18.0.1', 'benchmarking'],
    ['192.0.2.1', 'documentation'],
    ['198.51.100.1', 'documentation'],
    ['203.0.113.1', 'documentation'],
    ['2001:db8::1', 'documentation'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:169.254.169.254', 'metadata'],
    ['::127.0.0.1', 'IPv4-compatible'],
    ['64:ff9b::7f00:1', 'NAT64'],
    ['64:ff9b:1::1', 'NAT64'],
    ['2002:7f00:1::1', '6to4'],
    ['2001:0:4136:e378::1', 'Teredo'],
    ['100::1', 'discard'],
    ['fec0::1', 'site-local'],
    ['::ffff:0:7f00:1', 'not a global unicast'],
    ['169.254.169.254', 'metadata'],
    ['169.254.170.2', 'metadata'],
    ['fd00:ec2::254', 'metadata'],
    ['100.100.100.200', 'metadata'],
  ]
  for (const [address, kind] of cases) {
    test(`${address} is ${kind}`, () => {
      assert.match(specialRange(ip(address)) ?? 'public', new RegExp(kind))
      assert.match(onIp(publicRules, address), new RegExp(`^${address.replace(/[.]/g, '\\.')} is .*${kind}`))
    })
  }

  test('public addresses pass in public mode, on any port', () => {
    for (const address of ['1.1.1.1', '8.8.8.8', '93.184.215.14', '2606:4700:4700::1111', '::ffff:1.1.1.1']) {
      assert.equal(specialRange(ip(address)), undefined, address)
      assert.equal(onIp(publicRules, address, 22), 'allowed', address)
    }
  })

  test('a name is refused when any one of its addresses is special (public + private)', () => {
    assert.equal(onName(publicRules, 'example.com', ['93.184.215.14']), 'allowed')
    assert.equal(onName(publicRules, 'example.com', ['93.184.215.14', '10.0.0.5']), 'example.com resolves to 10.0.0.5, a private address')
    assert.equal(onName(publicRules, 'rebind.test', ['127.0.0.1']), 'rebind.test resolves to 127.0.0.1, a loopback address')
    assert.equal(onName(publicRules, 'x.test', ['::ffff:127.0.0.1']), 'x.test resolves to 127.0.0.1, a loopback address')
    assert.equal(onName(publicRules, 'empty.test', []), 'empty.test has no address')
  })
})

describe('trusted destinations (CODEBOX_EGRESS_TRUSTED)', () => {
  const trusted = parseTrustedList('127.0.0.1:8080, 10.0.0.0/8, [fd00::1]:443, 169.254.0.0/16')
  const listed = compileEgressRules(
    { mode: 'allowlist', allow: ['127.0.0.1', '10.1.2.3', 'fd00::1', '169.254.169.254', 'db.internal', '::ffff:7f00:1'] },
    trusted,
  )

  test('an allow-list entry reaches a trusted private or loopback destination, on the trusted port only', () => {
    assert.equal(onIp(listed, '127.0.0.1', 8080), 'allowed')
    assert.equal(onIp(listed, '127.0.0.1', 8081), '127.0.0.1 is a loopback address')
    assert.equal(onIp(listed, '10.1.2.3', 5432), 'allowed')
    assert.equal(onIp(listed, 'fd00::1', 443), 'allowed')
    assert.equal(onName(listed, 'db.internal', ['10.9.9.9'], 5432), 'allowed')
    assert.equal(onIp(listed, '::ffff:127.0.0.1', 8080), 'allowed')
  })

  test('metadata addresses stay refused inside a trusted range', () => {
    assert.equal(onIp(listed, '169.254.169.254', 80), '169.254.169.254 is a cloud metadata address')
    assert.equal(onIp(listed, '169.254.1.1', 80), "169.254.1.1:80 is not on this interpreter's allow-list")
  })

  test('public mode never reaches trusted destinations', () => {
    const open = compileEgressRules({ mode: 'public', allow: [] }, trusted)
    assert.equal(onIp(open, '127.0.0.1', 8080), '127.0.0.1 is a loopback address')
    assert.equal(onIp(open, '10.1.2.3', 5432), '10.1.2.3 is a private address')
  })

  test('names and bad entries are refused; loadEngineConfig parses the variable', () => {
    assert.throws(() => parseTrustedList('db.internal'), /CODEBOX_EGRESS_TRUSTED: "db.internal" must be an IP address or CIDR range/)
    assert.throws(() => parseTrustedList('10.0.0.0/33'), /prefix length/)
    assert.equal(loadEngineConfig({}).egressTrusted.length, 0)
    assert.equal(loadEngineConfig({ CODEBOX_EGRESS_TRUSTED: '127.0.0.1:9000,10.0.0.0/8' }).egressTrusted.length, 2)
    assert.throws(() => loadEngineConfig({ CODEBOX_EGRESS_TRUSTED: 'nope nope' }), CodeboxError)
  })
})

describe('allow-list matching', () => {
  const rules = compileEgressRules({
    mode: 'allowlist',
    allow: ['example.com', 'api.example.org:443', '*.pypi.org', '93.184.215.0/24:80', '[2606:4700::/32]:443', '1.1.1.1'],
  })
  const pub = ['93.184.215.14']

  test('names match exactly, any port unless the entry has one', () => {
    assert.equal(onName(rules, 'example.com', pub, 8443), 'allowed')
    assert.equal(onName(rules, 'api.example.org', pub, 443), 'allowed')
    assert.equal(onName(rules, 'api.example.org', pub, 80), "api.example.org:80 is not on this interpreter's allow-list")
    assert.equal(onName(rules, 'www.example.com', pub), "www.example.com:443 is not on this interpreter's allow-list")
    assert.equal(onName(rules, 'example.org', pub), "example.org:443 is not on this interpreter's allow-list")
  })

  test('a wildcard matches subdomains only', () => {
    assert.equal(onName(rules, 'files.pypi.org', pub), 'allowed')
    assert.equal(onName(rules, 'a.b.pypi.org', pub), 'allowed')
    assert.equal(onName(rules, 'pypi.org', pub), "pypi.org:443 is not on this interpreter's allow-list")
    assert.equal(onName(rules, 'evilpypi.org', pub), "evilpypi.org:443 is not on this interpreter's allow-list")
  })

  test('IPs and CIDRs match IP targets, with their ports', () => {
    assert.equal(onIp(rules, '93.184.215.99', 80), 'allowed')
    assert.equal(onIp(rules, '93.184.215.99', 443), "93.184.215.99:443 is not on this interpreter's allow-list")
    assert.equal(onIp(rules, '93.184.216.1', 80), "93.184.216.1:80 is not on this interpreter's allow-list")
    assert.equal(onIp(rules, '2606:4700:4700::1111', 443), 'allowed')
    assert.equal(onIp(rules, '2606:4701::1', 443), "[2606:4701::1]:443 is not on this interpreter's allow-list")
    assert.equal(onIp(rules, '1.1.1.1', 53), 'allowed')
    assert.equal(onIp(rules, '::ffff:1.1.1.1', 53), 'allowed')
    assert.equal(onIp(rules, '1.0.0.1', 53), "1.0.0.1:53 is not on this interpreter's allow-list")
  })

  test('a listed name that resolves to a special address is still refused', () => {
    assert.equal(onName(rules, 'example.com', ['127.0.0.1']), 'example.com resolves to 127.0.0.1, a loopback address')
    assert.equal(onName(rules, 'example.com', ['169.254.169.254']), 'example.com resolves to 169.254.169.254, a cloud metadata address')
  })
})

describe('parsing entries and policies', () => {
  test('good entries', () => {
    assert.deepEqual(parseEgressEntry('Example.COM.'), { kind: 'name', name: 'example.com' })
    assert.deepEqual(parseEgressEntry('example.com:443'), { kind: 'name', name: 'example.com', port: 443 })
    assert.deepEqual(parseEgressEntry('*.example.com'), { kind: 'wildcard', suffix: 'example.com' })
    assert.deepEqual(parseEgressEntry('10.1.0.0/16:5432'), { kind: 'range', range: { family: 4, base: 0x0a010000n, bits: 16 }, port: 5432 })
    assert.deepEqual(parseEgressEntry('[::1]:8080'), { kind: 'range', range: { family: 6, base: 1n, bits: 128 }, port: 8080 })
    assert.deepEqual(parseEgressEntry('2001:db8::/32'), { kind: 'range', range: { family: 6, base: 0x20010db8n << 96n, bits: 32 } })
    assert.deepEqual(parseEgressEntry('[fd00::/8]:443'), { kind: 'range', range: { family: 6, base: 0xfdn << 120n, bits: 8 }, port: 443 })
  })

  const bad: [string, RegExp][] = [
    ['', /must be 1 to 300 characters/],
    ['exa mple.com', /is not a host name, wildcard/],
    ['*', /is not a host name, wildcard/],
    ['*.', /is not a wildcard of the form \*\.example\.com/],
    ['foo.*.com', /is not a host name/],
    ['example.com:0', /port outside 1-65535/],
    ['example.com:65536', /port outside 1-65535/],
    ['example.com:https', /port outside 1-65535/],
    ['10.0.0.0/33', /prefix length outside 0-32/],
    ['10.1.0.0/8', /bits set after the \/8 prefix/],
    ['1.2.3', /is not an IP address or CIDR range/],
    ['01.2.3.4', /is not an IP address or CIDR range/],
    ['1::2::3', /is not an IP address or CIDR range/],
    ['[::1', /is not an IP address or CIDR range/],
    ['fe80::1%eth0', /is not an IP address or CIDR range/],
    ['bücher.de', /xn-- form/],
    ['https://example.com', /is a URL/],
    ['x'.repeat(301), /must be 1 to 300 characters/],
  ]
  for (const [entry, message] of bad) {
    test(`refuses ${JSON.stringify(entry.slice(0, 20))}`, () => {
      assert.throws(
        () => parseEgressEntry(entry, 'egress.allow[0]'),
        (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError' && e.message.startsWith('egress.allow[0]: ') && message.test(e.message),
      )
    })
  }

  test('policies: mode, allow list, and the index of a bad entry', () => {
    assert.deepEqual(parseEgressPolicy({ mode: 'public', allow: [] }), { mode: 'public', allow: [] })
    assert.throws(() => parseEgressPolicy({ mode: 'vpc', allow: [] }), /egress\.mode: must be public, allowlist or none/)
    assert.throws(() => parseEgressPolicy({ mode: 'allowlist', allow: [] }), /needs at least one entry/)
    assert.throws(() => parseEgressPolicy({ mode: 'allowlist', allow: ['ok.com', 'bad entry'] }), /egress\.allow\[1\]: "bad entry"/)
    assert.throws(() => parseEgressPolicy({ mode: 'allowlist', allow: [42] }), /egress\.allow\[0\]: must be a string/)
    assert.throws(() => parseEgressPolicy(null), /egress: must be an object/)
  })
})
