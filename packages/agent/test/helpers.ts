/**
 * Helpers for agent tests: run a turn to its end (events, result or thrown error), and start
 * scripted model servers that always close.
 */
import type { TestContext } from 'node:test'
import type { AgentEvent } from '@codebox/core'
import type { TurnResult } from '../src/index.ts'
import { startModelServer, type ModelServer, type ModelServerProvider, type ScriptedReply, type ModelRequestView } from './model-servers.ts'

export interface TurnOutcome {
  events: AgentEvent[]
  result?: TurnResult
  error?: Error
}

/** Runs a turn's generator to its end; `onEvent` may act mid-turn (cancel, say). */
export async function drain(turn: AsyncGenerator<AgentEvent, TurnResult, undefined>, onEvent?: (event: AgentEvent) => void): Promise<TurnOutcome> {
  const events: AgentEvent[] = []
  try {
    for (;;) {
      const next = await turn.next()
      if (next.done) return { events, result: next.value }
      events.push(next.value)
      onEvent?.(next.value)
    }
  } catch (error) {
    return { events, error: error as Error }
  }
}

/** A scripted model server closed when the test ends. */
export async function modelServer(
  t: TestContext,
  provider: ModelServerProvider,
  script: ScriptedReply[] | ((req: ModelRequestView, index: number) => ScriptedReply),
): Promise<ModelServer> {
  const server = await startModelServer(provider, script)
  t.after(() => server.close())
  return server
}

/** The event types in order, text deltas merged into one `text`. */
export function shape(events: AgentEvent[]): string[] {
  const out: string[] = []
  for (const e of events) if (!(e.type === 'text' && out.at(-1) === 'text')) out.push(e.type)
  return out
}

/** The model ids named in the chain for one entry per provider. */
export const modelIds = { anthropic: 'claude-sonnet-4-5', bedrock: 'us.anthropic.claude-3-7-sonnet-20250219-v1:0', openai: 'llama3.1:8b' } as const
