/**
 * The codebox server (the API) as an image, for the Deployment of the Helm chart and the plain
 * manifests (`image.repository`): the sandbox image's root as its first layer, byte for byte the
 * sandbox image's own first layer (so a registry stores it once; it has Node.js, the same binary
 * the sandbox kernels run), and the app as a second layer at /opt/codebox/app: every workspace
 * package of this checkout (sources, the CLI, the executor, the built web IDE) with the
 * production dependencies `npm ci --omit=dev` installs from the lock file, and `codebox` on PATH
 * (/usr/local/bin). Its entry point is `codebox serve`.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { cp, mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises'
import path from 'node:path'
import { CodeboxError } from '@codebox/core'

/** Where the app is inside the image. */
export const API_APP_DIR = '/opt/codebox/app'

/** The image's command: the CLI's `serve`, with the Node.js of the image. */
export const API_ENTRYPOINT = ['/usr/local/bin/node', '--disable-warning=ExperimentalWarning', `${API_APP_DIR}/packages/cli/src/main.ts`, 'serve'] as const

/** The checkout this CLI runs from. */
export const checkoutRoot = path.resolve(import.meta.dirname, '../../..')

/** What a workspace package keeps in the image: its code, not its tests or dev leftovers. */
const dropped = new Set(['node_modules', 'test'])
const WEB = 'web'

/**
 * Stages the app under `<stage>/opt/codebox/app` (the layer's root is `stage`) and installs its
 * production dependencies there; progress lines go to `progress`. Unavailable when the web IDE
 * is not built (run `npm start` once, or `npm run build -w packages/web`) or npm fails.
 */
export async function stageApiApp(stage: string, progress: (line: string) => void, root = checkoutRoot): Promise<void> {
  if (!existsSync(path.join(root, 'packages/web/dist/index.html')))
    throw new CodeboxError(
      'Unavailable',
      `the web IDE is not built in ${root}/packages/web/dist; run \`npm run build -w packages/web\` (npm start does it) first`,
    )
  const app = path.join(stage, API_APP_DIR)
  await mkdir(app, { recursive: true })
  // The state directory's mount point (an emptyDir in the pod; the root is read-only).
  await mkdir(path.join(stage, 'var/lib/codebox'), { recursive: true })
  // `codebox` on PATH, for the commands other Deployments run from this image (the egress proxy).
  await mkdir(path.join(stage, 'usr/local/bin'), { recursive: true })
  await symlink(`${API_APP_DIR}/packages/cli/bin/codebox`, path.join(stage, 'usr/local/bin/codebox'))
  for (const file of ['package.json', 'package-lock.json']) await cp(path.join(root, file), path.join(app, file))
  const installed: string[] = []
  for (const name of (await readdir(path.join(root, 'packages'))).sort()) {
    const from = path.join(root, 'packages', name)
    if (!existsSync(path.join(from, 'package.json'))) continue
    // The web IDE is served as built: its dist, not its sources or their dependencies.
    const keep =
      name === WEB ? (entry: string) => entry === 'package.json' || entry === 'dist' : (entry: string) => !dropped.has(entry) && !entry.startsWith('.')
    for (const entry of (await readdir(from)).sort())
      if (keep(entry)) await cp(path.join(from, entry), path.join(app, 'packages', name, entry), { recursive: true, verbatimSymlinks: true })
    if (name !== WEB) installed.push(`--workspace=packages/${name}`)
  }
  progress('installing the production dependencies (npm ci --omit=dev)')
  await npm(['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', ...installed], app, progress)
}

/** Runs the npm that came with this Node.js. */
async function npm(args: string[], cwd: string, progress: (line: string) => void): Promise<void> {
  const cli = path.join(path.dirname(path.dirname(process.execPath)), 'lib/node_modules/npm/bin/npm-cli.js')
  const command = existsSync(cli) ? [process.execPath, cli] : ['npm']
  const child = spawn(command[0]!, [...command.slice(1), ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let tail = ''
  const keep = (b: Buffer): void => {
    tail = (tail + b.toString('utf8')).slice(-4000)
  }
  child.stdout.on('data', keep)
  child.stderr.on('data', keep)
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  })
  if (code !== 0)
    throw new CodeboxError('Unavailable', `npm ${args.join(' ')} failed (exit ${code}) in ${cwd}: ${tail.trim().split('\n').slice(-5).join(' | ')}`)
  progress('dependencies installed')
}

/** A temporary staging directory beside `near` (same file system), removed by `done`. */
export async function stagingDir(near: string): Promise<{ dir: string; done: () => Promise<void> }> {
  const parent = path.dirname(path.resolve(near))
  await mkdir(parent, { recursive: true })
  const dir = await mkdtemp(path.join(parent, '.codebox-api-stage-'))
  return { dir, done: () => rm(dir, { recursive: true, force: true }) }
}
