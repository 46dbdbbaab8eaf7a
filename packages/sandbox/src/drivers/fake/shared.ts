/**
 * The fake driver's shared mode: sandboxes that any FakeDriver given the same directory reaches
 * by id, as the replicas of a codebox reach a `kubernetes` driver's pods. Each sandbox has a
 * directory `<dir>/<id>/` holding its record (`sandbox.json`, mode 0600: the executor's pid and
 * that process's start time, its workspace and /tmp, the token its connections present) and the
 * unix socket its executor listens on (CODEBOX_LISTEN, as in a pod: several connections at once,
 * each authenticated with CODEBOX_EXECUTOR_TOKEN first), so two servers may hold one sandbox at
 * the same time. The executor outlives the server that started it and ends itself at the
 * session's idle timeout or deadline while nobody is connected. Its ports are the host's loopback
 * ones, as the fake driver's always are.
 */
import { spawn } from 'node:child_process'
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import net from 'node:net'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { CodeboxError, type Sandbox, type SandboxExit } from '@codebox/core'
import { processState, stillRunning, watchExit } from '../bwrap/records.ts'
import { connectLoopback } from '../inbound.ts'
import { boundedBuffer } from '../shared.ts'
import { killTree } from './processes.ts'

interface SharedRecord {
  id: string
  pid: number
  /** Field 22 of /proc/<pid>/stat: tells the executor from a later process with its pid. */
  startTime: string
  workspace: string
  tmp: string
  /** What every connection to the executor presents first (CODEBOX_EXECUTOR_TOKEN). */
  token: string
}

const idPattern = /^[A-Za-z0-9_-]{1,64}$/

/** How long a new executor may take to listen, and an attach to connect, ms. */
const listenTimeoutMs = 30_000
const attachTimeoutMs = 5_000

export class SharedFakeSandboxes {
  readonly #dir: string

  constructor(dir: string) {
    this.#dir = path.resolve(dir)
  }

  /** Starts the executor listening in the sandbox's directory, records it, and connects. */
  async create(p: { id: string; python: string; script: string; env: Record<string, string>; workspace: string; tmp: string }): Promise<Sandbox> {
    const dir = path.join(this.#dir, p.id)
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const token = randomBytes(32).toString('base64url')
    const child = spawn(p.python, ['-s', p.script], {
      cwd: p.workspace,
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...p.env, CODEBOX_LISTEN: `unix:${path.join(dir, 'executor.sock')}`, CODEBOX_EXECUTOR_TOKEN: token },
    })
    const diagnostics = boundedBuffer(16 * 1024)
    child.stderr.on('data', (c: Buffer) => diagnostics.push(c))
    // It outlives this server by design: nothing of it keeps this process running.
    child.unref()
    ;(child.stderr as net.Socket).unref()
    const startTime = child.pid === undefined ? undefined : processState(child.pid)?.startTime
    if (child.pid === undefined || startTime === undefined) {
      await rm(dir, { recursive: true, force: true })
      throw new CodeboxError('Unavailable', `cannot start ${p.python}: ${diagnostics.text().slice(-300)}`)
    }
    const record: SharedRecord = { id: p.id, pid: child.pid, startTime, workspace: p.workspace, tmp: p.tmp, token }
    await writeFile(path.join(dir, 'sandbox.json'), JSON.stringify(record), { mode: 0o600 })
    try {
      return this.#sandbox(record, await this.#connect(record, listenTimeoutMs), diagnostics.text)
    } catch (e) {
      await this.#remove(record)
      throw e
    }
  }

  /** Connects to a sandbox another FakeDriver (or this one) started. SessionTerminated when it has ended (its leftovers removed). */
  async attach(id: string): Promise<Sandbox> {
    const record = await this.#read(id)
    if (!record) throw new CodeboxError('SessionTerminated', `no sandbox ${JSON.stringify(id.slice(0, 64))} is recorded in ${this.#dir}`)
    if (!stillRunning(record.pid, record.startTime)) {
      await this.#remove(record)
      throw new CodeboxError('SessionTerminated', `sandbox ${id} has ended (its idle timeout or lifetime, or it exited)`)
    }
    return this.#sandbox(record, await this.#connect(record, attachTimeoutMs), () => '')
  }

  /** Every sandbox recorded in the directory, live or not (attach tells). */
  async list(): Promise<string[]> {
    const names = await readdir(this.#dir).catch(() => [] as string[])
    return names.filter((n) => idPattern.test(n))
  }

  async #read(id: string): Promise<SharedRecord | undefined> {
    if (!idPattern.test(id)) return undefined
    try {
      const r = JSON.parse(await readFile(path.join(this.#dir, id, 'sandbox.json'), 'utf8')) as Partial<SharedRecord>
      const ok =
        r.id === id &&
        Number.isInteger(r.pid) &&
        (r.pid ?? 0) > 1 &&
        typeof r.startTime === 'string' &&
        typeof r.workspace === 'string' &&
        path.isAbsolute(r.workspace) &&
        typeof r.tmp === 'string' &&
        path.isAbsolute(r.tmp) &&
        typeof r.token === 'string' &&
        r.token.length > 0 &&
        r.token.length <= 256
      return ok ? (r as SharedRecord) : undefined
    } catch {
      return undefined
    }
  }

  /** The executor's socket, once it listens, authenticated; Unavailable after `timeoutMs`, SandboxFailure when the executor has gone. */
  async #connect(record: SharedRecord, timeoutMs: number): Promise<net.Socket> {
    const socketPath = path.join(this.#dir, record.id, 'executor.sock')
    const deadline = Date.now() + timeoutMs
    for (let wait = 2; ; wait = Math.min(wait * 2, 50)) {
      try {
        return await new Promise<net.Socket>((resolve, reject) => {
          const socket = net.createConnection({ path: socketPath })
          socket.once('connect', () => {
            socket.off('error', reject)
            // The executor's listen mode reads `{"op":"auth","token":...}` as the first frame (request id 0, kind J).
            const auth = Buffer.from(JSON.stringify({ op: 'auth', token: record.token }))
            const header = Buffer.alloc(9)
            header.writeUInt32BE(auth.length + 5, 0)
            header.writeUInt32BE(0, 4)
            header.writeUInt8(0x4a, 8)
            socket.write(Buffer.concat([header, auth]))
            resolve(socket)
          })
          socket.once('error', reject)
        })
      } catch (e) {
        if (!stillRunning(record.pid, record.startTime)) throw new CodeboxError('SandboxFailure', `sandbox ${record.id}'s executor exited before it listened`)
        if (Date.now() > deadline)
          throw new CodeboxError('Unavailable', `sandbox ${record.id}'s executor did not listen within ${timeoutMs} ms (${(e as Error).message})`, {
            details: { retryAfterSeconds: 5 },
          })
        await delay(wait)
      }
    }
  }

  #sandbox(record: SharedRecord, channel: net.Socket, diagnostics: () => string): Sandbox {
    channel.on('error', () => {})
    const exited = watchExit(record.pid, record.startTime, 200)
    let destroyed: Promise<void> | undefined
    return {
      id: record.id,
      input: channel,
      output: channel,
      diagnostics,
      exited,
      counters: async () => ({ oomKills: 0, pidsLimitHits: 0 }),
      memoryUsage: async () => 0,
      connectPort: (port, options) => connectLoopback(port, options),
      destroy: () =>
        (destroyed ??= (async () => {
          channel.destroy()
          await this.#remove(record)
        })()),
      release: () => channel.destroy(),
    }
  }

  /** Kills the executor's tree (while its pid is still the executor's) and removes its directory, workspace and /tmp. */
  async #remove(record: SharedRecord): Promise<void> {
    if (stillRunning(record.pid, record.startTime)) await killTree(record.pid)
    for (let i = 0; i < 100 && stillRunning(record.pid, record.startTime); i++) await delay(20)
    await rm(record.workspace, { recursive: true, force: true })
    await rm(record.tmp, { recursive: true, force: true })
    await rm(path.join(this.#dir, record.id), { recursive: true, force: true })
  }
}
