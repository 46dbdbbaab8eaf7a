/**
 * session.tasks: background shell commands with status and output so far, run by the executor.
 * A task runs until it ends or is stopped, however long (a hosted agent's server); its output is
 * kept as the last `outputBytes` of stdout and stderr together, older bytes dropped and counted,
 * and can be read whole (`get`) or from offsets on (`read`).
 */
import { CodeboxError, validationError, type LimitKind, type TaskStatus, type ToolResult } from '@codebox/core'
import { checkCode } from './input.ts'
import { toToolResult } from './result.ts'
import type { Session } from './session.ts'

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
  /** Absolute directory in the sandbox to run in. Default `/workspace`. */
  cwd?: string
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
    const v = await this.op('task.start', fields)
    return taskResult(v)
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
  if (typeof cwd !== 'string' || !cwd.startsWith('/') || cwd.includes('\0') || cwd.length > 4096)
    throw validationError('cwd', `must be an absolute path in the sandbox, got ${JSON.stringify(cwd)}`)
  return cwd
}

function checkTaskId(taskId: unknown): string {
  if (typeof taskId !== 'string' || !/^task-\d{1,12}$/.test(taskId))
    throw validationError('taskId', `must look like task-<number>, got ${JSON.stringify(taskId)}`)
  return taskId
}
