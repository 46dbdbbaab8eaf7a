/**
 * A deterministic tar stream of a directory tree, for an OCI image layer: entries in byte order of
 * their names (a directory before its contents), one fixed mtime, numeric owners without names,
 * hard links as link entries to the first name, PAX headers for what ustar cannot hold (long or
 * non-UTF-8 names, large sizes or ids). Streamed: a file's bytes pass through in chunks, so a tree
 * of any size takes the memory of one directory listing per level. Names are handled as bytes.
 */
import { createReadStream } from 'node:fs'
import { lstat, readdir, readlink } from 'node:fs/promises'
import { CodeboxError } from '@codebox/core'

export interface TarOptions {
  /** mtime of every entry, unix seconds; default 0. */
  mtime?: number
  /** Leaves out an entry (and, for a directory, all it holds), by its path relative to the root ('/'-separated bytes as latin1). */
  exclude?: (relPath: string) => boolean
  signal?: AbortSignal
}

const BLOCK = 512
const ustarMax = { name: 100, link: 100, octal8: 0o7777777, octal12: 0o77777777777 }

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0'
}

function header(fields: {
  name: Buffer
  mode: number
  uid: number
  gid: number
  size: number
  mtime: number
  type: string
  link?: Buffer
  devMajor?: number
  devMinor?: number
}): Buffer {
  const h = Buffer.alloc(BLOCK)
  fields.name.copy(h, 0, 0, Math.min(fields.name.length, 100))
  h.write(octal(fields.mode, 8), 100, 'latin1')
  h.write(octal(Math.min(fields.uid, ustarMax.octal8), 8), 108, 'latin1')
  h.write(octal(Math.min(fields.gid, ustarMax.octal8), 8), 116, 'latin1')
  h.write(octal(Math.min(fields.size, ustarMax.octal12), 12), 124, 'latin1')
  h.write(octal(fields.mtime, 12), 136, 'latin1')
  h.write(fields.type, 156, 'latin1')
  fields.link?.copy(h, 157, 0, Math.min(fields.link.length, 100))
  h.write('ustar\0', 257, 'latin1')
  h.write('00', 263, 'latin1')
  h.write(octal(fields.devMajor ?? 0, 8), 329, 'latin1')
  h.write(octal(fields.devMinor ?? 0, 8), 337, 'latin1')
  h.fill(' ', 148, 156)
  let sum = 0
  for (const b of h) sum += b
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1')
  return h
}

const padding = (size: number): Buffer => Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK)

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'latin1'), value, Buffer.from('\n')])
  let length = body.length + 1
  while (String(length).length + body.length !== length) length = String(length).length + body.length
  return Buffer.concat([Buffer.from(String(length), 'latin1'), body])
}

function isUtf8(b: Buffer): boolean {
  return Buffer.from(b.toString('utf8'), 'utf8').equals(b)
}

interface Entry {
  name: Buffer
  mode: number
  uid: number
  gid: number
  size: number
  type: string
  link?: Buffer
  devMajor?: number
  devMinor?: number
}

/** The header blocks of one entry: a PAX header first when ustar cannot hold it. */
function entryHeaders(e: Entry, mtime: number): Buffer[] {
  const records: Buffer[] = []
  if (e.name.length > ustarMax.name || !isUtf8(e.name) || e.name.some((b) => b > 0x7f)) records.push(paxRecord('path', e.name))
  if (e.link !== undefined && (e.link.length > ustarMax.link || e.link.some((b) => b > 0x7f))) records.push(paxRecord('linkpath', e.link))
  if (e.size > ustarMax.octal12) records.push(paxRecord('size', Buffer.from(String(e.size))))
  if (e.uid > ustarMax.octal8) records.push(paxRecord('uid', Buffer.from(String(e.uid))))
  if (e.gid > ustarMax.octal8) records.push(paxRecord('gid', Buffer.from(String(e.gid))))
  if (records.length > 0 && (!isUtf8(e.name) || (e.link !== undefined && !isUtf8(e.link)))) records.unshift(paxRecord('hdrcharset', Buffer.from('BINARY')))
  const out: Buffer[] = []
  if (records.length > 0) {
    const body = Buffer.concat(records)
    out.push(header({ name: Buffer.from('PaxHeader'), mode: 0o644, uid: 0, gid: 0, size: body.length, mtime, type: 'x' }), body, padding(body.length))
  }
  out.push(header({ ...e, mtime }))
  return out
}

const slash = Buffer.from('/')

/**
 * The tar stream of the tree at `root` (its contents, not the root itself), ending with the two
 * zero blocks. A socket is left out (tar cannot hold one); a file whose size changes while it is
 * read is an error, not a silently corrupt layer.
 */
export async function* tarTree(root: string, options: TarOptions = {}): AsyncGenerator<Buffer> {
  const mtime = options.mtime ?? 0
  const firstName = new Map<string, Buffer>()
  async function* walk(dir: Buffer, rel: Buffer | undefined): AsyncGenerator<Buffer> {
    const names = (await readdir(dir, { encoding: 'buffer' })).sort(Buffer.compare)
    for (const name of names) {
      options.signal?.throwIfAborted()
      const full = Buffer.concat([dir, slash, name])
      const relName = rel === undefined ? name : Buffer.concat([rel, slash, name])
      if (options.exclude?.(relName.toString('latin1'))) continue
      const st = await lstat(full, { bigint: false })
      const base = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, size: 0 }
      if (st.isDirectory()) {
        yield* entryHeaders({ ...base, name: Buffer.concat([relName, slash]), type: '5' }, mtime)
        yield* walk(full, relName)
      } else if (st.isSymbolicLink()) {
        yield* entryHeaders({ ...base, name: relName, type: '2', link: await readlink(full, { encoding: 'buffer' }) }, mtime)
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`
        const first = st.nlink > 1 ? firstName.get(key) : undefined
        if (first !== undefined) {
          yield* entryHeaders({ ...base, name: relName, type: '1', link: first }, mtime)
          continue
        }
        if (st.nlink > 1) firstName.set(key, relName)
        yield* entryHeaders({ ...base, name: relName, type: '0', size: st.size }, mtime)
        let read = 0
        if (st.size > 0) {
          for await (const chunk of createReadStream(full, { end: st.size - 1, highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>) {
            read += chunk.length
            yield chunk
          }
        }
        if (read !== st.size) throw new CodeboxError('SandboxFailure', `${full.toString()} changed while it was read (${read} of ${st.size} bytes)`)
        yield padding(st.size)
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        const devMajor = Math.floor(st.rdev / 256) & 0xfff
        const devMinor = (st.rdev & 0xff) | (Math.floor(st.rdev / 4096) & 0xfff00)
        yield* entryHeaders({ ...base, name: relName, type: st.isCharacterDevice() ? '3' : '4', devMajor, devMinor }, mtime)
      } else if (st.isFIFO()) {
        yield* entryHeaders({ ...base, name: relName, type: '6' }, mtime)
      }
    }
  }
  yield* walk(Buffer.from(root), undefined)
  yield Buffer.alloc(2 * BLOCK)
}
