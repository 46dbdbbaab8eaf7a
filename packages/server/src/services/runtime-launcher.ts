/**
 * Launches a hosted agent for a runtime session: the runtime version's code unpacked on the host
 * (RuntimeService.bundleDir) and mounted read-only at /app in a new session's sandbox, with the
 * runtime's network and limits and the model gateway; its entrypoint started there as a background
 * task (`node` or `python3`, with PORT set to the port its protocol serves on: 8080 for HTTP, 8000
 * for MCP, 9000 for A2A, as AgentCore's containers expect); its ports reached through the sandbox's
 * inbound relay. What it prints is kept (RuntimeLogs) while it runs and after.
 */
import { CODE_DIR, CodeboxError, type RuntimeProtocol, type SessionLimits } from '@codebox/core'
import type { Session } from '@codebox/sandbox'
import type { RuntimeLogHandle, RuntimeLogs } from './runtime-logs.ts'
import type { Launcher, LaunchedAgent, RuntimeSessionKey, RuntimeSessionSettings } from './runtime-sessions.ts'
import type { RuntimeService } from './runtimes.ts'
import type { RuntimeVersionRecord } from '../store/index.ts'
import type { SessionService } from './sessions.ts'

/** The agent's HTTP port (the runtime contract: /invocations, /ping and /ws on 8080). */
export const AGENT_PORT = 8080

/** The port an agent serves its protocol on, as AgentCore Runtime expects it (HTTP 8080, MCP 8000, A2A 9000). */
export const AGENT_PORTS: Readonly<Record<RuntimeProtocol, number>> = { HTTP: AGENT_PORT, MCP: 8000, A2A: 9000 }

export interface RuntimeLauncherOptions {
  runtimes: RuntimeService
  sessions: SessionService
  logs: RuntimeLogs
  /** How long an agent may take to become healthy. Default 60 s (AWS allows minutes for a cold container). */
  startTimeoutMs?: number
  /** How long an invocation may wait for the agent's response head. Default 15 min, AWS's synchronous limit. */
  invokeTimeoutMs?: number
  /** How often the agent's output is collected. Default 500 ms. */
  pollMs?: number
}

export class RuntimeLauncher implements Launcher {
  readonly #o: RuntimeLauncherOptions

  constructor(options: RuntimeLauncherOptions) {
    this.#o = options
  }

  async launch(key: RuntimeSessionKey, _signal: AbortSignal, qualifier?: string): Promise<{ agent: LaunchedAgent; settings: RuntimeSessionSettings }> {
    const caller = { tenant: key.tenant }
    const { runtime, version } = await this.#o.runtimes.resolve(caller, key.runtimeId, qualifier)
    const s = version.settings
    const hostPath = await this.#o.runtimes.bundleDir(runtime, version)
    const lifetimeMs = s.maxLifetimeSeconds * 1000
    // The runtime session's idle timeout is kept by RuntimeSessions (HealthyBusy extends it): the
    // sandbox itself only ends at the lifetime, or when the server is gone that long.
    const limits: Partial<SessionLimits> = { ...s.limits, idleTimeoutMs: lifetimeMs, maxLifetimeMs: lifetimeMs }
    const session = await this.#o.sessions.startHosted(caller, {
      runtimeId: runtime.runtimeId,
      runtimeSessionId: key.runtimeSessionId,
      version: version.version,
      name: key.runtimeSessionId.slice(0, 100),
      limits,
      network: s.network,
      code: { hostPath },
      gateway: { tag: runtime.runtimeId },
    })
    let log: RuntimeLogHandle
    try {
      log = await this.#o.logs.open({ ...key, sessionId: session.id, version: String(version.version) })
    } catch (e) {
      await session.stop('stopped').catch(() => {})
      throw e
    }
    // The code is where the sandbox's CODEBOX_CODE_DIR says (CODE_DIR, /app, in a real sandbox; the
    // bundle's host directory on the fake driver, which mounts nothing).
    const entry = `"$code"/${shellQuote(s.entrypoint)}`
    const command = `code="\${CODEBOX_CODE_DIR:-${CODE_DIR}}" && cd "$code" && ${s.language === 'python' ? `exec python3 -u ${entry}` : `exec node ${entry}`}`
    let taskId: string
    try {
      const started = await session.tasks.start(command, {
        env: {
          PORT: String(AGENT_PORTS[s.protocol]),
          AGENTCORE_RUNTIME_ID: runtime.runtimeId,
          AGENTCORE_RUNTIME_VERSION: String(version.version),
          AGENTCORE_RUNTIME_SESSION_ID: key.runtimeSessionId,
          PYTHONUNBUFFERED: '1',
        },
      })
      const id = started.structuredContent.taskId
      if (started.isError || !id)
        throw agentStartFailure(`the entrypoint ${s.entrypoint} could not be started: ${started.structuredContent.stderr.slice(0, 500)}`)
      taskId = id
    } catch (e) {
      await session.stop('stopped').catch(() => {})
      await log.end('the entrypoint could not be started')
      throw e
    }
    // Recorded so that a restarted server serves this runtime session again (adoptPrevious).
    await this.#o.sessions.recordHostedTask(session, taskId).catch(() => {})
    return { agent: this.#agent(session, taskId, log, String(version.version), s.protocol, { stdout: 0, stderr: 0 }), settings: this.#settings(s) }
  }

  /**
   * A runtime session a previous server started, whose sandbox this one re-adopted: its agent is
   * reached and watched again, from the output it prints from now on (what it printed before was
   * stored by the previous server). NotFound when its runtime or version is gone.
   */
  async reattach(
    key: RuntimeSessionKey,
    session: Session,
    hosted: { version: number; taskId: string },
    /**
     * `restart` (default): this server serves it again after a restart, collecting its output from
     * now on. `replica`: another replica may be serving it too; its output is collected here only
     * when no live replica collects it, from where the stored log ended.
     */
    from: 'restart' | 'replica' = 'restart',
  ): Promise<{ agent: LaunchedAgent; settings: RuntimeSessionSettings }> {
    const { runtime, version } = await this.#o.runtimes.resolve({ tenant: key.tenant }, key.runtimeId, String(hosted.version))
    const now = await session.tasks.read(hosted.taskId, { maxBytes: 0 })
    const meta = { ...key, runtimeId: runtime.runtimeId, sessionId: session.id, version: String(version.version) }
    const log = await this.#o.logs.open(meta, from === 'restart' ? 'force' : 'share')
    let offsets = { stdout: now.stdoutEnd, stderr: now.stderrEnd }
    if (from === 'restart') log.write('stderr', `[codebox: the server restarted and serves this runtime session again; output from here on]\n`)
    else if (log.collecting && log.from) {
      // No live replica collects it (the one that did is gone): collected here from where its log ended.
      offsets = takeOver(log, log.from, now)
    }
    return {
      agent: this.#agent(session, hosted.taskId, log, String(version.version), version.settings.protocol, offsets),
      settings: this.#settings(version.settings),
    }
  }

  #agent(
    session: Session,
    taskId: string,
    log: RuntimeLogHandle,
    version: string,
    protocol: RuntimeProtocol,
    from: { stdout: number; stderr: number },
  ): LaunchedAgent {
    const rounds = new Rounds()
    const ended = this.#watch(session, taskId, log, rounds, from).finally(() => {
      rounds.finish()
      void log.release()
    })
    return {
      connect: (signal, port) => session.openPort(port ?? AGENT_PORTS[protocol], signal ? { signal } : {}),
      protocol,
      ended,
      // What it printed up to now: a collection of its output first (within a second), then the
      // tail; read from the agent's task when another replica collects it.
      logTail: async () => {
        await Promise.race([rounds.fresh(), new Promise((r) => setTimeout(r, 1000).unref())])
        return log.collecting ? log.tail() : taskTail(session, taskId)
      },
      stop: async (reason) => {
        await log.end(`the runtime session ended (${reason})`)
        await this.#o.sessions.stopHosted(session, reason)
      },
      release: async () => {
        await log.release()
        await this.#o.sessions.releaseHosted(session)
      },
      collecting: () => log.collecting,
      sessionId: session.id,
      version,
    }
  }

  #settings(s: RuntimeVersionRecord['settings']): RuntimeSessionSettings {
    return {
      idleTimeoutMs: s.idleTimeoutSeconds * 1000,
      maxLifetimeMs: s.maxLifetimeSeconds * 1000,
      startTimeoutMs: this.#o.startTimeoutMs ?? 60_000,
      invokeTimeoutMs: this.#o.invokeTimeoutMs ?? 15 * 60_000,
    }
  }

  /** Collects the agent's output into its log until its task or its session ends; resolves with why it ended. */
  async #watch(session: Session, taskId: string, log: RuntimeLogHandle, rounds: Rounds, from: { stdout: number; stderr: number }): Promise<string> {
    let stdoutOffset = from.stdout
    let stderrOffset = from.stderr
    const pollMs = this.#o.pollMs ?? 500
    for (; ; await rounds.sleep(pollMs)) {
      rounds.begin()
      if (session.status !== 'ready') return `its sandbox ended (${session.endReason ?? 'unknown'})`
      if (!log.collecting) {
        // Another replica collects its output: this one watches for its end only, and takes the
        // collection over (from where the stored log ended) once that replica is gone.
        const status = await this.#watchOnly(session, taskId, log)
        if (typeof status === 'string') return status
        if (status) ({ stdout: stdoutOffset, stderr: stderrOffset } = status)
        rounds.end(status !== undefined)
        continue
      }
      try {
        const out = await session.tasks.read(taskId, { stdoutOffset, stderrOffset, maxBytes: 256 * 1024 })
        if (out.stdoutDropped || out.stderrDropped) log.write('stderr', `[codebox: ${out.stdoutDropped + out.stderrDropped} bytes of output were dropped]\n`)
        if (out.stdout) log.write('stdout', out.stdout)
        if (out.stderr) log.write('stderr', out.stderr)
        stdoutOffset = out.stdoutOffset
        stderrOffset = out.stderrOffset
        log.collected({ stdout: stdoutOffset, stderr: stderrOffset })
        if (out.status !== 'working' && out.stdoutOffset >= out.stdoutEnd && out.stderrOffset >= out.stderrEnd) {
          const why = out.exitCode === null ? `its process ended (${out.status})` : `its process exited with code ${out.exitCode}`
          await log.end(why)
          return why
        }
        rounds.end(out.stdoutOffset < out.stdoutEnd || out.stderrOffset < out.stderrEnd)
      } catch (e) {
        if (session.status !== 'ready') return `its sandbox ended (${session.endReason ?? 'unknown'})`
        if (!(e instanceof CodeboxError) || e.code === 'NotFound') return `its process could not be watched: ${(e as Error).message}`
        rounds.end(false)
      }
    }
  }

  /**
   * One round of watching an agent whose output another replica collects: the offsets to collect
   * on from when this replica took the collection over, why it ended when it ended (and no one is
   * left to collect its last output), else undefined.
   */
  async #watchOnly(session: Session, taskId: string, log: RuntimeLogHandle): Promise<{ stdout: number; stderr: number } | string | undefined> {
    try {
      const now = await session.tasks.read(taskId, { maxBytes: 0 })
      const exited = now.status !== 'working'
      // At its exit, the collection is tried at once: its last output is collected here if its collector is gone.
      const from = await log.claim(exited).catch(() => undefined)
      if (from) return takeOver(log, from, now)
      if (exited) return now.exitCode === null ? `its process ended (${now.status})` : `its process exited with code ${now.exitCode}`
      return undefined
    } catch (e) {
      if (session.status !== 'ready') return `its sandbox ended (${session.endReason ?? 'unknown'})`
      if (!(e instanceof CodeboxError) || e.code === 'NotFound') return `its process could not be watched: ${(e as Error).message}`
      return undefined
    }
  }
}

/** The offsets a replica taking over an agent's collection goes on from (the stored log's, within what the agent's task still has), its log noting it. */
function takeOver(
  log: RuntimeLogHandle,
  from: { stdout: number; stderr: number },
  now: { stdoutEnd: number; stderrEnd: number },
): { stdout: number; stderr: number } {
  log.write('stderr', '[codebox: another replica collects this output from here on, from where the log ended]\n')
  return { stdout: Math.min(from.stdout, now.stdoutEnd), stderr: Math.min(from.stderr, now.stderrEnd) }
}

/** The last of what an agent's task printed, read from the task (its log is collected by another replica). */
async function taskTail(session: Session, taskId: string): Promise<string> {
  const now = await session.tasks.read(taskId, { maxBytes: 0 })
  const out = await session.tasks.read(taskId, {
    stdoutOffset: Math.max(0, now.stdoutEnd - 2000),
    stderrOffset: Math.max(0, now.stderrEnd - 2000),
    maxBytes: 4000,
  })
  return `${out.stdout}${out.stderr}`
}

/**
 * The rounds in which a watcher collects an agent's output: `fresh()` resolves after a round that
 * began after it was called (waking the watcher from its pause), so an error message carries what
 * the agent printed just before.
 */
class Rounds {
  #waiting: (() => void)[] = []
  #serving: (() => void)[] = []
  #wake: (() => void) | undefined
  #more = false
  #finished = false

  fresh(): Promise<void> {
    if (this.#finished) return Promise.resolve()
    return new Promise((resolve) => {
      this.#waiting.push(resolve)
      this.#wake?.()
    })
  }

  begin(): void {
    this.#serving = this.#waiting.splice(0)
  }

  /** A round is over; `more`: output is left to read, so the next one starts at once. */
  end(more: boolean): void {
    this.#more = more
    for (const r of this.#serving.splice(0)) r()
  }

  async sleep(ms: number): Promise<void> {
    if (this.#more || this.#waiting.length > 0) return
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      this.#wake = () => (clearTimeout(timer), resolve())
    })
    this.#wake = undefined
  }

  finish(): void {
    this.#finished = true
    for (const r of [...this.#serving.splice(0), ...this.#waiting.splice(0)]) r()
  }
}

function agentStartFailure(message: string): CodeboxError {
  return new CodeboxError('SandboxFailure', message, { details: { aws: 'RuntimeClientError' } })
}

/** A word for `sh -c`: single-quoted. */
function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`
}
