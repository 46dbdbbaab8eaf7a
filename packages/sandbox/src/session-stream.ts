/**
 * A request that streams for as long as its caller holds it (a process's output, a directory
 * watch): opened once its first event came, closed by the caller (the executor's request is
 * cancelled) or when it ends. While open it counts as a call in flight: the session is not idle.
 */
import { CodeboxError } from '@codebox/core'
import type { ExecutorMessage } from './executor-client.ts'
import type { Session } from './session.ts'

export interface OpenedStream {
  /** The request's first event (its `ev` is the one asked for). */
  first: Record<string, unknown>
  /** The request's later messages, then its `done` fields as the return value. */
  rest: AsyncGenerator<ExecutorMessage, Record<string, unknown>>
  /** Cancels the request (if it still runs) and lets go of it; idempotent. */
  close(): Promise<void>
}

const CLOSE_WAIT_MS = 5000

export async function openStream(
  session: Session,
  op: string,
  fields: Record<string, unknown>,
  firstEv: string,
  signal: AbortSignal | undefined,
): Promise<OpenedStream> {
  session.enter()
  const controller = new AbortController()
  const onAbort = (): void => controller.abort()
  if (signal?.aborted) controller.abort()
  else signal?.addEventListener('abort', onAbort, { once: true })
  const it = session.client.request(op, fields, { signal: controller.signal })
  let closed = false
  const finish = async (): Promise<void> => {
    if (closed) return
    closed = true
    signal?.removeEventListener('abort', onAbort)
    await it.return({}).catch(() => {})
    session.leave()
  }
  let first: Record<string, unknown>
  try {
    const n = await it.next()
    if (n.done || n.value.kind !== 'event' || n.value.event.ev !== firstEv) {
      throw new CodeboxError('SandboxFailure', `the executor did not answer ${op} with ${firstEv}`)
    }
    first = n.value.event
  } catch (e) {
    await finish()
    throw e
  }
  async function* rest(): AsyncGenerator<ExecutorMessage, Record<string, unknown>> {
    try {
      for (;;) {
        const n = await it.next()
        // A request already let go of (close()) ends with no fields.
        if (n.done) return n.value ?? {}
        yield n.value
      }
    } finally {
      await finish()
    }
  }
  return {
    first,
    rest: rest(),
    close: async () => {
      controller.abort()
      if (closed) return
      // The executor ends the request within a second of the cancel; wait for it (at most
      // CLOSE_WAIT_MS), so what the request held there (a watch, a stream slot) is free again.
      const deadline = Date.now() + CLOSE_WAIT_MS
      try {
        for (;;) {
          let timer: NodeJS.Timeout | undefined
          const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), Math.max(0, deadline - Date.now()))))
          const n = await Promise.race([it.next(), late]).finally(() => clearTimeout(timer))
          if (n === 'late') {
            // Still not ended: let go without waiting for it (a return queued behind the pending next would).
            closed = true
            signal?.removeEventListener('abort', onAbort)
            void it.return({}).catch(() => {})
            session.leave()
            return
          }
          if (n.done) break
        }
      } catch {
        // The request failed (the session ended): nothing is held.
      }
      await finish()
    },
  }
}
