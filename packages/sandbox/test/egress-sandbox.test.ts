/**
 * Egress in real bwrap sandboxes: a session allowed `127.0.0.1:<port>` (trusted for the test,
 * as an operator would trust an internal service) fetches from a loopback HTTP server on the
 * host through the executor's relay and the host proxy with Python urllib and requests, Node
 * fetch and curl; the same session is refused another loopback port and
 * the metadata address, its network namespace still holds only `lo`, and its socket is gone when
 * it ends. A session without egress reaches nothing. Everything stays on loopback.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readdirSync, readlinkSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type net from 'node:net'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { EgressService, SessionManager, parseTrustedList, type Session } from '@codebox/sandbox'
import { bwrapDriver, bwrapUnavailable } from './fixtures.ts'
import { pyJson, sh } from './security/probe.ts'

const unavailable = await bwrapUnavailable()

/** A host HTTP server on loopback that counts the connections it gets. */
async function hostServer(): Promise<{ server: Server; port: number; connections: () => number }> {
  let n = 0
  const server = createServer((req, res) => {
    // /bytes/<n>: n bytes of a repeating pattern; POST /count: the number of bytes received.
    const n = /^\/bytes\/(\d+)$/.exec(req.url ?? '')
    if (n) {
      res.end(Buffer.alloc(Number(n[1]), 'codebox'))
    } else if (req.url === '/count') {
      let received = 0
      req.on('data', (d: Buffer) => (received += d.length))
      req.on('end', () => res.end(String(received)))
    } else {
      res.end(`hello from the host: ${req.method} ${req.url}`)
    }
  })
  server.on('connection', () => n++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as net.AddressInfo).port, connections: () => n }
}

/** Runs `script` in the session with NO_PROXY cleared: the test server is on 127.0.0.1, which NO_PROXY keeps local. */
const viaProxy = (s: Session, script: string): ReturnType<typeof sh> => sh(s, `unset NO_PROXY no_proxy\n${script}`)

describe('egress through the host proxy (bwrap)', { skip: unavailable ?? false }, () => {
  let web: Awaited<ReturnType<typeof hostServer>>
  let other: Awaited<ReturnType<typeof hostServer>>
  let egress: EgressService
  let m: SessionManager
  let session: Session

  before(async () => {
    web = await hostServer()
    other = await hostServer()
    egress = new EgressService({
      trusted: parseTrustedList(`127.0.0.1:${web.port},127.0.0.1:${other.port}`),
      resolve: async (host) => (host === 'web.codebox.test' ? ['127.0.0.1'] : Promise.reject(Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' }))),
    })
    m = new SessionManager({ driver: await bwrapDriver(), poolSize: 0, egress })
    session = await m.start({ egress: { mode: 'allowlist', allow: [`127.0.0.1:${web.port}`, `web.codebox.test:${web.port}`] } })
  })

  after(async () => {
    await m?.close()
    web?.server.close()
    other?.server.close()
  })

  test('the sandbox sees the proxy variables, the socket, and only lo', async () => {
    const r = await pyJson<Record<string, unknown>>(
      session,
      `
import json, os, socket
keys = ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'NO_PROXY', 'NODE_USE_ENV_PROXY', 'CODEBOX_EGRESS_SOCKET']
print(json.dumps({'env': {k: os.environ.get(k) for k in keys}, 'ifaces': [n for _, n in socket.if_nameindex()],
    'run': sorted(os.listdir('/run')), 'sock': os.path.exists('/run/codebox/egress/egress.sock')}))`,
    )
    assert.deepEqual(r, {
      env: {
        HTTP_PROXY: 'http://127.0.0.1:3128',
        HTTPS_PROXY: 'http://127.0.0.1:3128',
        http_proxy: 'http://127.0.0.1:3128',
        https_proxy: 'http://127.0.0.1:3128',
        NO_PROXY: 'localhost,127.0.0.1',
        NODE_USE_ENV_PROXY: '1',
        CODEBOX_EGRESS_SOCKET: '/run/codebox/egress/egress.sock',
      },
      ifaces: ['lo'],
      run: ['codebox'],
      sock: true,
    })
  })

  test('Python urllib and requests and Node fetch reach the allowed loopback server', async () => {
    const url = `http://127.0.0.1:${web.port}`
    const before = web.connections()
    const py = await viaProxy(
      session,
      `python3 -c "import urllib.request; print(urllib.request.urlopen('${url}/urllib', timeout=10).read().decode())"
python3 -c "import requests; print(requests.get('${url}/requests', timeout=10).text)"
node -e "fetch('${url}/fetch').then((r) => r.text()).then(console.log)"`,
    )
    assert.equal(py.exitCode, 0, py.stderr)
    assert.deepEqual(py.stdout.trim().split('\n'), [
      'hello from the host: GET /urllib',
      'hello from the host: GET /requests',
      'hello from the host: GET /fetch',
    ])
    assert.equal(web.connections() - before, 3)
  })

  test('large and concurrent transfers pass through the relay intact', async () => {
    const mib = 1024 * 1024
    const r = await viaProxy(
      session,
      `python3 - <<'EOF'
import concurrent.futures, hashlib, json, requests
base = 'http://127.0.0.1:${web.port}'
big = requests.get(base + '/bytes/${16 * mib}', timeout=60).content
up = requests.post(base + '/count', data=b'x' * ${8 * mib}, timeout=60).text
with concurrent.futures.ThreadPoolExecutor(24) as pool:
    sizes = list(pool.map(lambda i: len(requests.get(base + '/bytes/%d' % (i * 1000), timeout=60).content), range(40)))
print(json.dumps({'big': [len(big), hashlib.sha256(big).hexdigest()], 'up': up, 'sizes': sizes}))
EOF`,
    )
    assert.equal(r.exitCode, 0, r.stderr)
    const out = JSON.parse(r.stdout) as { big: [number, string]; up: string; sizes: number[] }
    const expected = Buffer.alloc(16 * mib, 'codebox')
    assert.deepEqual(out.big, [16 * mib, createHash('sha256').update(expected).digest('hex')])
    assert.equal(out.up, String(8 * mib))
    assert.deepEqual(
      out.sizes,
      Array.from({ length: 40 }, (_, i) => i * 1000),
    )
  })

  test('curl reaches it too', async () => {
    const has = await sh(session, 'command -v curl')
    assert.equal(has.exitCode, 0, 'the image has curl')
    const r = await viaProxy(session, `curl -sS http://127.0.0.1:${web.port}/curl`)
    assert.equal(r.stdout, 'hello from the host: GET /curl', r.stderr)
  })

  test('a host name is resolved by the proxy on the host (the sandbox has no DNS), with NO_PROXY as set', async () => {
    const r = await pyJson<{ body: string; dns: string }>(
      session,
      `
import json, socket, requests
try:
    socket.getaddrinfo('web.codebox.test', 80)
    dns = 'resolved'
except socket.gaierror:
    dns = 'no dns'
print(json.dumps({'body': requests.get('http://web.codebox.test:${web.port}/named', timeout=10).text, 'dns': dns}))`,
    )
    assert.deepEqual(r, { body: 'hello from the host: GET /named', dns: 'no dns' })
  })

  test('CONNECT through the relay tunnels raw TCP', async () => {
    const r = await pyJson<{ head: string; body: string }>(
      session,
      `
import json, socket
s = socket.create_connection(('127.0.0.1', 3128), timeout=10)
s.sendall(b'CONNECT 127.0.0.1:${web.port} HTTP/1.1\\r\\nHost: 127.0.0.1:${web.port}\\r\\n\\r\\n')
head = b''
while b'\\r\\n\\r\\n' not in head:
    head += s.recv(1)
s.sendall(b'GET /tunnel HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')
body = b''
while True:
    d = s.recv(65536)
    if not d:
        break
    body += d
print(json.dumps({'head': head.decode().split('\\r\\n')[0], 'body': body.decode().split('\\r\\n\\r\\n', 1)[1]}))`,
    )
    assert.deepEqual(r, { head: 'HTTP/1.1 200 Connection Established', body: 'hello from the host: GET /tunnel' })
  })

  test('another loopback port and the metadata address are refused with a reason; nothing reaches them', async () => {
    const r = await pyJson<Record<string, [number, string]>>(
      session,
      `
import json, os, urllib.request, urllib.error
os.environ.pop('NO_PROXY', None); os.environ.pop('no_proxy', None)
def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return [r.status, r.read().decode()]
    except urllib.error.HTTPError as e:
        return [e.code, e.read().decode()]
print(json.dumps({u: get(u) for u in ['http://127.0.0.1:${other.port}/', 'http://169.254.169.254/latest/meta-data/', 'http://[fd00:ec2::254]/']}))`,
    )
    assert.deepEqual(r, {
      [`http://127.0.0.1:${other.port}/`]: [403, `codebox egress: 127.0.0.1:${other.port} is not on this interpreter's allow-list\n`],
      'http://169.254.169.254/latest/meta-data/': [403, 'codebox egress: 169.254.169.254 is a cloud metadata address\n'],
      'http://[fd00:ec2::254]/': [403, 'codebox egress: fd00:ec2::254 is a cloud metadata address\n'],
    })
    assert.equal(other.connections(), 0)
    assert.ok((m.egressCounters(session.id)?.denied ?? 0) >= 3)
  })

  test('going around the proxy fails: direct connections hit the sandbox’s own empty loopback', async () => {
    const r = await pyJson<Record<string, string>>(
      session,
      `
import json, socket
def connect(addr):
    try:
        socket.create_connection(addr, timeout=5).close()
        return 'connected'
    except OSError as e:
        return type(e).__name__
print(json.dumps({'web': connect(('127.0.0.1', ${web.port})), 'internet': connect(('1.1.1.1', 80))}))`,
    )
    assert.deepEqual(r, { web: 'ConnectionRefusedError', internet: 'OSError' })
  })

  test('a session without egress has no proxy, no relay and no socket', async () => {
    const plain = await m.start()
    try {
      const r = await pyJson<Record<string, unknown>>(
        plain,
        `
import json, os, socket, urllib.request
def relay():
    try:
        socket.create_connection(('127.0.0.1', 3128), timeout=5).close()
        return 'connected'
    except OSError as e:
        return type(e).__name__
def fetch():
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({'http': 'http://127.0.0.1:3128'}))
    try:
        return opener.open('http://127.0.0.1:${web.port}/', timeout=5).read().decode()
    except OSError as e:
        return type(e).__name__
print(json.dumps({'proxy': os.environ.get('HTTP_PROXY'), 'relay': relay(), 'fetch': fetch(), 'sock': os.path.exists('/run/codebox/egress/egress.sock')}))`,
      )
      assert.deepEqual(r, { proxy: null, relay: 'ConnectionRefusedError', fetch: 'URLError', sock: false })
    } finally {
      await plain.stop()
    }
  })

  test('the listener and its directory handle are gone when the session ends', async () => {
    const handles = (): number =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === '/run/codebox/tmpfs/egress'
        } catch {
          return false
        }
      }).length
    const before = handles()
    const s = await m.start({ egress: { mode: 'public', allow: [] } })
    assert.equal(handles(), before + 1, 'the server holds the sandbox’s egress directory while it lives')
    assert.deepEqual(readdirSync(egress.socketDir), [], 'no socket in the host folder')
    const open = egress.openCount
    await s.stop()
    assert.equal(egress.openCount, open - 1)
    assert.equal(handles(), before)
  })
})
