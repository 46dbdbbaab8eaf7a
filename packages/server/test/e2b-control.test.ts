/**
 * The E2B control plane's rules on the fake driver: an open loopback server takes any key, a server
 * beyond loopback without keys takes none; validation in E2B's error shape; the timeout clamped to
 * the interpreter's maximum; connect only ever extends it; list's filters.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { gzipSync } from 'node:zlib'
import { AuthenticationError, Sandbox } from 'e2b'
import { testServer } from './fixtures.ts'

const opts = (url: string, apiKey = 'anything-at-all') => ({ apiKey, apiUrl: url, sandboxUrl: url })

test('an open loopback server takes any E2B API key (the SDK insists on one); beyond loopback without keys, none', async (t) => {
  const s = await testServer(t)
  const sbx = await Sandbox.create(opts(s.url))
  await sbx.files.write('open.txt', 'open')
  assert.equal(await sbx.files.read('open.txt'), 'open')
  assert.equal((await s.store.sessions.get(sbx.sandboxId, 'default'))?.status, 'READY', 'the open server’s tenant owns it')
  const byKey = await fetch(`${s.url}/files?path=open.txt`, {
    headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49983', 'X-API-Key': 'whatever' },
  })
  assert.equal(await byKey.text(), 'open')
  assert.equal(await sbx.kill(), true)

  const exposed = await testServer(t, { loopbackOnly: false })
  await assert.rejects(Sandbox.create(opts(exposed.url)), (e: Error) => e instanceof AuthenticationError && /no API keys/.test(e.message))
})

test('bad requests are 400 {code, message} naming the field; the timeout is clamped to the interpreter’s maximum', async (t) => {
  const s = await testServer(t)
  const post = (body: unknown): Promise<Response> =>
    fetch(`${s.url}/v2/sandboxes`, { method: 'POST', headers: { 'X-API-Key': 'k', 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const missing = await post({ timeout: 10 })
  assert.equal(missing.status, 400)
  const body = (await missing.json()) as { code: number; message: string }
  assert.equal(body.code, 400)
  assert.match(body.message, /body\.templateID/)
  assert.match(((await (await post({ templateID: 'base', timeout: -5 })).json()) as { message: string }).message, /body\.timeout/)
  assert.match(((await (await post({ templateID: 'base', metadata: { k: 7 } })).json()) as { message: string }).message, /body\.metadata/)

  const long = await Sandbox.create({ ...opts(s.url), timeoutMs: 3 * 24 * 3600_000 })
  const info = await long.getInfo()
  assert.equal(info.endAt.getTime() - info.startedAt.getTime(), 8 * 3600_000, 'three days asked, the interpreter’s 8 h given')

  const state = await fetch(`${s.url}/v2/sandboxes?state=sleeping`, { headers: { 'X-API-Key': 'k' } })
  assert.equal(state.status, 400)
  assert.match(((await state.json()) as { message: string }).message, /query\.state: must be running or paused/)
})

test('connect only ever extends the timeout; list filters by template and start time', async (t) => {
  const s = await testServer(t)
  const sbx = await Sandbox.create('code-interpreter-v1', { ...opts(s.url), timeoutMs: 600_000 })
  const first = (await sbx.getInfo()).endAt.getTime()
  await Sandbox.connect(sbx.sandboxId, { ...opts(s.url), timeoutMs: 5_000 })
  assert.equal((await sbx.getInfo()).endAt.getTime(), first, 'a shorter timeout on connect leaves the end')
  await Sandbox.connect(sbx.sandboxId, { ...opts(s.url), timeoutMs: 3600_000 })
  assert.ok((await sbx.getInfo()).endAt.getTime() > first + 2000_000, 'a longer one extends it')
  assert.equal((await sbx.getInfo()).templateId, 'code-interpreter-v1')
  assert.equal((await s.store.sessions.get(sbx.sandboxId, 'default'))!.interpreterId, 'codebox.v1', 'the default templates start the built-in interpreter')

  const other = await Sandbox.create(opts(s.url))
  const byTemplate = await Sandbox.list({ ...opts(s.url), query: { template: 'code-interpreter-v1' } }).nextItems()
  assert.deepEqual(
    byTemplate.map((x) => x.sandboxId),
    [sbx.sandboxId],
  )
  const later = await Sandbox.list({ ...opts(s.url), query: { startedAfter: (await sbx.getInfo()).startedAt } }).nextItems()
  assert.deepEqual(
    later.map((x) => x.sandboxId),
    [other.sandboxId],
  )
  const oldestFirst = await Sandbox.list({ ...opts(s.url), order: 'asc' }).nextItems()
  assert.deepEqual(
    oldestFirst.map((x) => x.sandboxId),
    [sbx.sandboxId, other.sandboxId],
  )
})

test('uploads: a template is an interpreter (its file limit holds, also for gzip that unpacks past it); bad bodies are 400, oversized ones 413', async (t) => {
  const s = await testServer(t, { env: { CODEBOX_MAX_UPLOAD_BYTES: '100000' } })
  const small = await s.store.interpreters.create({ tenant: 'default', name: 'small-files', image: 'default', limits: { fileBytes: 1000 } })
  const sbx = await Sandbox.create(small.interpreterId, opts(s.url))
  assert.equal((await sbx.getInfo()).templateId, small.interpreterId)
  const token = (sbx as unknown as { envdAccessToken: string }).envdAccessToken
  const upload = (body: RequestInit['body'], headers: Record<string, string>, query = '?path=f.bin'): Promise<Response> =>
    fetch(`${s.url}/files${query}`, {
      method: 'POST',
      headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49983', 'X-Access-Token': token, ...headers },
      body,
    })
  const message = async (r: Response, status: number): Promise<string> => {
    assert.equal(r.status, status)
    const body = (await r.json()) as { code: number; message: string }
    assert.equal(body.code, status)
    return body.message
  }
  const octet = { 'content-type': 'application/octet-stream' }
  assert.equal((await upload(new Uint8Array(900), octet)).status, 200, 'within the interpreter’s 1000-byte file limit')
  assert.match(await message(await upload(new Uint8Array(2000), octet), 413), /1000-byte file limit/)
  const bomb = gzipSync(Buffer.alloc(50_000))
  assert.ok(bomb.length < 1000)
  assert.match(await message(await upload(bomb, { ...octet, 'content-encoding': 'gzip' }), 413), /over the 1000-byte file limit/)
  assert.match(await message(await upload(Buffer.from('not gzip at all'), { ...octet, 'content-encoding': 'gzip' }), 400), /not valid gzip/)
  assert.match(await message(await upload(new Uint8Array(10), { ...octet, 'content-encoding': 'br' }), 400), /content-encoding: must be gzip or none/)
  assert.match(await message(await upload(new Uint8Array(200_000), octet), 413), /over/)
  assert.match(
    await message(await upload('x', { 'content-type': 'text/plain' }), 400),
    /content-type: must be multipart\/form-data or application\/octet-stream/,
  )
  const noFile = new FormData()
  noFile.append('note', 'just text')
  assert.match(await message(await upload(noFile, {}), 400), /no file part/)
  assert.match(await message(await upload(new Uint8Array(1), octet, ''), 400), /path: is required/)
  assert.deepEqual(
    [...(await s.engine.find(sbx.sandboxId)!.files.list(''))].map((e) => e.path),
    ['f.bin'],
    'only the upload within the limit was written',
  )
})
