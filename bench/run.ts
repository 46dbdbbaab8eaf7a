/**
 * `npm run bench` / `node bench/run.ts [--quick]`: codebox's session start, print(1) round trip,
 * 1 MiB file round trip and idle memory on the real bwrap driver, next to the obvious baselines
 * (a bare bwrap, a local Jupyter kernel) measured in the same run; then the same print(1) through
 * a real server over HTTP (SDK, SSE, bare fetch) against the in-process call, and many sessions at
 * once over HTTP. Prints the tables and writes them to bench/RESULTS.md. Needs root and the sandbox image; cleans up everything it started.
 */
import { fileURLToPath } from 'node:url'
import { BwrapDriver, SessionManager, defaultRecipe, findImage, loadEngineConfig } from '@codebox/sandbox'
import { measureAgentOverhead } from './agent-overhead.ts'
import { bareBwrapArgv, jupyterBaseline, jupyterUnavailable, spawnPrints, type JupyterResults } from './baselines.ts'
import { coldStarts, fileRoundTrips, idleMemory, printRoundTrips, trackingDriver, warmStarts, type Sizes } from './codebox.ts'
import { loadAverage, machineFacts } from './host.ts'
import { concurrentSessions, printOverHttp, startBenchServer } from './http.ts'
import { renderReport, writeResults, type BenchRun } from './report.ts'

interface BenchSizes extends Sizes {
  spawns: number
  jupyterKernels: number
  /** print(1) calls per variant (in-process, SDK, SDK SSE, bare fetch) in the HTTP comparison. */
  httpPrints: number
  /** Calls per block; the variants alternate block by block. */
  httpBlock: number
  /** Sessions at once over HTTP, and cells each. */
  concurrentSessions: number
  cellsPerSession: number
}

const FULL: BenchSizes = {
  coldStarts: 100,
  warmStarts: 100,
  printWarmup: 200,
  prints: 5000,
  files: 100,
  idleSessions: 10,
  spawns: 100,
  jupyterKernels: 5,
  httpPrints: 2000,
  httpBlock: 50,
  concurrentSessions: 100,
  cellsPerSession: 50,
}
const QUICK: BenchSizes = {
  coldStarts: 8,
  warmStarts: 8,
  printWarmup: 20,
  prints: 200,
  files: 8,
  idleSessions: 3,
  spawns: 8,
  jupyterKernels: 2,
  httpPrints: 200,
  httpBlock: 50,
  concurrentSessions: 10,
  cellsPerSession: 10,
}

const RESULTS_FILE = fileURLToPath(new URL('./RESULTS.md', import.meta.url))

/** Everything started that must be stopped, even when the run fails or is interrupted. */
const cleanups: (() => Promise<void>)[] = []
const cleanUp = async (): Promise<void> => {
  for (const fn of cleanups.splice(0).reverse()) await fn().catch((e: unknown) => console.error('bench: cleanup failed:', e))
}

/**
 * Ctrl-C stops the run between samples (the loops check `signal`), so no start is in flight when
 * the managers close; a second Ctrl-C exits at once.
 */
const interrupted = new AbortController()

async function main(argv: readonly string[], signal: AbortSignal): Promise<void> {
  const unknown = argv.filter((a) => a !== '--quick')
  if (unknown.length) throw new Error(`unknown argument ${unknown.join(' ')}; usage: node bench/run.ts [--quick]`)
  const quick = argv.includes('--quick')
  const sizes = quick ? QUICK : FULL
  const t0 = performance.now()
  const facts = machineFacts()
  const config = loadEngineConfig(process.env)
  if (process.getuid?.() !== 0) throw new Error('the bench needs root: the bwrap driver gives each sandbox its own uid and cgroups')
  const image = await findImage(config.stateDir, defaultRecipe({ mirror: config.debianMirror }))
  if (!image) throw new Error(`no sandbox image in ${config.stateDir}; build it first (\`codebox image build\`, or \`npm test\` does)`)
  const bwrap = new BwrapDriver({ imagePath: image.path })
  await bwrap.check()
  if (bwrap.cgroups === 'none') throw new Error("no usable cgroups on this host: the bench finds a sandbox's processes through its pids cgroup")
  const jupyterMissing = jupyterUnavailable()
  if (jupyterMissing) console.error(`bench: ${jupyterMissing}; running without it.`)
  const step = (what: string): void => console.error(`bench: ${what} (${((performance.now() - t0) / 1000).toFixed(1)} s)`)

  step(`baselines: bare bwrap and host python3, ${sizes.spawns} spawns each`)
  const bareBwrap = await spawnPrints(bareBwrapArgv(image.path), { n: sizes.spawns, signal })
  const hostPython = await spawnPrints(['/usr/bin/python3', '-c', 'print(1)'], { n: sizes.spawns, signal })

  const cold = new SessionManager({ driver: bwrap, poolSize: 0 })
  cleanups.push(() => cold.close())
  step(`codebox: ${sizes.coldStarts} cold starts`)
  const coldSamples = await coldStarts(cold, { n: sizes.coldStarts, signal })
  step(`codebox: ${sizes.prints} print(1) round trips, ${sizes.files} 1 MiB file round trips`)
  const session = await cold.start()
  const print = await printRoundTrips(session, { warmup: sizes.printWarmup, n: sizes.prints, signal })
  const files = await fileRoundTrips(session, { n: sizes.files, signal })
  await session.stop()
  step(`codebox: idle memory of ${sizes.idleSessions} sessions`)
  const idle = await idleMemory(cold, { cgroups: bwrap.cgroups, n: sizes.idleSessions, signal })
  await cold.close()

  step(`codebox: ${sizes.warmStarts} warm starts (poolSize 1)`)
  const tracked = trackingDriver(bwrap)
  const warm = new SessionManager({ driver: tracked.driver, poolSize: 1 })
  cleanups.push(() => warm.close())
  const warmSamples = await warmStarts(warm, { created: tracked.created, cgroups: bwrap.cgroups, n: sizes.warmStarts, signal })
  await warm.close()

  step(`over HTTP: ${sizes.httpPrints} print(1) each through the SDK (JSON, SSE), a bare fetch, the AWS SDK and in-process, in alternating blocks`)
  const server = await startBenchServer(bwrap, { maxSessions: Math.max(200, sizes.concurrentSessions + 10) })
  cleanups.push(() => server.close())
  const local = new SessionManager({ driver: bwrap, poolSize: 0 })
  cleanups.push(() => local.close())
  const localSession = await local.start()
  const http = await printOverHttp(server, localSession, { warmup: sizes.printWarmup, n: sizes.httpPrints, block: sizes.httpBlock, signal })
  step(`the agent: ${sizes.httpPrints / 10} turns per provider with one tool round trip each, against the bare tool call`)
  const agent = await measureAgentOverhead(localSession, { n: sizes.httpPrints / 10, warmup: 5, signal, targetName: 'a real bwrap session (Python kernel)' })
  await local.close()
  let jupyter: JupyterResults | string = jupyterMissing ?? ''
  if (!jupyterMissing) {
    step(`baseline: Jupyter, ${sizes.jupyterKernels} kernel starts and ${sizes.prints} print(1) round trips`)
    jupyter = await jupyterBaseline({ kernels: sizes.jupyterKernels, warmup: sizes.printWarmup, prints: sizes.prints, signal })
  }

  // Last, because it loads the machine itself: the load average is read before it, for the rest.
  const loadAfter = loadAverage()
  step(`over HTTP: ${sizes.concurrentSessions} sessions at once × ${sizes.cellsPerSession} cells each`)
  const concurrency = await concurrentSessions(server, { sessions: sizes.concurrentSessions, cells: sizes.cellsPerSession, signal })
  await server.close()

  signal.throwIfAborted()
  const run: BenchRun = {
    quick,
    facts: {
      ...facts,
      cgroups: bwrap.cgroups,
      image: `${image.path} (${image.recipe.suite})`,
      loadAfter,
      seconds: (performance.now() - t0) / 1000,
    },
    cold: coldSamples,
    warm: warmSamples,
    print,
    files,
    idle,
    bareBwrap,
    hostPython,
    jupyter,
    http,
    concurrency,
    agent,
  }
  const report = renderReport(run)
  console.log(`\n${report}\n`)
  writeResults(RESULTS_FILE, report)
  step(`wrote ${RESULTS_FILE}`)
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (interrupted.signal.aborted) process.exit(130)
    console.error(`bench: ${sig}: stopping after the current sample and cleaning up (again to exit at once)`)
    interrupted.abort()
  })
}

try {
  await main(process.argv.slice(2), interrupted.signal)
} catch (e) {
  if (interrupted.signal.aborted) {
    console.error('bench: interrupted; nothing written')
    process.exitCode = 130
  } else {
    console.error(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
    process.exitCode = 1
  }
} finally {
  await cleanUp()
}
