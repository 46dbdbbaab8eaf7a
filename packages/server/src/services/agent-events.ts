/**
 * Plumbing of an agent turn's events: the queue between the task that runs a turn and whoever
 * reads it, the closing `error` event of a turn that failed without one, and the bounded metric
 * label of a model fallback.
 */
import { errorCodes, isCodeboxError, type AgentEvent } from '@codebox/core'

/** Events of one turn, from the task that runs it to whoever reads the turn. */
export class EventQueue {
  readonly #items: AgentEvent[] = []
  #wake: (() => void) | undefined
  #ended = false

  /** Adds an event for the reader. */
  push(e: AgentEvent): void {
    this.#items.push(e)
    this.#wake?.()
  }

  /** No more events: the reader's drain ends once it has read what is queued. */
  end(): void {
    this.#ended = true
    this.#wake?.()
  }

  /** The events in order, waiting for more until `end()`. */
  async *drain(): AsyncGenerator<AgentEvent, void, undefined> {
    for (;;) {
      const next = this.#items.shift()
      if (next) {
        yield next
        continue
      }
      if (this.#ended) return
      await new Promise<void>((resolve) => (this.#wake = resolve))
      this.#wake = undefined
    }
  }
}

/** A bounded label for why a model was skipped. */
export function fallbackReason(reason: string): string {
  if (/cool/i.test(reason)) return 'cooling-down'
  if (/\b429\b|throttl|rate.?limit/i.test(reason)) return 'throttled'
  if (/\b529\b|overload/i.test(reason)) return 'overloaded'
  if (/timed? ?out|timeout/i.test(reason)) return 'timeout'
  if (/\b5\d\d\b/.test(reason)) return 'server-error'
  if (/ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|unreachable|connect/i.test(reason)) return 'unreachable'
  if (/\b4\d\d\b|refus|denied|invalid/i.test(reason)) return 'refused'
  return 'other'
}

/**
 * The `error` event of a turn that ended without one: canceled (`Canceled`, the code the agent
 * package gives a canceled turn too), a CodeboxError as it is, anything else `Internal` (its
 * message, scrubbed, goes to `logError` only: it could be a provider's and echo a credential).
 */
export function errorEventOf(e: unknown, signal: AbortSignal, logError: (message: string) => void): Extract<AgentEvent, { type: 'error' }> {
  if (signal.aborted) return { type: 'error', code: 'Canceled', message: `the turn was canceled: ${reasonText(signal.reason)}` }
  if (isCodeboxError(e)) return { type: 'error', code: e.code, message: e.message }
  logError(scrub(e instanceof Error ? `${e.name}: ${e.message}` : String(e)))
  return { type: 'error', code: 'Internal', message: 'the agent failed unexpectedly; the server log has the details' }
}

/** The HTTP status of an error code (500 for a code outside the registry). */
export function statusOf(code: string): number {
  return (errorCodes as Record<string, { status: number } | undefined>)[code]?.status ?? 500
}

function reasonText(reason: unknown): string {
  if (reason instanceof Error) return reason.message
  return typeof reason === 'string' ? reason : 'the caller aborted'
}

/** Masks anything shaped like a secret (API keys, long tokens) in a message headed for the log. */
function scrub(text: string): string {
  return text.replace(/\b(sk-[\w-]{6,}|[A-Za-z0-9+/_-]{32,})\b/g, '***')
}
