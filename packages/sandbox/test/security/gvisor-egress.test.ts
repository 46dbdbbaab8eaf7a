/**
 * Egress under gVisor: runsc (`--host-uds=open`) lets a sandbox connect to the one host unix
 * socket bound into it, its egress proxy. A session allowed `127.0.0.1:<port>` (trusted for the
 * test) reaches a loopback HTTP server on the host through the executor's relay and the proxy;
 * another port and the metadata address are refused by the proxy; the sandbox still has only `lo`.
 * With egress runsc runs with `--host-uds=all`: the inbound relay still binds its port sockets.
 */
import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { EgressService, SessionManager, parseTrustedList, type Session } from '@codebox/sandbox'
import { gvisorDriver, gvisorUnavailable } from '../gvisor-fixtures.ts'

const unavailable = await gvisorUnavailable()

async function hostServer(): Promise<{ server: Server; port: number; connections: () => number }> {
  let n = 0
  const server = createServer((req, res) => res.end(`hello from the host: ${req.method} ${req.url}`))
  server.on('connection', () => n++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, port: (server.address() as net.AddressInfo).port, connections: () => n }
}

/** Runs `script` with NO_PROXY cleared (the test server is on 127.0.0.1, which NO_PROXY keeps local). */
async function viaProxy(s: Session, script: string): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await s.commands.run(`unset NO_PROXY no_proxy\n${script}`, { timeoutMs: 60_000 })
  return r.structuredContent
}

describe('egress through the host proxy (gVisor)', { skip: unavailable ?? false }, () => {
  let web: Awaited<ReturnType<typeof hostServer>>
  let other: Awaited<ReturnType<typeof hostServer>>
  let m: SessionManager
  let session: Session

  before(async () => {
    web = await hostServer()
    other = await hostServer()
    const egress = new EgressService({ trusted: parseTrustedList(`127.0.0.1:${web.port},127.0.0.1:${other.port}`) })
    m = new SessionManager({ driver: await gvisorDriver(), poolSize: 0, egress })
    session = await m.start({ egress: { mode: 'allowlist', allow: [`127.0.0.1:${web.port}`] } })
  })

  after(async () => {
    await m?.close()
    web?.server.close()
    other?.server.close()
  })

  test('Python and Node reach the allowed loopback server through the socket; the sandbox has only lo', async () => {
    const url = `http://127.0.0.1:${web.port}`
    const before = web.connections()
    const r = await viaProxy(
      session,
      `python3 -c "import socket; print(sorted(n for _, n in socket.if_nameindex()))"
python3 -c "import urllib.request; print(urllib.request.urlopen('${url}/urllib', timeout=10).read().decode())"
node -e "fetch('${url}/fetch').then((r) => r.text()).then(console.log)"`,
    )
    assert.equal(r.exitCode, 0, r.stderr)
    assert.deepEqual(r.stdout.trim().split('\n'), ["['lo']", 'hello from the host: GET /urllib', 'hello from the host: GET /fetch'])
    assert.equal(web.connections() - before, 2)
  })

  test('a port not allowed and the metadata address are refused by the proxy', async () => {
    const before = other.connections()
    const r = await viaProxy(
      session,
      `curl -s -o /dev/null -w '%{http_code}\\n' http://127.0.0.1:${other.port}/
curl -s -o /dev/null -w '%{http_code}\\n' http://169.254.169.254/latest/meta-data/`,
    )
    assert.deepEqual(r.stdout.trim().split('\n'), ['403', '403'], r.stderr)
    assert.equal(other.connections(), before)
  })

  test('a server in the session is reached through openPort while egress is on (--host-uds=all)', async () => {
    const started = await session.tasks.start(
      `exec python3 -c 'import socket\ns = socket.socket()\ns.bind(("127.0.0.1", 8080))\ns.listen(1)\nprint("up", flush=True)\nc, _ = s.accept()\nc.sendall(c.recv(100).upper())'`,
    )
    const taskId = started.structuredContent.taskId!
    for (let i = 0; (await session.tasks.read(taskId)).stdout !== 'up\n'; i++) {
      assert.ok(i < 300, 'the server did not start')
      await new Promise((r) => setTimeout(r, 50))
    }
    const stream = await session.openPort(8080)
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    const closed = new Promise((r) => stream.once('close', r))
    stream.write('ping through the relay')
    await closed
    assert.equal(Buffer.concat(chunks).toString(), 'PING THROUGH THE RELAY')
    // --host-uds=all lets the sandbox create host sockets, but not in its egress directory (root's, 0711), nor replace its egress socket.
    const r = await session.commands.run(
      `python3 -c 'import os, socket\nfor f in [lambda: socket.socket(socket.AF_UNIX).bind("/mnt/x.sock"), lambda: socket.socket(socket.AF_UNIX).bind("/mnt/egress.sock"), lambda: os.unlink("/mnt/egress.sock"), lambda: open("/mnt/x", "w")]:\n    try:\n        f()\n        print("done")\n    except OSError as e:\n        print(e.strerror)'`,
    )
    assert.equal(r.structuredContent.stdout, 'Permission denied\nAddress already in use\nPermission denied\nPermission denied\n', r.structuredContent.stderr)
  })
})
