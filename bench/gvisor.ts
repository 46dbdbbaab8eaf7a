/**
 * `node bench/gvisor.ts [--quick]`: the gVisor driver against bwrap in the same run, on the same
 * image: cold session start, start + first print(1), and print(1) round trips, the two drivers
 * alternating block by block so that load on the machine falls on both alike; plus the idle
 * memory of one sandbox each (its cgroup). Prints the tables and writes them into
 * bench/RESULTS.md's "gVisor against bwrap" section (above the part bench/run.ts rewrites).
 * Needs root, the sandbox image and runsc; cleans up everything it started.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { defaultLimits, type SandboxDriver } from '@codebox/core'
import { BwrapDriver, GvisorDriver, SessionManager, defaultRecipe, findImage, loadEngineConfig, type Session } from '@codebox/sandbox'
import { ExecutorClient } from '../packages/sandbox/src/executor-client.ts'
import { coldStarts, print1, printRoundTrips, type StartSamples } from './codebox.ts'
import { loadAverage } from './host.ts'
import { latencyHeader, latencyRow, mib, ratio, summarize, table } from './stats.ts'

const FULL = { coldBlocks: 10, coldPerBlock: 5, printBlocks: 10, printsPerBlock: 200, printWarmup: 100 }
const QUICK = { coldBlocks: 3, coldPerBlock: 2, printBlocks: 3, printsPerBlock: 30, printWarmup: 10 }
const RESULTS_FILE = fileURLToPath(new URL('./RESULTS.md', import.meta.url))
const START = '<!-- gvisor.ts: start -->'
const END = '<!-- gvisor.ts: end -->'
const RUN_MARKER = '<!-- Everything below is written by bench/run.ts'

interface DriverRun {
  name: string
  manager: SessionManager
  session?: Session
  cold: StartSamples
  print: number[]
  idleBytes: number
}

/** The sandbox memory of one session, idle after a print(1), as its driver reports it. */
async function idleBytes(driver: SandboxDriver): Promise<number> {
  const sandbox = await driver.create({ id: `bench-idle-${process.pid}-${driver.name}`, limits: { ...defaultLimits }, network: { mode: 'none' } })
  try {
    const client = new ExecutorClient(sandbox)
    await client.ready
    const it = client.request('exec', { language: 'python', code: 'print(1)', timeoutMs: 30_000, outputBytes: 1 << 20, clearContext: false })
    for (let next = await it.next(); !next.done; next = await it.next());
    await new Promise((r) => setTimeout(r, 1000))
    return await sandbox.memoryUsage()
  } finally {
    await sandbox.destroy()
  }
}

async function main(quick: boolean, signal: AbortSignal): Promise<void> {
  const sizes = quick ? QUICK : FULL
  const config = loadEngineConfig(process.env)
  const image = await findImage(config.stateDir, defaultRecipe({ mirror: config.debianMirror }))
  if (!image) throw new Error(`no sandbox image in ${config.stateDir}; run \`codebox image build\``)
  const drivers: SandboxDriver[] = [new BwrapDriver({ imagePath: image.path }), new GvisorDriver({ imagePath: image.path })]
  for (const d of drivers) await d.check()
  const runs: DriverRun[] = drivers.map((d) => ({
    name: d.name,
    manager: new SessionManager({ driver: d, poolSize: 0 }),
    cold: { start: [], startPrint: [] },
    print: [],
    idleBytes: 0,
  }))
  try {
    for (let b = 0; b < sizes.coldBlocks; b++) {
      for (const r of runs) {
        const s = await coldStarts(r.manager, { n: sizes.coldPerBlock, signal })
        r.cold.start.push(...s.start)
        r.cold.startPrint.push(...s.startPrint)
      }
      process.stderr.write(`cold starts: block ${b + 1}/${sizes.coldBlocks}\n`)
    }
    for (const r of runs) {
      r.session = await r.manager.start()
      await print1(r.session)
    }
    for (let b = 0; b < sizes.printBlocks; b++) {
      for (const r of runs) r.print.push(...(await printRoundTrips(r.session!, { warmup: b === 0 ? sizes.printWarmup : 0, n: sizes.printsPerBlock, signal })))
      process.stderr.write(`print(1): block ${b + 1}/${sizes.printBlocks}\n`)
    }
    for (const [i, d] of drivers.entries()) runs[i]!.idleBytes = await idleBytes(d)
  } finally {
    for (const r of runs) await r.manager.close()
  }
  const report = render(runs, quick)
  process.stdout.write(`${report}\n`)
  writeSection(report)
}

function render(runs: DriverRun[], quick: boolean): string {
  const [bwrap, gvisor] = runs as [DriverRun, DriverRun]
  const rows = runs.flatMap((r) => [
    latencyRow(`${r.name}: cold start`, r.cold.start),
    latencyRow(`${r.name}: cold start + print(1)`, r.cold.startPrint),
    latencyRow(`${r.name}: print(1) round trip`, r.print),
  ])
  const p = (xs: number[]): ReturnType<typeof summarize> => summarize(xs)
  const ratios = (
    [
      ['cold start', bwrap.cold.start, gvisor.cold.start],
      ['cold start + print(1)', bwrap.cold.startPrint, gvisor.cold.startPrint],
      ['print(1) round trip', bwrap.print, gvisor.print],
    ] as const
  ).map(([name, b, g]) => [name, ratio(p(g)?.p50, p(b)?.p50), ratio(p(g)?.p95, p(b)?.p95), ratio(p(g)?.p99, p(b)?.p99)])
  return [
    `Run ${new Date().toISOString()}${quick ? ' (--quick)' : ''} on ${os.availableParallelism()} cores, load ${loadAverage()}; runsc ${runscVersion()}, platform ptrace. The drivers alternate block by block.`,
    '',
    table(latencyHeader, rows),
    '',
    table(['gvisor / bwrap', 'p50', 'p95', 'p99'], ratios),
    '',
    table(
      ['idle sandbox after print(1)', 'memory (its cgroup)'],
      runs.map((r) => [r.name, mib(r.idleBytes)]),
    ),
  ].join('\n')
}

function runscVersion(): string {
  const status = existsSync('/var/lib/dpkg/status') ? readFileSync('/var/lib/dpkg/status', 'utf8') : ''
  return /Package: runsc\n(?:[^\n]+\n)*?Version: (\S+)/.exec(status)?.[1] ?? 'unknown'
}

/** Replaces (or adds, above bench/run.ts's part) the section between START and END. */
function writeSection(report: string): void {
  const old = existsSync(RESULTS_FILE) ? readFileSync(RESULTS_FILE, 'utf8') : ''
  const section = `${START}\n## gVisor against bwrap (issue 13), by bench/gvisor.ts\n\n${report}\n${END}\n`
  const a = old.indexOf(START)
  const b = old.indexOf(END)
  let next: string
  if (a >= 0 && b > a) next = old.slice(0, a) + section + old.slice(b + END.length + 1)
  else {
    const at = old.indexOf(RUN_MARKER)
    next = at >= 0 ? `${old.slice(0, at)}${section}\n${old.slice(at)}` : `${old.trimEnd()}\n\n${section}`
  }
  writeFileSync(RESULTS_FILE, next)
}

const interrupted = new AbortController()
process.once('SIGINT', () => interrupted.abort())
await main(process.argv.includes('--quick'), interrupted.signal)
