/**
 * The model gateway's routing in the egress proxy, over real listener sockets (no sandbox): a
 * listener opened with `gateway` hands `http://codebox-gateway/...` to the service's handler with
 * its identity, never resolving the name; CONNECT to it is refused, as is any request on a listener
 * without the gateway or on a server without a handler; a `none` policy reaches nothing else. And
 * the SessionManager: `gateway` puts the flag (and the nothing-else policy) into the sandbox's
 * network spec, and adopt() hands it to attach again.
 */
import assert from 'node:assert/strict'
import { request } from 'node:http'
import { connect } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { CodeboxError, type AttachOptions, type SandboxDriver, type SandboxSpec } from '@codebox/core'
import { EgressService, FakeDriver, SessionManager, type GatewayIdentity } from '@codebox/sandbox'

const dir = mkdtempSync(path.join(tmpdir(), 'codebox-egress-gateway-'))
let lookups: string[] = []
const resolve = async (host: string): Promise<string[]> => {
  lookups.push(host)
  throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' })
}

/** A plain-HTTP request through the listener at `socketPath`: status and body text. */
function viaProxy(socketPath: string, url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) {
  return new Promise<{ status: number; text: string; headers: Record<string, unknown> }>((done, fail) => {
    const req = request({ socketPath, method: init.method ?? 'GET', path: url, headers: init.headers ?? {} }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (text += c))
      res.on('end', () => done({ status: res.statusCode ?? 0, text, headers: res.headers }))
    })
    req.on('error', fail)
    req.end(init.body)
  })
}

/** A raw CONNECT through the listener (then `then` sent in the tunnel): all it answers until it closes. */
function connectVia(socketPath: string, target: string, then = ''): Promise<string> {
  return new Promise((done, fail) => {
    const c = connect(socketPath)
    let text = ''
    c.on('data', (d: Buffer) => (text += d.toString('utf8')))
    c.on('close', () => done(text))
    c.on('error', fail)
    c.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n${then}`)
  })
}

describe('model gateway routing in the egress proxy', () => {
  after(() => rmSync(dir, { recursive: true, force: true }))
  const seen: { identity: GatewayIdentity; url: string; body: string }[] = []
  const egress = new EgressService({
    socketDir: path.join(dir, 'sockets'),
    resolve,
    gateway: (req, res, identity) => {
      let body = ''
      req.setEncoding('utf8')
      req.on('data', (c: string) => (body += c))
      req.on('end', () => {
        seen.push({ identity, url: req.url ?? '', body })
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: true }))
      })
    },
  })
  after(() => egress.close())

  test('a gateway listener hands codebox-gateway requests to the handler with its identity, resolving nothing', async () => {
    lookups = []
    const l = await egress.open({ sandboxId: 'gw1', sessionId: 's1', policy: { mode: 'none', allow: [] }, gateway: { tag: 'runtime-7' } })
    const r = await viaProxy(l.socketPath, 'http://codebox-gateway/anthropic/v1/messages', { method: 'POST', body: '{"x":1}' })
    assert.equal(r.status, 200, r.text)
    assert.equal(r.headers.connection, 'close')
    assert.deepEqual(seen.at(-1), {
      identity: { sandboxId: 'gw1', sessionId: 's1', tag: 'runtime-7' },
      url: 'http://codebox-gateway/anthropic/v1/messages',
      body: '{"x":1}',
    })
    // Any case, with the root dot: the same reserved name.
    assert.equal((await viaProxy(l.socketPath, 'http://CODEBOX-Gateway./openai/v1/models')).status, 200)
    // A none policy reaches nothing else, and says why.
    const other = await viaProxy(l.socketPath, 'http://example.com/')
    assert.equal(other.status, 403)
    assert.match(other.text, /no network egress; only the model gateway/)
    assert.deepEqual(lookups, [], 'a name was resolved')
    assert.deepEqual(l.counters, { allowed: 2, denied: 1 })
    l.close()
  })

  test('CONNECT to the gateway for TLS is refused: it is plain HTTP inside the sandbox; a plain-HTTP tunnel (port 80) reaches it', async () => {
    lookups = []
    const l = await egress.open({ sandboxId: 'gw2', sessionId: 's2', policy: { mode: 'public', allow: [] }, gateway: {} })
    const answer = await connectVia(l.socketPath, 'codebox-gateway:443')
    assert.match(answer, /^HTTP\/1\.1 400 /)
    assert.match(answer, /speaks plain HTTP inside the sandbox: use http:\/\/codebox-gateway\//)
    // Node's fetch tunnels plain HTTP through CONNECT too: port 80 carries origin-form requests to the gateway.
    const tunneled = await connectVia(
      l.socketPath,
      'codebox-gateway:80',
      'POST /openai/v1/chat/completions HTTP/1.1\r\nHost: codebox-gateway\r\nContent-Length: 2\r\n\r\n{}',
    )
    assert.match(tunneled, /^HTTP\/1\.1 200 Connection Established\r\n\r\nHTTP\/1\.1 200 OK\r\n[^]*connection: close[^]*\{"ok":true\}\r\n0\r\n\r\n$/i)
    assert.deepEqual(seen.at(-1), { identity: { sandboxId: 'gw2', sessionId: 's2' }, url: 'http://codebox-gateway/openai/v1/chat/completions', body: '{}' })
    assert.deepEqual(lookups, [])
    l.close()
  })

  test('a listener without the gateway refuses it (403), with or without CONNECT, and never resolves the name', async () => {
    lookups = []
    const before = seen.length
    const l = await egress.open({ sandboxId: 'gw3', policy: { mode: 'public', allow: [] } })
    const r = await viaProxy(l.socketPath, 'http://codebox-gateway/anthropic/v1/messages', { method: 'POST', body: '{}' })
    assert.equal(r.status, 403)
    assert.match(r.text, /model gateway \(codebox-gateway\) is not enabled for this session/)
    assert.match(await connectVia(l.socketPath, 'codebox-gateway:80'), /^HTTP\/1\.1 403 [^]*not enabled for this session/)
    assert.equal(seen.length, before, 'the handler was called')
    assert.deepEqual(lookups, [])
    l.close()
  })

  test('a server without a gateway answers a gateway listener 502, clearly', async () => {
    const bare = new EgressService({ socketDir: path.join(dir, 'bare'), resolve })
    try {
      const l = await bare.open({ sandboxId: 'gw4', policy: { mode: 'none', allow: [] }, gateway: {} })
      const r = await viaProxy(l.socketPath, 'http://codebox-gateway/openai/v1/chat/completions', { method: 'POST', body: '{}' })
      assert.equal(r.status, 502)
      assert.match(r.text, /no model gateway is configured on this codebox server/)
    } finally {
      bare.close()
    }
  })

  test('bad tags and none policies with entries are ValidationErrors', async () => {
    await assert.rejects(
      egress.open({ sandboxId: 'gw5', policy: { mode: 'none', allow: [] }, gateway: { tag: 'has space' } }),
      (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError' && /gateway\.tag/.test(e.message),
    )
    await assert.rejects(
      egress.open({ sandboxId: 'gw6', policy: { mode: 'none', allow: ['example.com'] } }),
      (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError' && /none policy reaches nothing/.test(e.message),
    )
  })
})

describe('sessions with the model gateway', () => {
  /** The fake driver, recording the network of each create and attach. */
  function recorder(): { driver: SandboxDriver; creates: SandboxSpec[]; attaches: AttachOptions[] } {
    const inner = new FakeDriver()
    const creates: SandboxSpec[] = []
    const attaches: AttachOptions[] = []
    const driver: SandboxDriver = {
      name: 'gateway-recorder',
      check: () => inner.check(),
      create: async (spec) => {
        creates.push(spec)
        return inner.create(spec)
      },
      list: async () => [],
      attach: async (id, options = {}) => {
        attaches.push(options)
        throw new CodeboxError('SessionTerminated', `recorded attach of ${id}`)
      },
    }
    return { driver, creates, attaches }
  }

  test('gateway without egress: a listener that reaches nothing else; with egress: the policy kept; never pooled', async () => {
    const { driver, creates } = recorder()
    const m = new SessionManager({ driver, poolSize: 1, egress: new EgressService({ socketDir: path.join(dir, 'sm') }) })
    try {
      const s = await m.start({ gateway: { tag: 'rt-1' } })
      assert.deepEqual(creates.at(-1)?.network, { mode: 'egress', policy: { mode: 'none', allow: [] }, sessionId: s.id, gateway: { tag: 'rt-1' } })
      const pub = { mode: 'public' as const, allow: [] }
      const t = await m.start({ egress: pub, gateway: true })
      assert.deepEqual(creates.at(-1)?.network, { mode: 'egress', policy: pub, sessionId: t.id, gateway: {} })
      const plain = await m.start({ gateway: false })
      const ofPlain = creates.find((c) => c.id === plain.sandboxId)
      assert.deepEqual(ofPlain?.network, { mode: 'none' })
      assert.equal(creates.filter((c) => c.network.mode === 'egress').length, 2, 'a pool sandbox was made with a network')
      await assert.rejects(m.start({ gateway: { tag: '' } }), (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError')
    } finally {
      await m.close()
    }
  })

  test('adopt() opens the listener again with the gateway', async () => {
    const { driver, attaches } = recorder()
    const m = new SessionManager({ driver, poolSize: 0 })
    try {
      const limits = m.defaults
      const out = await m.adopt([
        { sessionId: 'a1', sandboxId: 'sb1', limits, createdAt: new Date(), gateway: { tag: 'rt-2' } },
        { sessionId: 'a2', sandboxId: 'sb2', limits, createdAt: new Date(), egress: { mode: 'public', allow: [] }, gateway: {} },
        { sessionId: 'a3', sandboxId: 'sb3', limits, createdAt: new Date() },
      ])
      assert.equal(out.failed.length, 3)
      const networks = attaches.map((a) => a.network)
      assert.deepEqual(networks, [
        { mode: 'egress', policy: { mode: 'none', allow: [] }, sessionId: 'a1', gateway: { tag: 'rt-2' } },
        { mode: 'egress', policy: { mode: 'public', allow: [] }, sessionId: 'a2', gateway: {} },
        { mode: 'none' },
      ])
    } finally {
      await m.close()
    }
  })
})
