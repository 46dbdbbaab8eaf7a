/**
 * Bad input of issue 3: malformed JSON, wrong types, unknown tools, a missing session header,
 * 10,000-deep nesting, `__proto__` keys, a 2 GB upload, a client that never finishes its body.
 * Each is a 4xx in the error shape with a message that says what to fix; never a 500, never a
 * hung connection, and the server keeps serving everyone else.
 */
import assert from 'node:assert/strict'
import net from 'node:net'
import { test } from 'node:test'
import { LINGER_MS } from '../src/http/errors.ts'
import { expectError, expectJson, invoke, startSession, testServer, type TestServer } from './fixtures.ts'

/** Sends raw bytes and resolves with everything the server answers until it closes (or `waitMs`). */
function raw(s: TestServer, head: string, body: Buffer | string = '', waitMs = 5000): Promise<{ text: string; closed: boolean; ms: number }> {
  const { port } = new URL(s.url)
  return new Promise((resolve) => {
    const started = performance.now()
    const socket = net.connect(Number(port), '127.0.0.1')
    let text = ''
    const timer = setTimeout(() => {
      socket.destroy()
      resolve({ text, closed: false, ms: performance.now() - started })
    }, waitMs)
    socket.on('data', (d) => (text += d.toString('latin1')))
    socket.on('error', () => undefined)
    socket.on('close', () => {
      clearTimeout(timer)
      resolve({ text, closed: true, ms: performance.now() - started })
    })
    socket.write(head + '\r\n\r\n')
    if (body.length) socket.write(body)
  })
}

test('malformed JSON, wrong types, unknown fields and unknown tools are 400s that name the problem', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s)
  const cases: [string, string, RegExp][] = [
    [`/v1/sessions/${id}/invoke`, '{"name": "executeCode", ', /not valid JSON/],
    [`/v1/sessions/${id}/invoke`, '{"name": "executeCode", "arguments": {"code": 5}}', /arguments\.code: .*expected string/],
    [`/v1/sessions/${id}/invoke`, '{"name": "rm -rf", "arguments": {}}', /unknown tool "rm -rf"; use one of executeCode/],
    [`/v1/sessions/${id}/invoke`, '{"name": "executeCode", "arguments": "print(1)"}', /arguments: .*expected record/],
    [`/v1/sessions/${id}/invoke`, '[1, 2]', /body: .*expected object/],
    ['/v1/sessions', '{"timeoutSeconds": "900"}', /timeoutSeconds: .*expected number/],
    ['/v1/sessions', '{"timeoutSeconds": 0}', /timeoutSeconds: .*>=1/],
    ['/v1/sessions', '{"timeoutSecond": 900}', /unrecognized key.*timeoutSecond/i],
    ['/v1/sessions', '{"limits": {"memoryBytes": -1}}', /limits\.memoryBytes: must be between/],
  ]
  for (const [url, body, message] of cases) {
    const e = await expectError(s.call('POST', url, { body, headers: { 'content-type': 'application/json' } }), 400, 'ValidationError')
    assert.match(e.message, message, `${url} ${body}`)
  }
  const missing = await expectError(s.call('POST', '/v1/invoke', { json: { name: 'executeCode', arguments: { code: '1' } } }), 400, 'ValidationError')
  assert.match(missing.message, /x-codebox-session-id/)
  const ok = await expectJson<{ structuredContent: { stdout: string } }>(
    s.call('POST', '/v1/invoke', { json: { name: 'executeCode', arguments: { code: 'print(2)' } }, headers: { 'x-codebox-session-id': id } }),
    200,
  )
  assert.equal(ok.structuredContent.stdout, '2\n')
  await expectError(
    s.call('POST', `/v1/sessions/${id}/invoke`, { body: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
    400,
    'ValidationError',
  )
  await expectError(s.call('GET', '/v1/nothing-here'), 404, 'NotFound')
  await expectError(s.call('GET', '/v1/sessions?limit=1000'), 400, 'ValidationError')
  await expectError(s.call('GET', '/v1/sessions?nextToken=garbage'), 400, 'ValidationError')
})

test('10,000-deep nesting and __proto__ / constructor.prototype keys are refused before any handler', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s)
  const deep = `{"name":"executeCode","arguments":{"code":"1","x":${'['.repeat(10_000)}${']'.repeat(10_000)}}}`
  const e = await expectError(
    s.call('POST', `/v1/sessions/${id}/invoke`, { body: deep, headers: { 'content-type': 'application/json' } }),
    400,
    'ValidationError',
  )
  assert.match(e.message, /nested more than 10000 levels deep; at most 64/)
  for (const body of ['{"name":"executeCode","arguments":{"code":"1","__proto__":{"isAdmin":true}}}', '{"constructor":{"prototype":{"polluted":1}}}']) {
    const p = await expectError(s.call('POST', '/v1/sessions', { body, headers: { 'content-type': 'application/json' } }), 400, 'ValidationError')
    assert.match(p.message, /__proto__/)
  }
  assert.equal(({} as Record<string, unknown>).isAdmin, undefined)
})

test('a 2 GB upload is refused by its Content-Length before a byte is read, and the connection closed after the lingering bound', async (t) => {
  const s = await testServer(t)
  const id = await startSession(s)
  const r = await raw(
    s,
    `PUT /v1/sessions/${id}/files/huge.bin HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 2147483648`,
    'x'.repeat(1000),
  )
  assert.match(r.text, /^HTTP\/1\.1 413 /)
  assert.match(r.text, /"code":"LimitExceeded"/)
  assert.match(r.text, /over the 100000000-byte limit/)
  assert.ok(r.closed, 'the server closed the connection instead of reading 2 GB')
  assert.ok(
    r.ms >= LINGER_MS - 100 && r.ms < LINGER_MS + 2000,
    `closed after ${Math.round(r.ms)} ms; the lingering close waits ${LINGER_MS} ms for the rest of the body`,
  )
})

test('a chunked upload that grows past the cap is cut off with 413 and leaves no file', async (t) => {
  const s = await testServer(t, { env: { CODEBOX_MAX_UPLOAD_BYTES: String(1024 * 1024) } })
  const id = await startSession(s)
  async function* body(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 40; i++) yield new Uint8Array(64 * 1024)
  }
  const res = await fetch(`${s.url}/v1/sessions/${id}/files/big.bin`, {
    method: 'PUT',
    body: ReadableStream.from(body()),
    duplex: 'half',
    headers: { 'content-type': 'application/octet-stream' },
  } as RequestInit).catch((e: unknown) => e as Error)
  if (res instanceof Response) await expectError(res, 413, 'LimitExceeded')
  await expectError(s.call('GET', `/v1/sessions/${id}/files/big.bin`), 404, 'NotFound')
  // The session is fine.
  await expectJson(invoke(s, id, 'executeCommand', { command: 'true' }), 200)
})

test('a client still sending a refused body gets the 413, not a reset (lingering close), 40 times over', async (t) => {
  const s = await testServer(t, { env: { CODEBOX_MAX_UPLOAD_BYTES: String(256 * 1024) } })
  const id = await startSession(s)
  // fetch (undici, as the CLI and SDK use it) sends 16 MiB, more than the sockets buffer: if the
  // server closed with the body unread, the kernel would reset the connection and fetch fail with
  // EPIPE or ECONNRESET instead of reading the answer. Declared and chunked lengths both.
  for (let i = 0; i < 40; i++) {
    const declared = i % 2 === 0
    async function* body(): AsyncGenerator<Uint8Array> {
      for (let k = 0; k < 256; k++) yield new Uint8Array(64 * 1024)
    }
    const res = await fetch(`${s.url}/v1/sessions/${id}/files/big.bin`, {
      method: 'PUT',
      body: ReadableStream.from(body()),
      duplex: 'half',
      headers: { 'content-type': 'application/octet-stream', ...(declared ? { 'content-length': String(16 << 20) } : {}) },
    } as RequestInit).catch((e: unknown) => e as Error)
    assert.ok(res instanceof Response, `attempt ${i} (${declared ? 'Content-Length' : 'chunked'}): ${String((res as Error).cause ?? res)}`)
    const e = await expectError(res, 413, 'LimitExceeded')
    assert.match(e.message, /over the 262144-byte limit/)
  }
  await expectError(s.call('GET', `/v1/sessions/${id}/files/big.bin`), 404, 'NotFound')
  await expectJson(invoke(s, id, 'executeCommand', { command: 'true' }), 200)
})

test('a client that never finishes its body gets 408 with the error shape; others are served meanwhile', async (t) => {
  const s = await testServer(t, { env: { CODEBOX_BODY_IDLE_TIMEOUT_MS: '700' } })
  const id = await startSession(s)
  const slowJson = raw(
    s,
    `POST /v1/sessions/${id}/invoke HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000`,
    '{"name": "execu',
  )
  const slowUpload = raw(s, `PUT /v1/sessions/${id}/files/slow.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000`, 'abc')
  const other = await expectJson<{ structuredContent: { stdout: string } }>(invoke(s, id, 'executeCode', { code: 'print("served")' }), 200)
  assert.equal(other.structuredContent.stdout, 'served\n')
  // A body of a type no route takes is refused at once, stalled or not.
  const slowText = await raw(s, `POST /v1/sessions HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 1000`, 'abc', 3000)
  assert.match(slowText.text, /^HTTP\/1\.1 400 [\s\S]*content-type/)
  for (const r of [await slowJson, await slowUpload]) {
    assert.match(r.text, /^HTTP\/1\.1 408 /, r.text)
    assert.match(r.text, /"code":"RequestTimeout"/)
    assert.match(r.text, /sent nothing for 700 ms/)
    assert.ok(r.closed && r.ms < 4000, `closed after ${r.ms} ms`)
  }
  await expectError(s.call('GET', `/v1/sessions/${id}/files/slow.bin`), 404, 'NotFound')
})
