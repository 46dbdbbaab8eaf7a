/**
 * Turns a bench run into tables (printed, and written to bench/RESULTS.md below its hand-written
 * header) and checks the issue's targets against them.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { renderAgentOverhead, type AgentOverheadResults } from './agent-overhead.ts'
import type { JupyterResults } from './baselines.ts'
import type { IdleMemory, StartSamples } from './codebox.ts'
import type { MachineFacts, ProcessMemory } from './host.ts'
import type { ConcurrencyResults, HttpPrintSamples } from './http.ts'
import { latencyHeader, latencyRow, mib, ms, ratio, summarize, table } from './stats.ts'

export interface BenchRun {
  quick: boolean
  facts: MachineFacts & { cgroups: string; image: string; loadAfter: string; seconds: number }
  cold: StartSamples
  warm: StartSamples
  print: number[]
  files: { write: number[]; read: number[]; both: number[] }
  idle: IdleMemory[]
  bareBwrap: number[]
  hostPython: number[]
  /** The Jupyter baseline, or why it was not measured. */
  jupyter: JupyterResults | string
  /** print(1) through a server in this process over loopback HTTP, and in-process, interleaved. */
  http: HttpPrintSamples
  /** Many sessions at once over HTTP through the SDK. */
  concurrency: ConcurrencyResults
  /** The agent's own cost per tool round trip (bench/agent-overhead.ts). */
  agent?: AgentOverheadResults
}

const MARKER = '<!-- Everything below is written by bench/run.ts on each run; edit only above this line. -->'

const DEFAULT_HEADER = `# codebox benchmarks

Run \`npm run bench\` (or \`node bench/run.ts [--quick]\`) as root on a host with the sandbox image.
`

const p50 = (xs: readonly number[]): number | undefined => summarize(xs)?.p50
const p95 = (xs: readonly number[]): number | undefined => summarize(xs)?.p95
const mean = (xs: readonly number[]): number | undefined => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined)

/** The whole report as Markdown: tables, comparisons, targets and the machine. */
export function renderReport(r: BenchRun): string {
  const j = typeof r.jupyter === 'string' ? undefined : r.jupyter
  const none: number[] = []
  const latency = table(latencyHeader, [
    latencyRow('codebox warm start (pool hand-over)', r.warm.start),
    latencyRow('codebox warm start + first print(1)', r.warm.startPrint),
    latencyRow('codebox cold start (poolSize 0)', r.cold.start),
    latencyRow('codebox cold start + first print(1)', r.cold.startPrint),
    latencyRow('codebox print(1) round trip', r.print),
    latencyRow('codebox 1 MiB files.write', r.files.write),
    latencyRow('codebox 1 MiB files.read', r.files.read),
    latencyRow('codebox 1 MiB write + read', r.files.both),
    latencyRow('baseline: bare bwrap python3 -c print(1)', r.bareBwrap),
    latencyRow('baseline: host python3 -c print(1), no sandbox', r.hostPython),
    latencyRow('baseline: Jupyter kernel start (to ready)', j?.start ?? none),
    latencyRow('baseline: Jupyter kernel start + first print(1)', j?.startPrint ?? none),
    latencyRow('baseline: Jupyter print(1) round trip', j?.print ?? none),
  ])
  const memRow = (name: string, xs: readonly (ProcessMemory & { cgroupBytes?: number })[]): string[] => [
    name,
    String(xs.length),
    xs[0] ? String(xs[0].processes) : '—',
    mib(mean(xs.map((x) => x.rssBytes))),
    mib(xs.length ? Math.max(...xs.map((x) => x.rssBytes)) : undefined),
    mib(mean(xs.map((x) => x.pssBytes))),
    xs.every((x) => x.cgroupBytes !== undefined) ? mib(mean(xs.map((x) => x.cgroupBytes!))) : '—',
  ]
  const memory = table(
    ['idle, all at once', 'n', 'processes', 'RSS mean', 'RSS max', 'PSS mean', 'memory cgroup mean'],
    [memRow('codebox session (bwrap ×2, executor, kernel)', r.idle), memRow('Jupyter kernel (ipykernel process tree)', j?.idle ?? [])],
  )
  const labels = [...new Set(r.idle.flatMap((x) => x.parts.map((p) => p.label)))]
  const byLabel = (label: string, k: 'rssBytes' | 'pssBytes'): number | undefined =>
    mean(r.idle.map((x) => x.parts.filter((p) => p.label === label).reduce((a, p) => a + p[k], 0)))
  const breakdown = table(
    ['codebox session, per part', 'processes', 'RSS mean', 'PSS mean'],
    labels.map((l) => [l, String(r.idle[0]?.parts.filter((p) => p.label === l).length ?? 0), mib(byLabel(l, 'rssBytes')), mib(byLabel(l, 'pssBytes'))]),
  )
  const cmp = (name: string, a: readonly number[], b: readonly number[] | undefined): string[] => [
    name,
    ms(p50(a)),
    ms(b && p50(b)),
    ratio(p50(a), b && p50(b)),
    ratio(p95(a), b && p95(b)),
  ]
  const memRatio = (key: 'rssBytes' | 'pssBytes'): string => ratio(mean(r.idle.map((x) => x[key])), j && mean(j.idle.map((x) => x[key])))
  const comparisons = table(
    ['codebox vs baseline', 'codebox p50', 'baseline p50', 'ratio p50', 'ratio p95'],
    [
      cmp('cold start vs bare bwrap print(1)', r.cold.start, r.bareBwrap),
      cmp('cold start + first print(1) vs bare bwrap print(1)', r.cold.startPrint, r.bareBwrap),
      cmp('cold start + first print(1) vs Jupyter start + first print(1)', r.cold.startPrint, j?.startPrint),
      cmp('warm start + first print(1) vs Jupyter start + first print(1)', r.warm.startPrint, j?.startPrint),
      cmp('print(1) vs Jupyter print(1)', r.print, j?.print),
      [
        'idle RSS vs Jupyter kernel RSS (means)',
        mib(mean(r.idle.map((x) => x.rssBytes))),
        mib(j && mean(j.idle.map((x) => x.rssBytes))),
        memRatio('rssBytes'),
        '',
      ],
      [
        'idle PSS vs Jupyter kernel PSS (means)',
        mib(mean(r.idle.map((x) => x.pssBytes))),
        mib(j && mean(j.idle.map((x) => x.pssBytes))),
        memRatio('pssBytes'),
        '',
      ],
    ],
  )
  const f = r.facts
  const machine = [
    `- date: ${f.date}${r.quick ? ' (--quick run)' : ''}, took ${f.seconds.toFixed(0)} s`,
    `- CPU: ${f.cpuModel}, ${f.cores} cores; memory ${(f.memoryBytes / 2 ** 30).toFixed(1)} GiB`,
    `- kernel: ${f.kernel}; cgroups: ${f.cgroups}; load average at the start / before the many-sessions run (which loads the machine itself): ${f.loadAverage} / ${f.loadAfter}`,
    `- node ${f.node}; host ${f.python}; ${f.bwrap}`,
    `- image: ${f.image}`,
    j
      ? `- Jupyter: ipykernel ${j.versions.ipykernel}, jupyter_client ${j.versions.jupyter_client}; kernel argv \`${j.argv.join(' ')}\``
      : `- Jupyter: not measured — ${String(r.jupyter)}`,
  ].join('\n')
  const busiest = Math.max(...[f.loadAverage, f.loadAfter].map((l) => Number(l.split(' ')[0]) || 0))
  const busy =
    busiest > f.cores / 2
      ? `\n\n**Other work was running** (1-minute load up to ${busiest} on ${f.cores} cores): expect the tails, and cold starts most, to be inflated.`
      : ''
  return [
    '## Latest run',
    machine + busy,
    '### Latency',
    latency,
    '### Idle memory per session',
    `Each session started, its kernel started by one \`print(1)\`, nothing imported; all ${r.idle.length} (and the ${j?.idle.length ?? 0} Jupyter kernels) idle at the same time. RSS counts shared pages once per process; PSS splits them between the processes sharing them. MiB = 2^20 bytes.`,
    memory,
    breakdown,
    '### codebox / baseline',
    comparisons,
    ...httpSections(r),
    ...(r.agent ? [renderAgentOverhead(r.agent)] : []),
    '### Targets',
    table(['target', 'measured', 'verdict'], targets(r)),
  ].join('\n\n')
}

/** The HTTP comparison and the many-sessions run, with what each row means. */
function httpSections(r: BenchRun): string[] {
  const h = r.http
  const base = p50(h.inProcess)
  const over = (xs: readonly number[]): string => {
    const v = p50(xs)
    return v === undefined || base === undefined ? '—' : `${v >= base ? '+' : '−'}${ms(Math.abs(v - base))}`
  }
  const row = (name: string, xs: readonly number[]): string[] => [...latencyRow(name, xs), over(xs)]
  const printTable = table(
    [...latencyHeader, 'p50 − in-process p50'],
    [
      [...latencyRow('in-process session.runCode (no HTTP)', h.inProcess), '(the base)'],
      row('SDK executeCode (POST …/invoke, JSON)', h.sdk),
      row('SDK executeCodeStream (same POST, SSE)', h.sdkStream),
      row('bare fetch POST …/invoke + res.json()', h.rawFetch),
      row('AWS SDK InvokeCodeInterpreter (SigV4, event stream)', h.awsSdk),
    ],
  )
  const c = r.concurrency
  const total = c.sessions * c.cellsPerSession
  const counts = table(
    ['many sessions over HTTP', 'value'],
    [
      ['sessions at once × cells each', `${c.sessions} × ${c.cellsPerSession} = ${total} cells`],
      ['cells that returned a result', String(c.cellsRun)],
      ['errors (start, cell or stop)', String(c.errors.length)],
      ['mismatched outputs', String(c.mismatches.length)],
      ['sessions still running after the stops', String(c.leftRunning)],
      ['wall time, first start to last stop', ms(c.wallMs)],
      ['sessions started per second (all started within)', `${((c.sessions / c.startWindowMs) * 1000).toFixed(1)} /s (${ms(c.startWindowMs)})`],
      ['cells per second, whole run', `${((c.cellsRun / c.wallMs) * 1000).toFixed(0)} /s`],
      ['1-minute load average right after', c.loadAfter.split(' ')[0] ?? '—'],
    ],
  )
  const lat = table(latencyHeader, [
    latencyRow('SDK start() (POST /v1/sessions), all at once', c.start),
    latencyRow("SDK executeCode, a session's first cell (+ kernel start)", c.firstCell),
    latencyRow('SDK executeCode, every other cell', c.cell),
    latencyRow('SDK executeCode, all cells', [...c.firstCell, ...c.cell]),
    latencyRow('SDK stop() (DELETE /v1/sessions/{id})', c.stop),
  ])
  const failures = [...c.errors, ...c.mismatches]
  const shown = failures.length
    ? `\n\nFirst failures (${failures.length} in all):\n\n${failures
        .slice(0, 10)
        .map((f) => `- ${f}`)
        .join('\n')}`
    : ''
  return [
    '### Over HTTP: print(1) through a server, against the same call in-process',
    `A real server (Fastify app with an in-memory store, silent logs, quotas raised, no warm pool) built in the bench process on the bwrap driver and listening on 127.0.0.1; the client in the same process. Each HTTP row is one \`print(1)\` in one session started through the SDK; the in-process row is \`session.runCode\` on a session of another SessionManager on the same driver. The four alternate in blocks of ${h.block} calls (order rotating each round) so machine noise falls on all alike; every result is checked. The SDK row is what the issue's target is about; the SSE row is the streaming call read to its \`result\` event; the bare fetch row is the same request without the SDK, so SDK row − fetch row is the SDK's own cost and fetch row − in-process row is HTTP + the server (routing, validation, auth, quotas, audit, metrics).`,
    printTable,
    `### ${c.sessions} sessions at once over HTTP, ${c.cellsPerSession} cells each`,
    `${c.sessions} clients at once in the bench process, each its own \`CodeInterpreter\` with retries off (every failure counts): \`start()\`, then ${c.cellsPerSession} cells one after the other, cell j of session i being \`print("s{i}-c{j}", {i}*{j})\`, each result compared with exactly \`s{i}-c{j} {i·j}\\n\` (no stderr, no error), then \`stop()\`. The server boots every sandbox cold (no pool), all on the same ${r.facts.cores} cores as the clients. "Sessions started per second" is ${c.sessions} over the time until the last \`start()\` resolved; those starts run while the early sessions already run cells. A session's first cell also waits for its Python kernel (started in the background once the sandbox is ready), so it has its own row. This runs last: the machine is saturated while it runs.`,
    counts + shown,
    lat,
  ]
}

/** The issue's targets, each with its verdict. */
export function targets(r: BenchRun): string[][] {
  const j = typeof r.jupyter === 'string' ? undefined : r.jupyter
  const upTo = (value: number | undefined, limit: number | undefined, show: (v: number) => string): string => {
    if (value === undefined || limit === undefined) return 'not measured'
    if (value <= limit) return `met (${((value / limit) * 100).toFixed(0)}% of the limit)`
    return `MISSED by ${show(value - limit)} (${((value / limit - 1) * 100).toFixed(0)}% over)`
  }
  const rss = mean(r.idle.map((x) => x.rssBytes))
  const base = p50(r.http.inProcess)
  const c = r.concurrency
  const lost = c.sessions * c.cellsPerSession - c.cellsRun
  return [
    ['warm start p50 ≤ 10 ms', ms(p50(r.warm.start)), upTo(p50(r.warm.start), 10, ms)],
    ['cold start p50 ≤ 150 ms', ms(p50(r.cold.start)), upTo(p50(r.cold.start), 150, ms)],
    ['print(1) p50 ≤ 5 ms', ms(p50(r.print)), upTo(p50(r.print), 5, ms)],
    ['print(1) p50 ≤ local Jupyter print(1) p50', `${ms(p50(r.print))} vs ${ms(j && p50(j.print))}`, upTo(p50(r.print), j && p50(j.print), ms)],
    [
      'idle Python session ≤ 30 MB RSS, all processes (MB read as MiB)',
      `${mib(rss)} (${rss === undefined ? '—' : (rss / 1e6).toFixed(1)} MB SI)`,
      upTo(rss, 30 * 2 ** 20, mib),
    ],
    [
      'print(1) over HTTP from the SDK p50 ≤ in-process p50 + 2 ms (issue 3)',
      `${ms(p50(r.http.sdk))} vs ${ms(p50(r.http.inProcess))} in-process`,
      upTo(p50(r.http.sdk), base === undefined ? undefined : base + 2, ms),
    ],
    [
      `${c.sessions} sessions at once × ${c.cellsPerSession} cells over HTTP: no error, no lost or mixed-up output (issue 3: 100 × 50)`,
      `${c.errors.length} errors, ${c.mismatches.length} mismatched, ${lost} lost; cell p99 ${ms(summarize([...c.firstCell, ...c.cell])?.p99)}`,
      c.errors.length === 0 && c.mismatches.length === 0 && lost === 0 && c.leftRunning === 0
        ? c.sessions >= 100 && c.cellsPerSession >= 50
          ? 'met'
          : 'met at this size (the issue asks 100 × 50: run without --quick)'
        : 'MISSED',
    ],
  ]
}

/** Replaces everything below the marker in RESULTS.md, keeping the hand-written header above it. */
export function writeResults(file: string, report: string): void {
  const old = existsSync(file) ? readFileSync(file, 'utf8') : ''
  const at = old.indexOf(MARKER)
  const header = at >= 0 ? old.slice(0, at) : old.trim() ? `${old.trimEnd()}\n\n` : `${DEFAULT_HEADER}\n`
  writeFileSync(file, `${header}${MARKER}\n\n${report}\n`)
}
