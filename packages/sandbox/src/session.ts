/**
 * A Session: one sandbox, its kernels, commands, tasks and files, seen through the executor.
 * Every call validates its input, reports limits that cut it short in the result, and keeps the
 * session's idle clock; nothing here touches the sandbox's files from the host.
 */
import {
  CodeboxError,
  languages,
  validationError,
  type ExecutionEvent,
  type FileEntry,
  type Language,
  type LimitKind,
  type MimeBundle,
  type Sandbox,
  type SessionLimits,
  type TaskStatus,
  type ToolResult,
} from '@codebox/core'
import type { ExecutorClient } from './executor-client.ts'
import { limitNote, toToolResult } from './result.ts'

export interface CallOptions {
  /** Wall-clock limit for this call, ms; default the session's callTimeoutMs. */
  timeoutMs?: number
  signal?: AbortSignal
}

export interface ExecuteCodeOptions extends CallOptions {
  code: string
  /** Default `python`. */
  language?: Language
  /** Start the language's kernel afresh before running, dropping all state. */
  clearContext?: boolean
}

export type SessionStatus = 'ready' | 'terminated'
export type EndReason = 'stopped' | 'idle-timeout' | 'max-lifetime' | 'sandbox-exited' | 'shutdown'

/** Largest code of one cell or command, bytes. */
export const MAX_CODE_BYTES = 4 * 1024 * 1024

export interface SessionInit {
  id: string
  sandbox: Sandbox
  client: ExecutorClient
  limits: SessionLimits
  maxCallTimeoutMs: number
  onActivity: (session: Session) => void
  onEnd: (session: Session) => void
}

export class Session {
  readonly id: string
  readonly createdAt = new Date()
  readonly limits: Readonly<SessionLimits>
  status: SessionStatus = 'ready'
  endReason: EndReason | undefined
  lastActivityAt = Date.now()
  /** Calls in flight; a session with one running is never idle. */
  active = 0

  readonly files: SessionFiles
  readonly commands: { run: (command: string, options?: CallOptions) => Promise<ToolResult> }
  readonly tasks: SessionTasks

  private readonly init: SessionInit
  private ended: Promise<void> | undefined

  constructor(init: SessionInit) {
    this.init = init
    this.id = init.id
    this.limits = Object.freeze({ ...init.limits })
    this.files = new SessionFiles(this)
    this.commands = { run: (command, options) => this.runCommand(command, options) }
    this.tasks = new SessionTasks(this)
    void init.sandbox.exited.then(() => this.stop('sandbox-exited'))
  }

  /** Id of the sandbox serving this session (its cgroup and log names); never shared with another session. */
  get sandboxId(): string {
    return this.init.sandbox.id
  }

  /** @internal the executor of this session, for the capability groups. */
  get client(): ExecutorClient {
    return this.init.client
  }

  /** Runs code in the session's kernel; yields output as produced and ends with the result. */
  async *executeCode(options: ExecuteCodeOptions): AsyncGenerator<ExecutionEvent, ToolResult> {
    const language = options.language ?? 'python'
    if (!(languages as readonly string[]).includes(language)) {
      throw validationError('language', `must be one of ${languages.join(', ')}, got ${JSON.stringify(language)}`)
    }
    checkCode('code', options.code)
    const timeoutMs = this.timeoutOf(options)
    return yield* this.call(
      'exec',
      { language, code: options.code, timeoutMs, outputBytes: this.limits.outputBytes, clearContext: options.clearContext === true },
      options.signal,
      timeoutMs,
    )
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
  ): AsyncGenerator<ExecutionEvent, ToolResult> {
    const started = performance.now()
    const before = await this.enter()
    let stdout = ''
    let stderr = ''
    const displays: MimeBundle[] = []
    // The executor enforces the timeout; this backstop only fires if the sandbox stops answering.
    const backstop = AbortSignal.timeout(timeoutMs + 10_000)
    const combined = signal ? AbortSignal.any([signal, backstop]) : backstop
    try {
      const it = this.client.request(op, fields, { signal: combined })
      let next = await it.next()
      while (!next.done) {
        const event = next.value.kind === 'event' ? toEvent(next.value.event) : undefined
        if (event?.type === 'stdout') stdout += event.text
        else if (event?.type === 'stderr') stderr += event.text
        else if (event?.type === 'display') displays.push(event.data)
        if (event) yield event
        next = await it.next()
      }
      const done = next.value
      // A kernel may report its error only in `done` (the Node kernel does); show it in stderr.
      const traceback = String((done.error as { traceback?: unknown } | undefined)?.traceback ?? '').slice(0, this.limits.outputBytes)
      if (traceback && !stderr.includes(traceback)) {
        const text = traceback.endsWith('\n') ? traceback : `${traceback}\n`
        stderr += text
        yield { type: 'stderr', text }
      }
      const limits: LimitKind[] = []
      if (done.timedOut) limits.push('TIMEOUT')
      const after = await this.init.sandbox.counters()
      if (after.oomKills > before.oomKills) limits.push('OOM')
      if (after.pidsLimitHits > before.pidsLimitHits) limits.push('PIDS')
      if (done.truncated) limits.push('OUTPUT_TRUNCATED')
      let note = limits.map(limitNote).join('')
      if (done.killed && !limits.includes('OOM'))
        note += `[codebox] the kernel died${done.signal ? ` (${String(done.signal)})` : ''}; its state is lost and the next cell starts a new kernel.\n`
      else if (op === 'exec' && (done.killed || done.timedOut || done.cancelled))
        note += '[codebox] the kernel was restarted; variables and imports of earlier cells are lost.\n'
      if (done.cancelled && signal?.aborted) note += '[codebox] the call was cancelled.\n'
      if (note) {
        stderr += note
        yield { type: 'stderr', text: note }
      }
      const exitCode = Number(done.exitCode ?? 1)
      const result = toToolResult({
        stdout,
        stderr,
        displays,
        exitCode,
        isError: exitCode !== 0 || limits.includes('TIMEOUT') || limits.includes('OOM'),
        executionTime: performance.now() - started,
        limitsExceeded: limits,
      })
      yield { type: 'result', result }
      return result
    } catch (e) {
      if (e instanceof CodeboxError && e.code === 'SessionTerminated') await this.stop('sandbox-exited')
      throw e
    } finally {
      this.leave()
    }
  }

  /** @internal marks a call in flight and checks the session is usable. */
  async enter(): Promise<{ oomKills: number; pidsLimitHits: number }> {
    this.assertReady()
    this.active++
    this.lastActivityAt = Date.now()
    this.init.onActivity(this)
    return this.init.sandbox.counters()
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
  stop(reason: EndReason = 'stopped'): Promise<void> {
    if (!this.ended) {
      this.status = 'terminated'
      this.endReason = reason
      this.ended = this.init.sandbox.destroy().finally(() => this.init.onEnd(this))
    }
    return this.ended
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop()
  }
}

export class SessionFiles {
  private readonly session: Session

  constructor(session: Session) {
    this.session = session
  }

  /** Writes a file (parents created), atomically: a failed write leaves the old file or none. */
  async write(
    path: string | { pathBase64: string },
    data: string | Uint8Array | AsyncIterable<Uint8Array>,
    options: { signal?: AbortSignal } = {},
  ): Promise<{ size: number }> {
    if (
      typeof data !== 'string' &&
      !(data instanceof Uint8Array) &&
      typeof (data as Partial<AsyncIterable<Uint8Array>> | null)?.[Symbol.asyncIterator] !== 'function'
    ) {
      throw validationError('data', 'must be a string, a Uint8Array or an async iterable of Uint8Array')
    }
    const size = typeof data === 'string' ? Buffer.byteLength(data) : data instanceof Uint8Array ? data.length : undefined
    const max = this.session.limits.fileBytes
    if (size !== undefined && size > max) {
      throw new CodeboxError('LimitExceeded', `file is ${size} bytes, over the ${max}-byte file limit`, { details: { limit: max } })
    }
    const body =
      typeof data === 'string'
        ? single(Buffer.from(data))
        : data instanceof Uint8Array
          ? single(Buffer.from(data.buffer, data.byteOffset, data.length))
          : toBuffers(data)
    const done = await this.op('files.write', { ...pathFields(path), size, maxBytes: max }, options, body)
    return { size: Number(done.size) }
  }

  /** Reads a whole file into memory (up to the file limit). */
  async read(path: string | { pathBase64: string }, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const { stream } = await this.readStream(path, options)
    const parts: Buffer[] = []
    for await (const c of stream) parts.push(c)
    return Buffer.concat(parts)
  }

  /** Opens a file for streaming: its size and MIME type, then its bytes. */
  async readStream(
    path: string | { pathBase64: string },
    options: { signal?: AbortSignal } = {},
  ): Promise<{ size: number; mimeType: string; stream: AsyncIterable<Buffer> }> {
    await this.session.enter()
    let left = true
    const it = this.session.client.request('files.read', { ...pathFields(path), maxBytes: this.session.limits.fileBytes }, options)
    try {
      const first = await it.next()
      if (first.done || first.value.kind !== 'event' || first.value.event.ev !== 'file')
        throw new CodeboxError('SandboxFailure', 'executor did not open the file')
      const meta = first.value.event
      const session = this.session
      async function* bytes(): AsyncGenerator<Buffer> {
        try {
          for (;;) {
            const n = await it.next()
            if (n.done) return
            if (n.value.kind === 'bytes') yield n.value.data
          }
        } finally {
          await it.return(undefined as never)
          session.leave()
        }
      }
      left = false
      return { size: Number(meta.size), mimeType: String(meta.mimeType), stream: bytes() }
    } finally {
      if (left) {
        await it.return(undefined as never)
        this.session.leave()
      }
    }
  }

  /** Lists a directory (default the workspace); `recursive` walks into subdirectories. */
  async list(path = '', options: { recursive?: boolean; signal?: AbortSignal } = {}): Promise<FileEntry[]> {
    const done = await this.op('files.list', { path, recursive: options.recursive === true, maxEntries: 10_000 }, options)
    return done.entries as FileEntry[]
  }

  /** Removes a file, or a directory (`recursive` for one that is not empty). */
  async remove(path: string | { pathBase64: string }, options: { recursive?: boolean; signal?: AbortSignal } = {}): Promise<void> {
    await this.op('files.remove', { ...pathFields(path), recursive: options.recursive === true }, options)
  }

  private async op(
    op: string,
    fields: Record<string, unknown>,
    options: { signal?: AbortSignal },
    body?: AsyncIterable<Buffer>,
  ): Promise<Record<string, unknown>> {
    await this.session.enter()
    try {
      const it = this.session.client.request(op, fields, { signal: options.signal, body })
      for (;;) {
        const n = await it.next()
        if (n.done) return n.value
      }
    } finally {
      this.session.leave()
    }
  }
}

export interface TaskView {
  taskId: string
  status: TaskStatus
  exitCode: number | null
  stdout: string
  stderr: string
  truncated: boolean
}

export class SessionTasks {
  private readonly session: Session

  constructor(session: Session) {
    this.session = session
  }

  /** Starts a shell command in the background; returns at once with its task id. */
  async start(command: string): Promise<ToolResult> {
    checkCode('command', command)
    const v = await this.op('task.start', { command, outputBytes: this.session.limits.outputBytes })
    return taskResult(v)
  }

  /** Status and output so far. */
  async get(taskId: string): Promise<ToolResult> {
    return taskResult(await this.op('task.get', { taskId: checkTaskId(taskId) }))
  }

  /** Kills the task's process tree. */
  async stop(taskId: string): Promise<ToolResult> {
    return taskResult(await this.op('task.stop', { taskId: checkTaskId(taskId) }))
  }

  private async op(op: string, fields: Record<string, unknown>): Promise<TaskView> {
    await this.session.enter()
    try {
      const it = this.session.client.request(op, fields)
      for (;;) {
        const n = await it.next()
        if (n.done) return { status: 'working', exitCode: null, stdout: '', stderr: '', truncated: false, ...n.value } as unknown as TaskView
      }
    } finally {
      this.session.leave()
    }
  }
}

function taskResult(v: TaskView): ToolResult {
  const limits: LimitKind[] = v.truncated ? ['OUTPUT_TRUNCATED'] : []
  return toToolResult({
    stdout: v.stdout,
    stderr: v.stderr,
    displays: [],
    exitCode: v.exitCode ?? 0,
    isError: v.status === 'failed',
    executionTime: 0,
    limitsExceeded: limits,
    taskId: v.taskId,
    taskStatus: v.status,
  })
}

function checkTaskId(taskId: unknown): string {
  if (typeof taskId !== 'string' || !/^task-\d{1,12}$/.test(taskId))
    throw validationError('taskId', `must look like task-<number>, got ${JSON.stringify(taskId)}`)
  return taskId
}

function checkCode(field: string, code: unknown): void {
  if (typeof code !== 'string') throw validationError(field, 'must be a string')
  if (code.trim() === '') throw validationError(field, 'is empty')
  const bytes = Buffer.byteLength(code)
  if (bytes > MAX_CODE_BYTES) {
    throw new CodeboxError('LimitExceeded', `${field} is ${bytes} bytes, over the ${MAX_CODE_BYTES}-byte limit; write large data to a file instead`, {
      details: { field, limit: MAX_CODE_BYTES },
    })
  }
}

function pathFields(path: string | { pathBase64: string }): Record<string, string> {
  if (typeof path === 'string') return { path }
  if (path && typeof path.pathBase64 === 'string') return { pathBase64: path.pathBase64 }
  throw validationError('path', 'must be a string or {pathBase64}')
}

function toEvent(e: Record<string, unknown>): ExecutionEvent | undefined {
  switch (e.ev) {
    case 'stdout':
      return { type: 'stdout', text: String(e.text) }
    case 'stderr':
      return { type: 'stderr', text: String(e.text) }
    case 'display':
      return { type: 'display', data: e.data as MimeBundle }
    default:
      return undefined
  }
}

async function drain<T>(it: AsyncGenerator<unknown, T>): Promise<T> {
  for (;;) {
    const n = await it.next()
    if (n.done) return n.value
  }
}

async function* single(b: Buffer): AsyncGenerator<Buffer> {
  yield b
}

async function* toBuffers(src: AsyncIterable<Uint8Array>): AsyncGenerator<Buffer> {
  for await (const c of src) yield Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.length)
}
