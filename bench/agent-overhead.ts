/**
 * The codebox agent's own cost per tool round trip: one answer turn in which a scripted model
 * (each provider's real wire format on loopback, answering instantly) calls execute_code with
 * print(1) once and then answers, against the bare tool call (runAgentTool on the same session).
 * The agent's overhead is the turn's wall time minus the time spent inside the tool call itself:
 * Strands' loop, two model requests through the real client libraries, the fallback wrapper and
 * the event mapping. Variants alternate call by call so machine noise falls on all alike.
 *
 * Run alone: `node bench/agent-overhead.ts [--quick]` (as root with the sandbox image it uses a
 * real bwrap session; otherwise a fake in-memory session, said in the output). bench/run.ts calls
 * `measureAgentOverhead` on its own session and adds the table to RESULTS.md.
 */
import { pathToFileURL } from 'node:url'
import type { ExecutionEvent, ToolArguments, ToolName, ToolResult } from '@codebox/core'
import { runAgentTool, type ToolTarget } from '@codebox/tools'
import { agentOptionsFromEnv, type Agent } from '@codebox/agent'
import { createAgent } from '@codebox/agent/loop'
import { modelEnv, startModelServer, type ModelServer, type ModelServerProvider } from '../packages/agent/test/model-servers.ts'
import { latencyHeader, latencyRow, ms, ratio, summarize, table } from './stats.ts'

/** What a session offers the bench: a Session of @codebox/sandbox has these. */
export interface BenchSession {
  executeCode(options: { code: string; language?: 'python'; signal?: AbortSignal }): AsyncGenerator<ExecutionEvent, ToolResult>
  runCode(options: { code: string; language?: 'python'; signal?: AbortSignal }): Promise<ToolResult>
}

export interface AgentOverheadResults {
  /** Where the tool ran: a real bwrap session or the in-memory fake. */
  target: string
  /** runAgentTool(execute_code print(1)) straight on the session, ms. */
  bare: number[]
  /** Per provider: the whole turn, and the turn minus its tool call (the agent's own cost), ms. */
  agent: Record<ModelServerProvider, { turn: number[]; overhead: number[] }>
}

const providers: readonly ModelServerProvider[] = ['anthropic', 'bedrock', 'openai']
const CODE = 'print(1)'

/** A ToolTarget over a session for execute_code, timing each call it runs. */
export function timedTarget(session: BenchSession): ToolTarget & { spentMs: number } {
  const t = {
    spentMs: 0,
    async invoke(name: ToolName, args: ToolArguments[ToolName], options: { signal?: AbortSignal } = {}): Promise<ToolResult> {
      if (name !== 'executeCode') throw new Error(`the bench session runs executeCode only, not ${name}`)
      const t0 = performance.now()
      try {
        return await session.runCode({ ...(args as { code: string }), language: 'python', ...(options.signal ? { signal: options.signal } : {}) })
      } finally {
        t.spentMs += performance.now() - t0
      }
    },
    async *invokeStream(
      name: ToolName,
      args: ToolArguments[ToolName],
      options: { signal?: AbortSignal } = {},
    ): AsyncGenerator<ExecutionEvent, ToolResult, undefined> {
      if (name !== 'executeCode') throw new Error(`the bench session runs executeCode only, not ${name}`)
      const t0 = performance.now()
      try {
        return yield* session.executeCode({ ...(args as { code: string }), language: 'python', ...(options.signal ? { signal: options.signal } : {}) })
      } finally {
        t.spentMs += performance.now() - t0
      }
    },
  }
  return t
}

/** Measures `n` samples of each variant after `warmup` unmeasured ones. */
export async function measureAgentOverhead(
  session: BenchSession,
  options: { n: number; warmup: number; signal: AbortSignal; targetName: string },
): Promise<AgentOverheadResults> {
  const servers: ModelServer[] = []
  try {
    const agents = {} as Record<ModelServerProvider, Agent>
    for (const provider of providers) {
      const server = await startModelServer(provider, (req) =>
        req.toolResults.length === 0
          ? { toolUse: { name: 'execute_code', input: { code: CODE } }, usage: { inputTokens: 1000, outputTokens: 20 } }
          : { text: `The output is ${req.toolResults.at(-1)!.trim()}.`, usage: { inputTokens: 1100, outputTokens: 10 } },
      )
      servers.push(server)
      agents[provider] = createAgent(agentOptionsFromEnv({ ...modelEnv(provider, server), CODEBOX_AGENT_MODELS: `${provider}:bench-model` }))
    }
    const results: AgentOverheadResults = {
      target: options.targetName,
      bare: [],
      agent: { anthropic: { turn: [], overhead: [] }, bedrock: { turn: [], overhead: [] }, openai: { turn: [], overhead: [] } },
    }
    const variants: (() => Promise<void>)[] = [
      async () => {
        const target = timedTarget(session)
        const t0 = performance.now()
        const r = await runAgentTool(target, 'execute_code', { code: CODE })
        const took = performance.now() - t0
        if (r.structuredContent.stdout !== '1\n') throw new Error(`bare print(1) gave ${JSON.stringify(r.structuredContent)}`)
        if (record) results.bare.push(took)
      },
      ...providers.map((provider) => async () => {
        const target = timedTarget(session)
        const t0 = performance.now()
        const turn = agents[provider].answer({ prompt: 'Run print(1).', history: [], tools: target })
        let final = ''
        for (;;) {
          const next = await turn.next()
          if (next.done) {
            final = next.value.text
            break
          }
        }
        const took = performance.now() - t0
        if (final !== 'The output is 1.') throw new Error(`${provider}: the agent answered ${JSON.stringify(final)}`)
        if (record) {
          results.agent[provider].turn.push(took)
          results.agent[provider].overhead.push(took - target.spentMs)
        }
      }),
    ]
    let record = false
    for (let i = 0; i < options.warmup + options.n; i++) {
      options.signal.throwIfAborted()
      record = i >= options.warmup
      for (let k = 0; k < variants.length; k++) await variants[(i + k) % variants.length]!()
    }
    return results
  } finally {
    await Promise.all(servers.map((s) => s.close()))
  }
}

/** The results as a Markdown section: latencies, then the overhead against the bare call. */
export function renderAgentOverhead(r: AgentOverheadResults): string {
  const p = (xs: number[], k: 'p50' | 'p95' | 'p99') => summarize(xs)?.[k]
  const latency = table(latencyHeader, [
    latencyRow('bare tool call: runAgentTool execute_code print(1)', r.bare),
    ...providers.flatMap((v) => [
      latencyRow(`agent turn, one tool round trip (${v} wire format)`, r.agent[v].turn),
      latencyRow(`agent's own overhead (turn − tool call) (${v})`, r.agent[v].overhead),
    ]),
  ])
  const ratios = table(
    ['provider', 'overhead p50', 'overhead p95', 'overhead p99', 'turn / bare call (p50)', 'overhead / bare call (p50)'],
    providers.map((v) => {
      const o = r.agent[v].overhead
      return [v, ms(p(o, 'p50')), ms(p(o, 'p95')), ms(p(o, 'p99')), ratio(p(r.agent[v].turn, 'p50'), p(r.bare, 'p50')), ratio(p(o, 'p50'), p(r.bare, 'p50'))]
    }),
  )
  return [
    '### The agent: its own cost per tool round trip',
    `One answer turn per sample on ${r.target}: a scripted model on loopback (the provider's real wire format, driven by the real client library, answering at once) calls execute_code with \`print(1)\`, the tool runs in the session, the model answers from the result (checked). A turn is two model requests and one tool call; "overhead" is the turn's wall time minus the time inside the tool call, so it is what the agent adds (Strands' loop, the two requests, fallback wrapper, event mapping), model latency excluded. The bare row is the same tool call through runAgentTool with no agent. Variants alternate call by call.`,
    latency,
    ratios,
  ].join('\n\n')
}

/** An in-memory session for machines without the sandbox: print(1) answered at once. */
function fakeSession(): BenchSession {
  const result = (): ToolResult => ({
    content: [{ type: 'text', text: '1\n' }],
    structuredContent: { stdout: '1\n', stderr: '', exitCode: 0, executionTime: 0 },
    isError: false,
  })
  return {
    async *executeCode() {
      yield { type: 'stdout', text: '1\n' }
      return result()
    },
    runCode: () => Promise.resolve(result()),
  }
}

async function main(argv: string[]): Promise<void> {
  const quick = argv.includes('--quick')
  const sizes = quick ? { n: 30, warmup: 5 } : { n: 300, warmup: 20 }
  const signal = AbortSignal.any([])
  const sandbox = await import('@codebox/sandbox')
  const config = sandbox.loadEngineConfig(process.env)
  const image = process.getuid?.() === 0 ? await sandbox.findImage(config.stateDir, sandbox.defaultRecipe({ mirror: config.debianMirror })) : undefined
  if (!image) {
    console.error('bench: no root or no sandbox image: the tool runs in an in-memory fake session')
    console.log(renderAgentOverhead(await measureAgentOverhead(fakeSession(), { ...sizes, signal, targetName: 'an in-memory fake session' })))
    return
  }
  const driver = new sandbox.BwrapDriver({ imagePath: image.path })
  await driver.check()
  const manager = new sandbox.SessionManager({ driver, poolSize: 0 })
  try {
    const session = await manager.start()
    console.log(renderAgentOverhead(await measureAgentOverhead(session, { ...sizes, signal, targetName: 'a real bwrap session (Python kernel)' })))
  } finally {
    await manager.close()
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main(process.argv.slice(2))
