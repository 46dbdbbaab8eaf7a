/**
 * Writes deploy/kubernetes/*.yaml from the chart's values (plain-manifests.ts). `--check` writes
 * nothing and exits 1 when a file differs from what it would write.
 *
 *   npm run manifests -w packages/driver-kubernetes [-- --check] [-- --namespace <name>]
 */
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { parse } from 'yaml'
import { plainManifestFiles } from '../src/plain-manifests.ts'

const root = fileURLToPath(new URL('../../../', import.meta.url))
const { values: flags } = parseArgs({ options: { check: { type: 'boolean' }, namespace: { type: 'string', default: 'codebox' } } })
const values: unknown = parse(await readFile(path.join(root, 'deploy/helm/codebox/values.yaml'), 'utf8'))
let stale = 0
for (const [name, text] of Object.entries(plainManifestFiles(values, flags.namespace))) {
  const file = path.join(root, 'deploy/kubernetes', name)
  if (flags.check) {
    const now = await readFile(file, 'utf8').catch(() => '')
    if (now !== text) {
      stale++
      process.stderr.write(`${path.relative(root, file)} is not what the builders make: run npm run manifests -w packages/driver-kubernetes\n`)
    }
  } else {
    await writeFile(file, text)
    process.stdout.write(`wrote ${path.relative(root, file)}\n`)
  }
}
process.exitCode = stale > 0 ? 1 : 0
