/**
 * Bundles for runtime tests: gzipped tars built byte by byte (ustar headers), so a test can make
 * the hostile entries no archiver would write: `..` paths, absolute paths, links out, devices.
 */
import { gzipSync } from 'node:zlib'

export interface RawEntry {
  path: string
  /** '0' file (default), '1' hard link, '2' symlink, '3' char device, '5' directory, '6' FIFO. */
  type?: '0' | '1' | '2' | '3' | '5' | '6'
  body?: string | Buffer
  linkpath?: string
  mode?: number
  /** A header size other than the body's length (a lying header). */
  size?: number
}

function header(e: RawEntry, size: number): Buffer {
  const h = Buffer.alloc(512)
  const put = (value: string, at: number, len: number) => h.write(value.slice(0, len), at, 'utf8')
  const octal = (n: number, at: number, len: number) => put(n.toString(8).padStart(len - 1, '0') + '\0', at, len)
  put(e.path, 0, 100)
  octal(e.mode ?? (e.type === '5' ? 0o755 : 0o644), 100, 8)
  octal(0, 108, 8)
  octal(0, 116, 8)
  octal(size, 124, 12)
  octal(1_700_000_000, 136, 12)
  h.fill(' ', 148, 156)
  put(e.type ?? '0', 156, 1)
  put(e.linkpath ?? '', 157, 100)
  put('ustar\0', 257, 6)
  put('00', 263, 2)
  let sum = 0
  for (const b of h) sum += b
  put(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8)
  return h
}

/** A gzipped tar of `entries`, in order. */
export function rawTarGz(entries: RawEntry[]): Buffer {
  const parts: Buffer[] = []
  for (const e of entries) {
    const body = Buffer.from(e.body ?? '')
    parts.push(header(e, e.size ?? body.length), body, Buffer.alloc((512 - (body.length % 512)) % 512))
  }
  parts.push(Buffer.alloc(1024))
  return gzipSync(Buffer.concat(parts))
}

/** A small Node agent bundle: index.js and a helper module, plus a node_modules/.bin link inside. */
export function agentBundle(marker = 'v1'): Buffer {
  return rawTarGz([
    { path: 'index.js', body: `console.log(${JSON.stringify(marker)})\n` },
    { path: 'lib/', type: '5' },
    { path: 'lib/util.js', body: 'module.exports = 1\n' },
    { path: 'node_modules/tool/cli.js', body: '#!/usr/bin/env node\n', mode: 0o755 },
    { path: 'node_modules/.bin/tool', type: '2', linkpath: '../tool/cli.js' },
  ])
}
