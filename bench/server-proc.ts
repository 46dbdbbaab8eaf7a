/**
 * The density and load benches' server: bench/serve.ts in its own process and its own state dir
 * (the shared image linked in, as restart.test.ts does), on loopback. stop() stops every session
 * it holds (the server's SIGTERM), waits for it to exit and checks that no sandbox record of it is
 * left; it also runs on Ctrl-C, SIGTERM and an uncaught failure of the bench.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export interface BenchServer {
  url: string
  pid: number
  stateDir: string
  /** Sandbox records of this server's live sandboxes (one per session or pooled sandbox). */
  sandboxIds(): string[]
  /** Stops the server and every session; resolves with the sandboxes left behind (should be none). */
  stop(): Promise<string[]>
}

const serveScript = fileURLToPath(new URL('./serve.ts', import.meta.url))

export async function startBenchServer(name: string, env: Record<string, string>): Promise<BenchServer> {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), `codebox-${name}-`))
  fs.symlinkSync(path.join(process.env.CODEBOX_STATE_DIR ?? '/var/lib/codebox', 'images'), path.join(stateDir, 'images'))
  const spawnServer = (): ChildProcess =>
    spawn(process.execPath, ['--disable-warning=ExperimentalWarning', serveScript], {
      env: { ...process.env, CODEBOX_STATE_DIR: stateDir, CODEBOX_HOST: '127.0.0.1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
  const proc = spawnServer()
  let err = ''
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString()
    if (err.length > 100_000) err = err.slice(-50_000)
  })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /listening (\S+)/.exec(out)
      if (m) resolve(m[1]!)
    })
    proc.once('exit', (code) => reject(new Error(`the bench server exited (${code}): ${err}`)))
  })
  const recordsDir = path.join(stateDir, 'sandboxes')
  const sandboxIds = (): string[] => {
    try {
      return fs
        .readdirSync(recordsDir)
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.slice(0, -5))
    } catch {
      return []
    }
  }
  let stopping: Promise<string[]> | undefined
  const stop = (): Promise<string[]> =>
    (stopping ??= (async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
        proc.kill('SIGTERM')
        // Stopping thousands of sandboxes takes a while; after 10 minutes, give up on a clean stop.
        const timer = setTimeout(() => proc.kill('SIGKILL'), 600_000)
        await exited
        clearTimeout(timer)
      }
      if (proc.exitCode !== 0) process.stderr.write(`the bench server exited with ${proc.exitCode ?? proc.signalCode}: ${err.slice(-4000)}\n`)
      // A server that died (the kernel's OOM killer, at the floor of a density run) left its
      // sandboxes running: they outlive servers. A new server on the same state dir re-adopts
      // them, and its SIGTERM stops them all.
      if (sandboxIds().length > 0) {
        process.stderr.write(`${sandboxIds().length} sandboxes outlived the bench server: a new server re-adopts and stops them...\n`)
        const again = spawnServer()
        const exited = new Promise<void>((resolve) => again.once('exit', () => resolve()))
        await new Promise<void>((resolve) => {
          let out = ''
          again.stdout!.on('data', (d: Buffer) => {
            out += d.toString()
            if (/listening /.test(out)) resolve()
          })
          again.once('exit', () => resolve())
        })
        again.kill('SIGTERM')
        const timer = setTimeout(() => again.kill('SIGKILL'), 600_000)
        await exited
        clearTimeout(timer)
      }
      const left = sandboxIds()
      if (left.length === 0) fs.rmSync(stateDir, { recursive: true, force: true })
      return left
    })())
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`\n${sig}: stopping the bench server and its sessions...\n`)
    void stop().then((left) => {
      if (left.length) process.stderr.write(`sandboxes left: ${left.join(' ')} (state dir ${stateDir})\n`)
      process.exit(130)
    })
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  process.once('uncaughtException', (e) => {
    process.stderr.write(`${e.stack ?? String(e)}\n`)
    void stop().then(() => process.exit(1))
  })
  return { url, pid: proc.pid!, stateDir, sandboxIds, stop }
}

/** Replaces the part of bench/RESULTS.md between `begin` and `end` (appended when missing). */
export function writeSection(begin: string, end: string, body: string): void {
  const file = fileURLToPath(new URL('./RESULTS.md', import.meta.url))
  const text = fs.readFileSync(file, 'utf8')
  const block = `${begin}\n${body.trim()}\n${end}`
  const i = text.indexOf(begin)
  const j = text.indexOf(end)
  fs.writeFileSync(file, i >= 0 && j > i ? text.slice(0, i) + block + text.slice(j + end.length) : `${text.trimEnd()}\n\n${block}\n`)
}

/** MemAvailable, bytes. */
export function memAvailable(): number {
  return Number(/^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))?.[1]) * 1024
}

/** VmRSS of a process, bytes, and its open fds. */
export function processUse(pid: number): { rssBytes: number; fds: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
  return { rssBytes: Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) * 1024, fds: fs.readdirSync(`/proc/${pid}/fd`).length }
}
