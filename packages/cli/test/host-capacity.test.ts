/** The CLI's exit code for a start the server's machine has no room for: 71, its own. */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'

const bin = path.join(fileURLToPath(new URL('../bin/codebox', import.meta.url)))

test('sessions start refused with 503 HostCapacity exits 71 after one request and prints the code', { timeout: 60_000 }, async (t) => {
  let requests = 0
  const server = createServer((req, res) => {
    requests++
    req.resume()
    res.writeHead(503, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ error: { code: 'HostCapacity', message: 'the host has no room for this session', details: {}, requestId: 'r1' } }))
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => server.close())
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const child = spawn(bin, ['sessions', 'start'], { env: { ...process.env, CODEBOX_URL: url, CODEBOX_API_KEY: '' }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  const [code] = (await once(child, 'exit')) as [number]
  assert.equal(code, 71, stderr)
  assert.match(stderr, /HostCapacity/)
  assert.equal(requests, 1, 'not retried')
})
