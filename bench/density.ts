/**
 * `node bench/density.ts [--max N] [--floor-gib G] [--concurrency C] [--minutes M]`: how many idle
 * lean (no preload) Python sessions this machine holds at once. Starts a server of its own
 * (bench/server-proc.ts) with the session limits raised, starts sessions C at a time until
 * MemAvailable falls below the floor (default 2 GiB), a start is refused, N sessions (default
 * 3000) run or M minutes (default 20) pass; then reports the memory each session costs (the drop
 * of MemAvailable, and the PSS of a sample of sandboxes, before and after a first Python cell),
 * the starts per second sustained, and whether every session still answers. Always stops every
 * session it started (also on Ctrl-C). Writes its section of bench/RESULTS.md. Needs root and the
 * sandbox image.
 */
import { parseArgs } from 'node:util'
import { existsSync } from 'node:fs'
import { loadAverage, machineFacts, memoryOf, sandboxPids } from './host.ts'
import { memAvailable, processUse, startBenchServer, writeSection } from './server-proc.ts'
import { mib, ms, sleep, summarize, table } from './stats.ts'

const { values: args } = parseArgs({
  options: {
    max: { type: 'string', default: '3000' },
    'floor-gib': { type: 'string', default: '2' },
    concurrency: { type: 'string', default: '4' },
    minutes: { type: 'string', default: '20' },
    sample: { type: 'string', default: '20' },
  },
})
const max = Number(args.max)
const floor = Number(args['floor-gib']) * 2 ** 30
const concurrency = Number(args.concurrency)
const deadline = performance.now() + Number(args.minutes) * 60_000
const sampleSize = Number(args.sample)

const facts = machineFacts()
const cgroupMode = existsSync('/sys/fs/cgroup/codebox') ? 'v2' : 'v1'
const role = (cmd: string): string =>
  /(^|\/)bwrap /.test(cmd) ? 'bwrap' : cmd.includes('kernel_python.py') ? 'kernel' : cmd.includes('executor.py') ? 'executor' : 'other'

const server = await startBenchServer('density', {
  CODEBOX_PRELOAD: '',
  CODEBOX_MAX_SESSIONS: '10000',
  CODEBOX_TENANT_MAX_SESSIONS: '100000',
  CODEBOX_TENANT_STARTS_PER_MINUTE: '1000000',
})
const post = async (p: string, body: unknown): Promise<Response> =>
  fetch(server.url + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

let stopReason = `${max} sessions started (--max)`
const sessions: string[] = []
const startMs: number[] = []
const progress: { n: number; seconds: number; availableBytes: number; serverRssBytes: number; serverFds: number }[] = []
let report = ''
try {
  await sleep(5000) // the pool's first sandboxes boot
  const baseAvailable = memAvailable()
  const baseServer = processUse(server.pid)
  const t0 = performance.now()
  let stop = false
  let launched = 0
  const worker = async (): Promise<void> => {
    while (!stop) {
      if (launched >= max) return
      if (performance.now() > deadline) return void ((stop = true), (stopReason = `the time limit (${args.minutes} min)`))
      if (memAvailable() < floor) return void ((stop = true), (stopReason = `MemAvailable fell below the ${args['floor-gib']} GiB floor`))
      launched++
      const t = performance.now()
      const r = await post('/v1/sessions', { timeoutSeconds: 3600 })
      const body = (await r.json()) as { sessionId?: string; code?: string; message?: string }
      if (!r.ok || !body.sessionId) {
        stop = true
        stopReason = `a start was refused: ${r.status} ${body.code}: ${body.message}`
        return
      }
      startMs.push(performance.now() - t)
      sessions.push(body.sessionId)
      if (sessions.length % 100 === 0) {
        const use = processUse(server.pid)
        progress.push({
          n: sessions.length,
          seconds: (performance.now() - t0) / 1000,
          availableBytes: memAvailable(),
          serverRssBytes: use.rssBytes,
          serverFds: use.fds,
        })
        process.stderr.write(`${sessions.length} sessions, MemAvailable ${mib(memAvailable())}, ${((performance.now() - t0) / 1000).toFixed(0)} s\n`)
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const fillSeconds = (performance.now() - t0) / 1000
  const n = sessions.length
  await sleep(10_000) // the last starts settle and the pool refills
  const endAvailable = memAvailable()
  const endServer = processUse(server.pid)
  const perSession = (baseAvailable - endAvailable) / n

  // PSS of up to --sample sandboxes without a kernel (idle, never used) and, after the cells, with one.
  const pss = (withKernel: boolean): { n: number; pss: number; rss: number; procs: number; parts: Map<string, number> } => {
    const parts = new Map<string, number>()
    let pss = 0
    let rss = 0
    let procs = 0
    let k = 0
    for (const id of server.sandboxIds()) {
      if (k >= sampleSize) break
      const m = memoryOf(sandboxPids(cgroupMode, id), role)
      if (m.processes === 0 || m.parts.some((p) => p.label === 'kernel') !== withKernel) continue
      k++
      pss += m.pssBytes
      rss += m.rssBytes
      procs += m.processes
      for (const p of m.parts) parts.set(p.label, (parts.get(p.label) ?? 0) + p.pssBytes)
    }
    const d = k || 1
    return { n: k, pss: pss / d, rss: rss / d, procs: procs / d, parts: new Map([...parts].map(([l, v]) => [l, v / d])) }
  }
  const idle = pss(false)

  // Every session still answers (its record READY); a sample runs its first Python cell.
  let ready = 0
  for (const id of sessions) {
    const info = (await (await fetch(`${server.url}/v1/sessions/${id}`)).json()) as { status: string }
    if (info.status === 'READY') ready++
  }
  const firstCell: number[] = []
  let wrong = 0
  const beforeCells = memAvailable()
  const cellSessions = sessions.slice(0, Math.min(100, n))
  for (const id of cellSessions) {
    const t = performance.now()
    const r = await post(`/v1/sessions/${id}/invoke`, { name: 'executeCode', arguments: { code: `print("ok-${id}")`, language: 'python' } })
    const body = (await r.json()) as { structuredContent?: { stdout: string } }
    firstCell.push(performance.now() - t)
    if (body.structuredContent?.stdout !== `ok-${id}\n`) wrong++
  }
  await sleep(3000)
  const kernelCost = (beforeCells - memAvailable()) / cellSessions.length
  const used = pss(true)

  const s = summarize(startMs)
  const rate = (from: number, to: number): string => {
    const a = progress.find((p) => p.n === from)
    const b = progress.find((p) => p.n === to)
    return a && b ? ((b.n - a.n) / (b.seconds - a.seconds)).toFixed(1) : '—'
  }
  const last = progress.at(-1)
  report = [
    '### Density: idle lean sessions at once (bench/density.ts)',
    '',
    `- ${facts.date}, ${facts.cpuModel}, ${facts.cores} cores, ${mib(facts.memoryBytes)}; load average at the start / end: ${facts.loadAverage} / ${loadAverage()}.`,
    '  The machine is shared with other workers running builds and tests: absolute numbers carry their noise.',
    `- Server: its own process and state dir, loopback, \`CODEBOX_PRELOAD=\` (lean), \`CODEBOX_MAX_SESSIONS=10000\`, tenant quotas raised, pool of 2, ${concurrency} starts at a time, each session \`timeoutSeconds: 3600\`.`,
    `- **Held at once: ${n} idle lean sessions**; stopped because ${stopReason}. ${ready} of ${n} still READY at the end.`,
    `- **Memory per idle session: ${mib(perSession)} of MemAvailable** (${mib(baseAvailable)} → ${mib(endAvailable)} for ${n} sessions, server and page cache included);`,
    `  PSS of ${idle.n} sampled sandboxes: ${mib(idle.pss)} each (RSS ${mib(idle.rss)}, ${idle.procs.toFixed(1)} processes: ${[...idle.parts].map(([l, v]) => `${l} ${mib(v)}`).join(', ')}).`,
    `- After a first Python cell (its kernel starts then): ${mib(kernelCost)} more MemAvailable per session (${cellSessions.length} sessions); PSS of ${used.n} such sandboxes ${mib(used.pss)} (${[...used.parts].map(([l, v]) => `${l} ${mib(v)}`).join(', ')}).`,
    `  That first cell (kernel start + print) over HTTP: p50 ${ms(summarize(firstCell)?.p50)}, p95 ${ms(summarize(firstCell)?.p95)}; ${wrong} wrong outputs.`,
    `- **Starts per second sustained: ${(n / fillSeconds).toFixed(1)}** over the whole fill (${n} in ${fillSeconds.toFixed(0)} s); first 500: ${rate(100, 500)}/s, last 500: ${last ? rate(last.n - 500, last.n) : '—'}/s.`,
    `  Start latency (HTTP, ${concurrency} at once): p50 ${ms(s?.p50)}, p95 ${ms(s?.p95)}, p99 ${ms(s?.p99)}, max ${ms(s?.max)}.`,
    `- Server: RSS ${mib(baseServer.rssBytes)} → ${mib(endServer.rssBytes)}, fds ${baseServer.fds} → ${endServer.fds}.`,
    '',
    table(
      ['sessions', 'seconds', 'MemAvailable', 'server RSS', 'server fds'],
      progress
        .filter((p, i) => i % 5 === 4 || p === last)
        .map((p) => [String(p.n), p.seconds.toFixed(0), mib(p.availableBytes), mib(p.serverRssBytes), String(p.serverFds)]),
    ),
  ].join('\n')
} finally {
  const t = performance.now()
  const n = sessions.length
  const left = await server.stop()
  const stopLine = `- Cleanup: the server stopped its ${n} sessions in ${((performance.now() - t) / 1000).toFixed(0)} s; sandboxes left behind: ${left.length}.`
  process.stdout.write(`${report}\n${stopLine}\n`)
  if (report) writeSection('<!-- density:start -->', '<!-- density:end -->', `${report}\n\n${stopLine}`)
}
