/**
 * `codebox image export --oci`, run as a user would, on a fake image in a temporary state
 * directory (the real image is 1.5 GB): the layout holds the image and the executor's runtime tree,
 * tagged with the image's hash; an image that is not built, or an existing directory, is a clear error.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { defaultRecipe, imagePath, recipeHash } from '@codebox/sandbox'

const repo = fileURLToPath(new URL('../../../', import.meta.url))
const bin = path.join(repo, 'packages/cli/bin/codebox')
let stateDir: string

function codebox(args: string[], state = stateDir): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(bin, args, {
    cwd: repo,
    encoding: 'utf8',
    timeout: 120_000,
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
