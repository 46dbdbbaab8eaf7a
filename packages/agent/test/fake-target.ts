/**
 * A recording ToolTarget for agent tests: every call is kept (name, arguments, whether its signal
 * aborted), stdout is streamed as events, and the result is whatever the test's handler builds.
 * A handler may wait on the signal to stand for a long-running cell.
 */
import type { ExecutionEvent, ToolArguments, ToolName, ToolResult } from '@codebox/core'
import type { ToolTarget } from '@codebox/tools'

export interface RecordedCall {
  name: ToolName
  args: Record<string, unknown>
  signal?: AbortSignal
  aborted: boolean
}

export type Handler = (call: RecordedCall) => ToolResult | Promise<ToolResult>

/** A ToolResult as a finished Python cell would give it. */
export function cellResult(stdout: string, options: { stderr?: string; exitCode?: number; images?: string[] } = {}): ToolResult {
  const exitCode = options.exitCode ?? 0
  return {
    content: [
      ...(stdout ? [{ type: 'text' as const, text: stdout }] : []),
      ...(options.stderr ? [{ type: 'text' as const, text: options.stderr }] : []),
      ...(options.images ?? []).map((data) => ({ type: 'image' as const, data, mimeType: 'image/png' })),
    ],
    structuredContent: { stdout, stderr: options.stderr ?? '', exitCode, executionTime: 3 },
    isError: exitCode !== 0,
  }
}

export class FakeTarget implements ToolTarget {
  readonly calls: RecordedCall[] = []
  readonly #handler: Handler

  constructor(handler: Handler = () => cellResult('ok\n')) {
    this.#handler = handler
  }

  async invoke(name: ToolName, args: ToolArguments[ToolName], options: { signal?: AbortSignal } = {}): Promise<ToolResult> {
    const call: RecordedCall = { name, args: args as Record<string, unknown>, aborted: false, ...(options.signal ? { signal: options.signal } : {}) }
    this.calls.push(call)
    options.signal?.addEventListener('abort', () => (call.aborted = true), { once: true })
    return this.#handler(call)
  }

  async *invokeStream(
    name: ToolName,
    args: ToolArguments[ToolName],
    options: { signal?: AbortSignal } = {},
  ): AsyncGenerator<ExecutionEvent, ToolResult, undefined> {
    const result = await this.invoke(name, args, options)
    const s = result.structuredContent
    if (s.stdout) yield { type: 'stdout', text: s.stdout }
    if (s.stderr) yield { type: 'stderr', text: s.stderr }
    return result
  }
}

/** Resolves when `signal` aborts, then rejects with an AbortError, as a cell interrupted by the server does. */
export function untilAborted(signal: AbortSignal | undefined): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(new DOMException('interrupted', 'AbortError'))
    if (!signal) return
    if (signal.aborted) fail()
    else signal.addEventListener('abort', fail, { once: true })
  })
}
