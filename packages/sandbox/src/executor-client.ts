/**
 * The host end of the executor protocol over a sandbox's stdin/stdout: requests with ids,
 * their events as async iterators, byte streams in both directions, cancellation.
 */
import { once } from 'node:events'
import { CodeboxError, type ErrorCode, errorCodes } from '@codebox/core'
import type { Sandbox } from '@codebox/core'
import { encodeFrame, encodeJson, FrameDecoder, FrameKind } from './protocol.ts'

/** One message from the executor for a request: a JSON event or a chunk of file bytes. */
export type ExecutorMessage = { kind: 'event'; event: Record<string, unknown> } | { kind: 'bytes'; data: Buffer } | { kind: 'end' }

interface Pending {
  push(message: ExecutorMessage): void
  fail(error: Error): void
}

export class ExecutorClient {
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private closedError: Error | undefined
  private readonly decoder = new FrameDecoder()
  readonly ready: Promise<void>
  /** Runtimes the executor said it can run in its `ready` event. */
  runtimes: readonly string[] = ['python', 'nodejs']
  private readonly sandbox: Sandbox

  constructor(sandbox: Sandbox) {
    this.sandbox = sandbox
    let resolveReady!: () => void
    let rejectReady!: (e: Error) => void
    this.ready = new Promise((res, rej) => ((resolveReady = res), (rejectReady = rej)))
    this.ready.catch(() => {})
    sandbox.output.on('data', (chunk: Buffer) => {
      let frames
      try {
        frames = this.decoder.push(chunk)
      } catch (e) {
        this.close(new CodeboxError('SandboxFailure', `executor protocol error: ${(e as Error).message}`))
        void sandbox.destroy()
        return
      }
      for (const f of frames) {
        if (f.requestId === 0) {
          const event = f.kind === FrameKind.Json ? (JSON.parse(f.payload.toString('utf8')) as { ev?: string; runtimes?: unknown }) : undefined
          if (event?.ev !== 'ready') continue
          if (Array.isArray(event.runtimes)) this.runtimes = event.runtimes.map(String)
          resolveReady()
          continue
        }
        const p = this.pending.get(f.requestId)
        if (!p) continue
        if (f.kind === FrameKind.Json) p.push({ kind: 'event', event: JSON.parse(f.payload.toString('utf8')) as Record<string, unknown> })
        else if (f.kind === FrameKind.Bytes) p.push({ kind: 'bytes', data: f.payload })
        else p.push({ kind: 'end' })
      }
    })
    sandbox.input.on('error', () => {})
    void sandbox.exited.then((exit) => {
      const why = exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`
      const diag = sandbox.diagnostics().trim()
      const err = new CodeboxError('SessionTerminated', `the sandbox ended (${why})${diag ? `: ${diag.slice(-500)}` : ''}`)
      rejectReady(err)
      this.close(err)
    })
  }

  /** Fails every call in flight, and every later one, with `err` (the first reason given wins). */
  close(err: Error): void {
    this.closedError ??= err
    for (const p of this.pending.values()) p.fail(err)
    this.pending.clear()
  }

  get closed(): boolean {
    return this.closedError !== undefined
  }

  /**
   * Sends a request and yields its messages until `done` (returned) or `error` (thrown as a
   * CodeboxError). Breaking out of the loop, or the signal aborting, cancels the request.
   */
  async *request(
    op: string,
    fields: Record<string, unknown>,
    options: { signal?: AbortSignal; body?: AsyncIterable<Buffer> } = {},
  ): AsyncGenerator<ExecutorMessage, Record<string, unknown>> {
    if (this.closedError) throw this.closedError
    const id = this.nextId++
    const queue: ExecutorMessage[] = []
    let failure: Error | undefined
    let wake: (() => void) | undefined
    this.pending.set(id, {
      push: (m) => (queue.push(m), wake?.()),
      fail: (e) => ((failure = e), wake?.()),
    })
    const cancel = () => this.write(encodeJson(0, { op: 'cancel', target: id }))
    options.signal?.addEventListener('abort', cancel, { once: true })
    let finished = false
    let bodyError: unknown
    try {
      this.write(encodeJson(id, { op, ...fields }))
      // A body that fails (too large, stalled, cut off) cancels the request; its error is the one to report.
      if (options.body) void this.pumpBody(id, options.body).then((e) => (bodyError = e))
      for (;;) {
        while (queue.length === 0 && !failure) await new Promise<void>((r) => (wake = r))
        wake = undefined
        const m = queue.shift()
        if (!m) throw failure!
        if (m.kind === 'event' && m.event.ev === 'done') {
          finished = true
          return m.event
        }
        if (m.kind === 'event' && m.event.ev === 'error') {
          finished = true
          if (bodyError) throw bodyError
          const code = (m.event.code as string) in errorCodes ? (m.event.code as ErrorCode) : 'SandboxFailure'
          throw new CodeboxError(code, String(m.event.message))
        }
        yield m
      }
    } finally {
      options.signal?.removeEventListener('abort', cancel)
      if (!finished && !this.closedError) cancel()
      this.pending.delete(id)
    }
  }

  /** Runs a request that has no events worth streaming and returns its `done` fields. */
  async call(op: string, fields: Record<string, unknown>, options: { signal?: AbortSignal } = {}): Promise<Record<string, unknown>> {
    const it = this.request(op, fields, options)
    for (;;) {
      const r = await it.next()
      if (r.done) return r.value
    }
  }

  /** Streams a request body to the executor; resolves with the body's own error, if it failed. */
  private async pumpBody(id: number, body: AsyncIterable<Buffer>): Promise<unknown> {
    try {
      for await (const chunk of body) {
        for (let off = 0; off < chunk.length; off += 1 << 20) {
          if (!this.write(encodeFrame(id, FrameKind.Bytes, chunk.subarray(off, off + (1 << 20))))) {
            await once(this.sandbox.input, 'drain')
          }
        }
      }
      this.write(encodeFrame(id, FrameKind.End))
      return undefined
    } catch (e) {
      this.write(encodeJson(0, { op: 'cancel', target: id }))
      return e
    }
  }

  private write(frame: Buffer): boolean {
    if (this.closedError || this.sandbox.input.destroyed) return true
    return this.sandbox.input.write(frame)
  }
}
