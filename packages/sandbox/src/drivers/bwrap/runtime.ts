/**
 * The files every sandbox needs from the host besides the image: the executor and the `acorn`
 * package its Node kernel imports. They are copied out of the checkout, which may sit where no
 * sandbox uid can enter (a clone under /root, mode 0700), into `<runtimeRoot>/<content hash>/`
 * laid out as they appear in the sandbox (`opt/codebox/...`): root-owned, dirs 0755, files 0644
 * (0755 when executable), written to a temp dir and renamed into place, so a reader never sees
 * half a tree. The launcher stacks this tree over the image as an overlay layer. The tree also
 * holds the empty directories the sandbox mounts things on that the image may lack (MOUNT_POINTS).
 */
import { createHash, randomBytes } from 'node:crypto'
import { chmod, lstat, mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { CODE_DIR, CodeboxError } from '@codebox/core'
import { executorDir, hostNodeModules } from '../shared.ts'

/** Where each source lands, relative to the runtime tree's root (= the sandbox's /). */
const SOURCES: readonly [string, string][] = [
  [executorDir, 'opt/codebox/executor'],
  [path.join(hostNodeModules, 'acorn'), 'opt/codebox/node_modules/acorn'],
]

/** Empty directories of the tree: mount points (CODE_DIR, where a session's code appears). */
const MOUNT_POINTS: readonly string[] = [CODE_DIR.slice(1)]

/** Bounds on what is copied: the sources are small; anything far larger is a mistake. */
const MAX_FILES = 2_000
const MAX_BYTES = 64 * 1024 * 1024

interface SourceFile {
  /** Path relative to the runtime tree's root. */
  rel: string
  data: Buffer
  executable: boolean
}

async function collect(dir: string, rel: string, out: SourceFile[]): Promise<void> {
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (entry.name === '__pycache__' || entry.name === 'node_modules') continue
    const full = path.join(dir, entry.name)
    // stat, not lstat: a symlinked source (npm workspaces link packages) is copied as what it names.
    const st = await stat(full)
    if (st.isDirectory()) await collect(full, path.join(rel, entry.name), out)
    else if (st.isFile()) out.push({ rel: path.join(rel, entry.name), data: await readFile(full), executable: (st.mode & 0o111) !== 0 })
    if (out.length > MAX_FILES) throw new CodeboxError('Unavailable', `the sandbox runtime has more than ${MAX_FILES} files (from ${dir})`)
  }
}

/** Every file of the runtime and its content hash (16 hex digits). */
async function sourceFiles(): Promise<{ files: SourceFile[]; hash: string }> {
  const files: SourceFile[] = []
  for (const [from, to] of SOURCES) {
    try {
      await collect(from, to, files)
    } catch (e) {
      if (e instanceof CodeboxError) throw e
      throw new CodeboxError('Unavailable', `cannot read the sandbox runtime from ${from}: ${(e as Error).message}`, { cause: e })
    }
  }
  const hash = createHash('sha256')
  let bytes = 0
  for (const f of files) {
    bytes += f.data.length
    hash.update(`${f.rel}\0${f.executable ? 1 : 0}\0${f.data.length}\0`).update(f.data)
  }
  for (const dir of MOUNT_POINTS) hash.update(`dir\0${dir}\0`)
  if (bytes > MAX_BYTES) throw new CodeboxError('Unavailable', `the sandbox runtime is ${bytes} bytes, over ${MAX_BYTES}`)
  return { files, hash: hash.digest('hex').slice(0, 16) }
}

/**
 * Installs the runtime under `runtimeRoot` unless this content is there already, checks that a
 * sandbox uid can read all of it, and returns its path. Unavailable, naming the path, if not.
 */
export async function installRuntime(runtimeRoot: string): Promise<string> {
  const { files, hash } = await sourceFiles()
  const target = path.join(runtimeRoot, hash)
  if (!(await exists(target))) {
    await mkdir(runtimeRoot, { recursive: true, mode: 0o755 })
    const temp = path.join(runtimeRoot, `.tmp-${hash}-${randomBytes(4).toString('hex')}`)
    try {
      await mkdir(temp, { mode: 0o755 })
      for (const f of files) {
        const dest = path.join(temp, f.rel)
        await mkdirTree(temp, path.dirname(f.rel))
        await writeFile(dest, f.data, { mode: 0o600, flag: 'wx' })
        await chmod(dest, f.executable ? 0o755 : 0o644)
      }
      for (const dir of MOUNT_POINTS) await mkdirTree(temp, dir)
      await chmod(temp, 0o755)
      await rename(temp, target)
    } catch (e) {
      await rm(temp, { recursive: true, force: true })
      // Another server installed the same content first: use that.
      if (!(await exists(target)))
        throw new CodeboxError('Unavailable', `cannot install the sandbox runtime into ${target}: ${(e as Error).message}`, { cause: e })
    }
  }
  await checkReadable(target)
  // Its time says when a server last used it (pruneRuntimes).
  const now = new Date()
  await utimes(target, now, now).catch(() => {})
  return target
}

/** How long a runtime tree no server installed or used is kept. */
export const RUNTIME_KEEP_MS = 7 * 24 * 3600_000

/**
 * Removes runtime trees under `runtimeRoot` (and temp dirs of interrupted installs) that are not in
 * `keep` and were not used for `olderThanMs`: another server on the same state dir (a different
 * checkout) marks its tree each time it starts. Best effort: what cannot be removed stays.
 */
export async function pruneRuntimes(runtimeRoot: string, keep: ReadonlySet<string>, olderThanMs: number): Promise<string[]> {
  const removed: string[] = []
  let names: string[]
  try {
    names = await readdir(runtimeRoot)
  } catch {
    return removed
  }
  for (const name of names) {
    if (keep.has(name) || !/^([0-9a-f]{16}|\.tmp-[0-9a-f]{16}-[0-9a-f]{8})$/.test(name)) continue
    const dir = path.join(runtimeRoot, name)
    try {
      const st = await lstat(dir)
      if (!st.isDirectory() || Date.now() - st.mtimeMs < olderThanMs) continue
      await rm(dir, { recursive: true, force: true })
      removed.push(name)
    } catch {
      // in use by a racing install, or already gone
    }
  }
  return removed
}

/** Makes each directory of `rel` under `root`, 0755 whatever the umask. */
async function mkdirTree(root: string, rel: string): Promise<void> {
  let dir = root
  for (const part of rel.split(path.sep).filter(Boolean)) {
    dir = path.join(dir, part)
    try {
      await mkdir(dir, { mode: 0o755 })
      await chmod(dir, 0o755)
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
  }
}

/** Every entry root-owned (the server's user), directories 0755-like and files world-readable. */
async function checkReadable(dir: string): Promise<void> {
  const owner = process.getuid?.() ?? 0
  const check = async (p: string): Promise<void> => {
    const st = await lstat(p)
    const need = st.isDirectory() ? 0o005 : 0o004
    if (st.uid !== owner || (st.mode & need) !== need || (st.mode & 0o022) !== 0 || !(st.isDirectory() || st.isFile())) {
      throw new CodeboxError(
        'Unavailable',
        `the sandbox runtime file ${p} is not readable by sandbox uids or is writable by others (mode ${(st.mode & 0o7777).toString(8)}, owner ${st.uid}); remove ${dir} and restart`,
      )
    }
    if (st.isDirectory()) for (const name of await readdir(p)) await check(path.join(p, name))
  }
  await check(dir)
}

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p)
    return true
  } catch {
    return false
  }
}
