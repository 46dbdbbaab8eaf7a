/**
 * The SandboxDriver interface: the only thing the session layer knows of isolation. A driver
 * starts a sandbox whose stdin/stdout carry the executor protocol; everything else (kernels,
 * files, commands) is the executor's job inside the sandbox.
 */
import type { Duplex, Readable, Writable } from 'node:stream'
import type { SessionLimits } from './limits.ts'

/**
 * Where a session may connect: `public` = any public address; `allowlist` = only the listed
 * entries (`example.com`, `*.example.com`, an IP or a CIDR, each optionally with `:port`; an
 * IPv6 address with a port as `[::1]:8080`); `none` = nowhere (a listener that serves only the
 * model gateway, for a session without egress that uses it; `allow` empty). Loopback, private,
 * link-local and metadata addresses are refused in every mode (see docs/security.md, "Egress").
 */
export interface EgressPolicy {
  mode: 'public' | 'allowlist' | 'none'
  allow: string[]
}

/**
 * The model gateway for one sandbox (docs/security.md, "Model gateway"): its listener answers
 * `http://codebox-gateway/...` itself, on the host, with the operator's credentials; the
 * sandbox's environment points model clients there. `tag` is an opaque label the starter attaches
 * (a runtime id), handed to the gateway with every request and used as a metric label.
 */
export interface SandboxGateway {
  tag?: string
}

/**
 * A sandbox's network, as a policy: `none` is an empty network namespace (`lo` only); `egress`
 * lets the sandbox reach what `policy` allows and nothing else. How is the driver's business: the
 * bwrap driver opens a listener of the host's egress proxy (the EgressGateway it is given) and
 * binds its socket in; another driver may wire the same gateway differently, or its platform's own.
 */
export type SandboxNetwork = { mode: 'none' } | { mode: 'egress'; policy: EgressPolicy; sessionId?: string; gateway?: SandboxGateway }

/** Decisions of one sandbox's egress so far. */
export interface EgressCounts {
  allowed: number
  denied: number
}

/** One sandbox's listener of the host's egress proxy: a unix socket that enforces its policy. */
export interface EgressListenerHandle {
  /** The socket's host path. */
  readonly socketPath: string
  readonly counters: Readonly<EgressCounts>
  /** Stops the listener and removes its socket; idempotent. */
  close(): void
}

/** The host's egress proxy, as drivers see it (the engine passes it to `create`). */
export interface EgressGateway {
  /** Opens a listener enforcing `policy` (ValidationError for a bad policy); with `gateway`, it also serves the model gateway. */
  open(options: { sandboxId: string; policy: EgressPolicy; sessionId?: string; socketPath?: string; gateway?: SandboxGateway }): Promise<EgressListenerHandle>
}

/** What `create` gets besides the spec. */
export interface CreateOptions {
  signal?: AbortSignal
  /** Where network `egress` is enforced; a driver that needs it and lacks it fails the create with Unavailable. */
  egress?: EgressGateway
}

/** What `attach` gets: the network the sandbox was started with, for a driver that must wire its egress again. */
export interface AttachOptions extends CreateOptions {
  network?: SandboxNetwork
}

/** Where a sandbox with `code` sees it: read-only, its files as they are on the host. */
export const CODE_DIR = '/app'

/**
 * A host directory (an extracted bundle) a sandbox sees read-only at CODE_DIR (the fake driver:
 * where it is, named by `CODEBOX_CODE_DIR`). Its files must be readable by any uid (dirs o+rx,
 * files o+r): the sandbox's user owns none of them.
 */
export interface CodeMount {
  /** Absolute path of an existing directory on the host. */
  hostPath: string
}

export interface SandboxSpec {
  /** Fresh random id, also used for cgroup and log names. */
  id: string
  limits: SessionLimits
  network: SandboxNetwork
  /** Code mounted read-only at CODE_DIR; none by default. */
  code?: CodeMount
}

/** What `connectPort` gets. */
export interface ConnectPortOptions {
  signal?: AbortSignal
}

export interface LimitCounters {
  /** Processes the kernel OOM-killed in this sandbox so far. */
  oomKills: number
  /** Times a fork was refused because the pids limit was reached. */
  pidsLimitHits: number
}

export interface SandboxExit {
  code: number | null
  signal: string | null
}

export interface Sandbox {
  readonly id: string
  /** Frames to the executor. */
  readonly input: Writable
  /** Frames from the executor. */
  readonly output: Readable
  /** Diagnostics the sandbox printed outside the protocol (bounded). */
  readonly diagnostics: () => string
  /** Resolves when the sandbox has exited, for any reason. */
  readonly exited: Promise<SandboxExit>
  /** Limit counters since the sandbox started. */
  counters(): Promise<LimitCounters>
  /** Resident memory of every process of the sandbox, bytes (0 when unknown). */
  memoryUsage(): Promise<number>
  /** The sandbox's egress decisions so far; undefined without network `egress`. */
  egressCounters?(): Readonly<EgressCounts>
  /**
   * A connection to `port` on the sandbox's own loopback (127.0.0.1), where a server of the
   * session listens; the executor must have been asked to open the port first (op `port.open`).
   * Unavailable "nothing listens on port N in the sandbox" when nothing accepts there; absent when
   * the driver cannot reach into its sandboxes.
   */
  connectPort?(port: number, options?: ConnectPortOptions): Promise<Duplex>
  /** Kills every process of the sandbox and removes everything it had (its egress listener too); idempotent. */
  destroy(): Promise<void>
  /**
   * Lets go of the host's side of a sandbox that lives on for the next server (a restart): its
   * channel, egress listener and handles are closed here, the sandbox keeps running. Idempotent.
   */
  release?(): void
}

export interface SandboxDriver {
  readonly name: string
  /**
   * Whether every server with the same configuration reaches every sandbox of this driver by id
   * through `attach()`, whichever server started it, also while another one is connected to it (a
   * `kubernetes` pod, whose executor serves several connections). Replicas sharing a store then
   * serve any session of any replica: a replica attaches a session another one started on its
   * first call there, and a starting replica touches no other replica's sandboxes (nor removes
   * any `list` names: it lists every replica's). Requires `attach`, which must throw
   * SessionTerminated when the sandbox is gone; any other error means it cannot be reached now
   * (the session's record stays). Default false: a sandbox is reached only by the server that
   * started it (and, after a restart, by the next server on its host). docs/server.md, "Replicas
   * and shared drivers".
   */
  readonly shared?: boolean
  /** Checks that the driver can work on this host; throws Unavailable with what is missing. */
  check(): Promise<void>
  create(spec: SandboxSpec, options?: CreateOptions): Promise<Sandbox>
  /**
   * The sandboxes of this driver that outlive the server that started them (sandboxes that die
   * with their server have none, and such a driver leaves this out). A new server re-adopts the
   * ones its store names and removes the rest.
   */
  list?(): Promise<string[]>
  /**
   * Connects again to a sandbox an earlier server started (its executor says `ready` again, with
   * its idle clock); a sandbox with network `egress` gets its listener again from `options`
   * (`network` and `egress`). SessionTerminated when it has ended meanwhile (its leftovers are
   * removed), Unavailable when it cannot be re-adopted (the message says why; it is ended).
   */
  attach?(id: string, options?: AttachOptions): Promise<Sandbox>
}
