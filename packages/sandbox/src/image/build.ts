/**
 * Builds and caches sandbox images. A build goes into a temporary folder beside the cache and is
 * renamed into place only when complete, so a failed or interrupted build leaves no half image.
 */
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, symlink, writeFile, chmod } from 'node:fs/promises'
import path from 'node:path'
import { CodeboxError } from '@codebox/core'
import { addPackageManagers } from './package-managers.ts'
import { recipeHash, type ImageRecipe } from './recipe.ts'

export interface ImageInfo {
  hash: string
  path: string
  sizeBytes: number
  builtAt: string
  buildSeconds: number
  recipe: ImageRecipe
}

export interface BuildOptions {
  stateDir: string
  recipe: ImageRecipe
  /** Progress lines, as the build prints them. */
  onProgress?: (line: string) => void
  signal?: AbortSignal
}

/** Where a recipe's image lives in the cache (whether built or not). */
export const imagePath = (stateDir: string, recipe: ImageRecipe): string => path.join(stateDir, 'images', recipeHash(recipe))

/** The cached image for a recipe, or undefined when it has not been built. */
export async function findImage(stateDir: string, recipe: ImageRecipe): Promise<ImageInfo | undefined> {
  try {
    return JSON.parse(await readFile(path.join(imagePath(stateDir, recipe), 'manifest.json'), 'utf8')) as ImageInfo
  } catch {
    return undefined
  }
}

/** Builds the recipe's image unless it is cached; returns it either way. */
export async function ensureImage(options: BuildOptions): Promise<ImageInfo & { cached: boolean }> {
  const found = await findImage(options.stateDir, options.recipe)
  if (found) return { ...found, cached: true }
  return { ...(await buildImage(options)), cached: false }
}

export async function buildImage({ stateDir, recipe, onProgress = () => {}, signal }: BuildOptions): Promise<ImageInfo> {
  const started = performance.now()
  const hash = recipeHash(recipe)
  const imagesDir = path.join(stateDir, 'images')
  await mkdir(imagesDir, { recursive: true, mode: 0o755 })
  await removeStaleBuilds(imagesDir)
  const work = path.join(imagesDir, `.building-${hash}-${process.pid}`)
  const root = work
  try {
    onProgress(`building image ${hash} from ${recipe.packages.length} Debian packages (${recipe.suite}); this takes a minute or two`)
    await run(
      'mmdebstrap',
      [
        '--mode=root',
        '--variant=minbase',
        '--format=directory',
        `--include=${recipe.packages.join(',')}`,
        '--dpkgopt=path-exclude=/usr/share/doc/*',
        '--dpkgopt=path-exclude=/usr/share/man/*',
        '--dpkgopt=path-exclude=/usr/share/locale/*',
        '--dpkgopt=path-exclude=/usr/share/info/*',
        recipe.suite,
        root,
        recipe.mirror,
      ],
      onProgress,
      signal,
    )
    onProgress(`adding Node.js ${recipe.nodeVersion}`)
    await copyFile(recipe.nodeBinary, path.join(root, 'usr/local/bin/node'))
    await chmod(path.join(root, 'usr/local/bin/node'), 0o755)
    await finishRoot(root)
    onProgress('prebuilding the matplotlib font cache')
    await runInImage(
      root,
      { MPLCONFIGDIR: '/usr/share/codebox/matplotlib', MPLBACKEND: 'Agg' },
      ['/usr/bin/python3', '-c', 'import matplotlib.pyplot'],
      onProgress,
      signal,
    )
    onProgress(recipe.npmDir ? `adding pip's configuration and npm ${recipe.npmVersion ?? 'unknown'}` : "adding pip's configuration")
    await addPackageManagers(root, recipe.npmDir)
    await runInImage(root, { HOME: '/tmp' }, ['/usr/local/bin/pip', '--version'], onProgress, signal)
    if (recipe.npmDir) await runInImage(root, { HOME: '/tmp' }, ['/usr/local/bin/npm', '--version'], onProgress, signal)
    for (const left of ['tmp/.npm', 'tmp/node-compile-cache']) await rm(path.join(root, left), { recursive: true, force: true })
    if (recipe.denoBinary) await addDeno(root, { binary: recipe.denoBinary, version: recipe.denoVersion ?? 'unknown' }, onProgress, signal)
    const info: ImageInfo = {
      hash,
      path: imagePath(stateDir, recipe),
      sizeBytes: await du(root),
      builtAt: new Date().toISOString(),
      buildSeconds: Math.round((performance.now() - started) / 100) / 10,
      recipe,
    }
    await writeFile(path.join(root, 'manifest.json'), JSON.stringify(info, null, 2))
    await rename(work, info.path)
    return info
  } catch (e) {
    await rm(work, { recursive: true, force: true })
    if (e instanceof CodeboxError) throw e
    throw new CodeboxError('SandboxFailure', `image build failed: ${(e as Error).message}`, { cause: e })
  }
}

/**
 * Copies Deno in as /usr/local/bin/deno and checks that it runs there; a binary that does not
 * is left out (the image still builds, and its sessions report the `deno` runtime unavailable).
 */
async function addDeno(root: string, deno: { binary: string; version: string }, onProgress: (line: string) => void, signal?: AbortSignal): Promise<void> {
  const target = path.join(root, 'usr/local/bin/deno')
  onProgress(`adding Deno ${deno.version}`)
  await copyFile(deno.binary, target)
  await chmod(target, 0o755)
  try {
    await runInImage(root, { DENO_NO_UPDATE_CHECK: '1' }, ['/usr/local/bin/deno', '--version'], onProgress, signal)
  } catch (e) {
    if (signal?.aborted) throw e
    await rm(target, { force: true })
    onProgress(`Deno does not run in the image, building without it: ${(e as Error).message}`)
  }
}

/** Runs a command inside the image being built: no network, a clean environment. */
function runInImage(root: string, env: Record<string, string>, argv: string[], onProgress: (line: string) => void, signal?: AbortSignal): Promise<void> {
  const vars = Object.entries({ PATH: '/usr/bin:/bin', ...env }).flatMap(([name, value]) => ['--setenv', name, value])
  return run(
    'bwrap',
    ['--bind', root, '/', '--proc', '/proc', '--dev', '/dev', '--unshare-all', '--die-with-parent', '--clearenv', ...vars, ...argv],
    onProgress,
    signal,
  )
}

/**
 * The few files the sandbox expects: its user, the mount points, a hosts file, and
 * `/home/user` leading to `/workspace` (E2B's home: code written for E2B names it literally).
 */
async function finishRoot(root: string): Promise<void> {
  for (const dir of ['workspace', 'app', 'home', 'opt/codebox/executor', 'opt/codebox/node_modules/acorn', 'usr/share/codebox/matplotlib']) {
    await mkdir(path.join(root, dir), { recursive: true, mode: 0o755 })
  }
  await rm(path.join(root, 'home/user'), { recursive: true, force: true })
  await symlink('/workspace', path.join(root, 'home/user'))
  const passwd = await readFile(path.join(root, 'etc/passwd'), 'utf8')
  if (!passwd.includes('\nsandbox:')) await writeFile(path.join(root, 'etc/passwd'), `${passwd}sandbox:x:1000:1000:codebox sandbox:/workspace:/bin/bash\n`)
  const group = await readFile(path.join(root, 'etc/group'), 'utf8')
  if (!group.includes('\nsandbox:')) await writeFile(path.join(root, 'etc/group'), `${group}sandbox:x:1000:\n`)
  await writeFile(path.join(root, 'etc/hosts'), '127.0.0.1 localhost sandbox\n::1 localhost\n')
  await writeFile(path.join(root, 'etc/hostname'), 'sandbox\n')
  await writeFile(path.join(root, 'etc/resolv.conf'), '')
}

async function removeStaleBuilds(imagesDir: string): Promise<void> {
  for (const name of await readdir(imagesDir)) {
    if (!name.startsWith('.building-')) continue
    const pid = Number(name.split('-').pop())
    let alive = false
    try {
      process.kill(pid, 0)
      alive = pid !== process.pid
    } catch {
      alive = false
    }
    if (!alive) await rm(path.join(imagesDir, name), { recursive: true, force: true })
  }
}

function run(cmd: string, args: string[], onProgress: (line: string) => void, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], signal })
    const tail: string[] = []
    const onLine = (line: string): void => {
      tail.push(line)
      if (tail.length > 20) tail.shift()
      onProgress(line)
    }
    createInterface({ input: child.stdout }).on('line', onLine)
    createInterface({ input: child.stderr }).on('line', onLine)
    child.once('error', (e) =>
      reject(
        (e as NodeJS.ErrnoException).code === 'ENOENT'
          ? new CodeboxError(
              'Unavailable',
              `${cmd} is not installed; install it (apt-get install ${cmd === 'bwrap' ? 'bubblewrap' : cmd}) or run the README's start command, which does`,
            )
          : e,
      ),
    )
    child.once('exit', (code, sig) => (code === 0 ? resolve() : reject(new Error(`${cmd} failed (${sig ?? `exit ${code}`}): ${tail.slice(-5).join(' | ')}`))))
  })
}

async function du(dir: string): Promise<number> {
  let total = 0
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name)
      if (e.isDirectory()) await walk(p)
      else if (e.isFile()) total += (await stat(p)).size
    }
  }
  await walk(dir)
  return total
}
