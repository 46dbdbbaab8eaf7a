/**
 * Attack catalogue, group "Network" (SECURITY.md): with network `none` a sandbox has only its own
 * loopback. Sandbox code tries the internet, DNS, the metadata endpoint and the host's loopback
 * TCP, IPv6 and unix sockets; the host side counts the connections that arrive (there must be none).
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { SessionManager } from '@codebox/sandbox'
import { withSession } from '../fixtures.ts'
import { pyJson, token } from './probe.ts'

const ENOENT = 2
const ENETUNREACH = 101
const EHOSTUNREACH = 113
const ECONNREFUSED = 111

/** A host server that counts the connections it gets. */
async function countingServer(listen: (s: net.Server, ready: () => void) => void): Promise<{ server: net.Server; connections: () => number }> {
  let n = 0
  const server = net.createServer((c) => {
    n++
    c.end('host service\n')
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    listen(server, resolve)
  })
  return { server, connections: () => n }
}

const close = (s: net.Server): Promise<void> => new Promise((r) => s.close(() => r()))

/** Python: connect(family, address) -> 'connected' or errno, with the time it took. */
const CONNECT = `
import socket, time
def connect(family, addr, kind=socket.SOCK_STREAM):
    s = socket.socket(family, kind)
    s.settimeout(5)
    t = time.monotonic()
    try:
        s.connect(addr)
        if kind == socket.SOCK_DGRAM:
            s.send(b'x')
        return ['connected', round(time.monotonic() - t, 3)]
    except OSError as e:
        return [e.errno if e.errno is not None else type(e).__name__, round(time.monotonic() - t, 3)]
    finally:
        s.close()
`

/** The group's tests on one driver; its test files (`network.test.ts` for bwrap, `network-gvisor.test.ts`) call this. */
export function defineNetworkSuite(driverName: string, unavailable: string | undefined, makeManager: () => Promise<SessionManager>): void {
  describe(`network (${driverName})`, { skip: unavailable ?? false }, () => {
    let m: SessionManager
    before(async () => {
      m = await makeManager()
    })
    after(async () => {
      await m?.close()
    })

    test('no internet and no metadata endpoint: connect fails at once with no route', async () => {
      await withSession(m, async (s) => {
        const r = await pyJson<Record<string, [number | string, number]>>(
          s,
          `${CONNECT}
print(json.dumps({
    '1.1.1.1:53': connect(socket.AF_INET, ('1.1.1.1', 53)),
    '8.8.8.8:53': connect(socket.AF_INET, ('8.8.8.8', 53)),
    '8.8.8.8:53 udp': connect(socket.AF_INET, ('8.8.8.8', 53), socket.SOCK_DGRAM),
    '169.254.169.254:80': connect(socket.AF_INET, ('169.254.169.254', 80)),
    '[fd00:ec2::254]:80': connect(socket.AF_INET6, ('fd00:ec2::254', 80)),
    '[2606:4700:4700::1111]:53': connect(socket.AF_INET6, ('2606:4700:4700::1111', 53)),
}))`,
        )
        for (const [addr, [err, seconds]] of Object.entries(r)) {
          // no route: Linux says ENETUNREACH, gVisor's netstack EHOSTUNREACH
          assert.ok(err === ENETUNREACH || err === EHOSTUNREACH, `${addr}: ${err}`)
          assert.ok(seconds < 0.5, `${addr} took ${seconds}s to fail: something was tried`)
        }
      })
    })

    test('no DNS: getaddrinfo fails', async () => {
      await withSession(m, async (s) => {
        const r = await pyJson<Record<string, string>>(
          s,
          `
import socket
def resolve(name):
    try:
        return 'resolved ' + repr(socket.getaddrinfo(name, 80))
    except socket.gaierror as e:
        return 'gaierror'
print(json.dumps({n: resolve(n) for n in ('example.com', 'metadata.google.internal', 'pypi.org')}))`,
        )
        assert.deepEqual(r, { 'example.com': 'gaierror', 'metadata.google.internal': 'gaierror', 'pypi.org': 'gaierror' })
      })
    })

    test('interfaces are lo only', async () => {
      await withSession(m, async (s) => {
        const r = await pyJson<{ dev: string[]; index: string[] }>(
          s,
          `
import socket
dev = [l.split(':')[0].strip() for l in open('/proc/net/dev').read().splitlines()[2:]]
print(json.dumps({'dev': dev, 'index': [n for _, n in socket.if_nameindex()]}))`,
        )
        assert.deepEqual(r, { dev: ['lo'], index: ['lo'] })
      })
    })

    test("the host's loopback services (IPv4 and IPv6) are unreachable", async () => {
      const v4 = await countingServer((s, ready) => s.listen(0, '127.0.0.1', ready))
      let v6: Awaited<ReturnType<typeof countingServer>> | undefined
      try {
        v6 = await countingServer((s, ready) => s.listen(0, '::1', ready))
      } catch {
        // no IPv6 on the host's loopback: nothing to reach there
      }
      const port4 = (v4.server.address() as net.AddressInfo).port
      const port6 = v6 ? (v6.server.address() as net.AddressInfo).port : 0
      try {
        await withSession(m, async (s) => {
          const r = await pyJson<Record<string, [number | string, number]>>(
            s,
            `${CONNECT}
out = {'127.0.0.1': connect(socket.AF_INET, ('127.0.0.1', ${port4})), '127.0.0.2': connect(socket.AF_INET, ('127.0.0.2', ${port4}))}
if ${port6}:
    out['[::1]'] = connect(socket.AF_INET6, ('::1', ${port6}))
    out['[::ffff:127.0.0.1]'] = connect(socket.AF_INET6, ('::ffff:127.0.0.1', ${port4}))
print(json.dumps(out))`,
          )
          for (const [addr, [err]] of Object.entries(r)) assert.equal(err, ECONNREFUSED, `${addr}: ${err}`)
          assert.equal(Object.keys(r).length, v6 ? 4 : 2)
        })
        assert.equal(v4.connections(), 0, 'the host IPv4 loopback server got a connection')
        assert.equal(v6?.connections() ?? 0, 0, 'the host IPv6 loopback server got a connection')
      } finally {
        await close(v4.server)
        if (v6) await close(v6.server)
      }
    })

    test("the host's abstract and path unix sockets are unreachable", async () => {
      const name = `codebox-test-${token()}`
      const abstract = await countingServer((s, ready) => s.listen(`\0${name}`, ready))
      const dir = mkdtempSync(path.join(tmpdir(), 'codebox-sock-'))
      const file = path.join(dir, 'host.sock')
      const unix = await countingServer((s, ready) => s.listen(file, ready))
      try {
        await withSession(m, async (s) => {
          const r = await pyJson<{ abstract: [number | string, number]; file: [number | string, number]; sockets: string[] }>(
            s,
            `${CONNECT}
import stat
sockets = []
for top in ('/run', '/var/run', '/tmp', '/dev', '/workspace', '/opt'):
    for root, dirs, files in os.walk(top):
        for n in files:
            try:
                if stat.S_ISSOCK(os.lstat(os.path.join(root, n)).st_mode):
                    sockets.append(os.path.join(root, n))
            except OSError:
                pass
print(json.dumps({
    'abstract': connect(socket.AF_UNIX, '\\0${name}'),
    'file': connect(socket.AF_UNIX, ${JSON.stringify(file)}),
    'sockets': sockets,
}))`,
          )
          assert.equal(r.abstract[0], ECONNREFUSED, `abstract socket: ${r.abstract[0]}`)
          assert.equal(r.file[0], ENOENT, `socket file: ${r.file[0]}`)
          // The only socket file a sandbox may hold is its own: its executor's channel (the host connects to it, never the reverse).
          assert.deepEqual(
            r.sockets.filter((p) => !/^(\/var)?\/run\/codebox\/channel\/executor\.sock$/.test(p)),
            [],
          )
        })
        assert.equal(abstract.connections(), 0, 'the host abstract socket got a connection')
        assert.equal(unix.connections(), 0, 'the host unix socket got a connection')
      } finally {
        await close(abstract.server)
        await close(unix.server)
        rmSync(dir, { recursive: true, force: true })
      }
    })
  })
}
