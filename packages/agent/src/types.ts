/**
 * The agent package's contract with its host (the codebox server): the agent knows models, tools
 * and the loop; the host owns conversations, their code sessions, memory, auth and the doors.
 */
import type { AgentEvent, AgentProvider, AgentStatus, AgentUsage, ModelSkip } from '@codebox/core'
import type { ToolTarget } from '@codebox/tools'

/** One entry of `CODEBOX_AGENT_MODELS`: `provider:model[@endpoint]`, split at the first colon. */
export interface ModelSpec {
  provider: AgentProvider
  /** The provider's model id (may contain colons: Bedrock ids, Ollama tags). */
  model: string
  /** Base URL of this entry's own server (`@http://127.0.0.1:11434/v1`); default the provider's variable. */
  endpoint?: string
  /** `provider:model`, as events, status and stored turns name it (never the endpoint's credentials). */
  id: string
}

/** What the agent may spend on one turn. */
export interface AgentLimits {
  /** Model calls (each tool round trip is one) per turn. Default 20. */
  maxSteps: number
  /** `maxTokens` of each model call. Default 4096. */
  maxTokensPerCall: number
  /** Input + output tokens of a whole turn; the turn ends with an error past it. Default 200000. */
  maxTurnTokens: number
  /** Wall time of a whole turn, ms. Default 600000. */
  turnTimeoutMs: number
  /** One model request (connect to last byte) before it counts as failed and the next model is tried, ms. Default 120000. */
  modelTimeoutMs: number
}

export interface AgentOptions {
  /** The ordered chain; empty means no model is configured (every turn fails with ModelNotConfigured). */
  models: ModelSpec[]
  /** Where credentials and endpoints are read (ANTHROPIC_API_KEY, OPENAI_BASE_URL, AWS_REGION, ...). Default process.env. */
  env?: Record<string, string | undefined>
  /** After a model fails, how long it is skipped before it is tried first again, ms. Default 60000. */
  retryAfterMs?: number
  limits?: Partial<AgentLimits>
  /** Replaces the built-in "verify by execution" system prompt of the answer role. */
  systemPrompt?: string
}

/** An earlier turn, restored into the model's context when a conversation resumes. */
export interface HistoryTurn {
  prompt: string
  /** The final answer of that turn. */
  answer: string
}

export interface AnswerRequest {
  prompt: string
  /** Earlier turns of the conversation, oldest first. */
  history: HistoryTurn[]
  /** The conversation's code session: where execute_code and the other tools run. */
  tools: ToolTarget
  /** A chain entry's id (`provider:model`) to try first; the rest of the chain stays the fallback. Unknown ids fail the turn with ValidationError. */
  model?: string
  signal?: AbortSignal
}

export interface GenerateRequest {
  prompt: string
  language: 'python' | 'javascript' | 'typescript'
  history: HistoryTurn[]
  /** As AnswerRequest's. */
  model?: string
  signal?: AbortSignal
}

/** How a turn ended; the same facts as its `final` event. */
export interface TurnResult {
  text: string
  model: string
  skipped: ModelSkip[]
  stopReason: string
  usage: AgentUsage
  /** Generate role: the code block extracted from the reply. */
  code?: string
  language?: string
}

/**
 * The agent. `answer` and `generate` yield events (never `turn_start`, which the host adds) and
 * return the result; a failure is thrown as a CodeboxError (ModelNotConfigured, ModelUnavailable,
 * LimitExceeded, Timeout, or the caller's AbortError) after an `error` event was yielded.
 */
export interface Agent {
  answer(request: AnswerRequest): AsyncGenerator<AgentEvent, TurnResult, undefined>
  generate(request: GenerateRequest): AsyncGenerator<AgentEvent, TurnResult, undefined>
  status(): AgentStatus
}
