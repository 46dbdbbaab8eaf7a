/** Sample summaries (nearest-rank percentiles) and the Markdown tables the bench prints and saves. */

export interface Summary {
  n: number
  mean: number
  p50: number
  p95: number
  p99: number
  min: number
  max: number
}

/** Mean and nearest-rank percentiles of the samples; undefined when there are none. */
export function summarize(samples: readonly number[]): Summary | undefined {
  if (samples.length === 0) return undefined
  const sorted = [...samples].sort((a, b) => a - b)
  const rank = (p: number): number => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!
  return {
    n: sorted.length,
    mean: sorted.reduce((a, b) => a + b, 0) / sorted.length,
    p50: rank(50),
    p95: rank(95),
    p99: rank(99),
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
  }
}

/** Milliseconds with precision that suits their size. */
export function ms(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '—'
  if (v < 1) return `${v.toFixed(3)} ms`
  if (v < 100) return `${v.toFixed(2)} ms`
  return `${v.toFixed(0)} ms`
}

/** Bytes as MiB (2^20), the unit ps and top call MB. */
export function mib(bytes: number | undefined): string {
  return bytes === undefined || !Number.isFinite(bytes) ? '—' : `${(bytes / 2 ** 20).toFixed(1)} MiB`
}

/** a / b as "1.23×", or a dash when either is missing. */
export function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '—'
  const r = a / b
  return `${r < 0.1 ? r.toFixed(3) : r.toFixed(2)}×`
}

/** A GitHub-flavoured Markdown table; also readable as plain text in a terminal. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n')
}

/** One row of a latency table: name, n, mean, p50, p95, p99. */
export function latencyRow(name: string, samples: readonly number[]): string[] {
  const s = summarize(samples)
  return [name, String(s?.n ?? 0), ms(s?.mean), ms(s?.p50), ms(s?.p95), ms(s?.p99)]
}

export const latencyHeader = ['measure', 'n', 'mean', 'p50', 'p95', 'p99'] as const

/** Times one async call with performance.now(), ms. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now()
  const value = await fn()
  return { ms: performance.now() - t0, value }
}

export const sleep = (msToWait: number): Promise<void> => new Promise((r) => setTimeout(r, msToWait))
