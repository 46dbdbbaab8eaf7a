/**
 * What codebox is compared with, measured in the same run: `python3 -c 'print(1)'` in a bare
 * bwrap on the same image (and on the host, no sandbox), and a local Jupyter kernel driven by
 * jupyter_client (bench/jupyter_baseline.py).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { memoryOf, processTree, type ProcessMemory } from './host.ts'

/** argv of the bare sandbox: the image read-only as /, fresh /proc and /dev, every namespace. */
export function bareBwrapArgv(imagePath: string): string[] {
  return ['bwrap', '--unshare-all', '--die-with-parent', '--ro-bind', imagePath, '/', '--proc', '/proc', '--dev', '/dev', '/usr/bin/python3', '-c', 'print(1)']
}

/** ms from spawn to exit of a command that must print "1\n", n times. */
export async function spawnPrints(argv: readonly string[], { n, signal }: { n: number; signal: AbortSignal }): Promise<number[]> {
  const out: number[] = []
  for (let i = -2; i < n; i++) {
    signal.throwIfAborted()
    const t0 = performance.now()
    const stdout = await run(argv)
    const t = performance.now() - t0
    if (stdout !== '1\n') throw new Error(`${argv.join(' ')} printed ${JSON.stringify(stdout)}`)
    if (i >= 0) out.push(t) // the first two warm the page cache
  }
  return out
}

function run(argv: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
    child.once('error', reject)
    child.once('close', (code) => {
      if (code === 0) resolve(stdout)
      else reject(new Error(`${argv.join(' ')} exited ${code}: ${stderr.slice(-500)}`))
    })
  })
}

/** Why the Jupyter baseline cannot run here, or undefined when it can. */
export function jupyterUnavailable(): string | undefined {
  const r = spawnSync('/usr/bin/python3', ['-c', 'import ipykernel, jupyter_client'], { encoding: 'utf8' })
  if (r.status === 0) return undefined
  return "the Jupyter baseline needs Debian's python3-ipykernel and python3-jupyter-client (apt-get install -y python3-ipykernel python3-jupyter-client)"
}

export interface JupyterResults {
  start: number[]
  startPrint: number[]
  print: number[]
  /** One entry per kernel, all idle at once; the kernel process and its children. */
  idle: ProcessMemory[]
  argv: string[]
  versions: Record<string, string>
}

const SCRIPT = fileURLToPath(new URL('./jupyter_baseline.py', import.meta.url))

/** Runs the Jupyter baseline script once; its kernels are always shut down before this returns. */
export async function jupyterBaseline(sizes: { kernels: number; warmup: number; prints: number; signal: AbortSignal }): Promise<JupyterResults> {
  const child = spawn('/usr/bin/python3', [SCRIPT, String(sizes.kernels), String(sizes.warmup), String(sizes.prints)], { stdio: ['pipe', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve))
  // The script shuts its kernels down on SIGTERM; that ends this run early and cleanly.
  const abort = (): boolean => child.kill('SIGTERM')
  sizes.signal.addEventListener('abort', abort, { once: true })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4000)))
  try {
    const line = await firstLine(child, exited, () => stderr)
    const raw = JSON.parse(line) as Omit<JupyterResults, 'idle'> & { pids: number[] }
    // Every kernel has run print(1) and is now idle; let their heartbeat and IO threads settle.
    await new Promise((r) => setTimeout(r, 300))
    const idle = raw.pids.map((pid) => memoryOf(processTree(pid)))
    return { start: raw.start, startPrint: raw.startPrint, print: raw.print, idle, argv: raw.argv, versions: raw.versions }
  } finally {
    sizes.signal.removeEventListener('abort', abort)
    child.stdin.end()
    const timer = setTimeout(() => child.kill('SIGTERM'), 10_000)
    await exited
    clearTimeout(timer)
  }
}

function firstLine(child: ChildProcess, exited: Promise<number | null>, stderr: () => string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = ''
    child.stdout!.setEncoding('utf8').on('data', (c: string) => {
      buf += c
      const nl = buf.indexOf('\n')
      if (nl >= 0) resolve(buf.slice(0, nl))
    })
    void exited.then((code) => reject(new Error(`jupyter_baseline.py exited ${code} before reporting: ${stderr().slice(-1500)}`)))
  })
}
