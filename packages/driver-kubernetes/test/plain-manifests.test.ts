/** deploy/kubernetes/ is what the builders make from the chart's values, and every document in it validates. */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parse, parseAllDocuments } from 'yaml'
import { plainManifestFiles } from '../src/plain-manifests.ts'
import { validateManifest } from './schema.ts'

const root = fileURLToPath(new URL('../../../', import.meta.url))
const dir = path.join(root, 'deploy/kubernetes')

test('deploy/kubernetes/ is up to date with the builders and the chart values, and validates', async () => {
  const values: unknown = parse(await readFile(path.join(root, 'deploy/helm/codebox/values.yaml'), 'utf8'))
  const want = plainManifestFiles(values, 'codebox')
  assert.deepEqual((await readdir(dir)).sort(), Object.keys(want).sort())
  const kinds: string[] = []
  for (const [name, text] of Object.entries(want)) {
    assert.equal(await readFile(path.join(dir, name), 'utf8'), text, `${name} is stale: npm run manifests -w packages/driver-kubernetes`)
    for (const doc of parseAllDocuments(text)) kinds.push(validateManifest(doc.toJS()))
  }
  assert.equal(kinds[0], 'Namespace/codebox')
  assert.equal(kinds.length, 22, kinds.join(', '))
})

test('the manifests script: --check passes on the committed files', () => {
  const r = spawnSync(process.execPath, ['--disable-warning=ExperimentalWarning', 'packages/driver-kubernetes/scripts/manifests.ts', '--check'], {
    cwd: root,
    encoding: 'utf8',
    timeout: 60_000,
  })
  assert.equal(r.status, 0, r.stderr)
})
