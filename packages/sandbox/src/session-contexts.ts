/**
 * session.contexts: kernels of their own beside a session's default ones. A context is one kernel
 * process for one language, with its own variables and working directory; a cell names it with
 * `executeCode({context})`. The executor keeps the contexts (a server restart finds them again);
 * a session holds at most {@link MAX_CONTEXTS}, each counted against the session's memory.
 */
import { CodeboxError, validationError } from '@codebox/core'
import { checkKernelLanguage, kernelLanguages, type KernelLanguage } from './input.ts'
import type { JsRuntime, Session } from './session.ts'

/** Most contexts one session may hold besides its default kernels (the executor's MAX_CONTEXTS). */
export const MAX_CONTEXTS = 8

const contextId = /^[A-Za-z0-9_-]{1,64}$/

export interface ContextCreateOptions {
  /** 1-64 letters, digits, `-` or `_`; unique in the session. */
  id: string
  /** `bash`: a shell of its own (kernel_bash.py), beside the session's default one. */
  language: KernelLanguage
  /** Runtime of a JavaScript or TypeScript context, default `nodejs`. */
  runtime?: JsRuntime
  /** Working directory of the kernel: absolute, or relative to `/workspace`; default `/workspace`. It must exist. */
  cwd?: string
}

export interface ContextInfo {
  id: string
  language: KernelLanguage
  /** `python` and `bash` for those languages; a JavaScript or TypeScript context's runtime. */
  runtime: 'python' | 'bash' | JsRuntime
  /** The kernel's working directory, absolute. */
  cwd: string
  /** Whether its kernel process runs now (it starts with the first cell, and again after a restart). */
  running: boolean
  /** Cells run since the kernel (re)started. */
  executionCount: number
}

/** A default kernel of the session: Python's, the shell (`bash`), or the JavaScript/TypeScript runtime's. */
export type DefaultKernel = 'python' | 'bash' | JsRuntime

export class SessionContexts {
  private readonly session: Session

  constructor(session: Session) {
    this.session = session
  }

  /** Makes a context; ValidationError for a bad id, language, runtime or cwd, Conflict for an id in use, LimitExceeded past {@link MAX_CONTEXTS}. */
  async create(options: ContextCreateOptions): Promise<ContextInfo> {
    const id = checkContextId(options.id)
    const language = checkKernelLanguage('language', options.language)
    const runtime = language === 'python' || language === 'bash' ? undefined : (options.runtime ?? 'nodejs')
    if (runtime !== undefined && !this.session.runtimes.includes(runtime)) {
      throw validationError('runtime', `${runtime} is not available in this session's sandbox; use nodejs`)
    }
    if (options.cwd !== undefined && (typeof options.cwd !== 'string' || options.cwd.length > 4096 || options.cwd.includes('\0'))) {
      throw validationError('cwd', 'must be a path of at most 4096 characters without NUL')
    }
    const done = await this.op('context.create', { context: id, language, runtime, cwd: options.cwd })
    return contextInfo(done)
  }

  /** The session's contexts (not its default kernels), in the order they were made. */
  async list(): Promise<ContextInfo[]> {
    const done = await this.op('context.list', {})
    if (!Array.isArray(done.contexts)) throw new CodeboxError('SandboxFailure', 'the executor answered context.list without contexts')
    return done.contexts.slice(0, MAX_CONTEXTS).map((c) => contextInfo(c as Record<string, unknown>))
  }

  /**
   * Ends a context's kernel, or a default kernel's, and its state with it; the next cell starts a
   * fresh one. A cell running in it ends as killed. NotFound for an unknown context.
   */
  async restart(which: { context: string } | { kernel: DefaultKernel }): Promise<void> {
    if ('context' in which) await this.op('context.restart', { context: checkContextId(which.context) })
    else {
      const families: Record<DefaultKernel, string> = { python: 'python', bash: 'bash', nodejs: 'node', deno: 'deno' }
      const family = Object.hasOwn(families, which.kernel) ? families[which.kernel] : undefined
      if (family === undefined) throw validationError('kernel', `must be python, bash, nodejs or deno, got ${JSON.stringify(which.kernel)}`)
      await this.op('context.restart', { family })
    }
  }

  /** Ends a context's kernel and forgets the context. NotFound for an unknown one. */
  async remove(id: string): Promise<void> {
    await this.op('context.remove', { context: checkContextId(id) })
  }

  private async op(op: string, fields: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.session.enter()
    try {
      const it = this.session.client.request(op, fields)
      for (;;) {
        const n = await it.next()
        if (n.done) return n.value
      }
    } finally {
      this.session.leave()
    }
  }
}

export function checkContextId(id: unknown): string {
  if (typeof id !== 'string' || !contextId.test(id)) throw validationError('context', `must be 1 to 64 letters, digits, '-' or '_', got ${JSON.stringify(id)}`)
  return id
}

/** The executor's view of a context, checked: it comes from the sandbox. */
function contextInfo(v: Record<string, unknown>): ContextInfo {
  const bad = (field: string): never => {
    throw new CodeboxError('SandboxFailure', `the executor described a context with a bad ${field}`)
  }
  const id = typeof v.context === 'string' && contextId.test(v.context) ? v.context : bad('id')
  const language = (kernelLanguages as readonly unknown[]).includes(v.language) ? (v.language as KernelLanguage) : bad('language')
  const runtime = v.runtime === 'python' || v.runtime === 'bash' || v.runtime === 'nodejs' || v.runtime === 'deno' ? v.runtime : bad('runtime')
  const cwd = typeof v.cwd === 'string' && v.cwd.length <= 4096 ? v.cwd : bad('cwd')
  const count = v.executionCount
  const executionCount = typeof count === 'number' && Number.isSafeInteger(count) && count >= 0 ? count : bad('executionCount')
  return { id, language, runtime, cwd, running: v.running === true, executionCount }
}
