/** http/multipart.ts: bodies as fetch's FormData writes them, split into chunks at every size, read back exactly; malformed ones refused by name. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { multipartBoundary, multipartParts } from '../src/http/multipart.ts'

async function encode(form: FormData): Promise<{ body: Buffer; boundary: string }> {
  const r = new Response(form)
  return { body: Buffer.from(await r.arrayBuffer()), boundary: multipartBoundary(r.headers.get('content-type') ?? '') }
}

async function* chunks(body: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < body.length; i += size) yield body.subarray(i, i + size)
}

async function read(body: Buffer, boundary: string, size: number, skipData = false): Promise<{ name?: string; filename?: string; data: string }[]> {
  const out: { name?: string; filename?: string; data: string }[] = []
  for await (const part of multipartParts(chunks(body, size), boundary)) {
    const parts: Buffer[] = []
    if (!skipData) for await (const c of part.data) parts.push(c)
    out.push({
      ...(part.name !== undefined ? { name: part.name } : {}),
      ...(part.filename !== undefined ? { filename: part.filename } : {}),
      data: Buffer.concat(parts).toString('latin1'),
    })
  }
  return out
}

test('parts come back exactly, whatever the chunking: fields, files, binary data that looks like a boundary, quoted names', async () => {
  const binary = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 31) % 256))
  const form = new FormData()
  form.append('note', 'a plain field')
  form.append('file', new Blob(['hello\r\n--not-the-boundary\r\n']), '/home/user/a.txt')
  form.append('file', new Blob([binary]), 'dir/"quoted"\nname.bin')
  form.append('file', new Blob([]), 'empty.txt')
  const { body, boundary } = await encode(form)
  const want = [
    { name: 'note', data: 'a plain field' },
    { name: 'file', filename: '/home/user/a.txt', data: 'hello\r\n--not-the-boundary\r\n' },
    { name: 'file', filename: 'dir/"quoted"\nname.bin', data: binary.toString('latin1') },
    { name: 'file', filename: 'empty.txt', data: '' },
  ]
  for (const size of [1, 3, 7, 64, 1000, 65_537, body.length]) assert.deepEqual(await read(body, boundary, size), want, `chunks of ${size}`)
  // Parts nobody reads are skipped.
  assert.deepEqual(
    (await read(body, boundary, 4096, true)).map((p) => p.filename),
    [undefined, '/home/user/a.txt', 'dir/"quoted"\nname.bin', 'empty.txt'],
  )
})

test('malformed bodies are refused, naming what is wrong', async () => {
  const form = new FormData()
  form.append('file', new Blob(['data']), 'x.txt')
  const { body, boundary } = await encode(form)
  await assert.rejects(read(body.subarray(0, body.length - 10), boundary, 5), /closing boundary is missing/)
  await assert.rejects(read(body, 'another-boundary', 5), /has no multipart boundary/)
  const hugeHeader = Buffer.from(`--b\r\nContent-Disposition: form-data; name="${'x'.repeat(20_000)}"\r\n\r\ndata\r\n--b--\r\n`)
  await assert.rejects(read(hugeHeader, 'b', 100), /headers are over 16384 bytes/)
  await assert.rejects(read(Buffer.from('--bXX'), 'b', 1), /must be followed by CRLF or --/)
  assert.throws(() => multipartBoundary('multipart/form-data'), /needs a boundary/)
  assert.equal(multipartBoundary('multipart/form-data; boundary="a b"'), 'a b')
})
