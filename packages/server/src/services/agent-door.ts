/**
 * What every door of the codebox agent (the runtime contract `/invocations` and `/ws`, the IDE's
 * `/v1/agent` routes, AWS `InvokeAgentRuntime`, A2A) asks of the agent service. The doors are thin
 * mappings onto this; the service (services/agent.ts) owns conversations, their code sessions,
 * memory, quotas and the model chain.
 */
import type { AgentEvent, AgentStatus, AgentTurn, Conversation } from '@codebox/core'
import type { Caller } from './sessions.ts'

export interface TurnRequest {
  caller: Caller
  /** answer: the loop that runs code and answers; generate: code for the user to edit, not run. */
  role: 'answer' | 'generate'
  prompt: string
  /** The generate role's language. Default python. */
  language?: 'python' | 'javascript' | 'typescript'
  /** Continue this conversation (AgentCore's runtime session id); absent: a new conversation with a fresh id (≥ 33 characters, as AWS requires). */
  conversationId?: string
  /** A model of the chain (`provider:model`) to try first; the rest stays the fallback. ValidationError (naming the configured ones) when the chain has no such model. */
  model?: string
  /**
   * The answer role only: run the turn's code in this session of the caller's (the web IDE's own)
   * instead of the conversation's code session. NotFound when the caller has no such session,
   * SessionTerminated when it ended. The conversation does not own it: stopping or deleting the
   * conversation leaves it running.
   */
  sessionId?: string
  /** `X-Amzn-Bedrock-AgentCore-Runtime-User-Id` when sent; default the caller's key id, else `default`. */
  actor?: string
  signal?: AbortSignal
  requestId?: string
}

export interface ConversationPage {
  items: Conversation[]
  nextToken?: string
}

export interface AgentDoor {
  /** Whether CODEBOX_AGENT_MODELS named at least one model. */
  readonly configured: boolean
  /** Whether any agent turn is running now (`/ping` says HealthyBusy). */
  readonly busy: boolean
  /**
   * Runs one turn. Conversations are keyed by (tenant, conversationId): an id this tenant does
   * not have (never used, expired, or used only by another tenant) starts a new conversation with
   * that id, and two tenants using the same id have separate conversations that never see each
   * other's turns. The first event is `turn_start` (with the conversation id, new or given, and
   * the code session of an `answer` turn). Before that event it throws a CodeboxError:
   * ModelNotConfigured (503, the message says what to set), ValidationError (empty or too long
   * prompt, malformed conversation id), Conflict (a turn of this conversation is already running),
   * RateLimited (the tenant's agent-turn quota, with `details.retryAfterSeconds`), or a code
   * session's start failure (QuotaExceeded, HostCapacity, ...). After it, a failure arrives as an
   * `error` event and the generator returns the stored turn with outcome `error` (`canceled` when
   * the caller's signal aborted, the conversation was stopped, or the reader returned early).
   * Every turn is stored (memory) before the generator returns.
   */
  turn(request: TurnRequest): AsyncGenerator<AgentEvent, AgentTurn, undefined>
  /** AWS StopRuntimeSession: ends the conversation's running turn and its code session; its memory stays until its TTL. NotFound for unknown/foreign ids. */
  stopConversation(caller: Caller, conversationId: string): Promise<void>
  /** Removes a conversation and its memory (cancelling its running turn, stopping its code session). NotFound for ids the tenant does not have. */
  deleteConversation(caller: Caller, conversationId: string): Promise<void>
  /** The tenant's live conversations, most recently updated first; `nextToken` pages on. */
  listConversations(caller: Caller, options: { limit: number; nextToken?: string }): Promise<ConversationPage>
  /** A conversation and all its turns, oldest first. NotFound for ids the tenant does not have (unknown, expired or another tenant's). */
  history(caller: Caller, conversationId: string): Promise<{ conversation: Conversation; turns: AgentTurn[] }>
  /** The configured model chain and how each model fared (works without a model: `configured` false and the hint). */
  status(): AgentStatus
}
