/**
 * The SandboxDriver interface: the only thing the session layer knows of isolation. A driver
 * starts a sandbox whose stdin/stdout carry the executor protocol; everything else (kernels,
 * files, commands) is the executor's job inside the sandbox.
 */
import type { Readable, Writable } from 'node:stream'
import type { SessionLimits } from './limits.ts'

/**
 * Where a session may connect: `public` = any public address; `allowlist` = only the listed
 * entries (`example.com`, `*.example.com`, an IP or a CIDR, each optionally with `:port`; an
 * IPv6 address with a port as `[::1]:8080`). Loopback, private, link-local and metadata
 * addresses are refused in both modes (see docs/security.md, "Egress").
 */
export interface EgressPolicy {
  mode: 'public' | 'allowlist'
  allow: string[]
}

/**
 * A sandbox's network: `none` is an empty network namespace (`lo` only); `proxy` adds the
 * host-side egress proxy's unix socket (a per-session listener that enforces the session's
 * EgressPolicy) and points the sandbox's HTTP(S)_PROXY at it.
 */
export type SandboxNetwork = { mode: 'none' } | { mode: 'proxy'; socketPath: string }

export interface SandboxSpec {
  /** Fresh random id, also used for cgroup and log names. */
  id: string
  limits: SessionLimits
  network: SandboxNetwork
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
  /** Kills every process of the sandbox and removes everything it had; idempotent. */
  destroy(): Promise<void>
}

export interface SandboxDriver {
  readonly name: string
  /** Checks that the driver can work on this host; throws Unavailable with what is missing. */
  check(): Promise<void>
  create(spec: SandboxSpec, options?: { signal?: AbortSignal }): Promise<Sandbox>
}
