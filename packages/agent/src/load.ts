/**
 * loadAgent: the agent for the host's options, with the heavy parts loaded only when needed. The
 * Strands loop and the provider clients take seconds to import; a server without a model never
 * loads them, and every turn there fails with ModelNotConfigured, whose message says what to set.
 */
import { CodeboxError, type AgentEvent } from '@codebox/core'
import { describeMissingModel } from './config.ts'
import type { Agent, AgentOptions, TurnResult } from './types.ts'

/** The agent of `options`: the Strands loop when `options.models` names a model, else one that says what to configure. */
export async function loadAgent(options: AgentOptions): Promise<Agent> {
  if (options.models.length === 0) return unconfiguredAgent()
  const { createAgent } = await import('./agent.ts')
  return createAgent(options)
}

/** The agent of a server without CODEBOX_AGENT_MODELS: every turn is an `error` event and a ModelNotConfigured throw. */
export function unconfiguredAgent(): Agent {
  const hint = describeMissingModel()
  async function* refuse(): AsyncGenerator<AgentEvent, TurnResult, undefined> {
    const error = new CodeboxError('ModelNotConfigured', hint)
    yield { type: 'error', code: error.code, message: error.message }
    throw error
  }
  return { answer: refuse, generate: refuse, status: () => ({ configured: false, hint, models: [] }) }
}
