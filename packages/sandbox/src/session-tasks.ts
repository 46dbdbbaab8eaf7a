/** session.tasks: background shell commands with status and output so far, run by the executor. */
import { validationError, type LimitKind, type TaskStatus, type ToolResult } from '@codebox/core'
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

function checkTaskId(taskId: unknown): string {
  if (typeof taskId !== 'string' || !/^task-\d{1,12}$/.test(taskId))
    throw validationError('taskId', `must look like task-<number>, got ${JSON.stringify(taskId)}`)
  return taskId
}
