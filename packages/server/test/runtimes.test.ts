/**
 * The runtime registry over HTTP (native API) and through the AWS SDK's control-plane client:
 * uploads and their limit, deploys and versions, DEFAULT following the latest and a rollback's pin,
 * tenancy, deletes, secrets, hostile bundles refused with nothing left behind, and bundleDir.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { describe, test } from 'node:test'
import {
  BedrockAgentCoreControlClient,
  CreateAgentRuntimeCommand,
  DeleteAgentRuntimeCommand,
  GetAgentRuntimeCommand,
  GetAgentRuntimeEndpointCommand,
  ListAgentRuntimeEndpointsCommand,
  ListAgentRuntimesCommand,
  ListAgentRuntimeVersionsCommand,
  ResourceNotFoundException,
  ValidationException,
} from '@aws-sdk/client-bedrock-agentcore-control'
import { expectError, expectJson, testServer, type TestServer } from './fixtures.ts'
import { agentBundle, rawTarGz, type RawEntry } from './runtime-fixtures.ts'

type Runtime = {
  agentRuntimeArn: string
  agentRuntimeId: string
  agentRuntimeVersion: string
  latestVersion: string
  pinned: boolean
  settings?: Record<string, unknown>
}

async function upload(s: TestServer, bytes: Buffer, key?: string): Promise<string> {
  const res = await s.call('POST', '/v1/runtime-bundles', { body: bytes, headers: { 'content-type': 'application/gzip' }, key })
  const body = await expectJson<{ bundleId: string; sha256: string; bytes: number }>(res, 201)
  assert.equal(body.bytes, bytes.length)
  return body.bundleId
}

async function deploy(s: TestServer, body: Record<string, unknown>, bytes = agentBundle(), key?: string): Promise<Runtime> {
  const bundleId = await upload(s, bytes, key)
  return expectJson<Runtime>(s.call('POST', '/v1/runtimes', { json: { bundleId, ...body }, key }), 201)
}

describe('runtime registry (native API)', () => {
  test('deploy, versions, DEFAULT follows the latest, rollback pins, a new deploy moves DEFAULT again', async (t) => {
    const s = await testServer(t)
    const v1 = await deploy(s, { name: 'weather', idleTimeoutSeconds: 120, protocol: 'HTTP', description: 'first' })
    assert.match(v1.agentRuntimeId, /^weather-[0-9A-Za-z]{10}$/)
    assert.match(v1.agentRuntimeArn, new RegExp(`^arn:aws:bedrock-agentcore:us-east-1:\\d{12}:runtime/${v1.agentRuntimeId}$`))
    assert.equal(v1.agentRuntimeVersion, '1')
    assert.deepEqual(v1.settings, {
      entrypoint: 'index.js',
      language: 'node',
      protocol: 'HTTP',
      network: { mode: 'SANDBOX' },
      idleTimeoutSeconds: 120,
      maxLifetimeSeconds: 28800,
      limits: {},
    })
    // Same name again: version 2, settings not given carried over.
    const v2 = await deploy(s, { name: 'weather', maxLifetimeSeconds: 600 }, agentBundle('v2'))
    assert.equal(v2.agentRuntimeId, v1.agentRuntimeId)
    assert.equal(v2.agentRuntimeVersion, '2')
    assert.equal(v2.settings?.idleTimeoutSeconds, 120)
    assert.equal(v2.settings?.maxLifetimeSeconds, 600)

    const versions = await expectJson<{ items: { agentRuntimeVersion: string; bundle: { sha256: string } }[] }>(
      s.call('GET', `/v1/runtimes/${v1.agentRuntimeId}/versions`),
      200,
    )
    assert.deepEqual(
      versions.items.map((v) => v.agentRuntimeVersion),
      ['2', '1'],
    )
    assert.notEqual(versions.items[0]!.bundle.sha256, versions.items[1]!.bundle.sha256)

    const rolled = await expectJson<Runtime>(s.call('POST', `/v1/runtimes/weather/rollback`, { json: { version: 1 } }), 200)
    assert.equal(rolled.agentRuntimeVersion, '1')
    assert.equal(rolled.pinned, true)
    assert.equal((await s.runtimes.resolve({ tenant: 'default' }, 'weather')).version.version, 1)
    assert.equal((await s.runtimes.resolve({ tenant: 'default' }, v1.agentRuntimeArn, '2')).version.version, 2)
    await assert.rejects(s.runtimes.resolve({ tenant: 'default' }, 'weather', '7'), /no version 7/)
    await assert.rejects(s.runtimes.resolve({ tenant: 'default' }, 'weather', 'prod'), /no endpoint "prod"/)
    await expectError(s.call('POST', `/v1/runtimes/weather/rollback`, { json: { version: 9 } }), 404, 'NotFound')

    // A deploy after a rollback moves DEFAULT to the new version, as on AWS.
    const v3 = await deploy(s, { name: 'weather' }, agentBundle('v3'))
    assert.equal(v3.agentRuntimeVersion, '3')
    assert.equal(v3.pinned, false)
    const got = await expectJson<Runtime>(s.call('GET', `/v1/runtimes/${encodeURIComponent(v1.agentRuntimeArn)}`), 200)
    assert.equal(got.agentRuntimeVersion, '3')

    // The code of each version is unpacked on the host, readable, under the state dir.
    const { runtime, version } = await s.runtimes.resolve({ tenant: 'default' }, 'weather', '1')
    const dir = await s.runtimes.bundleDir(runtime, version)
    assert.equal(dir, path.join(s.runtimes.cacheDir, runtime.runtimeId, '1'))
    assert.equal(fs.readFileSync(path.join(dir, 'index.js'), 'utf8'), 'console.log("v1")\n')
    assert.equal(fs.statSync(path.join(dir, 'index.js')).mode & 0o777, 0o644)
    assert.equal(fs.statSync(path.join(dir, 'node_modules/tool/cli.js')).mode & 0o777, 0o755)
    assert.equal(fs.readlinkSync(path.join(dir, 'node_modules/.bin/tool')), '../tool/cli.js')
    assert.equal(fs.statSync(s.runtimes.cacheDir).mode & 0o777, 0o700)
    // Gone from the cache: unpacked again from the store.
    fs.rmSync(dir, { recursive: true })
    assert.equal(await s.runtimes.bundleDir(runtime, version), dir)
    assert.equal(fs.readFileSync(path.join(dir, 'index.js'), 'utf8'), 'console.log("v1")\n')

    const audit = await expectJson<{ items: { action: string; outcome: string }[] }>(s.call('GET', '/v1/audit'), 200)
    assert.deepEqual(
      audit.items.map((e) => `${e.action}:${e.outcome}`),
      ['deployRuntime:ok', 'rollbackRuntime:rejected', 'rollbackRuntime:ok', 'deployRuntime:ok', 'deployRuntime:ok'],
    )

    // Delete: gone (versions, bundles, unpacked code); the bundle id cannot be deployed again.
    await expectJson(s.call('DELETE', `/v1/runtimes/weather`), 200)
    await expectError(s.call('GET', `/v1/runtimes/weather`), 404, 'NotFound')
    assert.equal(fs.existsSync(path.join(s.runtimes.cacheDir, runtime.runtimeId)), false)
    assert.equal(await s.store.runtimes.getBundle(version.bundle.bundleId, 'default'), undefined)
    assert.equal(await s.store.runtimes.readBundleChunk(version.bundle.bundleId, 0), undefined)
  })

  test('the built-in agent is listed and read-only; bad settings are named', async (t) => {
    const s = await testServer(t)
    const list = await expectJson<{ items: (Runtime & { builtIn: boolean })[] }>(s.call('GET', '/v1/runtimes'), 200)
    assert.equal(list.items[0]!.agentRuntimeId, 'codebox-agent')
    assert.equal(list.items[0]!.builtIn, true)
    const e = await expectError(s.call('DELETE', '/v1/runtimes/codebox-agent'), 409, 'Conflict')
    assert.match(e.message, /built-in codebox agent/)
    await expectError(s.call('POST', '/v1/runtimes/codebox-agent/rollback', { json: { version: 1 } }), 409, 'Conflict')

    const bundleId = await upload(s, agentBundle())
    const bad = async (body: Record<string, unknown>, field: RegExp) => {
      const err = await expectError(s.call('POST', '/v1/runtimes', { json: { name: 'a1', bundleId, ...body } }), 400, 'ValidationError')
      assert.match(err.message, field)
    }
    await bad({ entrypoint: 'missing.py' }, /entrypoint: "missing.py" is not a file in the bundle/)
    await bad({ entrypoint: 'lib/util.txt' }, /entrypoint/)
    await bad({ idleTimeoutSeconds: 30 }, /idleTimeoutSeconds/)
    await bad({ maxLifetimeSeconds: 30_000 }, /maxLifetimeSeconds/)
    await bad({ network: { mode: 'VPC' } }, /network: VPC mode needs an egress allow-list/)
    await bad({ protocol: 'GRPC' }, /protocol/)
    await bad({ bundleId: 'bnd_00000000000000000000' }, /bundleId: no uploaded bundle/)
    assert.equal((await s.runtimes.list({ tenant: 'default' })).length, 0)
    // No default entrypoint in the bundle: named.
    const plain = await upload(s, rawTarGz([{ path: 'server.py', body: 'print(1)\n' }]))
    const err = await expectError(s.call('POST', '/v1/runtimes', { json: { name: 'py', bundleId: plain } }), 400, 'ValidationError')
    assert.match(err.message, /index\.js, main\.py, app\.py, agent\.py/)
    const py = await expectJson<Runtime>(s.call('POST', '/v1/runtimes', { json: { name: 'py', bundleId: plain, entrypoint: 'server.py' } }), 201)
    assert.equal(py.settings?.language, 'python')
  })

  test('tenancy: another tenant’s runtime is the same 404 as an unknown one', async (t) => {
    const s = await testServer(t)
    const a = (await s.store.keys.create({ tenant: 'acme' })).secret
    const b = (await s.store.keys.create({ tenant: 'globex' })).secret
    const mine = await deploy(s, { name: 'agent' }, agentBundle(), a)
    for (const id of [mine.agentRuntimeId, 'agent', mine.agentRuntimeArn]) {
      await expectError(s.call('GET', `/v1/runtimes/${encodeURIComponent(id)}`, { key: b }), 404, 'NotFound')
      await expectError(s.call('DELETE', `/v1/runtimes/${encodeURIComponent(id)}`, { key: b }), 404, 'NotFound')
      await expectError(s.call('PUT', `/v1/runtimes/${encodeURIComponent(id)}/secrets/K`, { key: b, json: { value: 'x' } }), 404, 'NotFound')
    }
    // Globex cannot deploy acme's bundle either.
    const acmeBundle = await upload(s, agentBundle(), a)
    const e = await expectError(s.call('POST', '/v1/runtimes', { key: b, json: { name: 'x', bundleId: acmeBundle } }), 400, 'ValidationError')
    assert.match(e.message, /bundleId/)
    // Same name in another tenant is another runtime.
    const theirs = await deploy(s, { name: 'agent' }, agentBundle(), b)
    assert.notEqual(theirs.agentRuntimeId, mine.agentRuntimeId)
    assert.equal(theirs.agentRuntimeVersion, '1')
    assert.notEqual(theirs.agentRuntimeArn.split(':')[4], mine.agentRuntimeArn.split(':')[4])
  })

  test('secrets: sealed, listed by name only, removable, for the host side', async (t) => {
    const s = await testServer(t)
    const r = await deploy(s, { name: 'keyed' })
    const put = await expectJson<{ name: string; updatedAt: string }>(
      s.call('PUT', `/v1/runtimes/keyed/secrets/MODEL_KEY`, { json: { value: 'sk-very-secret' } }),
      200,
    )
    assert.equal(put.name, 'MODEL_KEY')
    await expectJson(s.call('PUT', `/v1/runtimes/keyed/secrets/OTHER`, { json: { value: 'two' } }), 200)
    const listed = await s.call('GET', `/v1/runtimes/keyed/secrets`)
    const text = await listed.text()
    assert.equal(listed.status, 200)
    assert.doesNotMatch(text, /sk-very-secret/)
    assert.deepEqual(
      (JSON.parse(text) as { items: { name: string }[] }).items.map((i) => i.name),
      ['MODEL_KEY', 'OTHER'],
    )
    assert.deepEqual(await s.runtimes.secrets(r.agentRuntimeId), { MODEL_KEY: 'sk-very-secret', OTHER: 'two' })
    await expectError(s.call('PUT', `/v1/runtimes/keyed/secrets/bad-name`, { json: { value: 'x' } }), 400, 'ValidationError')
    assert.equal((await s.call('DELETE', `/v1/runtimes/keyed/secrets/OTHER`)).status, 204)
    await expectError(s.call('DELETE', `/v1/runtimes/keyed/secrets/OTHER`), 404, 'NotFound')
    assert.deepEqual(await s.runtimes.secrets(r.agentRuntimeId), { MODEL_KEY: 'sk-very-secret' })
    // Nothing of the value in the audit log either.
    const audit = await (await s.call('GET', '/v1/audit')).text()
    assert.match(audit, /putRuntimeSecret/)
    assert.doesNotMatch(audit, /sk-very-secret/)
  })
})

describe('runtime bundles', () => {
  test('over the bundle limit: 413 LimitExceeded and nothing stored', async (t) => {
    const s = await testServer(t, { env: { CODEBOX_RUNTIME_MAX_BUNDLE_BYTES: '4096' } })
    const big = rawTarGz([{ path: 'index.js', body: randomBytes(64 * 1024) }])
    assert.ok(big.length > 4096)
    // Declared too large: refused before reading.
    await expectError(s.call('POST', '/v1/runtime-bundles', { body: big, headers: { 'content-type': 'application/gzip' } }), 413, 'LimitExceeded')
    // Streamed without a length: refused once past the limit.
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < big.length; i += 1000) c.enqueue(big.subarray(i, i + 1000))
        c.close()
      },
    })
    const res = await fetch(`${s.url}/v1/runtime-bundles`, {
      method: 'POST',
      body: stream,
      headers: { 'content-type': 'application/gzip' },
      duplex: 'half',
    } as RequestInit)
    await expectError(res, 413, 'LimitExceeded')
    // Nothing is left: a sweep far in the future finds no abandoned bundle.
    assert.equal(await s.runtimes.sweepBundles(new Date(Date.now() + 365 * 86_400_000)), 0)
    await expectError(s.call('POST', '/v1/runtime-bundles', { body: 'plain text', headers: { 'content-type': 'application/gzip' } }), 400, 'ValidationError')
  })

  test('a bundle over one 8 MiB chunk is stored in chunks and unpacks byte for byte', async (t) => {
    const s = await testServer(t)
    const payload = randomBytes(19 * 1024 * 1024)
    const bytes = rawTarGz([
      { path: 'main.py', body: 'print(1)\n' },
      { path: 'data.bin', body: payload },
    ])
    const r = await deploy(s, { name: 'big' }, bytes)
    assert.equal(r.settings?.entrypoint, 'main.py')
    const { runtime, version } = await s.runtimes.resolve({ tenant: 'default' }, 'big')
    assert.equal(version.bundle.bytes, bytes.length)
    assert.ok(await s.store.runtimes.readBundleChunk(version.bundle.bundleId, 2), 'three chunks')
    assert.equal(await s.store.runtimes.readBundleChunk(version.bundle.bundleId, 3), undefined)
    const dir = await s.runtimes.bundleDir(runtime, version)
    fs.rmSync(dir, { recursive: true })
    const again = await s.runtimes.bundleDir(runtime, version)
    assert.ok(fs.readFileSync(path.join(again, 'data.bin')).equals(payload))
  })

  test('an unused bundle is swept after an hour; a deployed one is kept', async (t) => {
    const s = await testServer(t)
    const unused = await upload(s, agentBundle())
    const r = await deploy(s, { name: 'kept' })
    assert.equal(await s.runtimes.sweepBundles(new Date(Date.now() + 30 * 60_000)), 0)
    assert.equal(await s.runtimes.sweepBundles(new Date(Date.now() + 2 * 3_600_000)), 1)
    assert.equal(await s.store.runtimes.getBundle(unused, 'default'), undefined)
    const { version } = await s.runtimes.resolve({ tenant: 'default' }, r.agentRuntimeId)
    assert.ok(await s.store.runtimes.getBundle(version.bundle.bundleId, 'default'))
  })

  const hostile: [string, RawEntry[], RegExp, number?][] = [
    [
      'a .. path',
      [
        { path: 'index.js', body: '1' },
        { path: 'lib/../../escape.js', body: 'x' },
      ],
      /has a \.\. segment/,
    ],
    [
      'an absolute path',
      [
        { path: 'index.js', body: '1' },
        { path: '/etc/cron.d/x', body: 'x' },
      ],
      /absolute path/,
    ],
    [
      'a symlink out',
      [
        { path: 'index.js', body: '1' },
        { path: 'out', type: '2', linkpath: '../../../etc' },
      ],
      /points outside the bundle/,
    ],
    [
      'an absolute symlink',
      [
        { path: 'index.js', body: '1' },
        { path: 'out', type: '2', linkpath: '/etc/passwd' },
      ],
      /only relative links/,
    ],
    [
      'a write through a symlink',
      [
        { path: 'index.js', body: '1' },
        { path: 'here', type: '2', linkpath: '.' },
        { path: 'here/x.js', body: 'x' },
      ],
      /beneath the symbolic link "here"/,
    ],
    [
      'a device',
      [
        { path: 'index.js', body: '1' },
        { path: 'dev', type: '3' },
      ],
      /is a CharacterDevice/,
    ],
    [
      'a FIFO',
      [
        { path: 'index.js', body: '1' },
        { path: 'pipe', type: '6' },
      ],
      /is a FIFO/,
    ],
    [
      'a hard link out',
      [
        { path: 'index.js', body: '1' },
        { path: 'h', type: '1', linkpath: '/etc/shadow' },
      ],
      /absolute path|hard link/,
    ],
    [
      'a duplicate',
      [
        { path: 'index.js', body: '1' },
        { path: 'index.js', body: '2' },
      ],
      /appears twice/,
    ],
    [
      'a bomb over the unpacked limit',
      [
        { path: 'index.js', body: '1' },
        { path: 'zeros.bin', body: Buffer.alloc(300 * 1024) },
      ],
      /unpacks to more than/,
      413,
    ],
  ]
  for (const [name, entries, message, status] of hostile) {
    test(`a bundle with ${name} is refused and nothing is left on disk`, async (t) => {
      // A small bundle limit makes the unpacked limit (4x) small enough for the bomb.
      const s = await testServer(t, { env: { CODEBOX_RUNTIME_MAX_BUNDLE_BYTES: String(64 * 1024) } })
      const bundleId = await upload(s, rawTarGz(entries))
      const e = await expectError(
        s.call('POST', '/v1/runtimes', { json: { name: 'evil', bundleId } }),
        status ?? 400,
        status === 413 ? 'LimitExceeded' : 'ValidationError',
      )
      assert.match(e.message, message)
      assert.equal((await s.runtimes.list({ tenant: 'default' })).length, 0)
      const root = s.runtimes.cacheDir
      const left = fs.existsSync(root) ? fs.readdirSync(root, { recursive: true }) : []
      assert.deepEqual(
        left.filter((p) => p !== '.staging'),
        [],
      )
      assert.equal(fs.existsSync(path.join(s.runtimes.cacheDir, '..', 'escape.js')), false)
    })
  }
})

describe('runtime control plane through the AWS SDK', () => {
  const control = (s: TestServer) =>
    new BedrockAgentCoreControlClient({
      endpoint: s.url,
      region: 'eu-west-1',
      credentials: { accessKeyId: 'AKIAOPENSERVER000000', secretAccessKey: 'unused-on-an-open-server' },
      maxAttempts: 1,
    })

  test('get, list, versions, endpoints, delete; create and update say to use the CLI', async (t) => {
    const s = await testServer(t)
    const client = control(s)
    const v1 = await deploy(s, { name: 'sdkagent', idleTimeoutSeconds: 300, protocol: 'MCP' })
    await deploy(s, { name: 'sdkagent' }, agentBundle('v2'))

    const got = await client.send(new GetAgentRuntimeCommand({ agentRuntimeId: v1.agentRuntimeId }))
    assert.equal(got.agentRuntimeId, v1.agentRuntimeId)
    assert.equal(got.agentRuntimeName, 'sdkagent')
    assert.equal(got.agentRuntimeVersion, '2')
    assert.match(got.agentRuntimeArn!, /^arn:aws:bedrock-agentcore:eu-west-1:\d{12}:runtime\/sdkagent-/)
    assert.equal(got.status, 'READY')
    assert.deepEqual(got.lifecycleConfiguration, { idleRuntimeSessionTimeout: 300, maxLifetime: 28800 })
    assert.equal(got.protocolConfiguration?.serverProtocol, 'MCP')
    assert.equal(got.networkConfiguration?.networkMode, 'SANDBOX')
    assert.ok(got.createdAt instanceof Date)
    const first = await client.send(new GetAgentRuntimeCommand({ agentRuntimeId: v1.agentRuntimeId, agentRuntimeVersion: '1' }))
    assert.equal(first.agentRuntimeVersion, '1')

    const listed = await client.send(new ListAgentRuntimesCommand({}))
    assert.deepEqual(
      listed.agentRuntimes?.map((r) => r.agentRuntimeId),
      ['codebox-agent', v1.agentRuntimeId],
    )
    const paged = await client.send(new ListAgentRuntimesCommand({ maxResults: 1 }))
    assert.equal(paged.agentRuntimes?.length, 1)
    const rest = await client.send(new ListAgentRuntimesCommand({ maxResults: 1, nextToken: paged.nextToken }))
    assert.equal(rest.agentRuntimes?.[0]?.agentRuntimeId, v1.agentRuntimeId)
    assert.equal(rest.nextToken, undefined)

    const versions = await client.send(new ListAgentRuntimeVersionsCommand({ agentRuntimeId: v1.agentRuntimeId }))
    assert.deepEqual(
      versions.agentRuntimes?.map((r) => r.agentRuntimeVersion),
      ['2', '1'],
    )
    await expectJson(s.call('POST', `/v1/runtimes/sdkagent/rollback`, { json: { version: '1' } }), 200)
    const endpoints = await client.send(new ListAgentRuntimeEndpointsCommand({ agentRuntimeId: v1.agentRuntimeId }))
    assert.equal(endpoints.runtimeEndpoints?.[0]?.name, 'DEFAULT')
    assert.equal(endpoints.runtimeEndpoints?.[0]?.liveVersion, '1')
    const ep = await client.send(new GetAgentRuntimeEndpointCommand({ agentRuntimeId: v1.agentRuntimeId, endpointName: 'DEFAULT' }))
    assert.equal(ep.liveVersion, '1')
    await assert.rejects(
      client.send(new GetAgentRuntimeEndpointCommand({ agentRuntimeId: v1.agentRuntimeId, endpointName: 'prod' })),
      ResourceNotFoundException,
    )

    const create = await client
      .send(
        new CreateAgentRuntimeCommand({
          agentRuntimeName: 'fromS3',
          agentRuntimeArtifact: { codeConfiguration: { code: { s3: { bucket: 'b', prefix: 'p' } }, runtime: 'PYTHON_3_11', entryPoint: ['main.py'] } },
          roleArn: 'arn:aws:iam::123456789012:role/r',
          networkConfiguration: { networkMode: 'PUBLIC' },
        }),
      )
      .catch((e: unknown) => e)
    assert.ok(create instanceof ValidationException)
    assert.match(create.message, /codebox runtimes deploy/)

    await assert.rejects(client.send(new DeleteAgentRuntimeCommand({ agentRuntimeId: 'codebox-agent' })), /built-in codebox agent/)
    const deleted = await client.send(new DeleteAgentRuntimeCommand({ agentRuntimeId: v1.agentRuntimeId }))
    assert.equal(deleted.status, 'DELETING')
    await assert.rejects(client.send(new GetAgentRuntimeCommand({ agentRuntimeId: v1.agentRuntimeId })), ResourceNotFoundException)
  })

  test('another tenant’s runtime is not found through SigV4 either', async (t) => {
    const s = await testServer(t)
    const acme = await s.store.awsKeys.create({ tenant: 'acme' })
    const globex = await s.store.awsKeys.create({ tenant: 'globex' })
    const acmeKey = (await s.store.keys.create({ tenant: 'acme' })).secret
    const r = await deploy(s, { name: 'private' }, agentBundle(), acmeKey)
    const as = (k: { accessKeyId: string; secretAccessKey: string }) =>
      new BedrockAgentCoreControlClient({ endpoint: s.url, region: 'us-west-2', credentials: k, maxAttempts: 1 })
    const mine = await as(acme).send(new GetAgentRuntimeCommand({ agentRuntimeId: r.agentRuntimeId }))
    assert.equal(mine.agentRuntimeId, r.agentRuntimeId)
    await assert.rejects(as(globex).send(new GetAgentRuntimeCommand({ agentRuntimeId: r.agentRuntimeId })), ResourceNotFoundException)
    await assert.rejects(as(globex).send(new DeleteAgentRuntimeCommand({ agentRuntimeId: r.agentRuntimeId })), ResourceNotFoundException)
    const theirs = await as(globex).send(new ListAgentRuntimesCommand({}))
    assert.deepEqual(
      theirs.agentRuntimes?.map((x) => x.agentRuntimeId),
      ['codebox-agent'],
    )
  })
})
