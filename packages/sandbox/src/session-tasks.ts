/**
 * session.tasks: background shell commands with status and output so far, run by the executor.
 * A task runs until it ends or is stopped, however long (a hosted agent's server); its output is
 * kept as the last `outputBytes` of stdout and stderr together, older bytes dropped and counted,
 * and can be read whole (`get`) or from offsets on (`read`).
 */
import { CodeboxError, validationError, type LimitKind, type TaskStatus, type ToolResult } from '@codebox/core'
import { checkCode, MAX_CODE_BYTES } from './input.ts'
import { toToolResult } from './result.ts'
import type { Session } from './session.ts'
import { openStream, type OpenedStream } from './session-stream.ts'

export interface TaskView {
  taskId: string
  status: TaskStatus
  exitCode: number | null
  stdout: string
  stderr: string
  truncated: boolean
}

export interface TaskStartOptions {
  /** Variables added to (or replacing) the sandbox's environment for this task. Visible to the sandbox's code: never a secret. */
  env?: Record<string, string>
  /** Directory in the sandbox to run in: absolute, or relative to `/workspace`. Default `/workspace`. */
  cwd?: string
  /** Give the process a stdin pipe (sendInput, closeStdin); default stdin is /dev/null. */
  stdin?: boolean
  /** A name to find the task by (TaskSelector `tag`); at most 256 characters. */
  tag?: string
}

/**
 * What to run in the background and stream (SessionTasks.spawn): a program with arguments
 * (`cmd`, `args`; looked up in PATH, no shell) or a shell line (`command`, run with `sh -c`).
 */
export interface ProcessStartOptions extends TaskStartOptions {
  cmd?: string
  args?: string[]
  command?: string
  /**
   * Run it in a terminal of this size (a pseudo-terminal: its stdin, stdout and stderr, and its
   * controlling terminal; `TERM=xterm-256color` unless `env` sets TERM). Its output is what the
   * terminal shows (both streams, with echoed input) as `stdout` events; sendInput types into the
   * terminal, resize sizes it. Not with `stdin`.
   */
  pty?: TerminalSize
  /** Aborting it stops the streaming, as close() does; the process runs on. */
  signal?: AbortSignal
}

/** A terminal's size: columns and rows, each a whole number from 1 to MAX_TERMINAL_SIZE (1000). */
export interface TerminalSize {
  cols: number
  rows: number
}

/** Most columns (and rows) of a task's terminal. */
export const MAX_TERMINAL_SIZE = 1000

/** Which task a call means: its id, its pid in the sandbox, or its tag (the running one first, else the latest). */
export type TaskSelector = { taskId: string } | { pid: number } | { tag: string }

/** Signals SessionTasks.signal sends (to the task's process group; SIGKILL to its whole tree). */
export type ProcessSignal = 'SIGTERM' | 'SIGKILL' | 'SIGINT' | 'SIGHUP' | 'SIGQUIT' | 'SIGUSR1' | 'SIGUSR2' | 'SIGSTOP' | 'SIGCONT'
export const processSignals: readonly ProcessSignal[] = ['SIGTERM', 'SIGKILL', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGSTOP', 'SIGCONT']

/** How a task ended. */
export interface ProcessEnd {
  taskId: string
  pid: number
  status: TaskStatus
  /** The exit status; 128 + n for a process ended by signal n. */
  exitCode: number | null
  /** The signal that ended it (`SIGTERM`, `SIGKILL`, ...), or null when it exited. */
  signal: string | null
  /** Whether output was dropped from what the task keeps (its last `outputBytes`). */
  truncated: boolean
}

/**
 * One event of a process stream: output bytes as the process wrote them (in order, across both
 * streams; `offset` counts every byte the stream carried), bytes a slow reader missed (the task
 * keeps only its last `outputBytes`), and, last, how it ended.
 */
export type ProcessEvent =
  { type: 'stdout' | 'stderr'; data: Buffer; offset: number } | { type: 'dropped'; stream: 'stdout' | 'stderr'; bytes: number } | ({ type: 'end' } & ProcessEnd)

/** A process's output stream (SessionTasks.spawn, connect). */
export interface ProcessStream {
  readonly taskId: string
  /** The process's pid in the sandbox. */
  readonly pid: number
  /** Whether it runs in a terminal (spawn with `pty`): its output, all of it, comes as `stdout` events. */
  readonly pty: boolean
  /**
   * Events until the process has ended (the last is `end`), or until close(). Read them, or close
   * the stream: output nobody reads waits on the host, and past 16 MiB the session's output pauses.
   */
  readonly events: AsyncIterable<ProcessEvent>
  /** Stops streaming; the process runs on (connect again to follow it). Idempotent. */
  close(): Promise<void>
}

/** A task as SessionTasks.list shows it. */
export interface ProcessInfo {
  taskId: string
  pid: number
  status: TaskStatus
  exitCode: number | null
  signal: string | null
  /** The program and its arguments (`['/bin/sh', '-c', command]` for a shell line); each cut at 4096 characters. */
  argv: string[]
  /** The shell line, for a task started with `command`; else null. */
  command: string | null
  /** The variables given at start (not the whole environment). */
  env: Record<string, string>
  cwd: string
  tag: string | null
  /** Whether its stdin is open for sendInput. */
  stdin: boolean
  /** Its terminal's size now, for a task started with `pty`; else null. */
  pty: TerminalSize | null
}

export interface TaskReadOptions {
  /** Byte offset in the task's stdout to read from (the `stdoutOffset` of the previous read). Default 0. */
  stdoutOffset?: number
  /** Byte offset in the task's stderr to read from. Default 0. */
  stderrOffset?: number
  /** Most bytes returned per stream, at most 1 MiB. Default 1 MiB. */
  maxBytes?: number
}

/** A task's output from given offsets on (read()). */
export interface TaskOutput {
  taskId: string
  status: TaskStatus
  exitCode: number | null
  stdout: string
  stderr: string
  /** Where the next read of stdout starts (bytes since the task began). */
  stdoutOffset: number
  stderrOffset: number
  /** Bytes after the asked offset that were dropped before this read (the output budget keeps the last bytes only). */
  stdoutDropped: number
  stderrDropped: number
  /** Bytes the stream has carried so far: more to read while the offset is below. */
  stdoutEnd: number
  stderrEnd: number
}

const taskStatuses: readonly TaskStatus[] = ['submitted', 'working', 'completed', 'canceled', 'failed']
const MAX_ENV_VARS = 256
const MAX_ENV_BYTES = 128 * 1024
const MAX_READ_BYTES = 1024 * 1024
/** Most bytes one sendInput carries. */
export const MAX_INPUT_BYTES = 1024 * 1024
const MAX_ARGS = 4096

export class SessionTasks {
  private readonly session: Session

  constructor(session: Session) {
    this.session = session
  }

  /** Starts a shell command in the background; returns at once with its task id (`structuredContent.taskId`). */
  async start(command: string, options: TaskStartOptions = {}): Promise<ToolResult> {
    checkCode('command', command)
    const fields: Record<string, unknown> = { command, outputBytes: this.session.limits.outputBytes }
    if (options.env !== undefined) fields.env = checkEnv(options.env)
    if (options.cwd !== undefined) fields.cwd = checkCwd(options.cwd)
    if (options.stdin !== undefined) fields.stdin = options.stdin === true
    if (options.tag !== undefined) fields.tag = checkTag(options.tag)
    const v = await this.op('task.start', fields)
    return taskResult(v)
  }

  /**
   * Starts a process in the background, as start does, and streams its output from its first
   * byte: resolves once it runs, with its task id and pid. LimitExceeded past 64 running tasks;
   * ValidationError naming the field for a bad option or a program that is not found.
   */
  async spawn(options: ProcessStartOptions): Promise<ProcessStream> {
    const fields: Record<string, unknown> = { outputBytes: this.session.limits.outputBytes, stream: true }
    if (options === null || typeof options !== 'object') throw validationError('options', 'must be an object')
    if (options.command !== undefined && (options.cmd !== undefined || options.args !== undefined))
      throw validationError('command', 'give either command (a shell line) or cmd and args, not both')
    if (options.command !== undefined) {
      checkCode('command', options.command)
      fields.command = options.command
    } else fields.argv = checkArgv(options.cmd, options.args)
    if (options.env !== undefined) fields.env = checkEnv(options.env)
    if (options.cwd !== undefined) fields.cwd = checkCwd(options.cwd)
    if (options.tag !== undefined) fields.tag = checkTag(options.tag)
    if (options.pty !== undefined) {
      if (options.stdin === true) throw validationError('stdin', 'a process in a terminal (pty) reads its input from the terminal: give pty or stdin, not both')
      fields.pty = checkTerminalSize(options.pty, 'pty')
    }
    fields.stdin = options.stdin === true
    return processStream(await openStream(this.session, 'task.start', fields, 'task.started', options.signal))
  }

  /**
   * Streams a task's output again (after a stream was closed, or from another server after a
   * restart): from the given offsets (bytes since the task began) or, without, from now on. A
   * task that has ended sends what is kept from the offsets and its end. At most 8 streams per task.
   */
  async connect(selector: TaskSelector, options: { stdoutOffset?: number; stderrOffset?: number; signal?: AbortSignal } = {}): Promise<ProcessStream> {
    const fields: Record<string, unknown> = checkSelector(selector)
    for (const name of ['stdoutOffset', 'stderrOffset'] as const) {
      const v = options[name]
      if (v === undefined) continue
      if (!Number.isSafeInteger(v) || v < 0) throw validationError(name, `must be a whole number from 0, got ${String(v)}`)
      fields[name] = v
    }
    return processStream(await openStream(this.session, 'task.stream', fields, 'task.started', options.signal))
  }

  /**
   * Writes to a task's stdin (started with `stdin: true`) or, for one started with `pty`, types
   * into its terminal: at most MAX_INPUT_BYTES (1 MiB) per call, else LimitExceeded. Conflict
   * when it has no stdin, closed it, or ended, and when `target` names what it does not have
   * (`pty` for a task without a terminal, `stdin` for one with); Timeout when the process does
   * not read it within 10 s.
   */
  async sendInput(selector: TaskSelector, data: string | Uint8Array, options: { target?: 'stdin' | 'pty' } = {}): Promise<void> {
    if (typeof data !== 'string' && !(data instanceof Uint8Array)) throw validationError('data', 'must be a string or a Uint8Array')
    const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data.buffer, data.byteOffset, data.length)
    if (bytes.length > MAX_INPUT_BYTES) {
      throw new CodeboxError('LimitExceeded', `data is ${bytes.length} bytes, over the ${MAX_INPUT_BYTES}-byte limit of one input; send it in parts`, {
        details: { field: 'data', limit: MAX_INPUT_BYTES },
      })
    }
    const target = options.target
    if (target !== undefined && target !== 'stdin' && target !== 'pty')
      throw validationError('target', `must be "stdin" or "pty", got ${JSON.stringify(target)}`)
    await this.op('task.input', { ...checkSelector(selector), data: bytes.toString('base64'), ...(target ? { target } : {}) })
  }

  /**
   * Sets the size of a task's terminal (started with `pty`); its foreground processes get
   * SIGWINCH. ValidationError for a bad size; Conflict when it has no terminal or has ended.
   */
  async resize(selector: TaskSelector, size: TerminalSize): Promise<void> {
    const fields = { ...checkSelector(selector), size: checkTerminalSize(size, 'size') }
    await this.op('task.resize', fields)
  }

  /** Closes a task's stdin (the process reads end of file). Idempotent; Conflict for a task started without stdin. */
  async closeStdin(selector: TaskSelector): Promise<void> {
    await this.op('task.closeStdin', checkSelector(selector))
  }

  /** Sends a signal to a running task (its process group; SIGKILL to its whole tree). Conflict when it has ended. */
  async signal(selector: TaskSelector, signal: ProcessSignal): Promise<void> {
    if (!processSignals.includes(signal)) throw validationError('signal', `must be one of ${processSignals.join(', ')}, got ${JSON.stringify(signal)}`)
    await this.op('task.signal', { ...checkSelector(selector), signal })
  }

  /** The session's tasks (the running ones with `running`), oldest first: up to 64 running and the last 64 ended. */
  async list(options: { running?: boolean } = {}): Promise<ProcessInfo[]> {
    const done = (await this.op('task.list', { running: options.running === true })) as unknown as Record<string, unknown>
    if (!Array.isArray(done.tasks)) throw new CodeboxError('SandboxFailure', 'the executor answered task.list without tasks')
    return done.tasks.slice(0, 256).map(processInfo)
  }

  /**
   * The task's output from the given offsets on, and the offsets to read from next: a reader that
   * passes back what it got sees every byte once, or how many were dropped before it read them.
   */
  async read(taskId: string, options: TaskReadOptions = {}): Promise<TaskOutput> {
    const offset = (name: 'stdoutOffset' | 'stderrOffset' | 'maxBytes', fallback: number, max = Number.MAX_SAFE_INTEGER): number => {
      const v = options[name] ?? fallback
      if (!Number.isSafeInteger(v) || v < 0 || v > max) throw validationError(name, `must be a whole number from 0 to ${max}, got ${String(v)}`)
      return v
    }
    const fields = {
      taskId: checkTaskId(taskId),
      stdoutOffset: offset('stdoutOffset', 0),
      stderrOffset: offset('stderrOffset', 0),
      maxBytes: offset('maxBytes', MAX_READ_BYTES, MAX_READ_BYTES),
    }
    return taskOutput(await this.op('task.get', fields), fields.maxBytes)
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
    this.session.enter()
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

/** The executor's answer to a read, checked: it comes from the sandbox. */
function taskOutput(v: TaskView, maxBytes: number): TaskOutput {
  const raw = v as unknown as Record<string, unknown>
  const count = (name: string): number => {
    const n = raw[name]
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)
      throw new CodeboxError('SandboxFailure', `the executor answered a task read with a bad ${name}`)
    return n
  }
  const text = (name: string): string => {
    const t = raw[name]
    if (typeof t !== 'string') throw new CodeboxError('SandboxFailure', `the executor answered a task read with a bad ${name}`)
    return t.slice(0, maxBytes)
  }
  const exitCode = typeof v.exitCode === 'number' && Number.isInteger(v.exitCode) ? v.exitCode : null
  const status = taskStatuses.includes(v.status) ? v.status : 'failed'
  return {
    taskId: String(v.taskId),
    status,
    exitCode,
    stdout: text('stdout'),
    stderr: text('stderr'),
    stdoutOffset: count('stdoutOffset'),
    stderrOffset: count('stderrOffset'),
    stdoutDropped: count('stdoutDropped'),
    stderrDropped: count('stderrDropped'),
    stdoutEnd: count('stdoutEnd'),
    stderrEnd: count('stderrEnd'),
  }
}

function checkEnv(env: unknown): Record<string, string> {
  if (typeof env !== 'object' || env === null || Array.isArray(env)) throw validationError('env', 'must be an object of names to strings')
  const entries = Object.entries(env)
  if (entries.length > MAX_ENV_VARS) throw validationError('env', `has ${entries.length} variables, more than ${MAX_ENV_VARS}`)
  let bytes = 0
  const out: Record<string, string> = {}
  for (const [k, v] of entries) {
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(k)) throw validationError('env', `${JSON.stringify(k.slice(0, 140))} is not a variable name`)
    if (typeof v !== 'string' || v.includes('\0')) throw validationError(`env.${k}`, 'must be a string without NUL')
    bytes += Buffer.byteLength(k) + Buffer.byteLength(v) + 2
    out[k] = v
  }
  if (bytes > MAX_ENV_BYTES) throw validationError('env', `is ${bytes} bytes, more than ${MAX_ENV_BYTES}`)
  return out
}

function checkCwd(cwd: unknown): string {
  if (typeof cwd !== 'string' || cwd === '' || cwd.includes('\0') || cwd.length > 4096)
    throw validationError('cwd', `must be a path in the sandbox (absolute, or relative to /workspace), got ${JSON.stringify(cwd)}`)
  return cwd
}

function checkTerminalSize(size: unknown, field: string): TerminalSize {
  const s = size as Record<string, unknown> | null
  if (s === null || typeof s !== 'object') throw validationError(field, 'must be {cols, rows}')
  for (const name of ['cols', 'rows'] as const) {
    const v = s[name]
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_TERMINAL_SIZE)
      throw validationError(`${field}.${name}`, `must be a whole number from 1 to ${MAX_TERMINAL_SIZE}, got ${String(v)}`)
  }
  return { cols: s.cols as number, rows: s.rows as number }
}

function checkTag(tag: unknown): string {
  if (typeof tag !== 'string' || tag === '' || tag.length > 256 || tag.includes('\0'))
    throw validationError('tag', 'must be a string of 1 to 256 characters without NUL')
  return tag
}

function checkArgv(cmd: unknown, args: unknown): string[] {
  if (typeof cmd !== 'string' || cmd === '' || cmd.includes('\0')) throw validationError('cmd', 'must be a program name or path, without NUL')
  if (args !== undefined && (!Array.isArray(args) || args.length > MAX_ARGS)) throw validationError('args', `must be an array of at most ${MAX_ARGS} strings`)
  const argv = [cmd, ...((args as unknown[] | undefined) ?? [])]
  let bytes = 0
  argv.forEach((a, i) => {
    if (typeof a !== 'string' || a.includes('\0')) throw validationError(`args[${i - 1}]`, 'must be a string without NUL')
    bytes += Buffer.byteLength(a) + 1
  })
  if (bytes > MAX_CODE_BYTES) {
    throw new CodeboxError('LimitExceeded', `cmd and args are ${bytes} bytes, over the ${MAX_CODE_BYTES}-byte limit`, {
      details: { field: 'args', limit: MAX_CODE_BYTES },
    })
  }
  return argv as string[]
}

function checkSelector(selector: unknown): Record<string, unknown> {
  const s = selector as Record<string, unknown> | null
  if (s === null || typeof s !== 'object') throw validationError('selector', 'must be {taskId}, {pid} or {tag}')
  const given = ['taskId', 'pid', 'tag'].filter((k) => s[k] !== undefined)
  if (given.length !== 1) throw validationError('selector', `must have exactly one of taskId, pid and tag, got ${given.join(', ') || 'none'}`)
  if (s.taskId !== undefined) return { taskId: checkTaskId(s.taskId) }
  if (s.tag !== undefined) return { tag: checkTag(s.tag) }
  const pid = s.pid
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid < 1 || pid > 2 ** 31)
    throw validationError('pid', `must be a process id (a whole number from 1), got ${String(pid)}`)
  return { pid }
}

const streams = ['stdout', 'stderr'] as const
const count = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isTaskId = (v: unknown): v is string => typeof v === 'string' && /^task-\d{1,12}$/.test(v)

function processEnd(v: Record<string, unknown>, taskId: string, pid: number): ProcessEnd {
  return {
    taskId,
    pid,
    status: taskStatuses.includes(v.status as TaskStatus) ? (v.status as TaskStatus) : 'failed',
    exitCode: typeof v.exitCode === 'number' && Number.isInteger(v.exitCode) && Math.abs(v.exitCode) <= 255 ? v.exitCode : null,
    signal: typeof v.signal === 'string' ? v.signal.slice(0, 16) : null,
    truncated: v.truncated === true,
  }
}

/** A stream opened by task.start or task.stream, its events checked: they come from the sandbox. */
function processStream(opened: OpenedStream): ProcessStream {
  const { taskId, pid } = opened.first
  if (!isTaskId(taskId) || !count(pid)) {
    void opened.close()
    throw new CodeboxError('SandboxFailure', 'the executor started a process without a task id and pid')
  }
  async function* events(): AsyncGenerator<ProcessEvent> {
    try {
      for (;;) {
        const n = await opened.rest.next()
        if (n.done) {
          // Closed by the caller (detached): the process runs on, and there is no end to tell.
          if (n.value.detached !== true) yield { type: 'end', ...processEnd(n.value, taskId as string, pid as number) }
          return
        }
        if (n.value.kind !== 'event') continue
        const e = n.value.event
        const stream = streams.find((s) => s === e.stream)
        if (!stream) continue
        if (e.ev === 'task.data' && typeof e.data === 'string' && e.data.length <= 512 * 1024 && count(e.offset)) {
          yield { type: stream, data: Buffer.from(e.data, 'base64'), offset: e.offset }
        } else if (e.ev === 'task.dropped' && count(e.bytes)) {
          yield { type: 'dropped', stream, bytes: e.bytes }
        }
      }
    } finally {
      await opened.close()
    }
  }
  return { taskId, pid, pty: opened.first.pty === true, events: events(), close: () => opened.close() }
}

function processInfo(raw: unknown): ProcessInfo {
  const v = raw as Record<string, unknown> | null
  if (v === null || typeof v !== 'object' || !isTaskId(v.taskId) || !count(v.pid))
    throw new CodeboxError('SandboxFailure', 'the executor listed a task without a task id and pid')
  const str = (x: unknown): string => (typeof x === 'string' ? x.slice(0, 8192) : '')
  const env: Record<string, string> = {}
  if (v.env !== null && typeof v.env === 'object') {
    for (const [k, val] of Object.entries(v.env).slice(0, 256)) if (typeof val === 'string') env[k.slice(0, 128)] = val.slice(0, 8192)
  }
  const end = processEnd(v, v.taskId, v.pid)
  return {
    taskId: v.taskId,
    pid: v.pid,
    status: end.status,
    exitCode: end.exitCode,
    signal: end.signal,
    argv: Array.isArray(v.argv) ? v.argv.slice(0, 4096).map(str) : [],
    command: typeof v.command === 'string' ? v.command.slice(0, 8192) : null,
    env,
    cwd: str(v.cwd),
    tag: typeof v.tag === 'string' ? v.tag.slice(0, 256) : null,
    stdin: v.stdin === true,
    pty: terminalSize(v.pty),
  }
}

/** A terminal size the executor reported, or null when it is not one: it comes from the sandbox. */
function terminalSize(v: unknown): TerminalSize | null {
  const s = v as Record<string, unknown> | null
  const ok = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= MAX_TERMINAL_SIZE
  return s !== null && typeof s === 'object' && ok(s.cols) && ok(s.rows) ? { cols: s.cols, rows: s.rows } : null
}

function checkTaskId(taskId: unknown): string {
  if (typeof taskId !== 'string' || !/^task-\d{1,12}$/.test(taskId))
    throw validationError('taskId', `must look like task-<number>, got ${JSON.stringify(taskId)}`)
  return taskId
}
