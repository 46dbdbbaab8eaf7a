/** Small pieces every driver needs: where the executor lives, its environment, and a bounded diagnostics buffer. */
import { createRequire } from 'node:module'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { SessionLimits } from '@codebox/core'

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

/**
 * The executor's environment in an isolated sandbox (bwrap, gVisor), before the network's
 * variables: the image's tools, the workspace as home, math libraries held to the CPU limit.
 */
export function sandboxEnv(limits: SessionLimits): Record<string, string> {
  const threads = String(Math.max(1, Math.ceil(limits.cpuCores)))
  return {
    // after the image's own: the commands that pip (--user) and npm (-g) install into the workspace
    PATH: '/usr/local/bin:/usr/bin:/bin:/workspace/.local/bin:/workspace/.npm-global/bin',
    HOME: '/workspace',
    USER: 'sandbox',
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    TERM: 'dumb',
    MPLBACKEND: 'Agg',
    MPLCONFIGDIR: '/tmp/.config/matplotlib',
    XDG_CACHE_HOME: '/tmp/.cache',
    OPENBLAS_NUM_THREADS: threads,
    OMP_NUM_THREADS: threads,
    PYTHONDONTWRITEBYTECODE: '1',
    // pip's PEP 668 refusal covers `pip uninstall` of the workspace's own packages too; the image is read-only anyway
    PIP_BREAK_SYSTEM_PACKAGES: '1',
    CODEBOX_WORKSPACE: '/workspace',
    CODEBOX_NODE: '/usr/local/bin/node',
    CODEBOX_PYTHON: '/usr/bin/python3',
  }
}
