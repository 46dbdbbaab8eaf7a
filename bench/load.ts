/**
 * `node bench/load.ts [--sessions S] [--cells C] [--minutes M] [--seed N]`: a bounded load test on
 * loopback. Starts a server of its own (bench/server-proc.ts), then S sessions (default 200) at
 * once (started 8 at a time), each running C calls (default 50) in sequence: Python and JavaScript cells and shell
 * commands of random output sizes, output floods (several MiB, truncated by the server) and file
 * floods (hundreds of files written in one call, then counted by a command). Every call prints a
 * token unique to its session and call; each result is checked to hold its own token exactly once
 * and no other: a missing token is lost, a repeated one duplicated, a foreign one misrouted. The
 * server's RSS and open fds are sampled from /proc every second. Stops every session it started
 * (also on Ctrl-C), and fails (exit 1) when anything was lost, duplicated, misrouted or failed, or
 * the time limit (default 20 minutes) passed. Writes its section of bench/RESULTS.md.
 */
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { loadAverage, machineFacts } from './host.ts'
import { processUse, startBenchServer, writeSection } from './server-proc.ts'
import { mib, ms, summarize, table } from './stats.ts'

const { values: args } = parseArgs({
  options: {
    sessions: { type: 'string', default: '200' },
    cells: { type: 'string', default: '50' },
    minutes: { type: 'string', default: '20' },
    seed: { type: 'string', default: '13' },
  },
})
const nSessions = Number(args.sessions)
const nCells = Number(args.cells)
const deadline = AbortSignal.timeout(Number(args.minutes) * 60_000)

/** A small seeded PRNG (mulberry32): the same seed gives the same mix of calls. */
let seed = Number(args.seed) >>> 0
const random = (): number => {
  seed = (seed + 0x6d2b79f5) >>> 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!

type Kind = 'python' | 'javascript' | 'bash' | 'output flood' | 'file flood'
const kinds: readonly Kind[] = ['python', 'python', 'python', 'javascript', 'javascript', 'bash', 'bash', 'output flood', 'file flood']

interface Call {
  kind: Kind
  name: 'executeCode' | 'executeCommand' | 'writeFiles'
  arguments: Record<string, unknown>
  /** After the call: a command whose output must be the token (file floods), or none. */
  check?: { command: string; expect: string }
}

/** The call number `i` of a session: prints `token` once, with `size` bytes of filler. */
function makeCall(kind: Kind, token: string, size: number): Call {
  switch (kind) {
    case 'python':
      return { kind, name: 'executeCode', arguments: { language: 'python', code: `print(${JSON.stringify(token)})\nprint("p" * ${size})` } }
    case 'javascript':
      return {
        kind,
        name: 'executeCode',
        arguments: { language: 'javascript', code: `console.log(${JSON.stringify(token)})\nconsole.log("j".repeat(${size}))` },
      }
    case 'bash':
      return { kind, name: 'executeCommand', arguments: { command: `echo ${token}; head -c ${size} /dev/zero | tr '\\0' b; echo` } }
    case 'output flood':
      // Several MiB: far past the output limit, so the server truncates it; the token comes first.
      return {
        kind,
        name: 'executeCode',
        arguments: { language: 'python', code: `import sys\nprint(${JSON.stringify(token)}, flush=True)\nsys.stdout.write("f" * ${size * 64 + 4 * 2 ** 20})` },
      }
    case 'file flood': {
      const dir = `flood-${token}`
      const files = 200 + Math.floor(random() * 300)
      return {
        kind,
        name: 'writeFiles',
        arguments: { content: Array.from({ length: files }, (_, i) => ({ path: `${dir}/f${i}.txt`, text: `${token}\n${'x'.repeat(size % 4096)}` })) },
        check: { command: `cat ${dir}/*.txt | grep -c ${token}; rm -r ${dir}; echo ${token}`, expect: `${files}\n${token}\n` },
      }
    }
  }
}

interface Outcome {
  kind: Kind
  ms: number
  verdict: 'ok' | 'lost' | 'duplicated' | 'misrouted' | 'failed'
  detail?: string
}

const tokenPattern = /TOK-[0-9a-z]+-\d+-[0-9a-f]{8}/g
function verdictOf(stdout: string, token: string): Outcome['verdict'] {
  const seen = stdout.match(tokenPattern) ?? []
  if (seen.some((t) => t !== token)) return 'misrouted'
  if (seen.length === 0) return 'lost'
  return seen.length > 1 ? 'duplicated' : 'ok'
}

const facts = machineFacts()
const server = await startBenchServer('load', {
  CODEBOX_PRELOAD: '',
  CODEBOX_TENANT_MAX_SESSIONS: '100000',
  CODEBOX_TENANT_STARTS_PER_MINUTE: '1000000',
  CODEBOX_TENANT_INVOKES_PER_SECOND: '1000000',
})
const post = (p: string, body: unknown): Promise<Response> =>
  fetch(server.url + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: deadline })

const samples: { t: number; rssBytes: number; fds: number }[] = []
const t0 = performance.now()
const sampler = setInterval(() => {
  try {
    samples.push({ t: (performance.now() - t0) / 1000, ...processUse(server.pid) })
  } catch {
    // the server has gone: the calls will say so
  }
}, 1000)
const base = processUse(server.pid)
const outcomes: Outcome[] = []
const started: string[] = []
const startMs: number[] = []
const failures: string[] = []
let report = ''
let passed = false
try {
  // Starts ramp up 8 at a time (200 cold boots at once on 2 cores outlast the start timeout); a
  // session runs its calls as soon as it has started, alongside the others.
  let starting = 0
  const waiters: (() => void)[] = []
  const runSession = async (index: number): Promise<void> => {
    while (starting >= 8) await new Promise<void>((resolve) => waiters.push(resolve))
    starting++
    const t = performance.now()
    let r: Response
    let body: { sessionId?: string }
    try {
      r = await post('/v1/sessions', { timeoutSeconds: 3600 })
      body = (await r.json()) as { sessionId?: string }
    } finally {
      starting--
      waiters.shift()?.()
    }
    if (!body.sessionId) {
      failures.push(`start ${index}: ${r.status} ${JSON.stringify(body).slice(0, 300)}`)
      return
    }
    startMs.push(performance.now() - t)
    const id = body.sessionId
    started.push(id)
    for (let i = 0; i < nCells; i++) {
      const kind = pick(kinds)
      const token = `TOK-${id}-${i}-${randomBytes(4).toString('hex')}`
      const size = Math.floor(random() ** 3 * 64 * 1024)
      const call = makeCall(kind, token, size)
      const c0 = performance.now()
      try {
        const res = await post(`/v1/sessions/${id}/invoke`, { name: call.name, arguments: call.arguments })
        const out = (await res.json()) as { structuredContent?: { stdout: string; exitCode: number }; isError?: boolean; message?: string }
        if (!res.ok || !out.structuredContent) throw new Error(`${res.status} ${out.message ?? JSON.stringify(out).slice(0, 300)}`)
        let verdict: Outcome['verdict']
        if (call.check) {
          const cr = await post(`/v1/sessions/${id}/invoke`, { name: 'executeCommand', arguments: { command: call.check.command } })
          const co = (await cr.json()) as { structuredContent?: { stdout: string } }
          const stdout = co.structuredContent?.stdout ?? ''
          verdict = verdictOf(stdout, token)
          if (verdict === 'ok' && stdout !== call.check.expect) verdict = 'lost' // files missing
          if (verdict !== 'ok') failures.push(`${id} call ${i} (${kind}): ${verdict}: ${JSON.stringify(stdout.slice(0, 200))}`)
        } else {
          verdict = verdictOf(out.structuredContent.stdout, token)
          if (verdict === 'ok' && out.structuredContent.exitCode !== 0) verdict = 'failed'
          if (verdict === 'ok' && kind !== 'output flood' && !out.structuredContent.stdout.startsWith(`${token}\n`)) verdict = 'lost'
          if (verdict !== 'ok') failures.push(`${id} call ${i} (${kind}): ${verdict}: ${JSON.stringify(out.structuredContent.stdout.slice(0, 200))}`)
        }
        outcomes.push({ kind, ms: performance.now() - c0, verdict })
      } catch (e) {
        outcomes.push({ kind, ms: performance.now() - c0, verdict: 'failed' })
        failures.push(`${id} call ${i} (${kind}): ${(e as Error).message}`)
        if (deadline.aborted) return
      }
    }
  }
  await Promise.all(Array.from({ length: nSessions }, (_, i) => runSession(i)))
  const seconds = (performance.now() - t0) / 1000
  clearInterval(sampler)
  const end = processUse(server.pid)
  const count = (v: Outcome['verdict']): number => outcomes.filter((o) => o.verdict === v).length
  const maxRss = Math.max(...samples.map((s) => s.rssBytes))
  const maxFds = Math.max(...samples.map((s) => s.fds))
  passed = !deadline.aborted && failures.length === 0 && outcomes.length === nSessions * nCells
  const byKind = kinds.filter((k, i) => kinds.indexOf(k) === i)
  report = [
    '### Load: concurrent sessions, mixed calls (bench/load.ts)',
    '',
    `- ${facts.date}, ${facts.cpuModel}, ${facts.cores} cores, ${mib(facts.memoryBytes)}; load average at the start / end: ${facts.loadAverage} / ${loadAverage()}. The machine is shared with other workers: latencies carry their noise.`,
    `- ${nSessions} lean sessions at once, ${nCells} calls each in sequence (seed ${args.seed}): Python and JavaScript cells and shell commands printing up to 64 KiB, output floods (4+ MiB, truncated by the server), file floods (200–499 files in one writeFiles, counted back by a command). Server of its own, loopback, limit ${args.minutes} min.`,
    `- **${passed ? 'PASSED' : 'FAILED'}**: ${outcomes.length} of ${nSessions * nCells} calls answered in ${seconds.toFixed(0)} s; **lost ${count('lost')}, duplicated ${count('duplicated')}, misrouted ${count('misrouted')}**, failed ${count('failed')}${deadline.aborted ? ', time limit reached' : ''}; starts refused ${nSessions - started.length}.`,
    `- Starts (8 at a time, while the sessions already started run their calls): p50 ${ms(summarize(startMs)?.p50)}, p95 ${ms(summarize(startMs)?.p95)}, max ${ms(summarize(startMs)?.max)}.`,
    `- Server RSS ${mib(base.rssBytes)} at the start, ${mib(maxRss)} at most, ${mib(end.rssBytes)} at the end; open fds ${base.fds} → ${maxFds} at most → ${end.fds}.`,
    '',
    table(
      ['call', 'n', 'p50', 'p95', 'max', 'not ok'],
      byKind.map((k) => {
        const o = outcomes.filter((x) => x.kind === k)
        const s = summarize(o.map((x) => x.ms))
        return [k, String(o.length), ms(s?.p50), ms(s?.p95), ms(s?.max), String(o.filter((x) => x.verdict !== 'ok').length)]
      }),
    ),
    ...(failures.length ? ['', 'First failures:', '', ...failures.slice(0, 10).map((f) => `- ${f.replaceAll('|', '\\|')}`)] : []),
  ].join('\n')
} finally {
  clearInterval(sampler)
  const t = performance.now()
  const left = await server.stop()
  const stopLine = `- Cleanup: the server stopped its ${started.length} sessions in ${((performance.now() - t) / 1000).toFixed(0)} s; sandboxes left behind: ${left.length}.`
  process.stdout.write(`${report}\n${stopLine}\n`)
  if (report) writeSection('<!-- load:start -->', '<!-- load:end -->', `${report}\n\n${stopLine}`)
  if (failures.length) process.stderr.write(`${failures.length} failures, first: ${failures.slice(0, 5).join('\n')}\n`)
  process.exitCode = passed && left.length === 0 ? 0 : 1
}
