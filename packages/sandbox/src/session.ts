/**
 * A Session: one sandbox, its kernels, commands, tasks and files, seen through the executor.
 * Every call validates its input, reports limits that cut it short in the result, and keeps the
 * session's idle clock; nothing here touches the sandbox's files from the host.
 */
import { CodeboxError, validationError, type ExecutionEvent, type LimitKind, type Sandbox, type SessionLimits, type ToolResult } from '@codebox/core'
import type { Duplex } from 'node:stream'
import type { ExecutorClient, ExecutorMessage } from './executor-client.ts'
import type { PreloadReport } from './preload.ts'
import { checkCode, checkKernelLanguage, MAX_CODE_BYTES, type KernelLanguage } from './input.ts'
import { limitNote, OutputBudget, toToolResult } from './result.ts'
import { checkContextId, SessionContexts } from './session-contexts.ts'
import { SessionFiles } from './session-files.ts'
import { SessionPorts, type OpenPortOptions } from './session-ports.ts'
import { SessionTasks } from './session-tasks.ts'

export { MAX_CODE_BYTES }

export interface CallOptions {
  /** Wall-clock limit for this call, ms; default the session's callTimeoutMs. */
  timeoutMs?: number
  signal?: AbortSignal
}

/** Where JavaScript and TypeScript cells run. */
export type JsRuntime = 'nodejs' | 'deno'
/** What a sandbox can run code in: Python, Node.js, and Deno when its image carries Deno. */
export type Runtime = 'python' | JsRuntime

export interface ExecuteCodeOptions extends CallOptions {
  code: string
  /**
   * Default `python`. `bash` runs in the session's shell (or a bash context's): variables,
   * functions, `cd` and exports carry to the next bash cell; a non-zero status is the cell's error.
   */
  language?: KernelLanguage
  /**
   * Runtime of a JavaScript or TypeScript cell, default `nodejs`; `deno` only when
   * {@link Session.runtimes} has it. Each runtime keeps its own state. Python and bash cells ignore it.
   */
  runtime?: JsRuntime
  /** Start the language's kernel afresh before running, dropping all state. */
  clearContext?: boolean
  /** Run in this context's kernel (session.contexts.create) instead of the language's default one; its language must be `language`. */
  context?: string
  /**
   * Environment variables set for this cell only (`os.environ`, `process.env`, the shell's exported
   * variables: bash needs shell names), then put back. Visible to the sandbox's code: never a secret.
   */
  env?: Record<string, string>
  /**
   * Called once as the cell ends, before the `result` event: how many cells its kernel has run,
   * and the error the cell raised. With it, that error is reported here and not written to stderr.
   */
  onCellEnd?: (end: CellEnd) => void
  /**
   * Also describe each matplotlib figure of a Python cell as chart data (E2B's `chart` objects:
   * line, scatter and bar charts with their data; see executor/charts.py), as JSON text under
   * {@link CHART_MIME} in the figure's display, and each pandas DataFrame it displays as its
   * columns' values (E2B's `data`), as JSON text under {@link DATA_MIME}. Default false.
   */
  charts?: boolean
}

/** The display key of a figure's chart data (ExecuteCodeOptions.charts). */
export const CHART_MIME = 'application/vnd.codebox.chart+json'
/** The display key of a DataFrame's columns, `{column: [values]}` (ExecuteCodeOptions.charts). */
export const DATA_MIME = 'application/vnd.codebox.data+json'

/** What a cell's end reports besides its output (ExecuteCodeOptions.onCellEnd). */
export interface CellEnd {
  /** Cells its kernel has run since it (re)started, this one included; absent when the executor did not say. */
  executionCount?: number
  /** The exception the cell ended with (name, message, traceback), bounded; absent when it did not raise. */
  error?: CellError
}

export interface CellError {
  name: string
  message: string
  traceback: string
}

/** Most environment variables of one cell, and bytes of their names and values together. */
export const MAX_CELL_ENV = 256
export const MAX_CELL_ENV_BYTES = 64 * 1024

export type SessionStatus = 'ready' | 'terminated'
export type EndReason = 'stopped' | 'idle-timeout' | 'max-lifetime' | 'sandbox-exited' | 'shutdown'

export interface SessionInit {
  id: string
  sandbox: Sandbox
  client: ExecutorClient
  limits: SessionLimits
  /** What the sandbox's Python kernel preloaded before hand-over; absent for none. */
  preload?: PreloadReport
  maxCallTimeoutMs: number
  onActivity: (session: Session) => void
  onEnd: (session: Session) => void
  /** A re-adopted session's: when it started, and when its last call ended (its executor's idle clock). */
  createdAt?: Date
  lastActivityAt?: number
}

export class Session {
  readonly id: string
  readonly createdAt: Date
  /** Runtimes this session's sandbox can run, as its executor reported them: `deno` only when the image has Deno. */
  readonly runtimes: readonly Runtime[]
  /** What the Python kernel imported before the session was handed over (and what failed); absent when it preloads nothing. */
  readonly preload: PreloadReport | undefined
  status: SessionStatus = 'ready'
  endReason: EndReason | undefined
  lastActivityAt = Date.now()
  /** Calls in flight; a session with one running is never idle. */
  active = 0

  readonly files: SessionFiles
  readonly commands: { run: (command: string, options?: CallOptions) => Promise<ToolResult> }
  readonly tasks: SessionTasks
  readonly contexts: SessionContexts

  private readonly init: SessionInit
  private readonly ports: SessionPorts
  #limits: Readonly<SessionLimits>
  private ended: Promise<void> | undefined

  constructor(init: SessionInit) {
    this.init = init
    this.id = init.id
    this.createdAt = init.createdAt ?? new Date()
    if (init.lastActivityAt !== undefined) this.lastActivityAt = init.lastActivityAt
    this.#limits = Object.freeze({ ...init.limits })
    this.preload = init.preload
    this.runtimes = Object.freeze(init.client.runtimes.filter((r): r is Runtime => r === 'python' || r === 'nodejs' || r === 'deno'))
    this.files = new SessionFiles(this)
    this.commands = { run: (command, options) => this.runCommand(command, options) }
    this.tasks = new SessionTasks(this)
    this.contexts = new SessionContexts(this)
    this.ports = new SessionPorts(this, init.sandbox)
    void init.sandbox.exited.then(() => this.stop('sandbox-exited'))
  }

  /** The session's limits; only `maxLifetimeMs` changes while it lives (`SessionManager.setDeadline`). */
  get limits(): Readonly<SessionLimits> {
    return this.#limits
  }

  /** When the session's lifetime ends: its start plus `limits.maxLifetimeMs`. */
  get endsAt(): Date {
    return new Date(this.createdAt.getTime() + this.#limits.maxLifetimeMs)
  }

  /** @internal for the SessionManager, which re-arms its lifetime timer and tells the executor. */
  setLifetime(maxLifetimeMs: number): void {
    this.#limits = Object.freeze({ ...this.#limits, maxLifetimeMs })
  }

  /** The sandbox's egress decisions so far; undefined when it has no egress. */
  egressCounters(): Readonly<{ allowed: number; denied: number }> | undefined {
    return this.init.sandbox.egressCounters?.()
  }

  /** Id of the sandbox serving this session (its cgroup and log names); never shared with another session. */
  get sandboxId(): string {
    return this.init.sandbox.id
  }

  /** What the sandbox printed outside any call (start-up problems, a preload that failed): its last 16 KiB. */
  diagnostics(): string {
    return this.init.sandbox.diagnostics()
  }

  /** @internal the executor of this session, for the capability groups. */
  get client(): ExecutorClient {
    return this.init.client
  }

  /**
   * A connection to `port` on the sandbox's own loopback (127.0.0.1), where a server the session
   * started listens (a hosted agent on 8080, MCP on 8000, A2A on 9000): bytes pass through as they
   * are, both ways. ValidationError for a port outside 1-65535; SessionTerminated when the session
   * has ended; Unavailable when nothing listens there (`details.reason` `refused`), the relay is
   * at its most connections (`busy`), the port does not answer within 10 s (`timeout`), or the
   * driver or the session's executor has no inbound relay. While the stream is open the session
   * is not idle; it is destroyed when the session ends.
   */
  openPort(port: number, options?: OpenPortOptions): Promise<Duplex> {
    return this.ports.open(port, options)
  }

  /** Runs code in the session's kernel; yields output as produced and ends with the result. */
  async *executeCode(options: ExecuteCodeOptions): AsyncGenerator<ExecutionEvent, ToolResult> {
    const language = checkKernelLanguage('language', options.language ?? 'python')
    const runtime = language === 'python' || language === 'bash' ? undefined : this.runtimeOf(options.runtime ?? 'nodejs')
    checkCode('code', options.code)
    const timeoutMs = this.timeoutOf(options)
    const fields: Record<string, unknown> = {
      language,
      runtime,
      code: options.code,
      timeoutMs,
      outputBytes: this.limits.outputBytes,
      clearContext: options.clearContext === true,
    }
    if (options.context !== undefined) fields.context = checkContextId(options.context)
    if (options.env !== undefined) fields.env = checkCellEnv(options.env)
    if (options.onCellEnd) fields.errorToStderr = false
    if (options.charts === true) fields.charts = true
    return yield* this.call('exec', fields, options.signal, timeoutMs, options.onCellEnd)
  }

  private runtimeOf(runtime: string): JsRuntime {
    if (runtime !== 'nodejs' && runtime !== 'deno') throw validationError('runtime', `must be nodejs or deno, got ${JSON.stringify(runtime)}`)
    if (!this.runtimes.includes(runtime)) {
      throw validationError('runtime', `${runtime} is not available: this session's sandbox image was built without it; use nodejs`)
    }
    return runtime
  }

  /** executeCode, collected: resolves with the final result. */
  async runCode(options: ExecuteCodeOptions): Promise<ToolResult> {
    return drain(this.executeCode(options))
  }

  /** Runs a shell command and waits for it; a non-zero exit is data, not an exception. */
  async runCommand(command: string, options: CallOptions = {}): Promise<ToolResult> {
    checkCode('command', command)
    const timeoutMs = this.timeoutOf(options)
    return drain(this.call('command', { command, timeoutMs, outputBytes: this.limits.outputBytes }, options.signal, timeoutMs))
  }

  /** Like runCommand, streaming stdout/stderr as produced. */
  async *streamCommand(command: string, options: CallOptions = {}): AsyncGenerator<ExecutionEvent, ToolResult> {
    checkCode('command', command)
    const timeoutMs = this.timeoutOf(options)
    return yield* this.call('command', { command, timeoutMs, outputBytes: this.limits.outputBytes }, options.signal, timeoutMs)
  }

  private async *call(
    op: string,
    fields: Record<string, unknown>,
    signal: AbortSignal | undefined,
    timeoutMs: number,
    onCellEnd?: (end: CellEnd) => void,
  ): AsyncGenerator<ExecutionEvent, ToolResult> {
    const started = performance.now()
    this.enter()
    const before = await this.init.sandbox.counters()
    const output = new OutputBudget(this.limits.outputBytes)
    let it: AsyncGenerator<ExecutorMessage, Record<string, unknown>> | undefined
    try {
      // The executor enforces the timeout; past it (and a grace) the client checks the executor still answers.
      it = this.client.request(op, fields, { signal, deadlineMs: timeoutMs })
      let next = await it.next()
      while (!next.done) {
        const event = next.value.kind === 'event' ? output.take(next.value.event) : undefined
        if (event) yield event
        next = await it.next()
      }
      const done = next.value
      // A kernel may report its error only in `done` (the Node kernel does); show it in stderr.
      const error = done.error as { traceback?: unknown } | undefined
      const traceback = typeof error?.traceback === 'string' ? error.traceback.slice(0, this.limits.outputBytes) : ''
      if (onCellEnd) onCellEnd(cellEnd(done, traceback))
      else if (traceback && !output.stderr.includes(traceback)) {
        const text = traceback.endsWith('\n') ? traceback : `${traceback}\n`
        output.stderr += text
        yield { type: 'stderr', text }
      }
      const limits: LimitKind[] = []
      if (done.timedOut === true) limits.push('TIMEOUT')
      const after = await this.init.sandbox.counters()
      if (after.oomKills > before.oomKills) limits.push('OOM')
      if (after.pidsLimitHits > before.pidsLimitHits) limits.push('PIDS')
      if (done.truncated === true || output.truncated) limits.push('OUTPUT_TRUNCATED')
      let note = output.notes() + limits.map(limitNote).join('')
      note += restartNote(op, done, limits)
      if (done.cancelled === true && signal?.aborted) note += '[codebox] the call was cancelled.\n'
      if (note) {
        output.stderr += note
        yield { type: 'stderr', text: note }
      }
      const exitCode = exitCodeOf(done.exitCode)
      const result = toToolResult({
        stdout: output.stdout,
        stderr: output.stderr,
        displays: output.displays,
        exitCode,
        isError: exitCode !== 0 || done.cancelled === true || limits.includes('TIMEOUT') || limits.includes('OOM'),
        executionTime: performance.now() - started,
        limitsExceeded: limits,
      })
      yield { type: 'result', result }
      return result
    } catch (e) {
      // The executor stopped answering or broke the framing: the sandbox is gone, so is the session.
      if ((e instanceof CodeboxError && e.code === 'SessionTerminated') || this.client.closed) await this.stop('sandbox-exited')
      throw e
    } finally {
      // A consumer that stopped reading early (a client gone) leaves the request suspended at a
      // yield: end it, so it cancels the cell and clears its watchdog timer and pending entry.
      await it?.return({}).catch(() => {})
      this.leave()
    }
  }

  /** @internal marks a call in flight and checks the session is usable. */
  enter(): void {
    this.assertReady()
    this.active++
    this.lastActivityAt = Date.now()
    this.init.onActivity(this)
  }

  /** @internal */
  leave(): void {
    this.active--
    this.lastActivityAt = Date.now()
  }

  assertReady(): void {
    if (this.status !== 'ready') {
      throw new CodeboxError('SessionTerminated', `session ${this.id} has ended (${this.endReason}); start a new session`)
    }
  }

  timeoutOf(options: CallOptions): number {
    const t = options.timeoutMs ?? this.limits.callTimeoutMs
    if (!Number.isInteger(t) || t < 1 || t > this.init.maxCallTimeoutMs) {
      throw validationError('timeoutMs', `must be a whole number of milliseconds from 1 to ${this.init.maxCallTimeoutMs}, got ${String(t)}`)
    }
    return t
  }

  /** Resident memory of all the session's processes, bytes (0 when the driver cannot tell). */
  memoryUsage(): Promise<number> {
    return this.init.sandbox.memoryUsage()
  }

  /** Ends the session: every process killed, workspace and tmpfs gone. Idempotent. */
  /**
   * Lets go of the session without ending it (a server that shuts down for a restart or an
   * upgrade, or another server serves or ended it): calls in flight end with Unavailable (`why`), the channel closes, the sandbox runs on and
   * ends itself at its idle timeout or lifetime unless a later server re-adopts it.
   */
  detach(why = 'the server is shutting down for a restart; the session lives on: send the call again once the server is back'): Promise<void> {
    if (!this.ended) {
      this.status = 'terminated'
      this.init.client.close(new CodeboxError('Unavailable', why))
      this.init.sandbox.input.destroy()
      this.init.sandbox.release?.()
      this.ports.closeAll()
      this.ended = Promise.resolve()
    }
    return this.ended
  }

  stop(reason: EndReason = 'stopped'): Promise<void> {
    if (!this.ended) {
      this.status = 'terminated'
      this.endReason = reason
      // Calls in flight learn why, rather than that the sandbox was killed.
      this.init.client.close(new CodeboxError('SessionTerminated', `the session ended (${reason}) while this call ran`))
      this.ports.closeAll()
      this.ended = this.init.sandbox.destroy().finally(() => this.init.onEnd(this))
    }
    return this.ended
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop()
  }
}

/**
 * What became of the kernel when a call did not end on its own: a cancelled cell is interrupted
 * and the kernel keeps its state (`interrupted`), unless the cell ignored the interrupt; a
 * timed-out cell's kernel is killed, as is one that died.
 */
function restartNote(op: string, done: Record<string, unknown>, limits: LimitKind[]): string {
  const sig = typeof done.signal === 'string' ? ` (${done.signal.slice(0, 32)})` : ''
  if (done.killed === true && !limits.includes('OOM')) return `[codebox] the kernel died${sig}; its state is lost and the next cell starts a new kernel.\n`
  if (op !== 'exec') return ''
  if (done.cancelled === true && done.interrupted === true) return '[codebox] the cell was interrupted; the kernel and its variables are kept.\n'
  if (done.cancelled === true && done.ignoredInterrupt === true) {
    return '[codebox] the cell did not stop when interrupted, so its kernel was restarted; variables and imports of earlier cells are lost.\n'
  }
  if (done.killed === true || done.timedOut === true || done.cancelled === true)
    return '[codebox] the kernel was restarted; variables and imports of earlier cells are lost.\n'
  return ''
}

/** A cell's end as the executor reported it, checked and bounded: it comes from the sandbox. */
function cellEnd(done: Record<string, unknown>, traceback: string): CellEnd {
  const end: CellEnd = {}
  const count = done.executionCount
  if (typeof count === 'number' && Number.isSafeInteger(count) && count >= 0) end.executionCount = count
  const error = done.error as Record<string, unknown> | undefined
  if (error !== null && typeof error === 'object' && done.exitCode !== 0) {
    end.error = {
      name: typeof error.name === 'string' ? error.name.slice(0, 256) : 'Error',
      message: typeof error.message === 'string' ? error.message.slice(0, 64 * 1024) : '',
      traceback,
    }
  }
  return end
}

/** A cell's environment variables, checked: plain names (no `=` or NUL) to strings without NUL, bounded. */
function checkCellEnv(env: unknown): Record<string, string> {
  if (env === null || typeof env !== 'object' || Array.isArray(env)) throw validationError('env', 'must be an object of names to strings')
  const entries = Object.entries(env)
  if (entries.length > MAX_CELL_ENV) throw validationError('env', `at most ${MAX_CELL_ENV} variables, got ${entries.length}`)
  let bytes = 0
  for (const [name, value] of entries) {
    if (!name || name.includes('=') || name.includes('\0')) throw validationError('env', `${JSON.stringify(name.slice(0, 64))} is not a variable name`)
    if (typeof value !== 'string' || value.includes('\0')) throw validationError(`env.${name.slice(0, 64)}`, 'must be a string without NUL')
    bytes += Buffer.byteLength(name) + Buffer.byteLength(value)
  }
  if (bytes > MAX_CELL_ENV_BYTES) throw validationError('env', `${bytes} bytes of names and values, more than ${MAX_CELL_ENV_BYTES}`)
  return Object.fromEntries(entries) as Record<string, string>
}

/** The exit code the executor reported, or 1 when it is not a plausible one. */
function exitCodeOf(value: unknown): number {
  if (value === undefined) return 1
  return typeof value === 'number' && Number.isInteger(value) && value >= -255 && value <= 255 ? value : 1
}

async function drain<T>(it: AsyncGenerator<unknown, T>): Promise<T> {
  for (;;) {
    const n = await it.next()
    if (n.done) return n.value
  }
}
