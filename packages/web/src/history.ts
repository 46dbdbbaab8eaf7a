/**
 * The editor cells a user ran, kept in this browser per server (localStorage, keyed by the
 * server's origin), newest first, so a reload or another tab on the same server shows them.
 * The server's audit log keeps only hashes of code, so the browser is where cells live.
 */
import type { Language } from '@codebox/sdk'

/** One cell run from the editor. */
export interface CellRecord {
  id: string
  code: string
  language: Language
  /** ISO-8601, when the run started. */
  ranAt: string
  /** How it ended: ok, error (an exception or non-zero exit), stopped, or failed (the call itself failed). */
  outcome: 'ok' | 'error' | 'stopped' | 'failed'
  executionTimeMs?: number
  sessionId: string
}

/** The most cells kept; older ones are dropped. */
export const maxCells = 200

const storageKey = (): string => `codebox.cells.${location.origin}`

/** The cells of this server, newest first. */
export function loadCells(): CellRecord[] {
  try {
    const parsed: unknown = JSON.parse(localStorage.getItem(storageKey()) ?? '[]')
    return Array.isArray(parsed) ? (parsed as CellRecord[]) : []
  } catch {
    return []
  }
}

/** Adds a cell at the front and returns the new list. */
export function saveCell(cell: CellRecord): CellRecord[] {
  const cells = [cell, ...loadCells().filter((c) => c.id !== cell.id)].slice(0, maxCells)
  localStorage.setItem(storageKey(), JSON.stringify(cells))
  return cells
}

/** Forgets every cell of this server. */
export function clearCells(): void {
  localStorage.removeItem(storageKey())
}
