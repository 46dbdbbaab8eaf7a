/**
 * `codebox image export --oci`, run as a user would, on a fake image in a temporary state
 * directory (the real image is 1.5 GB): the layout holds the image and the executor's runtime tree,
 * tagged with the image's hash; an image that is not built, or an existing directory, is a clear error.
 * `--api`, the codebox server's image: two layers, the first the very layer the sandbox image's
 * export writes; the app layer, unpacked, serves the API and the web IDE with only its own
 * dependencies. On the real sandbox image, the staged app runs as the pod runs it: the image's
 * Node.js, uid 1000, a read-only root, empty /var/lib/codebox and /tmp.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { defaultRecipe, findImage, imagePath, recipeHash } from '@codebox/sandbox'
import { freePort } from '@codebox/sandbox/testing'
import { API_ENTRYPOINT, stageApiApp } from '../src/api-image.ts'

const repo = fileURLToPath(new URL('../../../', import.meta.url))
const bin = path.join(repo, 'packages/cli/bin/codebox')
let stateDir: string

function codebox(args: string[], state = stateDir): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, {
    cwd: repo,
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, CODEBOX_STATE_DIR: state, CODEBOX_NODE: process.execPath },
  })
  return { code: r.status, stdout: r.stdout, stderr: r.stderr }
}

before(async () => {
  stateDir = await mkdtemp(path.join(tmpdir(), 'codebox-export-'))
  const recipe = defaultRecipe({ nodeBinary: process.execPath })
  const root = imagePath(stateDir, recipe)
  await mkdir(path.join(root, 'usr/bin'), { recursive: true })
  await writeFile(path.join(root, 'usr/bin/python3'), '#!/bin/sh\n', { mode: 0o755 })
  await writeFile(
    path.join(root, 'manifest.json'),
    JSON.stringify({ hash: recipeHash(recipe), path: root, sizeBytes: 10, builtAt: '2026-01-01T00:00:00Z', buildSeconds: 1, recipe }),
  )
})

after(async () => {
  await rm(stateDir, { recursive: true, force: true })
})

test('image export --oci writes the image and the executor as a tagged OCI layout', async () => {
  const out = path.join(stateDir, 'oci')
  const r = codebox(['image', 'export', '--oci', out, '--json'])
  assert.equal(r.code, 0, r.stderr)
  const result = JSON.parse(r.stdout) as { manifest: { digest: string }; layers: { digest: string }[] }
  const index = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8'))
  assert.equal(index.manifests[0].digest, result.manifest.digest)
  assert.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], recipeHash(defaultRecipe({ nodeBinary: process.execPath })))
  const manifest = JSON.parse(await readFile(path.join(out, 'blobs/sha256', result.manifest.digest.slice(7)), 'utf8'))
  const config = JSON.parse(await readFile(path.join(out, 'blobs/sha256', manifest.config.digest.slice(7)), 'utf8'))
  assert.deepEqual(config.config.Entrypoint, ['/usr/bin/python3', '-s', '-B', '/opt/codebox/executor/executor.py'])
  assert.equal(config.config.User, '1000:1000')
  const list = (digest: string): string[] =>
    spawnSync('tar', ['-tf', path.join(out, 'blobs/sha256', digest.slice(7))], { encoding: 'utf8' })
      .stdout.trim()
      .split('\n')
  assert.deepEqual(list(result.layers[0]!.digest), ['usr/', 'usr/bin/', 'usr/bin/python3'], 'the image, without the cache record manifest.json')
  assert.ok(list(result.layers[1]!.digest).includes('opt/codebox/executor/executor.py'))
})

test('image export: an existing directory, or no built image, is a clear error', async () => {
  const again = codebox(['image', 'export', '--oci', path.join(stateDir, 'oci')])
  assert.equal(again.code, 64)
  assert.match(again.stderr, /ValidationError: outDir: .* exists already/)
  const empty = await mkdtemp(path.join(tmpdir(), 'codebox-export-empty-'))
  try {
    const none = codebox(['image', 'export', '--oci', path.join(empty, 'oci')], empty)
    assert.equal(none.code, 69)
    assert.match(none.stderr, /no sandbox image is built .* run codebox image build first/)
  } finally {
    await rm(empty, { recursive: true, force: true })
  }
  const missing = codebox(['image', 'export'])
  assert.equal(missing.code, 64)
  assert.match(missing.stderr, /--oci: give the directory/)
})

/** Waits for /ping to answer Healthy, failing with the server's output when it exits first. */
async function healthy(url: string, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) assert.fail(`the server exited ${child.exitCode}: ${output()}`)
    const r = await fetch(`${url}/ping`).catch(() => undefined)
    if (r?.ok) return void assert.equal(((await r.json()) as { status: string }).status, 'Healthy')
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  assert.fail(`no /ping answer within 60 s: ${output()}`)
}

function run(command: string, args: string[], env: Record<string, string>): { child: ChildProcess; output: () => string } {
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout!.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-8000)))
  child.stderr!.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-8000)))
  return { child, output: () => out }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGTERM')
  await new Promise((resolve) => child.once('exit', resolve))
}

async function startAndCall(url: string, server: { child: ChildProcess; output: () => string }): Promise<void> {
  try {
    await healthy(url, server.child, server.output)
    assert.match(await (await fetch(`${url}/`)).text(), /<title>codebox IDE<\/title>/)
    const started = await fetch(`${url}/v1/sessions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })
    assert.equal(started.status, 201, server.output())
    const { sessionId } = (await started.json()) as { sessionId: string }
    const r = await fetch(`${url}/v1/sessions/${sessionId}/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'executeCode', arguments: { code: 'print(6 * 7)' } }),
    })
    assert.equal(((await r.json()) as { structuredContent: { stdout: string } }).structuredContent.stdout, '42\n')
  } finally {
    await stop(server.child)
  }
}

test('image export --api: the sandbox image’s own first layer, then the app, which serves the API and the web IDE', async () => {
  const sandbox = codebox(['image', 'export', '--oci', path.join(stateDir, 'sandbox-oci'), '--json'])
  assert.equal(sandbox.code, 0, sandbox.stderr)
  const out = path.join(stateDir, 'api-oci')
  const r = codebox(['image', 'export', '--api', '--oci', out, '--tag', '0.1.0', '--json'])
  assert.equal(r.code, 0, r.stderr)
  assert.match(r.stderr, /installing the production dependencies/)
  const result = JSON.parse(r.stdout) as { manifest: { digest: string }; layers: { digest: string }[] }
  const sandboxLayers = (JSON.parse(sandbox.stdout) as { layers: { digest: string }[] }).layers
  assert.equal(result.layers.length, 2)
  assert.equal(result.layers[0]!.digest, sandboxLayers[0]!.digest, 'the base layer is the sandbox image’s, byte for byte')
  const blob = (digest: string): string => path.join(out, 'blobs/sha256', digest.slice(7))
  const index = JSON.parse(await readFile(path.join(out, 'index.json'), 'utf8'))
  assert.equal(index.manifests[0].annotations['org.opencontainers.image.ref.name'], '0.1.0')
  const manifest = JSON.parse(await readFile(blob(result.manifest.digest), 'utf8'))
  const config = JSON.parse(await readFile(blob(manifest.config.digest), 'utf8'))
  assert.deepEqual(config.config.Entrypoint, [...API_ENTRYPOINT])
  assert.equal(config.config.User, '1000:1000')
  assert.ok(config.config.Env.includes('CODEBOX_STATE_DIR=/var/lib/codebox'))

  const entries = new Set(spawnSync('tar', ['-tf', blob(result.layers[1]!.digest)], { encoding: 'utf8', maxBuffer: 256 << 20 }).stdout.split('\n'))
  for (const want of [
    'var/lib/codebox/',
    'usr/local/bin/codebox',
    'opt/codebox/app/packages/cli/src/main.ts',
    'opt/codebox/app/packages/web/dist/index.html',
    'opt/codebox/app/packages/sandbox/executor/executor.py',
  ])
    assert.ok(entries.has(want), `the app layer has ${want}`)
  const names = [...entries]
  assert.ok(!names.some((n) => /^opt\/codebox\/app\/packages\/[^/]+\/test\//.test(n)), 'no tests')
  assert.ok(!names.some((n) => n.startsWith('opt/codebox/app/packages/web/src/')), 'the web IDE as built, not its sources')
  assert.ok(!names.some((n) => n.startsWith('opt/codebox/app/node_modules/monaco-editor/')), 'no dependency of the web IDE’s sources')
  assert.ok(!names.some((n) => n.startsWith('opt/codebox/app/node_modules/typescript/')), 'no development dependency')

  // Unpacked alone, the app serves with nothing from this checkout.
  const unpacked = path.join(stateDir, 'unpacked')
  await mkdir(unpacked)
  assert.equal(spawnSync('tar', ['-xf', blob(result.layers[1]!.digest), '-C', unpacked]).status, 0)
  const port = await freePort()
  const server = run(process.execPath, ['--disable-warning=ExperimentalWarning', path.join(unpacked, 'opt/codebox/app/packages/cli/src/main.ts'), 'serve'], {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    CODEBOX_STATE_DIR: path.join(stateDir, 'serve-state'),
    CODEBOX_DRIVER: 'fake',
    CODEBOX_PORT: String(port),
    CODEBOX_LOG_LEVEL: 'warn',
  })
  await startAndCall(`http://127.0.0.1:${port}`, server)
  // The launcher other Deployments run (the egress proxy's `codebox kubernetes egress-proxy`).
  const link = spawnSync('readlink', [path.join(unpacked, 'usr/local/bin/codebox')], { encoding: 'utf8' }).stdout.trim()
  assert.equal(link, '/opt/codebox/app/packages/cli/bin/codebox')
  const help = spawnSync(path.join(unpacked, link), ['kubernetes', '--help'], {
    encoding: 'utf8',
    env: { PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin` },
  })
  assert.equal(help.status, 0, help.stderr)
  assert.match(help.stdout, /egress-proxy/)

  const again = codebox(['image', 'export', '--api', '--oci', out])
  assert.equal(again.code, 64)
  assert.match(again.stderr, /outDir: .* exists already/)
})

test('the app on the real sandbox image runs as its pod does: the image’s Node.js, uid 1000, a read-only root', async (t) => {
  const image = await findImage(process.env.CODEBOX_STATE_DIR ?? '/var/lib/codebox', defaultRecipe())
  if (!image) return t.skip('the sandbox image is not built on this machine (codebox image build)')
  if (spawnSync('bwrap', ['--ro-bind', '/', '/', '--unshare-user', '--uid', '1000', 'true']).status !== 0)
    return t.skip('bwrap cannot make a user namespace here, so the image cannot be run as a pod would')
  const stage = path.join(stateDir, 'stage')
  await mkdir(stage)
  await stageApiApp(stage, () => {})
  assert.ok(existsSync(path.join(image.path, 'usr/local/bin/node')), 'the sandbox image has Node.js')
  const port = await freePort()
  // The image's root as the pod's (read-only), the app layer over it, emptyDirs for state and /tmp
  // (bwrap mounts only on directories that exist, so /opt and /var/lib are fresh ones here).
  const server = run(
    'bwrap',
    [
      ...['--ro-bind', image.path, '/', '--tmpfs', '/opt', '--ro-bind', path.join(stage, 'opt/codebox/app'), '/opt/codebox/app'],
      ...['--proc', '/proc', '--dev', '/dev', '--tmpfs', '/tmp', '--tmpfs', '/var/lib', '--tmpfs', '/var/lib/codebox'],
      ...['--unshare-user', '--unshare-pid', '--unshare-ipc', '--uid', '1000', '--gid', '1000', '--die-with-parent', '--chdir', '/opt/codebox/app'],
      ...API_ENTRYPOINT,
    ],
    {
      PATH: '/usr/local/bin:/usr/bin:/bin',
      HOME: '/tmp',
      CODEBOX_STATE_DIR: '/var/lib/codebox',
      CODEBOX_DRIVER: 'fake',
      CODEBOX_PORT: String(port),
      CODEBOX_LOG_LEVEL: 'warn',
    },
  )
  await startAndCall(`http://127.0.0.1:${port}`, server)
})
