/**
 * The egress service: opens one proxy listener per session, on a unix socket of its own (so the
 * listener knows whose policy applies), in a root-owned 0711 directory; the socket is made 0600,
 * and the driver hands it to the sandbox's uid alone (chown) before binding it into the sandbox.
 * Counts decisions and reports denials for logs and metrics.
 */
import { connect } from 'node:net'
import { mkdir, chmod, lstat, readdir, rm } from 'node:fs/promises'
import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { CodeboxError, validationError, type EgressPolicy, type SandboxGateway } from '@codebox/core'
import { systemResolver, type EgressResolver } from './authorize.ts'
import { checkGatewayTag, type GatewayHandler } from './gateway.ts'
import { compileEgressRules, type TrustedDestination } from './policy.ts'
import { createEgressProxy, type EgressDecision } from './proxy.ts'

export interface EgressServiceOptions {
  /** Where the session sockets live. Default /run/codebox/egress as root, else <tmpdir>/codebox-egress-<uid>. */
  socketDir?: string
  /** Private or loopback destinations `allowlist` entries may reach (CODEBOX_EGRESS_TRUSTED). Default none. */
  trusted?: readonly TrustedDestination[]
  /** Default: the host's resolver (getaddrinfo). */
  resolve?: EgressResolver
  /** Default 5 s. */
  resolveTimeoutMs?: number
  /** Per address tried. Default 10 s. */
  connectTimeoutMs?: number
  /** A connection with no traffic either way for this long is closed. Default 5 min. */
  idleTimeoutMs?: number
  /** Time for a client to send its complete request headers. Default 10 s. */
  headerTimeoutMs?: number
  /** Connections open at once per session; more are answered 503. Default 64. */
  maxConnections?: number
  /** Largest request head (request line and headers). Default 16 KiB. */
  maxHeaderBytes?: number
  /** Called for every refused request. */
  onDenial?: (denial: EgressDenial) => void
  /**
   * The model gateway: serves `http://codebox-gateway/...` for listeners opened with `gateway`.
   * Without it, those listeners answer such requests 502 ("no model gateway is configured").
   */
  gateway?: GatewayHandler
}

export interface EgressDenial extends EgressDecision {
  /** The sandbox (and the socket) the request came through. */
  sandboxId: string
  sessionId?: string
}

export interface EgressCounters {
  allowed: number
  denied: number
}

export interface EgressListener {
  /** The host path of the session's socket, for SandboxSpec.network. */
  readonly socketPath: string
  /** This session's decisions so far. */
  readonly counters: Readonly<EgressCounters>
  /** Stops the listener, ends its connections and removes the socket file; idempotent. */
  close(): void
}

export interface EgressOpenOptions {
  /** Where the socket goes (a driver's own directory for it); default `<socketDir>/<sandboxId>.sock`. */
  socketPath?: string
  /** The sandbox's id; names the socket file. */
  sandboxId: string
  policy: EgressPolicy
  sessionId?: string
  /** Serve the model gateway on this listener too (`tag`: an opaque label passed to the gateway). Default: refused. */
  gateway?: SandboxGateway
}

const defaultSocketDir = (): string =>
  process.getuid?.() === 0 ? '/run/codebox/egress' : path.join(tmpdir(), `codebox-egress-${process.getuid?.() ?? 'user'}`)

export class EgressService {
  readonly socketDir: string
  private readonly totals: EgressCounters = { allowed: 0, denied: 0 }
  private readonly options: EgressServiceOptions
  private readonly listeners = new Set<EgressListener>()
  private swept: Promise<void> | undefined

  constructor(options: EgressServiceOptions = {}) {
    this.options = options
    this.socketDir = path.resolve(options.socketDir ?? defaultSocketDir())
  }

  /** Decisions of every session since the service started. */
  get counters(): Readonly<EgressCounters> {
    return this.totals
  }

  /** Listeners open now. */
  get openCount(): number {
    return this.listeners.size
  }

  /** Opens a session's listener; the policy is validated first (ValidationError). */
  async open(options: EgressOpenOptions): Promise<EgressListener> {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(options.sandboxId)) throw validationError('sandboxId', 'must be 1-64 letters, digits, _ or -')
    const o = this.options
    const rules = compileEgressRules(options.policy, o.trusted ?? [])
    const tag = options.gateway?.tag === undefined ? undefined : checkGatewayTag(options.gateway.tag)
    const socketPath = options.socketPath ?? path.join(this.socketDir, `${options.sandboxId}.sock`)
    if (Buffer.byteLength(socketPath) > 107) throw new CodeboxError('Unavailable', `the egress socket path ${socketPath} is too long for a unix socket`)
    await this.ensureDir()
    await rm(socketPath, { force: true })
    const counters: EgressCounters = { allowed: 0, denied: 0 }
    const proxy = createEgressProxy({
      rules,
      resolve: o.resolve ?? systemResolver,
      resolveTimeoutMs: o.resolveTimeoutMs ?? 5_000,
      connectTimeoutMs: o.connectTimeoutMs ?? 10_000,
      idleTimeoutMs: o.idleTimeoutMs ?? 300_000,
      headerTimeoutMs: o.headerTimeoutMs ?? 10_000,
      maxConnections: o.maxConnections ?? 64,
      maxHeaderBytes: o.maxHeaderBytes ?? 16 * 1024,
      ...(options.gateway
        ? {
            gateway: {
              identity: { sandboxId: options.sandboxId, ...(options.sessionId ? { sessionId: options.sessionId } : {}), ...(tag ? { tag } : {}) },
              handler: o.gateway,
            },
          }
        : {}),
      onDecision: (d) => {
        const key = d.allowed ? 'allowed' : 'denied'
        counters[key]++
        this.totals[key]++
        if (!d.allowed) o.onDenial?.({ ...d, sandboxId: options.sandboxId, ...(options.sessionId ? { sessionId: options.sessionId } : {}) })
      },
    })
    let closed = false
    const listener: EgressListener = {
      socketPath,
      counters,
      close: () => {
        if (closed) return
        closed = true
        proxy.close()
        rmSync(socketPath, { force: true })
        this.listeners.delete(listener)
      },
    }
    try {
      await new Promise<void>((resolve, reject) => {
        proxy.server.once('error', reject)
        proxy.server.listen(socketPath, () => resolve())
      })
      proxy.server.on('error', () => {})
      await chmod(socketPath, 0o600)
    } catch (e) {
      listener.close()
      throw new CodeboxError('SandboxFailure', `cannot open the egress socket ${socketPath}: ${(e as Error).message}`, { cause: e })
    }
    this.listeners.add(listener)
    return listener
  }

  /** Closes every listener still open. */
  close(): void {
    for (const l of [...this.listeners]) l.close()
  }

  /** The socket directory: ours, not writable by anyone else, traversable (0711) by sandbox uids. */
  private async ensureDir(): Promise<void> {
    await mkdir(this.socketDir, { recursive: true, mode: 0o711 })
    const st = await lstat(this.socketDir)
    if (!st.isDirectory() || st.uid !== process.getuid?.() || (st.mode & 0o022) !== 0) {
      throw new CodeboxError('Unavailable', `${this.socketDir} must be a directory owned by the server's user and writable by it alone`)
    }
    await chmod(this.socketDir, 0o711)
    this.swept ??= this.sweepStale()
    await this.swept
  }

  /**
   * Removes sockets a previous server left behind (it was killed): those nobody listens on. Other
   * servers sharing the folder keep theirs, since theirs answer.
   */
  private async sweepStale(): Promise<void> {
    const names = (await readdir(this.socketDir)).filter((n) => /^[A-Za-z0-9_-]{1,64}\.sock$/.test(n)).slice(0, 10_000)
    await Promise.all(
      names.map(async (name) => {
        const file = path.join(this.socketDir, name)
        if ([...this.listeners].some((l) => l.socketPath === file)) return
        const refused = await new Promise<boolean>((resolve) => {
          const c = connect(file)
          c.setTimeout(1_000, () => (c.destroy(), resolve(false)))
          c.once('connect', () => (c.destroy(), resolve(false)))
          c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'))
        })
        if (refused) await rm(file, { force: true })
      }),
    )
  }
}
