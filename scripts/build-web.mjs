#!/usr/bin/env node
// Builds the web IDE (packages/web → packages/web/dist) when it is missing or stale: the build
// records a hash of everything that goes into it (the IDE's sources, the SDK and core it bundles,
// the lockfile) in dist/.source-hash, and a build whose hash still matches is kept.
//
//   node scripts/build-web.mjs          # build if needed
//   node scripts/build-web.mjs --force  # build anyway
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const web = path.join(root, 'packages', 'web')
const dist = path.join(web, 'dist')
const hashFile = path.join(dist, '.source-hash')

/** Every file whose change changes the build, in a stable order. */
function sources() {
  const files = ['package-lock.json', 'packages/web/package.json', 'packages/web/index.html', 'packages/web/vite.config.ts', 'packages/web/tsconfig.json']
  const walk = (rel) => {
    const full = path.join(root, rel)
    if (!existsSync(full)) return
    for (const entry of readdirSync(full, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const child = `${rel}/${entry.name}`
      if (entry.isDirectory()) walk(child)
      else if (entry.isFile()) files.push(child)
    }
  }
  for (const dir of ['packages/web/src', 'packages/web/public', 'packages/sdk/src', 'packages/core/src', 'packages/tools/src']) walk(dir)
  return files
}

/** The hash of the IDE's sources. */
export function webSourceHash() {
  const hash = createHash('sha256')
  for (const rel of sources()) {
    const full = path.join(root, rel)
    if (!existsSync(full)) continue
    hash.update(rel).update('\0').update(readFileSync(full)).update('\0')
  }
  return hash.digest('hex')
}

/** True when dist/ holds a build of the current sources. */
export function webBuildFresh() {
  return existsSync(path.join(dist, 'index.html')) && existsSync(hashFile) && readFileSync(hashFile, 'utf8').trim() === webSourceHash()
}

/** Builds the IDE with Vite unless the build is fresh; returns whether it is usable. `node` runs Vite. */
export function buildWeb({ node = process.execPath, force = false, log = (m) => process.stderr.write(`${m}\n`) } = {}) {
  if (!force && webBuildFresh()) return true
  const vite = path.join(root, 'node_modules', 'vite', 'bin', 'vite.js')
  if (!existsSync(vite)) {
    log('web IDE: vite is not installed (npm ci installs it); the server shows its API links at / instead')
    return false
  }
  const hash = webSourceHash()
  log('building the web IDE (packages/web, Vite)')
  const r = spawnSync(node, [vite, 'build', '--logLevel', 'warn'], { cwd: web, stdio: 'inherit' })
  if (r.status !== 0) {
    log('web IDE: the build failed; see above')
    return false
  }
  writeFileSync(hashFile, `${hash}\n`)
  return true
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exit(buildWeb({ force: process.argv.includes('--force') }) ? 0 : 1)
}
