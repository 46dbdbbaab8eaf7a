/**
 * The default sandbox image recipe: Debian packages for Python and its data stack, plus the
 * host's Node.js (≥ 22) binary for the JavaScript/TypeScript kernel. The recipe's hash names the
 * cached image, so a changed recipe builds a new one and an unchanged one is reused.
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'

export interface ImageRecipe {
  name: string
  suite: string
  mirror: string
  packages: string[]
  /** Path of the Node.js binary copied into the image; its version is part of the hash. */
  nodeBinary: string
  nodeVersion: string
}

/** Bump when the build steps change in a way that changes the image. */
const BUILD_STEPS_VERSION = 4

export function defaultRecipe(options: { mirror?: string; nodeBinary?: string } = {}): ImageRecipe {
  const nodeBinary = options.nodeBinary ?? process.execPath
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
    ],
    nodeBinary,
    nodeVersion: nodeBinary === process.execPath ? process.version : 'unknown',
  }
}

/** Short hash of everything that shapes the image. */
export function recipeHash(recipe: ImageRecipe): string {
  const h = createHash('sha256')
  h.update(JSON.stringify({ ...recipe, nodeBinary: undefined, packages: [...recipe.packages].sort(), steps: BUILD_STEPS_VERSION }))
  if (recipe.nodeVersion === 'unknown') h.update(readFileSync(recipe.nodeBinary))
  return h.digest('hex').slice(0, 16)
}
