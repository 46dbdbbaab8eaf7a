/**
 * Session.openPort: connections to a server the session runs on its own loopback (a hosted
 * agent on 127.0.0.1:8080), through the driver's `connectPort`. The executor is asked to open the
 * port first (op `port.open`: its inbound relay listens for it; in listen mode, a Kubernetes pod,
 * it answers at once and each connection is a tunnel of its own); that is remembered per session,
 * and asked again when the relay's socket has gone. An open connection counts as a call in flight
 * for the idle timeout; every one is destroyed when the session ends.
 */
import type { Duplex } from 'node:stream'
import { CodeboxError, validationError, type Sandbox } from '@codebox/core'
import type { Session } from './session.ts'

export interface OpenPortOptions {
  signal?: AbortSignal
}

/** How long the executor may take to open a port, ms. */
const PORT_OPEN_TIMEOUT_MS = 10_000

export class SessionPorts {
  private readonly session: Session
  private readonly sandbox: Sandbox
  /** Ports the executor has been asked to open (its relay listens for them). */
  private readonly opened = new Set<number>()
  private readonly streams = new Set<Duplex>()

  constructor(session: Session, sandbox: Sandbox) {
    this.session = session
    this.sandbox = sandbox
  }

  async open(port: number, options: OpenPortOptions = {}): Promise<Duplex> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw validationError('port', `must be a whole number from 1 to 65535, got ${String(port)}`)
    const connect = this.sandbox.connectPort?.bind(this.sandbox)
    this.session.assertReady()
    if (!connect) throw new CodeboxError('Unavailable', `this session's sandbox driver cannot reach ports inside its sandboxes (no inbound relay)`)
    const signal = options.signal
    this.session.enter()
    let stream: Duplex
    try {
      for (let attempt = 1; ; attempt++) {
        if (!this.opened.has(port)) await this.ask(port, signal)
        try {
          stream = await connect(port, signal ? { signal } : {})
          break
        } catch (e) {
          // The relay's socket was removed (code in the sandbox can): ask the executor once more.
          if (attempt > 1 || !(e instanceof CodeboxError) || e.details.reason !== 'no-socket') throw e
          this.opened.delete(port)
        }
      }
      if (this.session.status !== 'ready') {
        // It ended while this connected.
        stream.destroy()
        this.session.assertReady()
      }
    } catch (e) {
      this.session.leave()
      if (e instanceof CodeboxError && e.code === 'SessionTerminated') await this.session.stop('sandbox-exited')
      throw e
    }
    this.streams.add(stream)
    stream.once('close', () => {
      this.streams.delete(stream)
      this.session.leave()
    })
    return stream
  }

  private async ask(port: number, signal: AbortSignal | undefined): Promise<void> {
    try {
      await this.session.client.call('port.open', { port }, { deadlineMs: PORT_OPEN_TIMEOUT_MS, ...(signal ? { signal } : {}) })
    } catch (e) {
      if (e instanceof CodeboxError && e.code === 'ValidationError' && /unknown op/.test(e.message)) {
        throw new CodeboxError(
          'Unavailable',
          `this session's sandbox runs an executor without an inbound relay (started by an older codebox); start a new session`,
          {
            cause: e,
          },
        )
      }
      throw e
    }
    this.opened.add(port)
  }

  /** Ends every open connection (the session has ended). */
  closeAll(): void {
    for (const s of this.streams) s.destroy()
    this.streams.clear()
  }
}
