/**
 * `codebox runtimes` as a user runs it, against an in-process server (fake driver): deploy a
 * directory (node_modules and its links kept, .git left out, `npm ci` when only a lock file is
 * there), versions, rollback, secrets from standard input, removal, and the exit codes of mistakes
 * (invoking a hosted agent for real is in packages/server/test/runtime-invoke.test.ts, on bwrap).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { testServer, type TestServer } from '../../server/test/fixtures.ts'

const repo = fileURLToPath(new URL('../../../', import.meta.url))
const bin = path.join(repo, 'packages/cli/bin/codebox')

let server: TestServer
let work: string

function codebox(args: string[], input = '', url = server.url): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(bin, args, { cwd: work, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, CODEBOX_URL: url, CODEBOX_API_KEY: '' } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()))
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    child.stdin.end(input)
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

describe('codebox runtimes', () => {
  before(async () => {
    server = await testServer(undefined)
    work = await mkdtemp(path.join(tmpdir(), 'codebox-cli-runtimes-'))
  })
  after(async () => {
    await server.close()
    await rm(work, { recursive: true, force: true })
  })

  test('deploy, redeploy, versions, rollback, secrets, rm', async () => {
    const dir = path.join(work, 'agent')
    await mkdir(path.join(dir, 'node_modules/tool'), { recursive: true })
    await mkdir(path.join(dir, 'node_modules/.bin'), { recursive: true })
    await mkdir(path.join(dir, '.git'), { recursive: true })
    await writeFile(path.join(dir, 'index.js'), 'console.log("hi")\n')
    await writeFile(path.join(dir, 'node_modules/tool/cli.js'), '#!/usr/bin/env node\n', { mode: 0o755 })
    await symlink('../tool/cli.js', path.join(dir, 'node_modules/.bin/tool'))
    await writeFile(path.join(dir, '.git/config'), 'secret remote\n')

    const first = await codebox(['runtimes', 'deploy', dir, '--name', 'cliagent', '--idle-timeout', '120', '--json'])
    assert.equal(first.code, 0, first.stderr)
    const deployed = JSON.parse(first.stdout) as { agentRuntimeArn: string; agentRuntimeId: string; agentRuntimeVersion: string }
    assert.deepEqual(Object.keys(deployed).sort(), ['agentRuntimeArn', 'agentRuntimeId', 'agentRuntimeVersion'])
    assert.equal(deployed.agentRuntimeVersion, '1')
    assert.match(deployed.agentRuntimeArn, /:runtime\/cliagent-[0-9A-Za-z]{10}$/)
    assert.match(first.stderr, /packing .*uploading .*deploying cliagent \(entrypoint index\.js\)/s)

    // What was deployed: the files and the link, without .git.
    const { runtime, version } = await server.runtimes.resolve({ tenant: 'default' }, 'cliagent')
    const code = await server.runtimes.bundleDir(runtime, version)
    assert.equal(await readFile(path.join(code, 'index.js'), 'utf8'), 'console.log("hi")\n')
    assert.equal(await readFile(path.join(code, 'node_modules/.bin/tool'), 'utf8'), '#!/usr/bin/env node\n')
    await assert.rejects(readFile(path.join(code, '.git/config')), /ENOENT/)
    assert.equal(version.settings.idleTimeoutSeconds, 120)

    const second = await codebox(['runtimes', 'deploy', dir, '--name', 'cliagent'])
    assert.equal(second.code, 0, second.stderr)
    assert.match(second.stdout, new RegExp(`^${deployed.agentRuntimeArn}\\nid +${deployed.agentRuntimeId}\\nversion +2\\n$`))

    const ls = await codebox(['runtimes', 'ls'])
    assert.equal(ls.code, 0)
    assert.match(ls.stdout, /codebox-agent/)
    assert.match(ls.stdout, new RegExp(`${deployed.agentRuntimeId} +cliagent +2 +2`))
    const versions = await codebox(['runtimes', 'versions', 'cliagent', '--json'])
    assert.deepEqual(
      (JSON.parse(versions.stdout) as { agentRuntimeVersion: string }[]).map((v) => v.agentRuntimeVersion),
      ['2', '1'],
    )
    const rolled = await codebox(['runtimes', 'rollback', 'cliagent', '1'])
    assert.equal(rolled.code, 0, rolled.stderr)
    assert.match(rolled.stdout, /DEFAULT now serves version 1/)
    assert.equal((await server.runtimes.resolve({ tenant: 'default' }, 'cliagent')).version.version, 1)

    const set = await codebox(['runtimes', 'secrets', 'set', 'cliagent', 'MODEL_KEY'], 'from-stdin\n')
    assert.equal(set.code, 0, set.stderr)
    assert.deepEqual(await server.runtimes.secrets(deployed.agentRuntimeId), { MODEL_KEY: 'from-stdin' })
    const secrets = await codebox(['runtimes', 'secrets', 'ls', 'cliagent'])
    assert.match(secrets.stdout, /MODEL_KEY/)
    assert.doesNotMatch(secrets.stdout, /from-stdin/)
    assert.equal((await codebox(['runtimes', 'secrets', 'rm', 'cliagent', 'MODEL_KEY'])).code, 0)

    assert.equal((await codebox(['runtimes', 'rm', 'cliagent'])).code, 0)
    const gone = await codebox(['runtimes', 'get', 'cliagent'])
    assert.equal(gone.code, 66)
    assert.match(gone.stderr, /no runtime "cliagent"/)
  })

  test('deploy packs while it uploads: a bundle over the server’s limit is refused with LimitExceeded and nothing is deployed', async (t) => {
    const small = await testServer(t, { env: { CODEBOX_RUNTIME_MAX_BUNDLE_BYTES: '100000' } })
    const dir = path.join(work, 'big')
    await mkdir(dir)
    await writeFile(path.join(dir, 'index.js'), 'console.log("hi")\n')
    // Incompressible, so the gzipped tar stays over the limit.
    await writeFile(path.join(dir, 'weights.bin'), randomBytes(400_000))
    const r = await codebox(['runtimes', 'deploy', dir, '--name', 'big'], '', small.url)
    assert.equal(r.code, 64, r.stderr)
    assert.match(r.stderr, /LimitExceeded: bundle is \d+ bytes, over the 100000-byte limit/)
    assert.doesNotMatch(r.stderr, /deploying/)
    assert.equal((await small.runtimes.list({ tenant: 'default' })).length, 0)
  })

  test('npm ci runs first when there is a lock file and no node_modules; mistakes exit 64', async () => {
    const dir = path.join(work, 'locked')
    await mkdir(dir)
    await writeFile(path.join(dir, 'package.json'), JSON.stringify({ name: 'locked', version: '1.0.0', main: 'server.js' }))
    await writeFile(
      path.join(dir, 'package-lock.json'),
      JSON.stringify({ name: 'locked', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'locked', version: '1.0.0' } } }),
    )
    await writeFile(path.join(dir, 'server.js'), 'console.log(1)\n')
    const r = await codebox(['runtimes', 'deploy', dir, '--name', 'locked'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stderr, /installing dependencies: npm ci --omit=dev/)
    assert.equal((await server.runtimes.resolve({ tenant: 'default' }, 'locked')).version.settings.entrypoint, 'server.js')

    const empty = path.join(work, 'empty')
    await mkdir(empty)
    await writeFile(path.join(empty, 'README.md'), 'no code\n')
    const none = await codebox(['runtimes', 'deploy', empty, '--name', 'empty'])
    assert.equal(none.code, 64)
    assert.match(none.stderr, /index\.js, main\.py, app\.py, agent\.py/)
    const noName = await codebox(['runtimes', 'deploy', dir])
    assert.equal(noName.code, 64)
    assert.match(noName.stderr, /--name/)
    const badTimeout = await codebox(['runtimes', 'deploy', dir, '--name', 'x', '--idle-timeout', '5'])
    assert.equal(badTimeout.code, 64)
    assert.match(badTimeout.stderr, /--idle-timeout/)
    // invoke: the runtime is named, a session id is checked by the server, an unknown runtime is 66.
    const noId = await codebox(['runtimes', 'invoke'])
    assert.equal(noId.code, 64)
    assert.match(noId.stderr, /ID/)
    const badSession = await codebox(['runtimes', 'invoke', 'locked', '{}', '--session', 'too-short'])
    assert.equal(badSession.code, 64)
    assert.match(badSession.stderr, /Session-Id|session/)
    const unknown = await codebox(['runtimes', 'invoke', 'nosuchagent', '{}'])
    assert.equal(unknown.code, 66)
    assert.match(unknown.stderr, /nosuchagent/)
    const agentDoor = await codebox(['runtimes', 'invoke', 'codebox-agent', '{}'])
    assert.equal(agentDoor.code, 64)
    assert.match(agentDoor.stderr, /POST \/invocations/)
    const builtIn = await codebox(['runtimes', 'rm', 'codebox-agent'])
    assert.equal(builtIn.code, 64)
    assert.match(builtIn.stderr, /built-in codebox agent/)
  })
})
