import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { CodeInterpreter, LimitExceededError, UnavailableError, ValidationError } from '../src/index.ts'
import { downloadFileToPath, uploadFileFromPath } from '../src/node.ts'
import { sendError, sendJson, startServer, type Recorded } from './fake-server.ts'

/** Answers uploads with `{path, size}` from what arrived. */
const acceptUpload = (req: Recorded, res: Parameters<typeof sendJson>[0]): void =>
  sendJson(res, 201, { path: decodeURIComponent(req.url.split('/files/')[1] ?? ''), size: req.body.length })

const bytes = Uint8Array.of(0, 1, 2, 200, 255)

function streamOf(...chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(c)
      controller.close()
    },
  })
}

test('uploadFile sends each body type as raw bytes', async () => {
  await using server = await startServer(acceptUpload)
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1' })
  const padded = new Uint8Array([9, 9, ...bytes, 9])
  const cases: [string, Parameters<CodeInterpreter['uploadFile']>[1], Buffer][] = [
    ['string', 'héllo', Buffer.from('héllo')],
    ['Uint8Array', bytes, Buffer.from(bytes)],
    ['Uint8Array view', padded.subarray(2, 7), Buffer.from(bytes)],
    ['ArrayBuffer', bytes.slice().buffer, Buffer.from(bytes)],
    ['Blob', new Blob([bytes, 'x']), Buffer.concat([Buffer.from(bytes), Buffer.from('x')])],
    ['ReadableStream', streamOf(bytes.subarray(0, 2), bytes.subarray(2)), Buffer.from(bytes)],
  ]
  for (const [name, data, expected] of cases) {
    const written = await ci.uploadFile(`up/${name}.bin`, data)
    const req = server.requests.at(-1)!
    assert.deepEqual(req.body, expected, name)
    assert.equal(req.method, 'PUT')
    assert.equal(req.headers['content-type'], 'application/octet-stream', name)
    assert.deepEqual(written, { path: `up/${name}.bin`, size: expected.length }, name)
  }
  // Only the stream went chunked; the others were sent with their length.
  assert.equal(server.requests.at(-1)!.headers['transfer-encoding'], 'chunked')
  assert.equal(server.requests[0]!.headers['content-length'], String(Buffer.byteLength('héllo')))
})

test('file paths are encoded per segment with / kept; . and .. are refused locally', async () => {
  await using server = await startServer(acceptUpload)
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1' })
  await ci.uploadFile('my dir/a#b?c%.txt', 'x')
  assert.equal(server.requests[0]!.url, '/v1/sessions/s1/files/my%20dir/a%23b%3Fc%25.txt')
  await assert.rejects(ci.uploadFile('../etc/passwd', 'x'), ValidationError)
  await assert.rejects(ci.downloadFile('a/./b'), ValidationError)
  await assert.rejects(ci.deleteFile(''), ValidationError)
  assert.equal(server.requests.length, 1)
})

test('a replayable upload is retried on 503; a stream upload is not', async () => {
  let calls = 0
  await using server = await startServer((req, res) => (calls++ % 2 === 0 ? sendError(res, 503, 'Unavailable', 'busy') : acceptUpload(req, res)))
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1' })
  assert.deepEqual(await ci.uploadFile('a.bin', new Blob([bytes])), { path: 'a.bin', size: 5 })
  assert.equal(server.requests.length, 2)
  assert.deepEqual(server.requests[1]!.body, Buffer.from(bytes))
  await assert.rejects(ci.uploadFile('b.bin', streamOf(bytes)), UnavailableError)
  assert.equal(server.requests.length, 3)
})

test('413 over the cap is LimitExceededError', async () => {
  await using server = await startServer((_req, res) => sendError(res, 413, 'LimitExceeded', 'file is over the 100000000-byte limit'))
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1' })
  await assert.rejects(ci.uploadFile('big.bin', new Uint8Array(1000)), LimitExceededError)
})

test('downloads: bytes, stream with size and MIME type; listing and delete', async () => {
  await using server = await startServer((req, res) => {
    if (req.method === 'GET' && req.url.includes('/files/')) {
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(bytes.length) })
      return void res.end(Buffer.from(bytes))
    }
    if (req.method === 'GET')
      return sendJson(res, 200, { items: [{ path: 'a.png', name: 'a.png', type: 'file', size: 5, mimeType: 'image/png', modifiedAt: 'now' }] })
    res.writeHead(204).end()
  })
  const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1' })
  assert.deepEqual(await ci.downloadFile('img/a.png'), bytes)
  const opened = await ci.downloadFileStream('img/a.png')
  assert.equal(opened.size, 5)
  assert.equal(opened.mimeType, 'image/png')
  assert.deepEqual(new Uint8Array(await new Response(opened.stream).arrayBuffer()), bytes)
  const listing = await ci.listFileEntries('img', { recursive: true })
  assert.equal(listing.items[0]?.name, 'a.png')
  assert.equal(await ci.deleteFile('img', { recursive: true }), undefined)
  assert.deepEqual(
    server.requests.map((r) => `${r.method} ${r.url}`),
    [
      'GET /v1/sessions/s1/files/img/a.png',
      'GET /v1/sessions/s1/files/img/a.png',
      'GET /v1/sessions/s1/files?path=img&recursive=true',
      'DELETE /v1/sessions/s1/files/img?recursive=true',
    ],
  )
})

test('node: uploadFileFromPath streams a local file; downloadFileToPath writes atomically', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'codebox-sdk-'))
  try {
    const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => i % 251)
    await writeFile(join(dir, 'data.bin'), big)
    let stored: Buffer = Buffer.alloc(0)
    await using server = await startServer((req, res) => {
      if (req.method === 'PUT') {
        stored = req.body
        return acceptUpload(req, res)
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(stored.length) })
      res.end(stored)
    })
    const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1' })
    assert.deepEqual(await uploadFileFromPath(ci, join(dir, 'data.bin')), { path: 'data.bin', size: big.length })
    assert.equal(server.requests[0]!.headers['transfer-encoding'], 'chunked')
    assert.deepEqual(stored, Buffer.from(big))
    const out = join(dir, 'out', 'copy.bin')
    assert.deepEqual(await downloadFileToPath(ci, 'data.bin', out), { path: out, size: big.length, mimeType: 'application/octet-stream' })
    assert.deepEqual(await readFile(out), Buffer.from(big))
    assert.deepEqual(await readdir(join(dir, 'out')), ['copy.bin'])
    await assert.rejects(uploadFileFromPath(ci, join(dir, 'missing.bin')), /ENOENT/)
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})

test('node: a failed download leaves the old file and no temporary file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'codebox-sdk-'))
  try {
    await using server = await startServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' })
      res.write('partial')
      setTimeout(() => res.destroy(), 20)
    })
    const ci = new CodeInterpreter({ baseUrl: server.url, sessionId: 's1' })
    const out = join(dir, 'keep.txt')
    await writeFile(out, 'old')
    await assert.rejects(downloadFileToPath(ci, 'x.txt', out), UnavailableError)
    assert.equal(await readFile(out, 'utf8'), 'old')
    assert.deepEqual(await readdir(dir), ['keep.txt'])
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
})
