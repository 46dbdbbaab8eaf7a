/**
 * The unmodified `e2b` SDK against a real codebox (bwrap driver), pointed at it with E2B_API_URL
 * and E2B_SANDBOX_URL and a codebox API key: create, files write/read, setTimeout, getInfo, list,
 * connect, kill; sandbox.pty (a shell in a terminal); tenancy (another tenant's sandbox is not
 * found) and errors, as the SDK reports them.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { CommandExitError, FileNotFoundError, InvalidArgumentError, NotFoundError, Sandbox, SandboxError, SandboxNotFoundError, type SandboxOpts } from 'e2b'
import { e2bServer } from './e2b-fixtures.ts'
import { waitUntil } from './fixtures.ts'

describe('the e2b SDK against codebox', () => {
  // The two variables an E2B user sets (e2b-fixtures.ts); nothing else is changed in the SDK.
  const e2b = e2bServer({ name: 'e2b', tenants: ['acme', 'other'] })
  const keys = e2b.keys as { acme: string; other: string }
  const create = (key: string, opts: SandboxOpts = {}): Promise<Sandbox> => Sandbox.create({ apiKey: key, ...opts })
  const envd = (id: string, urlPath: string, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${e2b.server.url}${urlPath}`, { headers: { 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': '49983', ...headers } })

  test('create, write and read files (multipart, octet-stream, gzip, bytes, many at once), in /home/user = /workspace', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    const sbx = await create(keys.acme, { metadata: { purpose: 'files' } })
    assert.match(sbx.sandboxId, /^[0-9a-z]{26}$/)
    const written = await sbx.files.write('hello.txt', 'hello from e2b')
    assert.deepEqual({ name: written.name, type: written.type, path: written.path }, { name: 'hello.txt', type: 'file', path: '/home/user/hello.txt' })
    assert.equal(await sbx.files.read('hello.txt'), 'hello from e2b')
    assert.equal(await sbx.files.read('/home/user/hello.txt'), 'hello from e2b', 'the home directory is the workspace')
    const session = e2b.server.engine.find(sbx.sandboxId)!
    assert.equal((await session.files.read('hello.txt')).toString(), 'hello from e2b', 'the session’s own workspace holds it')

    const bytes = Uint8Array.from({ length: 70_000 }, (_, i) => (i * 7) % 256)
    await sbx.files.write('/home/user/deep/dir/data.bin', bytes.buffer, { useOctetStream: true })
    assert.deepEqual(await sbx.files.read('deep/dir/data.bin', { format: 'bytes' }), bytes)
    await sbx.files.write('zipped.txt', 'x'.repeat(100_000), { gzip: true })
    assert.equal((await session.files.read('zipped.txt')).length, 100_000, 'a gzip upload is unpacked')

    const many = await sbx.files.write([
      { path: 'a.txt', data: 'A' },
      { path: '/home/user/sub/b.txt', data: 'B' },
    ])
    assert.deepEqual(
      many.map((f) => f.path),
      ['/home/user/a.txt', '/home/user/sub/b.txt'],
    )
    assert.equal(await sbx.files.read('sub/b.txt'), 'B')
    assert.equal((await envd(sbx.sandboxId, '/health', { 'X-Access-Token': '' })).status, 502, 'an empty token is no token of this sandbox')
  })

  test('a sandbox’s own envs reach every command, under what a command sets; they are kept sealed', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    const sbx = await create(keys.acme, { envs: { GREETING: 'hello', API_TOKEN: 's3cr3t-token' } })
    assert.equal((await sbx.commands.run('echo "$GREETING $API_TOKEN"')).stdout, 'hello s3cr3t-token\n')
    assert.equal((await sbx.commands.run('echo "$GREETING"', { envs: { GREETING: 'overridden' } })).stdout, 'overridden\n')
    const again = await Sandbox.connect(sbx.sandboxId, { apiKey: keys.acme })
    assert.equal((await again.commands.run('printenv GREETING')).stdout, 'hello\n', 'a reconnected SDK still finds them')
    const record = await e2b.server.sessions.recordOf({ tenant: 'acme' }, sbx.sandboxId)
    assert.match(record.e2b?.envs ?? '', /^v1\./, 'the record holds them sealed')
    assert.doesNotMatch(JSON.stringify(record), /s3cr3t-token/)
    const plain = await create(keys.acme)
    assert.equal((await plain.commands.run('printenv GREETING || echo unset')).stdout, 'unset\n', 'another sandbox does not get them')
    const marked = await plain.commands.run('echo "$E2B_SANDBOX $E2B_SANDBOX_ID"')
    assert.equal(marked.stdout, `true ${plain.sandboxId}\n`, 'E2B’s own variables, as its SDK tests expect')
  })

  test('file errors as the SDK reports them: missing file, root, outside the workspace', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    const sbx = await create(keys.acme)
    await assert.rejects(sbx.files.read('nope.txt'), FileNotFoundError)
    await assert.rejects(
      sbx.files.read('hello.txt', { user: 'root' }),
      (e: Error) => e instanceof InvalidArgumentError && /root is not available/.test(e.message),
    )
    await assert.rejects(sbx.files.write('x.txt', 'x', { user: 'root' }), InvalidArgumentError)
    await assert.rejects(sbx.files.read('/etc/passwd'), (e: Error) => e instanceof InvalidArgumentError || e instanceof FileNotFoundError)
  })

  test('getInfo, setTimeout, list (metadata, template, pages), connect, kill', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    const a = await create(keys.acme, { metadata: { team: 'red', n: '1' }, timeoutMs: 120_000 })
    const b = await create(keys.acme, { metadata: { team: 'blue' } })
    const info = await a.getInfo()
    assert.equal(info.sandboxId, a.sandboxId)
    assert.equal(info.templateId, 'base')
    assert.equal(info.state, 'running')
    assert.equal(info.envdVersion, '0.5.7')
    assert.deepEqual(info.metadata, { team: 'red', n: '1' })
    assert.ok(Math.abs(info.endAt.getTime() - (info.startedAt.getTime() + 120_000)) < 5000, `endAt ${info.endAt.toISOString()} is the 2-minute timeout`)
    assert.ok(info.cpuCount >= 1 && info.memoryMB > 0)

    await a.setTimeout(600_000)
    const moved = await Sandbox.getInfo(a.sandboxId, { apiKey: keys.acme })
    assert.ok(Math.abs(moved.endAt.getTime() - (Date.now() + 600_000)) < 5000, 'setTimeout moved the end to 10 minutes from now')
    assert.equal(e2b.server.engine.find(a.sandboxId)!.endsAt.getTime(), moved.endAt.getTime(), 'the session’s lifetime timer agrees')

    const all = await Sandbox.list({ apiKey: keys.acme }).nextItems()
    const ids = all.map((s) => s.sandboxId)
    assert.ok(ids.includes(a.sandboxId) && ids.includes(b.sandboxId))
    const red = await Sandbox.list({ apiKey: keys.acme, query: { metadata: { team: 'red' } } }).nextItems()
    assert.deepEqual(
      red.map((s) => s.sandboxId),
      [a.sandboxId],
    )
    const paused = await Sandbox.list({ apiKey: keys.acme, query: { state: ['paused'] } }).nextItems()
    assert.deepEqual(paused, [])
    const pager = Sandbox.list({ apiKey: keys.acme, limit: 1 })
    const seen: string[] = []
    while (pager.hasNext) seen.push(...(await pager.nextItems()).map((s) => s.sandboxId))
    assert.deepEqual([...seen].sort(), [...ids].sort(), 'pages of one walk the whole list once')

    // connect: another client of the same sandbox, with its files; connecting never shortens the timeout.
    await a.files.write('shared.txt', 'seen by both')
    const again = await Sandbox.connect(a.sandboxId, { apiKey: keys.acme, timeoutMs: 5_000 })
    assert.equal(await again.files.read('shared.txt'), 'seen by both')
    assert.equal((await again.getInfo()).endAt.getTime(), moved.endAt.getTime())

    assert.equal(await again.kill(), true)
    await assert.rejects(Sandbox.getInfo(a.sandboxId, { apiKey: keys.acme }), SandboxNotFoundError)
    assert.equal(await Sandbox.kill(a.sandboxId, { apiKey: keys.acme }), false, 'a killed sandbox is not found')
    assert.equal(await a.isRunning(), false, 'its envd is gone: the proxy answers 502')
    await assert.rejects(a.files.read('shared.txt'))
    await waitUntil(async () => (await e2b.server.store.sessions.get(a.sandboxId, 'acme'))?.status === 'TERMINATED', 'the session to be recorded ended')
  })

  test('a sandbox ends at its timeout', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    const sbx = await create(keys.acme, { timeoutMs: 2_000 })
    assert.equal(await sbx.isRunning(), true)
    await waitUntil(async () => (await e2b.server.store.sessions.get(sbx.sandboxId, 'acme'))?.status === 'TERMINATED', 'the sandbox to time out', 15_000)
    assert.equal((await e2b.server.store.sessions.get(sbx.sandboxId, 'acme'))!.endReason, 'max-lifetime')
    assert.equal(await sbx.isRunning(), false)
  })

  test('tenancy: another tenant’s sandbox is not found, by API key or by its own access token', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    const sbx = await create(keys.acme)
    await sbx.files.write('secret.txt', 'acme only')
    await assert.rejects(Sandbox.getInfo(sbx.sandboxId, { apiKey: keys.other }), SandboxNotFoundError)
    await assert.rejects(Sandbox.connect(sbx.sandboxId, { apiKey: keys.other }), NotFoundError)
    await assert.rejects(Sandbox.setTimeout(sbx.sandboxId, 1000, { apiKey: keys.other }), SandboxNotFoundError)
    assert.equal(await Sandbox.kill(sbx.sandboxId, { apiKey: keys.other }), false)
    assert.ok(!(await Sandbox.list({ apiKey: keys.other }).nextItems()).some((s) => s.sandboxId === sbx.sandboxId))

    // Sandbox traffic: the other tenant's token (of its own sandbox) or key reaches nothing; no credential is a 401.
    const theirs = await create(keys.other)
    const theirToken = (theirs as unknown as { envdAccessToken: string }).envdAccessToken
    const read = `/files?path=secret.txt`
    assert.equal((await envd(sbx.sandboxId, read, { 'X-Access-Token': theirToken })).status, 502)
    assert.equal((await envd(sbx.sandboxId, read, { 'X-API-Key': keys.other })).status, 502)
    assert.equal((await envd(sbx.sandboxId, read)).status, 401)
    const own = await envd(sbx.sandboxId, read, { 'X-API-Key': keys.acme })
    assert.equal(own.status, 200, 'the tenant’s own API key reaches its sandbox')
    assert.equal(await own.text(), 'acme only')
    assert.equal(await sbx.isRunning(), true, 'nothing of this touched the sandbox')
  })

  test('sandbox.pty: a login shell in a terminal, typed into, resized, followed again, killed', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    const sbx = await create(keys.acme)
    const decoder = new TextDecoder()
    let screen = ''
    const term = await sbx.pty.create({ cols: 80, rows: 24, envs: { GREETING: 'hi' }, cwd: '/home/user', onData: (d) => void (screen += decoder.decode(d)) })
    assert.ok(term.pid > 0)
    const typed = async (input: string, shows: RegExp, what: string): Promise<void> => {
      const from = screen.length
      await sbx.pty.sendInput(term.pid, new TextEncoder().encode(input))
      await waitUntil(() => shows.test(screen.slice(from)), `${what}; the screen: ${JSON.stringify(screen.slice(-400))}`, 20_000)
    }
    await typed('echo $((6*7))\n', /^42\r$/m, 'the answer')
    await typed('stty size\n', /^24 80\r$/m, 'the size it was created with')
    await sbx.pty.resize(term.pid, { cols: 100, rows: 30 })
    await typed('stty size\n', /^30 100\r$/m, 'the new size')
    await typed('tty; echo "$TERM $GREETING $PWD"\n', /^\/dev\/pts\/\d+\r\n(.*\r\n)?xterm-256color hi \/workspace\r$/m, 'the terminal, TERM, envs and cwd')

    // Followed again from another handle: the same terminal's output, as pty data.
    await term.disconnect()
    let followed = ''
    const again = await sbx.pty.connect(term.pid, { onData: (d) => void (followed += decoder.decode(d)) })
    await sbx.pty.sendInput(term.pid, new TextEncoder().encode('echo followed\n'))
    await waitUntil(() => /^followed\r$/m.test(followed), 'output through pty.connect', 20_000)

    assert.equal(await sbx.pty.kill(term.pid), true)
    await assert.rejects(again.wait(), (e: unknown) => e instanceof CommandExitError && e.exitCode === -1 && e.error === 'signal: killed')
    assert.equal(await sbx.pty.kill(term.pid), false, 'an ended terminal is not found')
    await assert.rejects(sbx.pty.resize(term.pid, { cols: 80, rows: 24 }), (e: unknown) => e instanceof NotFoundError)
  })

  test('errors: bad key, unknown template, what codebox does not do, internal paths without the headers', async (t) => {
    if (e2b.skip) return t.skip(e2b.skip)
    await assert.rejects(Sandbox.create({ apiKey: 'cbx_not_a_key' }), (e: Error) => /Unauthorized/.test(e.message) && /not valid/.test(e.message))
    await assert.rejects(
      Sandbox.create('no-such-template', { apiKey: keys.acme }),
      (e: Error) => e instanceof SandboxError && /no template "no-such-template"/.test(e.message),
    )
    await assert.rejects(
      Sandbox.create({ apiKey: keys.acme, envs: { 'NOT-A-NAME': '1' } }),
      (e: Error) => /envVars\.NOT-A-NAME/.test(e.message) && /not a variable name/.test(e.message),
    )
    await assert.rejects(Sandbox.create({ apiKey: keys.acme, lifecycle: { onTimeout: 'pause' } }), (e: Error) => /does not pause/.test(e.message))
    const sbx = await create(keys.acme)
    await assert.rejects(sbx.pause(), (e: Error) => /does not pause/.test(e.message))
    const templates = await fetch(`${e2b.server.url}/templates`, { headers: { 'X-API-KEY': keys.acme } })
    assert.equal(templates.status, 404)
    assert.match(((await templates.json()) as { message: string }).message, /no route GET \/templates/, 'a route codebox lacks, in E2B’s error shape')
    const direct = await fetch(`${e2b.server.url}/e2b/envd/health`)
    assert.equal(direct.status, 404, 'the internal prefix answers nothing without the E2B headers')
    const otherPort = await fetch(`${e2b.server.url}/`, {
      headers: {
        'E2b-Sandbox-Id': sbx.sandboxId,
        'E2b-Sandbox-Port': '8080',
        'X-Access-Token': (sbx as unknown as { envdAccessToken: string }).envdAccessToken,
      },
    })
    assert.equal(otherPort.status, 502)
    assert.match(((await otherPort.json()) as { message: string }).message, /not port 8080/)
  })
})
