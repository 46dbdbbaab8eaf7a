#!/usr/bin/env node
// Sets up what codebox needs on a fresh Debian/Ubuntu machine, then starts, tests or benchmarks
// it: system packages (bubblewrap, mmdebstrap, ...), Node.js >= 22.18 (installs Node 24 LTS from
// the npm registry when the running one is older), and the sandbox image. Plain JavaScript that
// any Node >= 18 can run, because it may be what installs the newer Node.
//
//   node scripts/bootstrap.mjs start   # set up, build the image, serve the API on 127.0.0.1:8080
//   node scripts/bootstrap.mjs test    # set up, typecheck, lint, run every test
//   node scripts/bootstrap.mjs bench   # set up, run the benchmark
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildWeb } from './build-web.mjs'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const mode = process.argv[2] ?? 'start'
const extra = process.argv.slice(3)
const isRoot = process.getuid?.() === 0

const step = (msg) => process.stderr.write(`\n\x1b[1m==> ${msg}\x1b[0m\n`)
const fail = (msg) => {
  process.stderr.write(`\ncodebox setup: ${msg}\n`)
  process.exit(1)
}

function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...options, env: { ...process.env, ...options.env } })
  if (r.error) fail(`${cmd} could not run: ${r.error.message}`)
  return r.status ?? 1
}

const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
const dpkgHas = (pkg) => spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' }).stdout?.includes('install ok installed')

function ensurePackages(pkgs) {
  const missing = pkgs.filter((p) => !dpkgHas(p))
  if (missing.length === 0) return
  if (!isRoot) fail(`these Debian packages are missing: ${missing.join(' ')}. Install them as root (apt-get install ${missing.join(' ')}) and run this again.`)
  if (!has('apt-get')) fail(`apt-get is not available; install ${missing.join(' ')} with your package manager.`)
  step(`installing system packages: ${missing.join(' ')}`)
  const env = { DEBIAN_FRONTEND: 'noninteractive' }
  if (run('apt-get', ['update', '-q'], { env }) !== 0) fail('apt-get update failed; is a Debian package mirror reachable?')
  if (run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env }) !== 0) fail(`apt-get install ${missing.join(' ')} failed`)
}

const nodeOk = (bin) => {
  const r = spawnSync(bin, ['-p', 'process.versions.node'], { encoding: 'utf8' })
  if (r.status !== 0) return false
  const [major, minor] = r.stdout.trim().split('.').map(Number)
  return major > 22 || (major === 22 && minor >= 18)
}

/** A Node.js that runs TypeScript directly; installs Node 24 LTS when none is at hand. */
function ensureNode() {
  if (nodeOk(process.execPath)) return process.execPath
  if (existsSync('/usr/local/bin/node') && nodeOk('/usr/local/bin/node')) return '/usr/local/bin/node'
  if (!isRoot)
    fail(`Node.js ${process.versions.node} is too old (need >= 22.18). Install Node 24 LTS (e.g. npm install -g --prefix /usr/local node@24 as root).`)
  step(`Node.js ${process.versions.node} is too old; installing Node 24 LTS into /usr/local from the npm registry`)
  if (run('npm', ['install', '-g', '--prefix', '/usr/local', 'node@24']) !== 0 || !nodeOk('/usr/local/bin/node')) {
    fail('could not install Node 24 (npm install -g --prefix /usr/local node@24 failed)')
  }
  return '/usr/local/bin/node'
}

if (process.platform !== 'linux') fail('codebox sandboxes need Linux (namespaces, cgroups, seccomp).')

const packages = ['bubblewrap', 'mmdebstrap', 'util-linux', 'python3', 'ca-certificates']
// The fake driver's tests run cells on the host's /usr/bin/python3: what they import must be there.
// The web IDE's browser tests drive Debian's Chromium (playwright-core never downloads a browser).
// The PostgreSQL store's tests start a private server from Debian's postgresql binaries.
if (mode === 'test') packages.push('gcc', 'libc6-dev', 'procps', 'curl', 'jq', 'python3-pandas', 'python3-matplotlib', 'chromium', 'runsc', 'postgresql')
// kubectl is the independent client of the fake Kubernetes API server's tests. A kubectl from
// another package (Google's `kubectl`) also owns /usr/bin/kubectl, so Debian's is added only when none is there.
if (mode === 'test' && !has('kubectl')) packages.push('kubernetes-client')
if (mode === 'bench') packages.push('python3-ipykernel', 'python3-jupyter-client')
step('checking system packages')
ensurePackages(packages)
const node = ensureNode()
process.stderr.write(`using Node.js ${spawnSync(node, ['-v'], { encoding: 'utf8' }).stdout.trim()} (${node})\n`)

if (!existsSync(path.join(root, 'node_modules', 'fastify'))) {
  step('installing npm dependencies')
  if (run('npm', ['ci']) !== 0) fail('npm ci failed')
}

const codebox = (args) => run(node, ['--disable-warning=ExperimentalWarning', 'packages/cli/src/main.ts', ...args])

step('building the sandbox image (cached after the first build)')
if (codebox(['image', 'build']) !== 0) fail('the image build failed; see above')

step('building the web IDE (kept while its sources are unchanged)')
if (!buildWeb({ node }) && mode === 'test') fail('the web IDE did not build')

if (mode === 'start') {
  step('starting the codebox server (Ctrl-C stops it)')
  // Not spawnSync: the server must get SIGTERM too when only this process is signalled.
  const server = spawn(node, ['--disable-warning=ExperimentalWarning', 'packages/cli/src/main.ts', 'serve', ...extra], { stdio: 'inherit', cwd: root })
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => server.kill(sig))
  // npm does not pass SIGTERM on to its script: when npm goes away, stop the server too.
  const parent = process.ppid
  setInterval(() => process.ppid !== parent && server.kill('SIGTERM'), 500).unref()
  server.on('exit', (code, signal) => process.exit(code ?? (signal ? 0 : 1)))
} else if (mode === 'test') {
  const bin = (name) => path.join(root, 'node_modules', '.bin', name)
  step('typecheck (tsc --noEmit)')
  if (run(node, [bin('tsc'), '--noEmit', '-p', '.']) !== 0) fail('typecheck failed')
  // The web IDE's browser code has its own tsconfig (DOM, JSX, bundler resolution).
  if (run(node, [bin('tsc'), '--noEmit', '-p', 'packages/web']) !== 0) fail('typecheck of packages/web failed')
  step('lint (eslint)')
  if (run(node, [bin('eslint'), '.']) !== 0) fail('lint failed')
  step('format (prettier --check)')
  if (run(node, [bin('prettier'), '--check', '.']) !== 0) fail('formatting differs; run npm run format')
  step('tests (node --test)')
  const patterns = extra.length ? extra : ['packages/*/test/**/*.test.ts', 'tests/**/*.test.ts']
  process.exit(run(node, ['--test', '--test-timeout=600000', '--disable-warning=ExperimentalWarning', ...patterns]))
} else if (mode === 'bench') {
  step('benchmark')
  process.exit(run(node, ['--disable-warning=ExperimentalWarning', 'bench/run.ts', ...extra]))
} else fail(`unknown mode ${mode}; use start, test or bench`)
