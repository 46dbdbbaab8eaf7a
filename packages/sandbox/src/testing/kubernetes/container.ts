/**
 * A simulated pod's container run as a real local process: its own process group (so stopping
 * the pod ends the whole tree), a clean environment (PATH plus what the pod and the test give; no
 * host variable leaks in), its output kept as a bounded tail for `pods/<name>/log`.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import os from 'node:os'

/** What the test gives the kubelet to run for a pod (see KubeletOptions.run). */
export interface ContainerCommand {
  command: string
  args?: readonly string[]
  env?: Readonly<Record<string, string>>
  cwd?: string
}

/** How a container process ended. */
export interface ContainerExit {
  exitCode: number
  signal: NodeJS.Signals | null
}

const BASE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/** One running container process. */
export class ContainerProcess {
  readonly #child: ChildProcess
  readonly #maxLogBytes: number
  #log: Buffer[] = []
  #logBytes = 0
  readonly exited: Promise<ContainerExit>
  #done = false

  constructor(cmd: ContainerCommand, env: Record<string, string>, maxLogBytes: number) {
    this.#maxLogBytes = maxLogBytes
    this.#child = spawn(cmd.command, [...(cmd.args ?? [])], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: BASE_PATH, ...env, ...cmd.env },
      ...(cmd.cwd ? { cwd: cmd.cwd } : {}),
    })
    this.#child.stdout!.on('data', (b: Buffer) => this.#keep(b))
    this.#child.stderr!.on('data', (b: Buffer) => this.#keep(b))
    this.exited = new Promise((resolve) => {
      this.#child.on('error', (e) => {
        this.#keep(Buffer.from(`failed to start ${cmd.command}: ${e.message}\n`))
        this.#done = true
        resolve({ exitCode: 128, signal: null })
      })
      this.#child.on('exit', (code, signal) => {
        this.#done = true
        resolve({ exitCode: code ?? 128 + signalNumber(signal), signal })
      })
    })
  }

  /** The process id (of the group leader), or undefined when it did not start. */
  get pid(): number | undefined {
    return this.#child.pid
  }

  #keep(b: Buffer): void {
    this.#log.push(b)
    this.#logBytes += b.length
    while (this.#logBytes > this.#maxLogBytes && this.#log.length > 1) this.#logBytes -= this.#log.shift()!.length
    if (this.#logBytes > this.#maxLogBytes) {
      this.#log = [this.#log[0]!.subarray(this.#logBytes - this.#maxLogBytes)]
      this.#logBytes = this.#maxLogBytes
    }
  }

  /** The last maxLogBytes of stdout and stderr. */
  log(): string {
    return Buffer.concat(this.#log).toString('utf8')
  }

  /** Signals the whole process group (nothing when it already ended). */
  signal(sig: NodeJS.Signals): void {
    const pid = this.#child.pid
    if (this.#done || pid === undefined) return
    try {
      process.kill(-pid, sig)
    } catch {
      // the group is already gone
    }
  }
}

const signalNumber = (signal: NodeJS.Signals | null): number => (signal ? (os.constants.signals[signal] ?? 0) : 0)
