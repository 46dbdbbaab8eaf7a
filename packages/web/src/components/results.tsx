/**
 * The results of a cell: stdout and stderr as they stream in, charts as images (with a download
 * link), HTML output (DataFrames) as sanitised tables, the error and its traceback, the limits
 * that cut the call short, and the timer.
 */
import Alert from '@cloudscape-design/components/alert'
import Box from '@cloudscape-design/components/box'
import SpaceBetween from '@cloudscape-design/components/space-between'
import StatusIndicator from '@cloudscape-design/components/status-indicator'
import type { OutputItem, RunState } from '../run.ts'
import { sanitizeHtml } from '../sanitize.ts'

const limitText: Record<string, string> = {
  OOM: 'the memory limit was reached and the cell was killed',
  TIMEOUT: 'the call timeout was reached and the cell was killed',
  OUTPUT_TRUNCATED: 'the output limit was reached: output was cut',
  PIDS: 'the process limit was reached',
}

const pre = { margin: 0, whiteSpace: 'pre-wrap', wordBreak: 'break-word', fontFamily: 'monospace', fontSize: 13 } as const

function Output({ item, chart }: { item: OutputItem; chart: number }) {
  switch (item.kind) {
    case 'stream':
      return (
        <pre data-testid={item.stream} style={{ ...pre, color: item.stream === 'stderr' ? '#d91515' : undefined }}>
          {item.text}
        </pre>
      )
    case 'image': {
      const src = `data:${item.mimeType};base64,${item.data}`
      const index = chart - 1
      const ext = item.mimeType.split('/')[1]?.replace('+xml', '') ?? 'png'
      return (
        <SpaceBetween size="xxs">
          <img src={src} alt={`Chart ${index + 1}`} style={{ maxWidth: '100%' }} data-testid="chart" />
          <a href={src} download={`chart-${index + 1}.${ext}`}>
            Download chart {index + 1}
          </a>
        </SpaceBetween>
      )
    }
    case 'html':
      return (
        <div
          className="codebox-html-output"
          data-testid="html-output"
          style={{ overflowX: 'auto' }}
          dangerouslySetInnerHTML={{ __html: sanitizeHtml(item.html) }}
        />
      )
    case 'text':
      return <pre style={pre}>{item.text}</pre>
  }
}

/** The last line of a traceback: `ZeroDivisionError: division by zero`. */
function errorSummary(stderr: string): string {
  const lines = stderr.trim().split('\n')
  return lines[lines.length - 1] ?? 'error'
}

/** Props of the results panel. */
export interface ResultsProps {
  run: RunState
}

/** The labelled output region of the code tab. */
export function Results({ run }: ResultsProps) {
  const r = run.result
  const status =
    run.status === 'running' ? (
      <StatusIndicator type="in-progress">Running</StatusIndicator>
    ) : run.status === 'done' && r ? (
      r.isError ? (
        <StatusIndicator type="error">Error (exit code {r.structuredContent.exitCode})</StatusIndicator>
      ) : (
        <StatusIndicator type="success">Done</StatusIndicator>
      )
    ) : run.status === 'stopped' ? (
      <StatusIndicator type="stopped">Stopped</StatusIndicator>
    ) : run.status === 'failed' ? (
      <StatusIndicator type="error">Call failed</StatusIndicator>
    ) : (
      <StatusIndicator type="pending">Not run yet</StatusIndicator>
    )
  return (
    <section
      aria-label="Output"
      role="region"
      aria-live="polite"
      aria-busy={run.status === 'running'}
      data-status={run.status}
      data-started={run.startedAt ?? 0}
    >
      <SpaceBetween size="s">
        <SpaceBetween direction="horizontal" size="m">
          {status}
          <Box variant="awsui-key-label">
            <span data-testid="timer" aria-label="Execution time">
              {(run.elapsedMs / 1000).toFixed(1)} s
            </span>
          </Box>
        </SpaceBetween>
        {run.error ? (
          <Alert type="error" header="The call failed">
            {run.error}
          </Alert>
        ) : null}
        {r?.structuredContent.limitsExceeded?.length ? (
          <Alert type="warning" header="A limit cut this call short">
            {r.structuredContent.limitsExceeded.map((l) => limitText[l] ?? l).join('; ')}
          </Alert>
        ) : null}
        {r?.isError && r.structuredContent.stderr ? (
          <Alert type="error" header={errorSummary(r.structuredContent.stderr)}>
            <pre style={pre} data-testid="traceback">
              {r.structuredContent.stderr}
            </pre>
          </Alert>
        ) : null}
        <div data-testid="outputs">
          {run.outputs.map((item, i) => (
            <Output key={i} item={item} chart={run.outputs.slice(0, i + 1).filter((o) => o.kind === 'image').length} />
          ))}
        </div>
        {run.status === 'stopped' ? <Box color="text-status-inactive">Stopped by you; the session and its files are kept.</Box> : null}
      </SpaceBetween>
    </section>
  )
}

/** A download of bytes as a file, through a blob: URL (same origin, no server round trip). */
export function saveBytes(bytes: Uint8Array, name: string, mimeType = 'application/octet-stream'): void {
  const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: mimeType }))
  const a = document.createElement('a')
  a.href = url
  a.download = name
  a.click()
  setTimeout(() => URL.revokeObjectURL(url), 10_000)
}
