/**
 * The tab's code session: one per browser tab (its id in sessionStorage, so a reload keeps it and
 * another tab gets its own), started on first use, with its interpreter's network mode and the
 * time left before it ends (`expiresAt` from the server).
 */
import { useCallback, useEffect, useRef, useState } from 'react'
import { UnauthorizedError, type Interpreter, type SessionInfo } from '@codebox/sdk'
import { client } from './connection.ts'

const sessionItem = 'codebox.sessionId'

/** What the page shows of its session. */
export interface SessionState {
  info?: SessionInfo
  interpreter?: Interpreter
  /** Starting or stopping. */
  busy: boolean
  error?: string
  /** The server wants an API key (and the tab has none, or a wrong one). */
  needsKey: boolean
}

/** The session hook: state plus start, stop and refresh. */
export function useSession(): {
  state: SessionState
  start: () => Promise<SessionInfo | undefined>
  stop: () => Promise<void>
  refresh: () => Promise<void>
  ensure: () => Promise<string | undefined>
} {
  const [state, setState] = useState<SessionState>({ busy: false, needsKey: false })
  const starting = useRef<Promise<SessionInfo | undefined> | undefined>(undefined)

  const fail = useCallback((e: unknown) => {
    if (e instanceof UnauthorizedError) setState((s) => ({ ...s, busy: false, needsKey: true, error: e.message }))
    else setState((s) => ({ ...s, busy: false, error: e instanceof Error ? e.message : String(e) }))
  }, [])

  const describe = useCallback(async (info: SessionInfo) => {
    let interpreter: Interpreter | undefined
    try {
      interpreter = await client().interpreters.get(info.interpreterId)
    } catch {
      interpreter = undefined
    }
    setState({ info, busy: false, needsKey: false, ...(interpreter ? { interpreter } : {}) })
  }, [])

  const start = useCallback(async () => {
    starting.current ??= (async () => {
      setState((s) => ({ ...s, busy: true, error: undefined }))
      try {
        const info = await client().sessions.start({ name: 'web IDE' })
        sessionStorage.setItem(sessionItem, info.sessionId)
        await describe(info)
        return info
      } catch (e) {
        fail(e)
        return undefined
      } finally {
        starting.current = undefined
      }
    })()
    return starting.current
  }, [describe, fail])

  const refresh = useCallback(async () => {
    const id = sessionStorage.getItem(sessionItem)
    if (!id) return
    try {
      const info = await client().sessions.get(id)
      setState((s) => ({ ...s, info, needsKey: false }))
    } catch (e) {
      fail(e)
    }
  }, [fail])

  const stop = useCallback(async () => {
    const id = sessionStorage.getItem(sessionItem)
    if (!id) return
    setState((s) => ({ ...s, busy: true }))
    try {
      const info = await client().sessions.stop(id)
      setState((s) => ({ ...s, info, busy: false }))
    } catch (e) {
      fail(e)
    }
  }, [fail])

  /** The id of a READY session, starting one if the tab has none. */
  const ensure = useCallback(async () => {
    const id = sessionStorage.getItem(sessionItem)
    if (id) {
      try {
        const info = await client().sessions.get(id)
        if (info.status === 'READY') {
          if (state.info?.sessionId !== info.sessionId) await describe(info)
          else setState((s) => ({ ...s, info }))
          return info.sessionId
        }
      } catch (e) {
        if (e instanceof UnauthorizedError) {
          fail(e)
          return undefined
        }
      }
    }
    return (await start())?.sessionId
  }, [describe, fail, start, state.info?.sessionId])

  useEffect(() => {
    void ensure()
    // Once, on load: later calls come from the user's actions.
  }, [])

  return { state, start, stop, refresh, ensure }
}

/** "12 min 5 s" for a duration in ms (0 and below: "ended"). */
export function formatRemaining(ms: number): string {
  if (ms <= 0) return 'ended'
  const s = Math.floor(ms / 1000)
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  return h > 0 ? `${h} h ${m} min` : `${m} min ${s % 60} s`
}
