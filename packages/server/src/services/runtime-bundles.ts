/**
 * Unpacking a runtime's code bundle (a gzipped tar) onto the host, defensively: the archive comes
 * from a user, so only regular files, directories, hard links to files already unpacked and
 * symbolic links that stay inside the bundle are written; absolute paths, `..` segments, entries
 * beneath a symbolic link, devices, FIFOs and duplicates are refused; the unpacked size and the
 * number of entries are bounded; the bytes must match the recorded SHA-256. Files are 0644 (0755
 * when executable), directories 0755. On any failure the destination is removed.
 */
import { createHash } from 'node:crypto'
import { chmod, copyFile, lstat, mkdir, open, rm, symlink } from 'node:fs/promises'
import { posix } from 'node:path'
import { entries } from 'tar'
import { CodeboxError, validationError } from '@codebox/core'

export interface UnpackLimits {
  /** Largest total of file sizes once unpacked. */
  maxUnpackedBytes: number
  /** Most entries (files, directories, links). */
  maxEntries: number
}

export interface UnpackResult {
  files: number
  unpackedBytes: number
  sha256: string
}

/** A refused bundle: a ValidationError on `bundle` saying which entry and why. */
const refused = (message: string): CodeboxError => validationError('bundle', message)

/**
 * Unpacks the gzipped tar `input` into `dest` (which must not exist; its parent must). When
 * `sha256` is given, the compressed bytes must have that digest (a mismatch is Internal: the
 * stored bundle is damaged). Any failure removes `dest` and rethrows; a malformed or hostile
 * archive is a ValidationError on `bundle`.
 */
export async function unpackBundle(input: AsyncIterable<Uint8Array>, dest: string, limits: UnpackLimits, sha256?: string): Promise<UnpackResult> {
  const hash = createHash('sha256')
  async function* hashed(): AsyncGenerator<Uint8Array> {
    for await (const chunk of input) {
      hash.update(chunk)
      yield chunk
    }
  }
  await mkdir(dest, { mode: 0o755 })
  try {
    const result = await unpackInto(hashed(), dest, limits)
    const digest = hash.digest('hex')
    if (sha256 !== undefined && digest !== sha256) {
      throw new CodeboxError('Internal', `the stored bundle is damaged: its SHA-256 is ${digest}, ${sha256} was recorded`)
    }
    await chmod(dest, 0o755)
    return { ...result, sha256: digest }
  } catch (e) {
    await rm(dest, { recursive: true, force: true })
    throw e
  }
}

async function unpackInto(input: AsyncIterable<Uint8Array>, dest: string, limits: UnpackLimits): Promise<Omit<UnpackResult, 'sha256'>> {
  const seen = new Map<string, 'file' | 'dir' | 'symlink'>()
  let count = 0
  let unpackedBytes = 0
  let files = 0
  const charge = (bytes: number, path: string): void => {
    unpackedBytes += bytes
    if (unpackedBytes > limits.maxUnpackedBytes) {
      throw new CodeboxError('LimitExceeded', `the bundle unpacks to more than ${limits.maxUnpackedBytes} bytes (at ${JSON.stringify(path)})`, {
        details: { field: 'bundle', limit: limits.maxUnpackedBytes },
      })
    }
  }
  const ensureParents = async (rel: string): Promise<void> => {
    const parts = rel.split('/').slice(0, -1)
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/')
      const kind = seen.get(prefix)
      if (kind === 'symlink') throw refused(`entry ${JSON.stringify(rel)} is beneath the symbolic link ${JSON.stringify(prefix)}`)
      if (kind === 'file') throw refused(`entry ${JSON.stringify(rel)} is beneath the file ${JSON.stringify(prefix)}`)
      if (kind === undefined) {
        await mkdir(posix.join(dest, prefix), { mode: 0o755 })
        seen.set(prefix, 'dir')
      }
    }
  }
  let reader: AsyncIterableIterator<unknown>
  try {
    reader = entries(input)
  } catch (e) {
    throw refused(`not a gzipped tar: ${(e as Error).message}`)
  }
  for (;;) {
    let next: IteratorResult<unknown>
    try {
      next = await reader.next()
    } catch (e) {
      if (e instanceof CodeboxError) throw e
      throw refused(`not a valid gzipped tar: ${(e as Error).message}`)
    }
    if (next.done) break
    const entry = next.value as import('tar').ReadEntry
    if (++count > limits.maxEntries) {
      throw new CodeboxError('LimitExceeded', `the bundle has more than ${limits.maxEntries} entries`, {
        details: { field: 'bundle', limit: limits.maxEntries },
      })
    }
    const rel = entryPath(entry.path)
    if (rel === undefined) {
      if (entry.type === 'Directory') continue
      throw refused(`entry ${JSON.stringify(entry.path)} names the bundle's root`)
    }
    if (seen.has(rel)) {
      if (entry.type === 'Directory' && seen.get(rel) === 'dir') continue
      throw refused(`entry ${JSON.stringify(rel)} appears twice`)
    }
    await ensureParents(rel)
    const target = posix.join(dest, rel)
    switch (entry.type) {
      case 'Directory':
        await mkdir(target, { mode: 0o755 })
        await chmod(target, 0o755)
        seen.set(rel, 'dir')
        break
      case 'File':
      case 'OldFile':
      case 'ContiguousFile': {
        charge(entry.size, rel)
        const written = await writeBody(entry, target, rel, entry.size)
        if (written !== entry.size) throw refused(`entry ${JSON.stringify(rel)} is cut short (${written} of ${entry.size} bytes)`)
        await chmod(target, (entry.mode ?? 0o644) & 0o111 ? 0o755 : 0o644)
        seen.set(rel, 'file')
        files++
        break
      }
      case 'SymbolicLink': {
        const link = entry.linkpath ?? ''
        if (link === '' || link.startsWith('/') || link.includes('\0')) {
          throw refused(`symbolic link ${JSON.stringify(rel)} points to ${JSON.stringify(link)}: only relative links inside the bundle are allowed`)
        }
        // In normal form (`..` only at the start), and with no entry beneath a link, resolving it
        // never leaves the bundle: the leading `..` climb real directories, the names only descend.
        if (posix.normalize(link) !== link.replace(/(.)\/$/, '$1')) {
          throw refused(
            `symbolic link ${JSON.stringify(rel)} points to ${JSON.stringify(link)}: write the target in normal form (no ./, //, or .. after a name)`,
          )
        }
        const resolved = posix.normalize(posix.join(posix.dirname(rel), link))
        if (resolved === '..' || resolved.startsWith('../')) {
          throw refused(`symbolic link ${JSON.stringify(rel)} points outside the bundle (${JSON.stringify(link)})`)
        }
        await symlink(link, target)
        seen.set(rel, 'symlink')
        break
      }
      case 'Link': {
        // A hard link (tar writes one for a file with several names): a copy of a file unpacked before.
        const source = entryPath(entry.linkpath ?? '')
        if (source === undefined || seen.get(source) !== 'file') {
          throw refused(`hard link ${JSON.stringify(rel)} must name a file earlier in the bundle, not ${JSON.stringify(entry.linkpath)}`)
        }
        const from = posix.join(dest, source)
        charge((await lstat(from)).size, rel)
        await copyFile(from, target)
        seen.set(rel, 'file')
        files++
        break
      }
      default:
        throw refused(`entry ${JSON.stringify(rel)} is a ${entry.type}: a bundle may hold only files, directories and links inside it`)
    }
  }
  return { files, unpackedBytes }
}

/**
 * The entry's path relative to the bundle's root (`./` and trailing `/` dropped), undefined for
 * the root itself; absolute paths and `..` segments are refused.
 */
function entryPath(raw: string): string | undefined {
  if (raw.includes('\0')) throw refused(`an entry's path holds a NUL byte`)
  if (raw.startsWith('/') || /^[A-Za-z]:/.test(raw)) throw refused(`entry ${JSON.stringify(raw)} has an absolute path`)
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.')
  if (parts.includes('..')) throw refused(`entry ${JSON.stringify(raw)} has a .. segment`)
  return parts.length === 0 ? undefined : parts.join('/')
}

/** Writes an entry's body to a new file (never through an existing one); returns the bytes written, at most `declared`. */
async function writeBody(entry: import('tar').ReadEntry, target: string, rel: string, declared: number): Promise<number> {
  const handle = await open(target, 'wx', 0o644)
  let written = 0
  try {
    const reader = entry.body.getReader()
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      written += r.value.length
      if (written > declared) throw refused(`entry ${JSON.stringify(rel)} has more bytes than its header says`)
      await handle.write(r.value)
    }
  } finally {
    await handle.close()
  }
  return written
}

/** What the entrypoint defaults to, in order, when a deploy names none and no earlier version had one. */
export const defaultEntrypoints = ['index.js', 'main.py', 'app.py', 'agent.py'] as const
