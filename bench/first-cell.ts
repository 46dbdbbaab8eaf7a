/**
 * `node bench/first-cell.ts [--quick] [--n N] [--ksm]`: the first data cell of a fresh session
 * (`import pandas as pd, matplotlib.pyplot as plt` + a DataFrame + `df.plot(); plt.show()`) in a
 * pooled session whose kernel preloaded the data stack, against a pooled lean session (cold
 * imports) and against today's lean session without the image's font cache, alternating in one
 * run; then the memory of pooled and running sessions, preloaded and lean; with `--ksm`, whether
 * KSM can merge the imported pages of several sessions (it turns the host's ksmd on for the
 * measurement and restores its settings afterwards). Writes its section of bench/RESULTS.md.
 * Needs root and the sandbox image; stops everything it started.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { defaultPreload } from '@codebox/core'
import { BwrapDriver, SessionManager, defaultRecipe, findImage, loadEngineConfig, type Session } from '@codebox/sandbox'
import { trackingDriver } from './codebox.ts'
import { cpuTicks, loadAverage, machineFacts, memoryOf, sandboxPids, type ProcessMemory } from './host.ts'
import { measureKsm, type KsmResult } from './ksm.ts'
import { latencyHeader, latencyRow, mib, ratio, sleep, summarize, table } from './stats.ts'

const RESULTS_FILE = fileURLToPath(new URL('./RESULTS.md', import.meta.url))
const BEGIN = '<!-- first-cell: begin (bench/first-cell.ts rewrites this part on each run) -->'
const END = '<!-- first-cell: end -->'

/** The first data cell a user runs; it must show one figure. */
export const FIRST_CELL = [
  'import pandas as pd, matplotlib.pyplot as plt',
  "df = pd.DataFrame({'x': range(100), 'y': [i * i for i in range(100)]})",
  'df.plot(); plt.show()',
].join('\n')
/** The same DataFrame and plot again in the same session: what is left once nothing is imported. */
const AGAIN = "df = pd.DataFrame({'x': range(100), 'y': [i * i for i in range(100)]})\ndf.plot(); plt.show()"

type Variant = 'preloaded' | 'lean' | 'today'
const variants: readonly Variant[] = ['preloaded', 'lean', 'today']
const label: Record<Variant, string> = {
  preloaded: 'pooled, preload numpy+pandas+pyplot (default interpreter)',
  lean: 'pooled, lean (preload [])',
  today: 'pooled, lean, no font cache (before this change)',
}

interface Samples {
  start: number[]
  cell: number[]
  startCell: number[]
  again: number[]
}

type CgroupMode = BwrapDriver['cgroups']

async function until(ok: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs
  while (!ok()) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(20)
  }
}

/** Waits until the sandboxes' processes stop using CPU (the pool's refills have finished). */
async function settled(cgroups: CgroupMode, ids: readonly string[]): Promise<void> {
  let last = -1
  let still = 0
  await until(
    () => {
      const now = ids.reduce((n, id) => n + cpuTicks(sandboxPids(cgroups, id)), 0)
      still = now === last ? still + 1 : 0
      last = now
      return still >= 3
    },
    120_000,
    'the sandboxes to go idle',
  )
}

const live = (cgroups: CgroupMode, created: readonly string[]): string[] => created.filter((id) => sandboxPids(cgroups, id).length > 0)

function role(cmd: string): string {
  if (/(^|\/)bwrap /.test(cmd)) return 'bwrap'
  if (cmd.includes('kernel_python.py')) return 'kernel'
  if (cmd.includes('executor.py')) return 'executor'
  return cmd.split(' ')[0] ?? '?'
}

async function firstCell(manager: SessionManager, variant: Variant, created: readonly string[]): Promise<{ start: number; cell: number; again: number }> {
  const before = new Set(created)
  const t0 = performance.now()
  const session = await manager.start({ preload: variant === 'preloaded' ? defaultPreload : [] })
  const start = performance.now() - t0
  try {
    if (!before.has(session.sandboxId)) throw new Error(`${variant}: session ${session.id} booted a sandbox instead of taking a pooled one`)
    if (variant === 'preloaded' && session.preload?.loaded.length !== defaultPreload.length) {
      throw new Error(`preloaded session ${session.id} lacks its preload: ${JSON.stringify(session.preload)}`)
    }
    if (variant === 'today') {
      // As every session was before: matplotlib finds no font cache and builds one.
      const rm = await session.runCommand('rm -rf "$MPLCONFIGDIR"')
      if (rm.isError) throw new Error(`rm of the font cache failed: ${rm.structuredContent.stderr}`)
    }
    const t1 = performance.now()
    const r = await session.runCode({ code: FIRST_CELL, timeoutMs: 60_000 })
    const cell = performance.now() - t1
    check(session, r)
    const t2 = performance.now()
    check(session, await session.runCode({ code: AGAIN, timeoutMs: 60_000 }))
    return { start, cell, again: performance.now() - t2 }
  } finally {
    await session.stop()
  }
}

function check(session: Session, r: Awaited<ReturnType<Session['runCode']>>): void {
  const images = r.content.filter((b) => b.type === 'image').length
  if (r.isError || images !== 1) throw new Error(`[session ${session.id}] the data cell gave ${images} images: ${r.structuredContent.stderr.slice(0, 500)}`)
}

/** Memory of `k` pooled sandboxes of one preload, all idle at once. */
async function pooledMemory(driver: BwrapDriver, preload: readonly string[], k: number): Promise<(ProcessMemory & { cgroupBytes: number })[]> {
  const tracked = trackingDriver(driver)
  const manager = new SessionManager({ driver: tracked.driver, poolSize: k, preload })
  try {
    await until(() => manager.warmCount >= k, 180_000, `${k} pooled sandboxes`)
    await settled(driver.cgroups, tracked.created)
    return tracked.created.map((id) => ({ ...memoryOf(sandboxPids(driver.cgroups, id), role), cgroupBytes: cgroupMemory(driver.cgroups, id) }))
  } finally {
    await manager.close()
  }
}

/** Memory of `k` running sessions of one preload, each after its first data cell, all at once. */
async function runningMemory(driver: BwrapDriver, preload: readonly string[], k: number): Promise<(ProcessMemory & { cgroupBytes: number })[]> {
  const manager = new SessionManager({ driver, poolSize: 0, preload })
  const sessions: Session[] = []
  try {
    for (let i = 0; i < k; i++) {
      const s = await manager.start()
      sessions.push(s)
      check(s, await s.runCode({ code: FIRST_CELL, timeoutMs: 60_000 }))
    }
    await settled(
      driver.cgroups,
      sessions.map((s) => s.sandboxId),
    )
    const out = []
    for (const s of sessions) out.push({ ...memoryOf(sandboxPids(driver.cgroups, s.sandboxId), role), cgroupBytes: await s.memoryUsage() })
    return out
  } finally {
    await manager.close()
  }
}

function cgroupMemory(cgroups: CgroupMode, id: string): number {
  const file = cgroups === 'v2' ? `/sys/fs/cgroup/codebox/${id}/memory.current` : `/sys/fs/cgroup/memory/codebox/${id}/memory.usage_in_bytes`
  try {
    return Number(readFileSync(file, 'utf8').trim())
  } catch {
    return NaN
  }
}

function memoryRow(name: string, rows: readonly (ProcessMemory & { cgroupBytes: number })[]): string[] {
  const mean = (f: (m: ProcessMemory & { cgroupBytes: number }) => number): number => rows.reduce((a, m) => a + f(m), 0) / rows.length
  const kernel = (m: ProcessMemory, k: 'rssBytes' | 'pssBytes'): number => m.parts.filter((p) => p.label === 'kernel').reduce((a, p) => a + p[k], 0)
  return [
    name,
    String(rows.length),
    mib(mean((m) => m.rssBytes)),
    mib(mean((m) => m.pssBytes)),
    mib(mean((m) => kernel(m, 'rssBytes'))),
    mib(mean((m) => kernel(m, 'pssBytes'))),
    mib(mean((m) => m.cgroupBytes)),
  ]
}

async function main(argv: readonly string[]): Promise<void> {
  const quick = argv.includes('--quick')
  const nAt = argv.indexOf('--n')
  const n = nAt >= 0 ? Number(argv[nAt + 1]) : quick ? 5 : 30
  if (!Number.isInteger(n) || n < 1) throw new Error('--n must be a whole number ≥ 1')
  if (process.getuid?.() !== 0) throw new Error('the bench needs root: the bwrap driver gives each sandbox its own uid and cgroups')
  const config = loadEngineConfig(process.env)
  const image = await findImage(config.stateDir, defaultRecipe({ mirror: config.debianMirror }))
  if (!image) throw new Error(`no sandbox image in ${config.stateDir}; run \`codebox image build\``)
  const bwrap = new BwrapDriver({ imagePath: image.path })
  await bwrap.check()
  const facts = machineFacts()
  const t0 = performance.now()

  // Latency: one manager pools both configurations (the default preload and the lean one).
  const tracked = trackingDriver(bwrap)
  const refillAt = argv.indexOf('--refill-delay')
  const poolRefillDelayMs = refillAt >= 0 ? Number(argv[refillAt + 1]) : config.poolRefillDelayMs
  const manager = new SessionManager({ driver: tracked.driver, poolSize: 1, preload: defaultPreload, poolRefillDelayMs })
  const samples = Object.fromEntries(variants.map((v) => [v, { start: [], cell: [], startCell: [], again: [] } as Samples])) as Record<Variant, Samples>
  try {
    await (await manager.start({ preload: [] })).stop() // from now on the lean configuration is pooled too
    for (let i = 0; i < n; i++) {
      // The order rotates, so no variant always runs right after another's refill.
      for (let j = 0; j < variants.length; j++) {
        const v = variants[(i + j) % variants.length]!
        await until(() => manager.warmCount >= 2, 180_000, 'both pools to refill')
        await settled(bwrap.cgroups, live(bwrap.cgroups, tracked.created))
        const r = await firstCell(manager, v, tracked.created)
        samples[v].start.push(r.start)
        samples[v].cell.push(r.cell)
        samples[v].startCell.push(r.start + r.cell)
        samples[v].again.push(r.again)
      }
      process.stdout.write(`\rfirst cells: ${i + 1}/${n}`)
    }
    process.stdout.write('\n')
  } finally {
    await manager.close()
  }
  const k = quick ? 2 : 4
  const load = loadAverage()
  const pooled = { preloaded: await pooledMemory(bwrap, defaultPreload, k), lean: await pooledMemory(bwrap, [], k) }
  const running = { preloaded: await runningMemory(bwrap, defaultPreload, k), lean: await runningMemory(bwrap, [], k) }
  const ksm = argv.includes('--ksm') ? await measureKsm(bwrap, k, { firstCell: FIRST_CELL, role }) : undefined

  const report = render({ facts, n, k, poolRefillDelayMs, samples, pooled, running, ksm, load, seconds: (performance.now() - t0) / 1000, image: image.path })
  console.log(report)
  writeSection(report)
}

function render(r: {
  facts: ReturnType<typeof machineFacts>
  n: number
  k: number
  poolRefillDelayMs: number
  samples: Record<Variant, Samples>
  pooled: Record<'preloaded' | 'lean', (ProcessMemory & { cgroupBytes: number })[]>
  running: Record<'preloaded' | 'lean', (ProcessMemory & { cgroupBytes: number })[]>
  ksm: KsmResult | undefined
  load: string
  seconds: number
  image: string
}): string {
  const p50 = (v: Variant): number | undefined => summarize(r.samples[v].cell)?.p50
  const lines = [
    '### First data cell (bench/first-cell.ts)',
    '',
    `- date: ${r.facts.date}, took ${Math.round(r.seconds)} s; ${r.n} samples per variant, alternating; CPU: ${r.facts.cpuModel}, ${r.facts.cores} cores`,
    `- load average at the start / before the memory phase: ${r.facts.loadAverage} / ${r.load}; image ${r.image}`,
    '- the cell: `import pandas as pd, matplotlib.pyplot as plt` + a 100-row DataFrame + `df.plot(); plt.show()` (one PNG checked); ' +
      `poolSize 1 per configuration, poolRefillDelayMs ${r.poolRefillDelayMs}`,
    '',
    table(
      latencyHeader,
      variants.flatMap((v) => [
        latencyRow(`first cell — ${label[v]}`, r.samples[v].cell),
        latencyRow(`start + first cell — ${label[v]}`, r.samples[v].startCell),
      ]),
    ),
    '',
    table(
      latencyHeader,
      variants.map((v) => latencyRow(`same DataFrame + plot again, same session — ${v}`, r.samples[v].again)),
    ),
    '',
    `First cell p50, lean ÷ preloaded: **${ratio(p50('lean'), p50('preloaded'))}**; before this change ÷ preloaded: **${ratio(p50('today'), p50('preloaded'))}**; ` +
      `before ÷ lean (the font cache alone): ${ratio(p50('today'), p50('lean'))}.`,
    '',
    `Memory, ${r.k} at once (MiB = 2^20 bytes; PSS splits pages shared between processes, so it is what one more costs):`,
    '',
    table(
      ['sandbox', 'n', 'RSS (all processes)', 'PSS (all)', 'kernel RSS', 'kernel PSS', 'memory cgroup'],
      [
        memoryRow('pooled, preloaded (idle, before hand-over)', r.pooled.preloaded),
        memoryRow('pooled, lean', r.pooled.lean),
        memoryRow('running, preloaded (after the first data cell)', r.running.preloaded),
        memoryRow('running, lean (after the first data cell)', r.running.lean),
      ],
    ),
  ]
  if (r.ksm) lines.push('', ...r.ksm.lines)
  return lines.join('\n')
}

/** Replaces this bench's part of RESULTS.md, or puts it before run.ts's marker the first time. */
function writeSection(report: string): void {
  const old = existsSync(RESULTS_FILE) ? readFileSync(RESULTS_FILE, 'utf8') : ''
  const block = `${BEGIN}\n\n${report}\n\n${END}`
  const a = old.indexOf(BEGIN)
  const b = old.indexOf(END)
  if (a >= 0 && b > a) return writeFileSync(RESULTS_FILE, old.slice(0, a) + block + old.slice(b + END.length))
  const marker = old.indexOf('<!-- Everything below is written by bench/run.ts')
  const at = marker >= 0 ? marker : old.length
  writeFileSync(RESULTS_FILE, `${old.slice(0, at)}${block}\n\n${old.slice(at)}`)
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(e)
  process.exitCode = 1
})
