/**
 * The executor's egress relay (executor/egress_relay.py), run on the host on a free loopback
 * port against a unix-socket server standing in for the proxy: bytes both ways, half-closes in
 * both directions, a large transfer to a slow reader, a connection cap, a missing proxy, and
 * resets that must not end the relay for later connections. The gateway port: its CONNECT
 * preamble to the proxy socket, and in a pod's TCP mode to a proxy on loopback with the pod's
 * credentials (Proxy-Authorization), refusals passed through, a proxy address that does not
 * answer (a listener whose backlog is full: the kernel drops the SYNs) closing each client at its
 * own connect deadline while the relay goes on accepting, the proxy URL's checks.
 */
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { executorDir } from '../src/drivers/shared.ts'

const MAX_PAIRS = 4
const RELAY = `
import sys
sys.path.insert(0, sys.argv[1])
import egress_relay
relay = egress_relay.Relay(sys.argv[2], port=0, max_pairs=int(sys.argv[3]))
print(relay.listener.getsockname()[1], flush=True)
relay.serve_forever()
`

/** Connects to the relay and collects everything it sends until it closes. */
function client(port: number): { socket: net.Socket; received: Promise<string> } {
  const socket = net.connect(port, '127.0.0.1')
  const chunks: Buffer[] = []
  socket.on('data', (d: Buffer) => chunks.push(d))
  const received = new Promise<string>((resolve, reject) => {
    socket.on('error', reject)
    socket.on('close', () => resolve(Buffer.concat(chunks).toString()))
  })
  return { socket, received }
}

describe('egress relay', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'codebox-relay-'))
  const socketPath = path.join(dir, 'proxy.sock')
  let proxy: net.Server
  let relay: ChildProcess
  let port = 0
  /** What the stand-in proxy does with each connection; set per test. */
  let behaviour: (c: net.Socket) => void = (c) => c.pipe(c)

  before(async () => {
    proxy = net.createServer({ allowHalfOpen: true }, (c) => behaviour(c))
    proxy.listen(socketPath)
    await once(proxy, 'listening')
    relay = spawn('/usr/bin/python3', ['-c', RELAY, executorDir, socketPath, String(MAX_PAIRS)], { stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = once(relay, 'exit').then(([code]) => assert.fail(`the relay exited (${String(code)}) before listening`))
    const [line] = (await Promise.race([once(relay.stdout!, 'data'), exited])) as [Buffer]
    port = Number(line.toString().trim())
    assert.ok(port > 0)
  })

  after(() => {
    relay.kill('SIGKILL')
    proxy.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test('bytes pass both ways, and a client half-close still gets the whole answer', async () => {
    behaviour = (c) => {
      const chunks: Buffer[] = []
      c.on('data', (d: Buffer) => chunks.push(d))
      c.on('end', () => c.end(`got ${Buffer.concat(chunks).toString()}`))
    }
    const { socket, received } = client(port)
    socket.end('request body')
    assert.equal(await received, 'got request body')
  })

  test('a proxy half-close reaches the client, which can still send', async () => {
    let heard = ''
    const done = new Promise<void>((resolve) => {
      behaviour = (c) => {
        c.write('hello, then EOF')
        c.end()
        c.on('data', (d: Buffer) => (heard += d.toString()))
        c.on('end', () => resolve())
      }
    })
    const { socket, received } = client(port)
    socket.once('end', () => socket.end('after EOF'))
    assert.equal(await received, 'hello, then EOF')
    await done
    assert.equal(heard, 'after EOF')
  })

  test('32 MiB to a slow reader arrive intact', async () => {
    const size = 32 * 1024 * 1024
    behaviour = (c) => c.end(Buffer.alloc(size, 'relay'))
    const socket = net.connect(port, '127.0.0.1')
    let got = 0
    let mismatch = false
    const pattern = Buffer.alloc(size, 'relay')
    socket.on('data', (d: Buffer) => {
      if (!pattern.subarray(got, got + d.length).equals(d)) mismatch = true
      got += d.length
      socket.pause()
      setTimeout(() => socket.resume(), got < 1024 * 1024 ? 5 : 0)
    })
    await once(socket, 'close')
    assert.equal(got, size)
    assert.equal(mismatch, false)
  })

  test(`more than ${MAX_PAIRS} connections: the extra ones are closed, the others keep working`, async () => {
    behaviour = (c) => c.pipe(c)
    const open = Array.from({ length: MAX_PAIRS }, () => client(port))
    await Promise.all(open.map(async ({ socket }) => once(socket, 'connect')))
    await delay(100)
    const extra = client(port)
    assert.equal(await extra.received, '')
    for (const [i, { socket }] of open.entries()) socket.end(`echo ${i}`)
    assert.deepEqual(
      await Promise.all(open.map((c) => c.received)),
      open.map((_, i) => `echo ${i}`),
    )
  })

  test('resets on either side end only that connection', async () => {
    // A unix socket closed with unread input resets its peer.
    behaviour = (c) => c.once('data', () => c.pause().destroy())
    const a = client(port)
    a.socket.write('x')
    a.socket.write('y'.repeat(100_000))
    await a.received.catch(() => '')
    const b = client(port)
    behaviour = (c) => c.pipe(c)
    await once(b.socket, 'connect')
    b.socket.resetAndDestroy()
    await b.received.catch(() => '')
    const c = client(port)
    c.socket.end('still relaying')
    assert.equal(await c.received, 'still relaying')
  })

  test('without a proxy behind it, a client is closed at once', async () => {
    proxy.close()
    await once(proxy, 'close')
    const { received } = client(port)
    assert.equal(await received, '')
    assert.equal(relay.exitCode, null, 'the relay died')
  })
})

describe('egress relay: the gateway port', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'codebox-relay-gw-'))
  const socketPath = path.join(dir, 'proxy.sock')
  const GATEWAY_RELAY = RELAY.replace('max_pairs=int(sys.argv[3]))', 'max_pairs=int(sys.argv[3]), preamble=egress_relay.GATEWAY_PREAMBLE)')
  let proxy: net.Server
  let relay: ChildProcess
  let port = 0
  /** What the stand-in proxy answers to the preamble (it checks the preamble first). */
  let answer = 'HTTP/1.1 200 Connection Established\r\n\r\n'

  before(async () => {
    proxy = net.createServer({ allowHalfOpen: true }, (c) => {
      let got = ''
      const onData = (d: Buffer): void => {
        got += d.toString('latin1')
        const end = got.indexOf('\r\n\r\n')
        if (end < 0) return
        c.off('data', onData)
        c.pause() // what follows waits for the pipe below
        const head = got.slice(0, end + 4)
        const rest = got.slice(end + 4)
        if (head !== 'CONNECT codebox-gateway:80 HTTP/1.1\r\nHost: codebox-gateway:80\r\n\r\n') return void c.end(`HTTP/1.1 400 Bad\r\n\r\nunexpected ${head}`)
        if (!answer.startsWith('HTTP/1.1 200')) return void c.end(answer)
        // The answer head split across writes, and the first bytes of the tunnel right behind it.
        c.write(answer.slice(0, 9))
        setTimeout(() => {
          c.write(`${answer.slice(9)}tunnel says hi;`)
          c.write(rest)
          c.pipe(c)
        }, 20)
      }
      c.on('data', onData)
    })
    proxy.listen(socketPath)
    await once(proxy, 'listening')
    relay = spawn('/usr/bin/python3', ['-c', GATEWAY_RELAY, executorDir, socketPath, '4'], { stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = once(relay, 'exit').then(([code]) => assert.fail(`the relay exited (${String(code)}) before listening`))
    const [line] = (await Promise.race([once(relay.stdout!, 'data'), exited])) as [Buffer]
    port = Number(line.toString().trim())
  })

  after(() => {
    relay.kill('SIGKILL')
    proxy.close()
    rmSync(dir, { recursive: true, force: true })
  })

  test("each connection is tunnelled: the preamble goes first, the proxy's 200 head never reaches the client", async () => {
    answer = 'HTTP/1.1 200 Connection Established\r\n\r\n'
    const { socket, received } = client(port)
    socket.end('GET /anthropic/v1/models HTTP/1.1\r\n\r\n')
    assert.equal(await received, 'tunnel says hi;GET /anthropic/v1/models HTTP/1.1\r\n\r\n')
  })

  test('a refusal reaches the client as the proxy sent it', async () => {
    answer = 'HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\n\r\nrefused'
    const { socket, received } = client(port)
    socket.end('GET / HTTP/1.1\r\n\r\n')
    assert.equal(await received, answer)
  })
})

describe('egress relay: the gateway port over TCP (a kubernetes pod)', () => {
  // The pod's proxy URL as the driver gives it (CODEBOX_GATEWAY_PROXY); the port is filled in below.
  const credentials = { user: 'cbx-pod-1', token: 'A'.repeat(20) + '-_' + 'b'.repeat(21) }
  const expectedAuth = `Basic ${Buffer.from(`${credentials.user}:${credentials.token}`).toString('base64')}`
  const TCP_RELAY = `
import sys
sys.path.insert(0, sys.argv[1])
import egress_relay
upstream, authorization = egress_relay.parse_proxy_url(sys.argv[2])
timeout = float(sys.argv[4]) if len(sys.argv) > 4 else egress_relay.CONNECT_TIMEOUT
relay = egress_relay.Relay(upstream, port=0, max_pairs=int(sys.argv[3]), preamble=egress_relay.gateway_preamble(authorization), connect_timeout=timeout)
print(relay.listener.getsockname()[1], flush=True)
relay.serve_forever()
`
  // A loopback address that never answers: a listener with a backlog of 0 that never accepts,
  // its queue filled by its own connections, so the kernel drops every further SYN.
  const BLACKHOLE = `
import socket, sys
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(0)
fill = []
for _ in range(2):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex(listener.getsockname())
    fill.append(s)
print(listener.getsockname()[1], flush=True)
sys.stdin.read()
`
  let proxy: net.Server
  let proxyPort = 0
  let relay: ChildProcess
  let port = 0
  const heads: string[] = []

  before(async () => {
    // The cluster proxy stand-in: it checks the credentials the preamble carries, as the real one does.
    proxy = net.createServer({ allowHalfOpen: true }, (c) => {
      let got = ''
      const onData = (d: Buffer): void => {
        got += d.toString('latin1')
        const end = got.indexOf('\r\n\r\n')
        if (end < 0) return
        c.off('data', onData)
        const head = got.slice(0, end + 4)
        heads.push(head)
        const auth = /\r\nProxy-Authorization: ([^\r]*)\r\n/.exec(head)?.[1]
        if (!head.startsWith('CONNECT codebox-gateway:80 HTTP/1.1\r\n')) return void c.end(`HTTP/1.1 400 Bad\r\n\r\nunexpected ${head}`)
        if (auth !== expectedAuth) return void c.end('HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 5\r\n\r\nwho ?')
        c.write(`HTTP/1.1 200 Connection Established\r\n\r\ngateway here;${got.slice(end + 4)}`)
        c.pipe(c)
      }
      c.on('data', onData)
    })
    proxy.listen(0, '127.0.0.1')
    await once(proxy, 'listening')
    proxyPort = (proxy.address() as net.AddressInfo).port
  })

  after(() => {
    relay?.kill('SIGKILL')
    proxy.close()
  })

  async function startRelay(url: string, connectTimeoutSeconds?: number): Promise<number> {
    relay?.kill('SIGKILL')
    const args = ['-c', TCP_RELAY, executorDir, url, '4', ...(connectTimeoutSeconds === undefined ? [] : [String(connectTimeoutSeconds)])]
    relay = spawn('/usr/bin/python3', args, { stdio: ['ignore', 'pipe', 'inherit'] })
    const exited = once(relay, 'exit').then(([code]) => assert.fail(`the relay exited (${String(code)}) before listening`))
    const [line] = (await Promise.race([once(relay.stdout!, 'data'), exited])) as [Buffer]
    return Number(line.toString().trim())
  }

  test("each connection is a CONNECT with the pod's credentials; the 200 head never reaches the client", async () => {
    port = await startRelay(`http://${credentials.user}:${credentials.token}@127.0.0.1:${proxyPort}`)
    heads.length = 0
    const { socket, received } = client(port)
    socket.end('GET /anthropic/v1/models HTTP/1.1\r\n\r\n')
    assert.equal(await received, 'gateway here;GET /anthropic/v1/models HTTP/1.1\r\n\r\n')
    assert.deepEqual(heads, [`CONNECT codebox-gateway:80 HTTP/1.1\r\nHost: codebox-gateway:80\r\nProxy-Authorization: ${expectedAuth}\r\n\r\n`])
  })

  test("the proxy's refusal reaches the client as it came", async () => {
    port = await startRelay(`http://${credentials.user}:wrong@127.0.0.1:${proxyPort}`)
    const { socket, received } = client(port)
    socket.end('GET / HTTP/1.1\r\n\r\n')
    assert.equal(await received, 'HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 5\r\n\r\nwho ?')
  })

  test('a proxy that refuses the connection closes the client, and the relay goes on', async () => {
    const closed = net.createServer().listen(0, '127.0.0.1')
    await once(closed, 'listening')
    const deadPort = (closed.address() as net.AddressInfo).port
    closed.close()
    await once(closed, 'close')
    port = await startRelay(`http://${credentials.user}:${credentials.token}@127.0.0.1:${deadPort}`)
    assert.equal(await client(port).received, '')
    assert.equal(await client(port).received, '')
    assert.equal(relay.exitCode, null, 'the relay died')
  })

  test('a proxy address that does not answer: each client is closed at its own connect deadline, and the relay goes on', async () => {
    const blackhole = spawn('/usr/bin/python3', ['-c', BLACKHOLE], { stdio: ['pipe', 'pipe', 'inherit'] })
    try {
      const [line] = (await once(blackhole.stdout!, 'data')) as [Buffer]
      const holePort = Number(line.toString().trim())
      assert.ok(holePort > 0)
      port = await startRelay(`http://${credentials.user}:${credentials.token}@127.0.0.1:${holePort}`, 1)
      const closedAt = async (c: { received: Promise<string> }): Promise<{ text: string; at: number }> => ({ text: await c.received, at: Date.now() })
      const startA = Date.now()
      const a = closedAt(client(port))
      await delay(500)
      // Accepted while the first one's connect hangs: the relay's one thread is not blocked.
      const startB = Date.now()
      const b = closedAt(client(port))
      const [ra, rb] = await Promise.all([a, b])
      assert.deepEqual([ra.text, rb.text], ['', ''], 'the clients get nothing: closed')
      for (const [r, start] of [
        [ra, startA],
        [rb, startB],
      ] as const) {
        const waited = r.at - start
        assert.ok(waited >= 900 && waited < 4000, `closed after ${waited} ms, not at its 1 s deadline`)
      }
      assert.ok(rb.at - ra.at >= 300, `the second closed at its own deadline (${rb.at - ra.at} ms after the first)`)
      assert.equal(relay.exitCode, null, 'the relay died')
    } finally {
      blackhole.kill('SIGKILL')
    }
    // The default bound: 10 s.
    const value = await new Promise<string>((resolve, reject) =>
      execFile(
        '/usr/bin/python3',
        ['-c', `import sys; sys.path.insert(0, sys.argv[1]); import egress_relay; print(egress_relay.CONNECT_TIMEOUT)`, executorDir],
        (err, out) => (err ? reject(err) : resolve(out.trim())),
      ),
    )
    assert.equal(value, '10.0')
  })

  test('the proxy URL: a numeric address and a port, or an error naming the variable', async () => {
    const check = `
import sys, json
sys.path.insert(0, sys.argv[1])
import egress_relay
out = []
for url in sys.argv[2:]:
    try:
        (family, address), authorization = egress_relay.parse_proxy_url(url)
        out.append([address[0], address[1], authorization.decode() if authorization else None])
    except ValueError as e:
        out.append(str(e))
print(json.dumps(out))
`
    const urls = [
      'http://pod:t%40k@10.0.0.7:3128',
      'http://[fd00::7]:3128',
      'http://proxy.example:3128',
      'https://10.0.0.7:3128',
      'http://10.0.0.7',
      'http://10.0.0.7:3128/path',
      'http://10.0.0.7:99999',
      'http://10.0.0.7:3128\r\nX: y',
    ]
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile('/usr/bin/python3', ['-c', check, executorDir, ...urls], (err, out) => (err ? reject(err) : resolve(out))),
    )
    const [withAuth, v6, ...bad] = JSON.parse(stdout) as unknown[]
    assert.deepEqual(withAuth, ['10.0.0.7', 3128, `Basic ${Buffer.from('pod:t@k').toString('base64')}`])
    assert.deepEqual(v6, ['fd00::7', 3128, null])
    assert.equal(bad.length, urls.length - 2)
    for (const b of bad) assert.match(String(b), /^CODEBOX_GATEWAY_PROXY: .* must be http:\/\/\[user:password@\]<IP>:<port>/)
  })
})
