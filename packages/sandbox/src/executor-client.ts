/**
 * The host end of the executor protocol over a sandbox's channel (its stdin/stdout, or a socket
 * a later server can connect to again): requests with ids,
 * their events as async iterators, byte streams in both directions, cancellation, and a
 * watchdog for an executor that stops answering. Every frame is hostile input: a bad one ends
 * its call (or, when it breaks the framing, the sandbox), never the host.
 */
import { once } from 'node:events'
import { CodeboxError, type ErrorCode, errorCodes } from '@codebox/core'
import type { Sandbox } from '@codebox/core'
import { encodeFrame, encodeJson, FrameDecoder, FrameKind, parseJsonFrame, type Frame } from './protocol.ts'

/** One message from the executor for a request: a JSON event or a chunk of file bytes. */
export type ExecutorMessage = { kind: 'event'; event: Record<string, unknown> } | { kind: 'bytes'; data: Buffer } | { kind: 'end' }

export interface ExecutorClientOptions {
  /** How long the executor has to answer a ping once a call is past its deadline, ms; default 5000. */
  graceMs?: number
  /** Deadline of a request that gives none (file operations, tasks), ms; default 60000. */
  defaultDeadlineMs?: number
}

export interface RequestOptions {
  signal?: AbortSignal
  body?: AsyncIterable<Buffer>
  /**
   * When the executor should have ended the call, ms from now (its own timeout). Once this and
   * the grace have passed, the call is cancelled and the executor pinged; an executor that does
   * not answer is stopped: the call fails, and the sandbox is destroyed. Default: the client's
   * `defaultDeadlineMs`.
   */
  deadlineMs?: number
}

interface Pending {
  push(message: ExecutorMessage, bytes: number): void
  fail(error: Error): void
}

/** The executor protocol version this host speaks (`ready.protocol`). */
export const EXECUTOR_PROTOCOL = 1

/** What the executor said in its `ready`. */
export interface ExecutorHello {
  pid: number
  runtimes: readonly string[]
  /** ms since its last request ended (a re-adopted sandbox's idle clock). */
  idleMs: number
  /** Whether it was handed to a session (op `session`) before this connection. */
  session: boolean
}

/** Bytes queued for slow consumers above which the host stops reading the sandbox's output. */
const HIGH_WATER_BYTES = 16 * 1024 * 1024
const LOW_WATER_BYTES = 4 * 1024 * 1024

export class ExecutorClient {
  private nextId = 1
  private readonly pending = new Map<number, Pending>()
  private closedError: Error | undefined
  private readonly decoder = new FrameDecoder()
  readonly ready: Promise<void>
  /** Runtimes the executor said it can run in its `ready` event. */
  runtimes: readonly string[] = ['python', 'nodejs']
  /** The `ready` event's facts, once it came. */
  hello: ExecutorHello | undefined
  private rejectReady!: (e: Error) => void
  private readonly sandbox: Sandbox
  private readonly graceMs: number
  private readonly defaultDeadlineMs: number
  private resolveReady!: () => void
  private queuedBytes = 0
  private paused = false
  private pinging: Promise<boolean> | undefined
  private broken = false

  constructor(sandbox: Sandbox, options: ExecutorClientOptions = {}) {
    this.sandbox = sandbox
    this.graceMs = options.graceMs ?? 5000
    this.defaultDeadlineMs = options.defaultDeadlineMs ?? 60_000
    this.ready = new Promise((res, rej) => ((this.resolveReady = res), (this.rejectReady = rej)))
    this.ready.catch(() => {})
    sandbox.output.on('data', (chunk: Buffer) => {
      try {
        this.onData(chunk)
      } catch (e) {
        // Nothing a sandbox sends may throw out of this listener: that would end the server.
        this.breakChannel(`the host failed on a frame (${(e as Error).message})`)
      }
    })
    sandbox.output.on('error', () => {})
    sandbox.input.on('error', () => {})
    void sandbox.exited.then((exit) => {
      const why = exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`
      const diag = sandbox.diagnostics().trim()
      const err = new CodeboxError('SessionTerminated', `the sandbox ended (${why})${diag ? `: ${diag.slice(-500)}` : ''}`)
      this.rejectReady(err)
      this.close(err)
    })
    // A socket channel can close before the sandbox's exit is seen: give the exit a moment to
    // report itself (its reason is the better one), then end anyway.
    sandbox.output.once('close', () => {
      void Promise.race([sandbox.exited, new Promise((r) => setTimeout(r, 2000).unref())]).then(() => {
        const err = new CodeboxError('SessionTerminated', 'the channel to the sandbox’s executor closed (the executor or its sandbox ended)')
        this.rejectReady(err)
        this.close(err)
      })
    })
  }

  private onData(chunk: Buffer): void {
    // After a broken frame length nothing more is framed: the rest is read and dropped until the sandbox ends.
    if (this.broken) return
    let frames: Frame[]
    try {
      frames = this.decoder.push(chunk)
    } catch (e) {
      this.breakChannel((e as Error).message)
      return
    }
    for (const f of frames) this.onFrame(f)
  }

  private onFrame(f: Frame): void {
    if (f.requestId === 0) {
      if (f.kind !== FrameKind.Json) return
      const parsed = parseJsonFrame(f.payload)
      if (!('event' in parsed) || parsed.event.ev !== 'ready' || this.hello) return
      const e = parsed.event
      if (e.protocol !== EXECUTOR_PROTOCOL) {
        const theirs = typeof e.protocol === 'number' ? String(e.protocol) : 'an older one'
        this.breakChannel(`the sandbox's executor speaks protocol ${theirs.slice(0, 20)}, this server ${EXECUTOR_PROTOCOL}`)
        return
      }
      const runtimes = e.runtimes
      if (Array.isArray(runtimes)) this.runtimes = runtimes.filter((r): r is string => typeof r === 'string' && r.length < 32).slice(0, 16)
      const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0)
      this.hello = { pid: num(e.pid), runtimes: this.runtimes, idleMs: num(e.idleMs), session: e.session === true }
      this.resolveReady()
      return
    }
    // A frame for a request not in flight (ended, cancelled, or never sent) is dropped.
    const p = this.pending.get(f.requestId)
    if (!p) return
    const failCall = (problem: string): void => {
      this.pending.delete(f.requestId)
      p.fail(new CodeboxError('SandboxFailure', `the executor sent ${problem}; this call was ended`))
    }
    if (f.kind === FrameKind.Json) {
      const parsed = parseJsonFrame(f.payload)
      if ('problem' in parsed) failCall(parsed.problem)
      else p.push({ kind: 'event', event: parsed.event }, f.payload.length)
    } else if (f.kind === FrameKind.Bytes) p.push({ kind: 'bytes', data: f.payload }, f.payload.length)
    else if (f.kind === FrameKind.End) p.push({ kind: 'end' }, 0)
    else failCall(`a frame of unknown kind 0x${f.kind.toString(16)}`)
  }

  /** The framing itself is broken (a bad length): nothing more from this sandbox can be trusted. */
  private breakChannel(why: string): void {
    this.broken = true
    const err = new CodeboxError('SandboxFailure', `executor protocol error: ${why}; the sandbox was destroyed`)
    this.rejectReady(err)
    this.close(err)
    void this.sandbox.destroy().catch(() => {})
  }

  /** Fails every call in flight, and every later one, with `err` (the first reason given wins). */
  close(err: Error): void {
    this.closedError ??= err
    for (const p of this.pending.values()) p.fail(err)
    this.pending.clear()
    this.release(this.queuedBytes)
  }

  get closed(): boolean {
    return this.closedError !== undefined
  }

  /** Bytes a consumer took off its queue: read the sandbox again once the queues are short. */
  private release(bytes: number): void {
    this.queuedBytes = Math.max(0, this.queuedBytes - bytes)
    if (this.paused && this.queuedBytes < LOW_WATER_BYTES) {
      this.paused = false
      this.sandbox.output.resume()
    }
  }

  private hold(bytes: number): void {
    this.queuedBytes += bytes
    if (!this.paused && this.queuedBytes > HIGH_WATER_BYTES) {
      this.paused = true
      this.sandbox.output.pause()
    }
  }

  /**
   * Sends a request and yields its messages until `done` (returned) or `error` (thrown as a
   * CodeboxError). Breaking out of the loop, or the signal aborting, cancels the request.
   */
  async *request(op: string, fields: Record<string, unknown>, options: RequestOptions = {}): AsyncGenerator<ExecutorMessage, Record<string, unknown>> {
    if (this.closedError) throw this.closedError
    const id = this.nextId++
    const queue: { message: ExecutorMessage; bytes: number }[] = []
    let failure: Error | undefined
    let wake: (() => void) | undefined
    this.pending.set(id, {
      push: (message, bytes) => {
        if (failure) return
        queue.push({ message, bytes })
        this.hold(bytes)
        wake?.()
      },
      fail: (e) => ((failure ??= e), wake?.()),
    })
    const cancel = () => this.write(encodeJson(0, { op: 'cancel', target: id }))
    options.signal?.addEventListener('abort', cancel, { once: true })
    let finished = false
    const ended = (): boolean => finished || failure !== undefined
    // Only a call with its own deadline is cancelled past it; any other (a slow download) just has its executor checked.
    const watchdog = this.watch({ id, deadlineMs: options.deadlineMs ?? this.defaultDeadlineMs, cancel: options.deadlineMs !== undefined, ended })
    let bodyError: unknown
    try {
      this.write(encodeJson(id, { op, ...fields }))
      // A body that fails (too large, stalled, cut off) cancels the request; its error is the one to report.
      if (options.body) void this.pumpBody(id, options.body).then((e) => (bodyError = e))
      for (;;) {
        while (queue.length === 0 && !failure) await new Promise<void>((r) => (wake = r))
        wake = undefined
        const head = queue.shift()
        if (!head) throw failure!
        this.release(head.bytes)
        const m = head.message
        if (m.kind === 'event' && m.event.ev === 'done') {
          finished = true
          return m.event
        }
        if (m.kind === 'event' && m.event.ev === 'error') {
          finished = true
          if (bodyError) throw bodyError
          const code = Object.hasOwn(errorCodes, m.event.code as string) ? (m.event.code as ErrorCode) : 'SandboxFailure'
          throw new CodeboxError(code, String(m.event.message).slice(0, 4096))
        }
        yield m
      }
    } finally {
      clearTimeout(watchdog)
      options.signal?.removeEventListener('abort', cancel)
      if (!finished && !this.closedError) cancel()
      this.pending.delete(id)
      this.release(queue.reduce((n, q) => n + q.bytes, 0))
    }
  }

  /**
   * Past a call's deadline and the grace: cancels it and pings the executor; no answer within
   * the grace means the executor stopped (SIGSTOP, a hung process), so the sandbox is destroyed.
   */
  private watch({ id, deadlineMs, cancel, ended }: { id: number; deadlineMs: number; cancel: boolean; ended: () => boolean }): NodeJS.Timeout {
    const check = async (): Promise<void> => {
      if (ended() || this.closedError) return
      if (cancel) this.write(encodeJson(0, { op: 'cancel', target: id }))
      const alive = await this.ping()
      if (ended() || this.closedError) return
      // The executor answers; the call may be waiting for a kernel busy with an earlier cell.
      if (alive) return void timer.refresh()
      const s = Math.round((deadlineMs + 2 * this.graceMs) / 1000)
      const message = `the executor stopped answering: the call did not end within its timeout and a grace (${s} s) and the executor did not answer a ping; the sandbox was destroyed and the session ended`
      this.close(new CodeboxError('SandboxFailure', message))
      void this.sandbox.destroy().catch(() => {})
    }
    const timer = setTimeout(() => void check(), deadlineMs + this.graceMs)
    return timer
  }

  /** Whether the executor answers a ping within the grace (a paused reader cannot tell: counted as alive). */
  private ping(): Promise<boolean> {
    this.pinging ??= new Promise<boolean>((resolve) => {
      const id = this.nextId++
      const finish = (alive: boolean): void => {
        clearTimeout(timer)
        this.pending.delete(id)
        this.pinging = undefined
        resolve(alive)
      }
      const timer = setTimeout(() => finish(this.paused), this.graceMs)
      this.pending.set(id, { push: () => finish(true), fail: () => finish(false) })
      this.write(encodeJson(id, { op: 'ping' }))
    })
    return this.pinging
  }

  /**
   * Hands the sandbox to a session: the executor then ends itself at `deadline` (epoch ms), and
   * when idle for `idleTimeoutMs` since its last request, while no server is connected to it.
   */
  async configureSession(idleTimeoutMs: number, deadline: number): Promise<void> {
    await this.call('session', { idleTimeoutMs, deadlineMs: deadline }, { deadlineMs: 10_000 })
  }

  /** Runs a request that has no events worth streaming and returns its `done` fields. */
  async call(op: string, fields: Record<string, unknown>, options: RequestOptions = {}): Promise<Record<string, unknown>> {
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
