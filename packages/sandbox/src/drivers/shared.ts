/** Small pieces every driver needs: where the executor lives, and a bounded diagnostics buffer. */
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

/** The executor's folder on the host; drivers mount it read-only into the sandbox. */
export const executorDir = fileURLToPath(new URL('../../executor/', import.meta.url))

/** The host folder holding the `acorn` package the Node kernel imports. */
export const hostNodeModules = path.dirname(path.dirname(path.dirname(createRequire(import.meta.url).resolve('acorn'))))

/** Keeps the last `max` bytes written to it; for a sandbox's stderr. */
export function boundedBuffer(max: number): { push(chunk: Buffer): void; text(): string } {
  let buf = Buffer.alloc(0)
  return {
    push(chunk) {
      buf = Buffer.concat([buf, chunk])
      if (buf.length > max) buf = buf.subarray(buf.length - max)
    },
    text: () => buf.toString('utf8'),
  }
}
