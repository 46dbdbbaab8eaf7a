/**
 * Hosted agents' runtime sessions shared by replicas (one PostgreSQL store, a shared sandbox driver
 * such as `kubernetes`): the store is where any replica finds a runtime session another one
 * started (the READY session recorded with its runtime session id), attaches its sandbox and
 * reaches its agent again, as a restarted server does. The store also arbitrates a key launched on
 * two replicas at once (SessionStore.insert, exclusiveHosted), carries every replica's last
 * invocation (the sessions' `lastUpdatedAt`) and says when another replica ended one.
 */
import type { RuntimeLauncher } from './runtime-launcher.ts'
import type { RuntimeSessionEndReason, RuntimeSessionKey, RuntimeSessionStore, StoredRuntimeSession } from './runtime-sessions.ts'
import { hostedEndReason, type SessionService } from './sessions.ts'
import type { SessionRecord, StoreApi } from '../store/index.ts'

export class StoredRuntimeSessions implements RuntimeSessionStore {
  readonly #store: StoreApi
  readonly #sessions: SessionService
  readonly #launcher: RuntimeLauncher

  constructor(options: { store: StoreApi; sessions: SessionService; launcher: RuntimeLauncher }) {
    this.#store = options.store
    this.#sessions = options.sessions
    this.#launcher = options.launcher
  }

  async find(key: RuntimeSessionKey): Promise<StoredRuntimeSession | undefined> {
    const r = await this.#store.sessions.activeHosted(key.tenant, key.runtimeId, key.runtimeSessionId)
    return r && this.#stored(key, r)
  }

  async list(filter: { tenant: string; runtimeId?: string }): Promise<(RuntimeSessionKey & { stored: StoredRuntimeSession })[]> {
    const records = await this.#store.sessions.listActiveHosted(filter.tenant, filter.runtimeId)
    return records.flatMap((r) => {
      if (r.runtimeId === undefined || !r.hosted) return []
      const key = { tenant: r.tenant, runtimeId: r.runtimeId, runtimeSessionId: r.hosted.runtimeSessionId }
      return [{ ...key, stored: this.#stored(key, r) }]
    })
  }

  async touch(sessionId: string): Promise<void> {
    await this.#store.sessions.touch(sessionId)
  }

  async recorded(sessionId: string): Promise<{ ended: boolean; lastActivityAt: number } | undefined> {
    const r = await this.#store.sessions.owner(sessionId)
    return r && { ended: r.status !== 'READY', lastActivityAt: Date.parse(r.lastUpdatedAt) }
  }

  async ended(sessionId: string, reason: RuntimeSessionEndReason): Promise<void> {
    await this.#store.sessions.markTerminated(sessionId, hostedEndReason(reason))
  }

  #stored(key: RuntimeSessionKey, r: SessionRecord): StoredRuntimeSession {
    const taskId = r.hosted?.taskId
    const version = r.hosted?.version ?? 0
    return {
      sessionId: r.sessionId,
      version: String(version),
      startedAt: new Date(r.createdAt),
      lastActivity: new Date(r.lastUpdatedAt),
      launched: taskId !== undefined,
      attach: async () => {
        if (taskId === undefined) throw new Error(`the agent of session ${r.sessionId} has not started yet`)
        const session = await this.#sessions.attachHosted(r)
        try {
          return await this.#launcher.reattach(key, session, { version, taskId }, 'replica')
        } catch (e) {
          await this.#sessions.releaseHosted(session)
          throw e
        }
      },
      end: (reason) => this.#sessions.endHostedAnywhere(r, reason),
    }
  }
}
