/**
 * The default sandbox image recipe: Debian packages for Python and its data stack, plus the
 * host's Node.js (≥ 22) binary for the JavaScript/TypeScript kernel and, where the npm `deno`
 * package installed one for this platform, the Deno binary for the `deno` runtime, and npm (pure
 * JavaScript) beside pip so sessions can install packages into their workspace. The recipe's
 * hash names the cached image, so a changed recipe builds a new one and an unchanged one is reused.
 */
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { packageManagerFiles } from './package-managers.ts'

export interface ImageRecipe {
  name: string
  suite: string
  mirror: string
  packages: string[]
  /** Path of the Node.js binary copied into the image; its version is part of the hash. */
  nodeBinary: string
  nodeVersion: string
  /** Path of the Deno binary copied into the image as /usr/local/bin/deno; its version is part of the hash. Absent: no Deno. */
  denoBinary?: string
  denoVersion?: string
  /** Folder of the npm package copied into the image as /usr/local/lib/node_modules/npm; its version is part of the hash. Absent: no npm. */
  npmDir?: string
  npmVersion?: string
}

export interface RecipeOptions {
  mirror?: string
  /** Default: the Node.js running this process. */
  nodeBinary?: string
  /** Default: the npm `deno` package's binary when installed ({@link bundledDeno}); `null` for an image without Deno. */
  denoBinary?: string | null
  /** Default: the npm that came with this machine's Node.js ({@link hostNpm}); `null` for an image without npm. */
  npmDir?: string | null
}

/** Bump when the build steps change in a way that changes the image. */
const BUILD_STEPS_VERSION = 6

export function defaultRecipe(options: RecipeOptions = {}): ImageRecipe {
  const nodeBinary = options.nodeBinary ?? process.execPath
  const npm =
    options.npmDir === undefined ? hostNpm(nodeBinary) : options.npmDir === null ? undefined : { dir: options.npmDir, version: npmVersion(options.npmDir) }
  const deno = options.denoBinary === undefined ? bundledDeno() : options.denoBinary === null ? undefined : { binary: options.denoBinary, version: 'unknown' }
  return {
    name: 'codebox-default',
    suite: 'bookworm',
    mirror: options.mirror ?? 'http://deb.debian.org/debian',
    packages: [
      'python3',
      'python3-numpy',
      'python3-pandas',
      'python3-matplotlib',
      'python3-scipy',
      'python3-sklearn',
      'python3-seaborn',
      'python3-statsmodels',
      'python3-sympy',
      'python3-openpyxl',
      'python3-pil',
      'python3-bs4',
      'python3-lxml',
      'python3-requests',
      'python3-ipython',
      // `pip install` (what AWS's install_packages sends): into ~/.local in the workspace, /etc/pip.conf.
      'python3-pip',
      'libstdc++6',
      'ca-certificates',
      'fonts-dejavu-core',
      'coreutils',
      'findutils',
      'grep',
      'sed',
      'gawk',
      'procps',
      'file',
      'less',
      'tar',
      'gzip',
      'bzip2',
      'xz-utils',
      'unzip',
      'zip',
      // For sessions with network (PUBLIC and VPC interpreters): what agents reach for first.
      'curl',
    ],
    nodeBinary,
    nodeVersion: nodeBinary === process.execPath ? process.version : 'unknown',
    ...(deno && { denoBinary: deno.binary, denoVersion: deno.version }),
    ...(npm && { npmDir: npm.dir, npmVersion: npm.version }),
  }
}

/**
 * The npm package that came with this machine's Node.js: beside the binary
 * (`<prefix>/lib/node_modules/npm`), else where Debian's and NodeSource's packages put it.
 */
export function hostNpm(nodeBinary: string = process.execPath): { dir: string; version: string } | undefined {
  const prefix = path.dirname(path.dirname(nodeBinary))
  for (const dir of [path.join(prefix, 'lib/node_modules/npm'), '/usr/local/lib/node_modules/npm', '/usr/lib/node_modules/npm']) {
    if (!existsSync(path.join(dir, 'bin/npm-cli.js'))) continue
    const version = npmVersion(dir)
    if (version !== 'unknown') return { dir, version }
  }
  return undefined
}

function npmVersion(dir: string): string {
  try {
    const manifest = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown }
    return manifest.name === 'npm' && typeof manifest.version === 'string' ? manifest.version : 'unknown'
  } catch {
    return 'unknown'
  }
}

/**
 * The Linux Deno binary that the npm `deno` package pulled in for this machine's architecture
 * (`@deno/linux-x64-glibc`, `@deno/linux-arm64-glibc`), with its version; undefined when npm
 * installed none (another platform, or the optional dependency was skipped).
 */
export function bundledDeno(): { binary: string; version: string } | undefined {
  if (process.platform !== 'linux') return undefined
  try {
    const fromDeno = createRequire(createRequire(import.meta.url).resolve('deno/package.json'))
    const manifest = fromDeno.resolve(`@deno/linux-${process.arch}-glibc/package.json`)
    const binary = path.join(path.dirname(manifest), 'deno')
    if (!existsSync(binary)) return undefined
    return { binary, version: String((JSON.parse(readFileSync(manifest, 'utf8')) as { version: unknown }).version) }
  } catch {
    return undefined
  }
}

/** Short hash of everything that shapes the image. */
export function recipeHash(recipe: ImageRecipe): string {
  const h = createHash('sha256')
  // Host paths are not part of the image; a recipe without Deno hashes as recipes did before it.
  h.update(
    JSON.stringify({
      ...recipe,
      nodeBinary: undefined,
      denoBinary: undefined,
      npmDir: undefined,
      packages: [...recipe.packages].sort(),
      steps: BUILD_STEPS_VERSION,
    }),
  )
  h.update(packageManagerFiles())
  if (recipe.nodeVersion === 'unknown') h.update(readFileSync(recipe.nodeBinary))
  if (recipe.denoBinary && recipe.denoVersion === 'unknown') h.update(readFileSync(recipe.denoBinary))
  return h.digest('hex').slice(0, 16)
}
