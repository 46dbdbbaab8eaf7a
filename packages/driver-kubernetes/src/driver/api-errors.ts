/** What a failed Kubernetes API call says, in the driver's messages. */
import { ApiException } from '@kubernetes/client-node'
import { clean } from './pod-state.ts'

/** The HTTP status of a failed API call (0 when the server was not reached). */
export function apiCode(e: unknown): number {
  return e instanceof ApiException ? e.code : 0
}

/** A failed API call in one line: the Status message the server sent, or the client's error. */
export function apiMessage(e: unknown): string {
  if (e instanceof ApiException) {
    let body: unknown = e.body
    if (typeof body === 'string') {
      try {
        body = JSON.parse(body)
      } catch {
        // not JSON
      }
    }
    const message = (body as { message?: unknown } | undefined)?.message
    return `HTTP ${e.code}${typeof message === 'string' ? `: ${clean(message, 300)}` : ''}`
  }
  return clean(e instanceof Error ? e.message : String(e), 300)
}
