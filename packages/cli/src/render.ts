/** Prints execution events to a terminal: output as produced, images saved to files. */
import { writeFile } from 'node:fs/promises'
import type { ExecutionEvent, ToolResult } from '@codebox/core'

export interface RenderOptions {
  /** Where images are saved; default the current directory. */
  outDir: string
  json: boolean
}

let imageCount = 0

/** Streams a call's events to stdout/stderr (or collects them for --json) and returns the result. */
export async function render(events: AsyncGenerator<ExecutionEvent, ToolResult>, options: RenderOptions): Promise<ToolResult> {
  for (;;) {
    const n = await events.next()
    if (n.done) {
      if (options.json) process.stdout.write(`${JSON.stringify(n.value)}\n`)
      return n.value
    }
    if (options.json) continue
    const ev = n.value
    if (ev.type === 'stdout') process.stdout.write(ev.text)
    else if (ev.type === 'stderr') process.stderr.write(ev.text)
    else if (ev.type === 'display') {
      const png = ev.data['image/png']
      if (png) {
        const file = `${options.outDir}/codebox-image-${++imageCount}.png`
        await writeFile(file, Buffer.from(png, 'base64'))
        process.stderr.write(`[image saved to ${file}]\n`)
      } else if (ev.data['text/plain'] !== undefined) process.stdout.write(`${ev.data['text/plain']}\n`)
    }
  }
}

/** A plain text table with aligned columns, for humans (`--json` is for scripts). */
export function table(headers: string[], rows: string[][]): string {
  if (rows.length === 0) return '(none)\n'
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd()
  return [line(headers), ...rows.map(line)].join('\n') + '\n'
}
