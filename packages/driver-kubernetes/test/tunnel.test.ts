/**
 * The driver's end of a tunnel (src/driver/tunnel.ts) against a stand-in executor on the host's
 * loopback: the auth frame it sends, and what it makes of each answer (a status byte, silence, a
 * close, a byte that is no status, the caller's signal). Through real pods: driver.test.ts.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import net from 'node:net'
import { after, describe, it } from 'node:test'
import { CodeboxError } from '@codebox/core'
import { connectTunnel } from '../src/driver/tunnel.ts'

const TOKEN = 'tok-tunnel-test'
const servers: net.Server[] = []
after(() => {
  for (const s of servers) s.close()
})

/** A stand-in executor: reads the auth frame, records it, then does `answer` with the connection. */
async function executor(answer: (c: net.Socket) => void): Promise<{ port: number; frames: unknown[] }> {
  const frames: unknown[] = []
  const server = net.createServer((c) => {
    c.on('error', () => {})
    let buf = Buffer.alloc(0)
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d])
      if (buf.length < 4 || buf.length < buf.readUInt32BE(0) + 4) return
      c.off('data', onData)
      const length = buf.readUInt32BE(0)
      frames.push({ rid: buf.readUInt32BE(4), kind: String.fromCharCode(buf[8]!), payload: JSON.parse(buf.subarray(9, length + 4).toString()) })
      answer(c)
    }
    c.on('data', onData)
  })
  servers.push(server)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { port: (server.address() as net.AddressInfo).port, frames }
}

const tunnel = (executorPort: number, port: number, options: { timeoutMs?: number; signal?: AbortSignal } = {}) =>
  connectTunnel(
    {
      dial: (o) => net.connect(o),
      host: '127.0.0.1',
      port: executorPort,
      token: TOKEN,
      what: 'pod test/cbx-t',
      timeoutMs: options.timeoutMs ?? 5000,
      ...(options.signal ? { signal: options.signal } : {}),
    },
    port,
  )

const unavailable = (reason: string, message: RegExp) => (e: unknown) => {
  assert.ok(e instanceof CodeboxError, String(e))
  assert.equal(e.code, 'Unavailable', e.message)
  assert.equal(e.details.reason, reason)
  assert.match(e.message, message)
  return true
}

describe('kubernetes tunnel (driver end)', () => {
  it('sends the auth frame with the port and, on status 0, returns the stream with the bytes after it', async () => {
    const ex = await executor((c) => {
      c.write(Buffer.from([0, ...Buffer.from('greeting')]))
      c.on('data', (d: Buffer) => c.end(`echo:${d.toString()}`))
    })
    const s = await tunnel(ex.port, 8080)
    assert.deepEqual(ex.frames, [{ rid: 0, kind: 'J', payload: { op: 'auth', token: TOKEN, tunnel: 8080 } }])
    const chunks: Buffer[] = []
    s.on('data', (c: Buffer) => chunks.push(c))
    s.write('ping')
    await once(s, 'close')
    assert.equal(Buffer.concat(chunks).toString(), 'greetingecho:ping')
  })

  it('turns status 1 and 2, a close without a byte, silence and an unknown byte into errors naming why', async () => {
    const refused = await executor((c) => c.end(Buffer.from([1])))
    await assert.rejects(tunnel(refused.port, 8080), unavailable('refused', /nothing listens on port 8080 in the sandbox/))
    const busy = await executor((c) => c.end(Buffer.from([2])))
    await assert.rejects(tunnel(busy.port, 8080), unavailable('busy', /holds its most connections/))
    const closed = await executor((c) => c.end())
    await assert.rejects(tunnel(closed.port, 8080), unavailable('unreachable', /port 8080 in the sandbox cannot be reached: .*refused the token/))
    const silent = await executor(() => {})
    const started = Date.now()
    await assert.rejects(tunnel(silent.port, 8080, { timeoutMs: 300 }), unavailable('timeout', /did not answer within 300 ms/))
    assert.ok(Date.now() - started < 3000)
    const odd = await executor((c) => c.write(Buffer.from([7])))
    await assert.rejects(tunnel(odd.port, 8080), (e: unknown) => e instanceof CodeboxError && e.code === 'SandboxFailure' && /unknown status 7/.test(e.message))
    // A pod whose executor port refuses the connection.
    const gone = net.createServer().listen(0, '127.0.0.1')
    await once(gone, 'listening')
    const port = (gone.address() as net.AddressInfo).port
    await new Promise((resolve) => gone.close(resolve))
    await assert.rejects(
      tunnel(port, 8080),
      unavailable('unreachable', /port 8080 in the sandbox cannot be reached: cannot connect to the executor of pod test\/cbx-t: .*ECONNREFUSED/),
    )
  })

  it('is cancelled by its signal while it waits, and refuses a port outside 1-65535 before dialling', async () => {
    const silent = await executor(() => {})
    const ac = new AbortController()
    const pending = tunnel(silent.port, 8080, { signal: ac.signal })
    setTimeout(() => ac.abort(new CodeboxError('Canceled', 'the caller went away')), 50)
    await assert.rejects(pending, { code: 'Canceled', message: 'the caller went away' })
    let dialled = 0
    const options = {
      dial: (o: { host: string; port: number }) => (dialled++, net.connect(o)),
      host: '127.0.0.1',
      port: silent.port,
      token: TOKEN,
      what: 'x',
      timeoutMs: 1000,
    }
    for (const bad of [0, 65536, 1.5, Number.NaN]) {
      await assert.rejects(connectTunnel(options, bad), { code: 'ValidationError', message: /port: must be a whole number from 1 to 65535/ })
    }
    assert.equal(dialled, 0)
  })
})
