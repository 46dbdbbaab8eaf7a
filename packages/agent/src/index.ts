/**
 * @codebox/agent: the codebox agent. A model fallback chain (Anthropic, Bedrock, any
 * OpenAI-compatible server) configured by CODEBOX_AGENT_MODELS, and a Strands loop that answers by
 * running code in the conversation's codebox session, or generates code for the user to edit.
 * The host (the codebox server) owns conversations, their code sessions, memory and the doors.
 * `loadAgent` imports the Strands loop only when a model is configured; `createAgent` (the loop
 * itself) is at `@codebox/agent/loop`.
 */
export { loadAgent, unconfiguredAgent } from './load.ts'
export { agentOptionsFromEnv, defaultLimits, defaultRetryAfterMs, describeMissingModel, parseModelChain, resolveLimits } from './config.ts'
export { makeScrubber, secretVariables } from './failures.ts'
export { extractCode } from './prompts.ts'
export type { Agent, AgentLimits, AgentOptions, AnswerRequest, GenerateRequest, HistoryTurn, ModelSpec, TurnResult } from './types.ts'
