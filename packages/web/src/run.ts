/**
 * Running a cell: streams `executeCodeStream` events into output items as they arrive (stdout and
 * stderr merged per stream, display data as images, tables or text), keeps a timer, and can be
 * stopped (aborting the call, which interrupts the cell on the server).
 */
import { useCallback, useEffect, useRef, useState } from 'react'
import type { ExecutionEvent, Language, MimeBundle, ToolResult } from '@codebox/sdk'
import { interpreter } from './connection.ts'
import { saveCell, type CellRecord } from './history.ts'

/** One piece of a cell's output, in the order it was produced. */
export type OutputItem =
  | { kind: 'stream'; stream: 'stdout' | 'stderr'; text: string }
  | { kind: 'image'; mimeType: string; data: string }
  | { kind: 'html'; html: string }
  | { kind: 'text'; text: string }

/** A cell's run as the results panel shows it. */
export interface RunState {
  status: 'idle' | 'running' | 'done' | 'stopped' | 'failed'
  outputs: OutputItem[]
  startedAt?: number
  /** Wall time in ms: the server's `executionTime` when the call ended, else the client's clock. */
  elapsedMs: number
  result?: ToolResult
  /** Why the call itself failed (not an exception in the code: that is `result.isError`). */
  error?: string
}

/** Appends an event to the outputs (consecutive chunks of one stream are merged). */
export function addEvent(outputs: OutputItem[], event: ExecutionEvent): OutputItem[] {
  if (event.type === 'stdout' || event.type === 'stderr') {
    const last = outputs[outputs.length - 1]
    if (last?.kind === 'stream' && last.stream === event.type) return [...outputs.slice(0, -1), { ...last, text: last.text + event.text }]
    return [...outputs, { kind: 'stream', stream: event.type, text: event.text }]
  }
  if (event.type === 'display') return [...outputs, displayItem(event.data)]
  return outputs
}

/** The richest form of a MIME bundle the page can show safely. */
function displayItem(data: MimeBundle): OutputItem {
  for (const mimeType of ['image/png', 'image/jpeg', 'image/gif']) {
    const image = data[mimeType]
    if (image !== undefined) return { kind: 'image', mimeType, data: image }
  }
  if (data['image/svg+xml'] !== undefined) return { kind: 'image', mimeType: 'image/svg+xml', data: btoa(unescape(encodeURIComponent(data['image/svg+xml']))) }
  if (data['text/html'] !== undefined) return { kind: 'html', html: data['text/html'] }
  return { kind: 'text', text: data['text/plain'] ?? Object.values(data)[0] ?? '' }
}

/** The run hook for one editor: run, stop and clear context. */
export function useRunner(ensureSession: () => Promise<string | undefined>, onFinished: (cells: CellRecord[]) => void) {
  const [run, setRun] = useState<RunState>({ status: 'idle', outputs: [], elapsedMs: 0 })
  const abort = useRef<AbortController | undefined>(undefined)

  useEffect(() => {
    if (run.status !== 'running' || run.startedAt === undefined) return
    const started = run.startedAt
    const timer = setInterval(() => setRun((r) => (r.status === 'running' ? { ...r, elapsedMs: Date.now() - started } : r)), 100)
    return () => clearInterval(timer)
  }, [run.status, run.startedAt])

  const execute = useCallback(
    async (code: string, language: Language, options: { clearContext?: boolean; record?: boolean } = {}) => {
      if (abort.current) return
      const controller = new AbortController()
      abort.current = controller
      const startedAt = Date.now()
      setRun({ status: 'running', outputs: [], startedAt, elapsedMs: 0 })
      const sessionId = await ensureSession()
      let outcome: CellRecord['outcome'] = 'failed'
      let executionTimeMs: number | undefined
      try {
        if (!sessionId) throw new Error('no session: start one in the Session panel')
        const stream = interpreter(sessionId).executeCodeStream({ code, language, clearContext: options.clearContext, signal: controller.signal })
        for await (const event of stream) {
          if (event.type === 'result') {
            executionTimeMs = event.result.structuredContent.executionTime
            outcome = event.result.isError ? 'error' : 'ok'
            const result = event.result
            setRun((r) => ({ ...r, status: 'done', result, elapsedMs: Math.round(result.structuredContent.executionTime) }))
          } else setRun((r) => ({ ...r, outputs: addEvent(r.outputs, event) }))
        }
      } catch (e) {
        if (controller.signal.aborted) {
          outcome = 'stopped'
          setRun((r) => ({ ...r, status: 'stopped', elapsedMs: Date.now() - startedAt }))
        } else {
          setRun((r) => ({ ...r, status: 'failed', error: e instanceof Error ? e.message : String(e), elapsedMs: Date.now() - startedAt }))
        }
      } finally {
        abort.current = undefined
      }
      if (options.record !== false && sessionId) {
        onFinished(
          saveCell({
            id: crypto.randomUUID(),
            code,
            language,
            ranAt: new Date(startedAt).toISOString(),
            outcome,
            sessionId,
            ...(executionTimeMs !== undefined ? { executionTimeMs } : {}),
          }),
        )
      }
    },
    [ensureSession, onFinished],
  )

  const stop = useCallback(() => abort.current?.abort(), [])

  return { run, execute, stop }
}
