/**
 * The egress proxy over its unix socket, with an injected resolver and upstream servers on
 * loopback (trusted explicitly, as an operator would trust an internal service): CONNECT and
 * plain HTTP allowed and refused, DNS rebinding and mixed public/private answers refused, no
 * second resolution, hop-by-hop headers stripped, and garbage, header floods, slow clients and
 * connection floods answered without harm. Runs as any user; nothing leaves loopback.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { CodeboxError, type EgressPolicy } from '@codebox/core'
import { EgressService, parseTrustedList, type EgressDenial, type EgressListener, type EgressServiceOptions } from '@codebox/sandbox'

interface RawResponse {
  status: number
  head: string
  body: string
}

/** Sends raw bytes to the proxy socket and reads until the proxy closes the connection. */
function raw(socketPath: string, request: string | Buffer, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const c = net.connect(socketPath, () => c.write(request))
    c.setTimeout(timeoutMs, () => c.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    c.on('data', (d: Buffer) => chunks.push(d))
    c.on('error', reject)
    c.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1')
      const [head = '', body = ''] = text.split(/\r\n\r\n(.*)/s)
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body: /transfer-encoding: chunked/i.test(head) ? dechunk(body) : body })
    })
  })
}

/** The payload of a chunked body (no trailers, no extensions: what Node sends). */
function dechunk(body: string): string {
  let out = ''
  for (let at = 0; ;) {
    const eol = body.indexOf('\r\n', at)
    const size = parseInt(body.slice(at, eol), 16)
    if (!size) return out
    out += body.slice(eol + 2, eol + 2 + size)
    at = eol + 2 + size + 2
  }
}

/** Opens a CONNECT tunnel; resolves with the answer's head and the socket (open on 200). */
function connect(socketPath: string, target: string): Promise<{ status: number; head: string; socket: net.Socket; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const c = net.connect(socketPath, () => c.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`))
    c.setTimeout(5000, () => c.destroy(new Error('no CONNECT answer')))
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      c.off('data', onData)
      c.setTimeout(0)
      const head = buf.subarray(0, end).toString('latin1')
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, socket: c, rest: buf.subarray(end + 4) })
    }
    c.on('data', onData)
    c.on('error', reject)
  })
}

const listen = (server: net.Server): Promise<number> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)))
const closeServer = (server: net.Server): Promise<void> => new Promise((resolve) => server.close(() => resolve()))

describe('egress proxy', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'codebox-egress-test-'))
  const socketDir = path.join(dir, 'egress')
  let web: Server
  let echo: net.Server
  let webPort = 0
  let echoPort = 0
  let freePort = 0
  let webConnections = 0
  const lastRequest: { req?: IncomingMessage; body?: string } = {}
  const lookups: string[] = []
  const denials: EgressDenial[] = []
  const names: Record<string, string[]> = {
    'app.test': ['127.0.0.1'],
    'rebind.test': ['127.0.0.1'],
    'mixed.test': ['93.184.215.14', '10.0.0.5'],
    'meta.test': ['169.254.169.254'],
  }

  let service: EgressService
  const listeners: EgressListener[] = []
  const open = async (policy: EgressPolicy, options: Partial<EgressServiceOptions> = {}): Promise<EgressListener> => {
    const s = Object.keys(options).length ? new EgressService({ ...serviceOptions(), ...options }) : service
    const l = await s.open({ sandboxId: `t${listeners.length}-${process.pid}`, policy, sessionId: 'session-1' })
    listeners.push(l)
    return l
  }
  const serviceOptions = (): EgressServiceOptions => ({
    socketDir,
    trusted: parseTrustedList(`127.0.0.1:${webPort},127.0.0.1:${echoPort},127.0.0.1:${freePort}`),
    resolve: async (host) => {
      lookups.push(host)
      const found = names[host]
      if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' })
      return found
    },
    onDenial: (d) => denials.push(d),
    headerTimeoutMs: 300,
    maxConnections: 4,
    maxHeaderBytes: 4096,
  })

  before(async () => {
    web = createServer((req, res) => {
      let body = ''
      req.on('data', (d: Buffer) => (body += d.toString()))
      req.on('end', () => {
        lastRequest.req = req
        lastRequest.body = body
        if (req.url === '/redirect') {
          res.writeHead(302, { location: 'http://127.0.0.1:1/elsewhere' }).end('moved')
        } else {
          res.writeHead(200, { 'content-type': 'text/plain', 'keep-alive': 'timeout=5', 'x-hop': 'secret', connection: 'x-hop', 'x-kept': 'yes' })
          res.end(`hello ${req.method} ${req.url} ${body}`)
        }
      })
    })
    web.on('connection', () => webConnections++)
    echo = net.createServer((c) => c.pipe(c))
    webPort = await listen(web)
    echoPort = await listen(echo)
    const spare = net.createServer()
    freePort = await listen(spare)
    await closeServer(spare)
    service = new EgressService(serviceOptions())
  })

  after(async () => {
    for (const l of listeners) l.close()
    web.closeAllConnections()
    await closeServer(web)
    await closeServer(echo)
    rmSync(dir, { recursive: true, force: true })
  })

  test('the socket is 0600 (the driver hands it to the sandbox uid) in a 0711 directory, and gone after close()', async () => {
    const l = await open({ mode: 'public', allow: [] })
    assert.equal(statSync(l.socketPath).mode & 0o777, 0o600)
    assert.ok(statSync(l.socketPath).isSocket())
    assert.equal(statSync(socketDir).mode & 0o777, 0o711)
    l.close()
    l.close()
    assert.equal(existsSync(l.socketPath), false)
  })

  test('a bad policy is refused before anything listens', async () => {
    await assert.rejects(
      service.open({ sandboxId: 'bad', policy: { mode: 'allowlist', allow: ['not a host'] } }),
      (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError',
    )
    assert.equal(existsSync(path.join(socketDir, 'bad.sock')), false)
  })

  test('CONNECT to an allow-listed, trusted loopback port tunnels bytes both ways', async () => {
    const l = await open({ mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`] })
    const t = await connect(l.socketPath, `127.0.0.1:${echoPort}`)
    assert.equal(t.status, 200, t.head)
    const reply = new Promise<string>((resolve) => t.socket.once('data', (d: Buffer) => resolve(d.toString())))
    t.socket.write('ping through the tunnel')
    assert.equal(await reply, 'ping through the tunnel')
    t.socket.destroy()
    assert.equal(l.counters.allowed, 1)
  })

  test('CONNECT is refused for another loopback port, metadata and names off the list (403, reason in the body)', async () => {
    const l = await open({ mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`, 'meta.test'] })
    const before = lookups.length
    const cases: [string, string][] = [
      [`127.0.0.1:${webPort}`, `codebox egress: 127.0.0.1:${webPort} is not on this interpreter's allow-list\n`],
      ['169.254.169.254:80', 'codebox egress: 169.254.169.254 is a cloud metadata address\n'],
      ['[fd00:ec2::254]:80', 'codebox egress: fd00:ec2::254 is a cloud metadata address\n'],
      ['meta.test:80', 'codebox egress: meta.test resolves to 169.254.169.254, a cloud metadata address\n'],
      ['example.org:443', "codebox egress: example.org:443 is not on this interpreter's allow-list\n"],
    ]
    for (const [target, body] of cases) {
      const r = await raw(l.socketPath, `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`)
      assert.equal(r.status, 403, `${target}: ${r.head}`)
      assert.match(r.head, /content-type: text\/plain/i)
      assert.equal(r.body, body)
    }
    assert.deepEqual(lookups.slice(before), ['meta.test'], 'only the listed name was resolved')
    assert.equal(l.counters.denied, cases.length)
    const d = denials.at(-1)!
    assert.equal(d.sessionId, 'session-1')
    assert.equal(d.host, 'example.org')
    assert.equal(d.port, 443)
    assert.match(d.reason ?? '', /allow-list/)
  })

  test('plain HTTP is forwarded to the checked address: one lookup, Host kept, hop-by-hop headers stripped', async () => {
    const l = await open({ mode: 'allowlist', allow: [`app.test:${webPort}`] })
    const before = lookups.length
    const r = await raw(
      l.socketPath,
      `GET http://app.test:${webPort}/path?q=1 HTTP/1.1\r\nHost: app.test:${webPort}\r\nProxy-Connection: keep-alive\r\n` +
        `Proxy-Authorization: Basic c2VjcmV0\r\nConnection: x-drop\r\nX-Drop: 1\r\nX-Custom: kept\r\n\r\n`,
    )
    assert.equal(r.status, 200, r.head)
    assert.equal(r.body, 'hello GET /path?q=1 ')
    assert.deepEqual(lookups.slice(before), ['app.test'])
    const h = lastRequest.req!.headers
    assert.equal(h.host, `app.test:${webPort}`)
    assert.equal(h['x-custom'], 'kept')
    for (const name of ['proxy-connection', 'proxy-authorization', 'x-drop']) assert.equal(h[name], undefined, `${name} reached the server`)
    assert.match(r.head, /x-kept: yes/i)
    assert.doesNotMatch(r.head, /x-hop|keep-alive/i)
    assert.match(r.head, /connection: close/i)
  })

  test('request bodies are forwarded and redirects are answered, not followed', async () => {
    const l = await open({ mode: 'allowlist', allow: [`127.0.0.1:${webPort}`] })
    const post = await raw(
      l.socketPath,
      `POST http://127.0.0.1:${webPort}/upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`,
    )
    assert.equal(post.status, 200, post.head)
    assert.equal(post.body, 'hello POST /upload hello world')
    const moved = await raw(l.socketPath, `GET http://127.0.0.1:${webPort}/redirect HTTP/1.1\r\nHost: x\r\n\r\n`)
    assert.equal(moved.status, 302)
    assert.match(moved.head, /location: http:\/\/127\.0\.0\.1:1\/elsewhere/i)
  })

  test('DNS rebinding and mixed answers are refused, and nothing connects', async () => {
    const pub = await open({ mode: 'public', allow: [] })
    const listed = await open({ mode: 'allowlist', allow: ['rebind.test', 'mixed.test'] })
    const before = webConnections
    // Public mode ignores the trusted list; allowlist mode trusts 127.0.0.1 on the test ports only.
    for (const [l, port] of [
      [pub, webPort],
      [listed, 80],
    ] as const) {
      const r = await raw(l.socketPath, `GET http://rebind.test:${port}/ HTTP/1.1\r\nHost: rebind.test\r\n\r\n`)
      assert.equal(r.status, 403)
      assert.equal(r.body, 'codebox egress: rebind.test resolves to 127.0.0.1, a loopback address\n')
      const m = await raw(l.socketPath, 'CONNECT mixed.test:443 HTTP/1.1\r\n\r\n')
      assert.equal(m.status, 403)
      assert.equal(m.body, 'codebox egress: mixed.test resolves to 10.0.0.5, a private address\n')
    }
    const direct = await raw(pub.socketPath, `GET http://127.0.0.1:${webPort}/ HTTP/1.1\r\n\r\n`)
    assert.equal(direct.body, 'codebox egress: 127.0.0.1 is a loopback address\n', 'public mode ignores the trusted list')
    const mapped = await raw(pub.socketPath, `CONNECT [::ffff:127.0.0.1]:${webPort} HTTP/1.1\r\n\r\n`)
    assert.equal(mapped.body, 'codebox egress: ::ffff:127.0.0.1 is a loopback address\n')
    const hex = await raw(pub.socketPath, `GET http://0x7f000001:${webPort}/ HTTP/1.1\r\n\r\n`)
    assert.equal(hex.status, 403, 'a numeric host spelling is still loopback')
    assert.equal(webConnections, before, 'the loopback server got a connection')
  })

  test('DNS failure is 502, a slow resolver 504, a dead port 502', async () => {
    const l = await open({ mode: 'public', allow: [] })
    const r = await raw(l.socketPath, 'CONNECT nowhere.test:443 HTTP/1.1\r\n\r\n')
    assert.equal(r.status, 502)
    assert.equal(r.body, 'codebox egress: cannot resolve nowhere.test (ENOTFOUND)\n')
    const slow = await open({ mode: 'public', allow: [] }, { resolve: () => new Promise(() => {}), resolveTimeoutMs: 100 })
    const s = await raw(slow.socketPath, 'CONNECT slow.test:443 HTTP/1.1\r\n\r\n')
    assert.equal(s.status, 504)
    assert.equal(s.body, 'codebox egress: resolving slow.test timed out\n')
    const dead = await open({ mode: 'allowlist', allow: [`127.0.0.1:${freePort}`] })
    const d = await raw(dead.socketPath, `CONNECT 127.0.0.1:${freePort} HTTP/1.1\r\n\r\n`)
    assert.equal(d.status, 502)
    assert.equal(d.body, `codebox egress: cannot connect to 127.0.0.1:${freePort} (ECONNREFUSED)\n`)
  })

  test('garbage, origin-form requests, header floods and slow headers get an answer; the proxy keeps serving', async () => {
    const l = await open({ mode: 'allowlist', allow: [`127.0.0.1:${webPort}`] })
    const garbage = await raw(l.socketPath, Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]))
    assert.equal(garbage.status, 400)
    assert.match(garbage.body, /^codebox egress: malformed request/)
    assert.equal((await raw(l.socketPath, 'NOT HTTP AT ALL\r\n\r\n')).status, 400)
    const origin = await raw(l.socketPath, 'GET / HTTP/1.1\r\nHost: example.com\r\n\r\n')
    assert.equal(origin.status, 400)
    assert.match(origin.body, /send absolute http:\/\/ URLs/)
    assert.equal((await raw(l.socketPath, 'GET https://example.com/ HTTP/1.1\r\n\r\n')).status, 400)
    assert.equal((await raw(l.socketPath, 'CONNECT example.com HTTP/1.1\r\n\r\n')).status, 400)
    assert.equal((await raw(l.socketPath, 'CONNECT 127.0.0.1:0 HTTP/1.1\r\n\r\n')).status, 400)
    const flood = await raw(l.socketPath, `GET http://127.0.0.1:${webPort}/ HTTP/1.1\r\n${'X-Flood: aaaaaaaaaaaaaaaa\r\n'.repeat(1000)}\r\n`)
    assert.equal(flood.status, 431)
    const slow = await raw(l.socketPath, 'GET http://127.0.0.1/ HTTP/1.1\r\nX-Slow: 1\r\n')
    assert.equal(slow.status, 408)
    const ok = await raw(l.socketPath, `GET http://127.0.0.1:${webPort}/still-up HTTP/1.1\r\n\r\n`)
    assert.equal(ok.status, 200)
  })

  test('connections beyond the per-session maximum are answered 503', async () => {
    const l = await open({ mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`] })
    const tunnels = await Promise.all([1, 2, 3, 4].map(() => connect(l.socketPath, `127.0.0.1:${echoPort}`)))
    assert.deepEqual(
      tunnels.map((t) => t.status),
      [200, 200, 200, 200],
    )
    const fifth = await raw(l.socketPath, `CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\n\r\n`)
    assert.equal(fifth.status, 503)
    assert.match(fifth.body, /already has 4 connections open/)
    for (const t of tunnels) t.socket.destroy()
  })

  test('close() ends open tunnels at once', async () => {
    const l = await open({ mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`] })
    const t = await connect(l.socketPath, `127.0.0.1:${echoPort}`)
    assert.equal(t.status, 200)
    const closed = new Promise<void>((resolve) => t.socket.once('close', () => resolve()))
    l.close()
    await closed
    assert.equal(existsSync(l.socketPath), false)
  })
})
