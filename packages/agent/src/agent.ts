/**
 * createAgent: the codebox agent on Strands. `answer` runs the loop (the model writes code, the
 * tools run it in the conversation's code session, the model answers from the output); `generate`
 * asks for code the user will edit. Both stream AgentEvents in order (`model`, `text`, `tool_use`,
 * `tool_output`, `tool_result`, then `final` or `error`) and enforce the turn's limits: model calls,
 * tokens, wall time, and the caller's cancellation, which also stops the running tool call.
 */
import { CodeboxError, validationError, type AgentEvent, type AgentUsage, type ModelSkip } from '@codebox/core'
import {
  Agent as StrandsAgent,
  ExecuteToolStage,
  Message,
  TextBlock,
  ToolResultBlock,
  configureLogging,
  type AgentResult,
  type AgentStreamEvent,
  type ContentBlock,
  type ExecuteToolContext,
  type ExecuteToolResult,
} from '@strands-agents/sdk'
import { ChainState } from './chain.ts'
import { defaultRetryAfterMs, describeMissingModel, resolveLimits } from './config.ts'
import { FallbackModel, INVALID_JSON_KEY } from './fallback.ts'
import { makeScrubber, oneLine } from './failures.ts'
import { answerSystemPrompt, extractCode, generateSystemPrompt } from './prompts.ts'
import { createProviderModel, publicEndpoint, type ProviderModel } from './providers.ts'
import { codeboxTools, unknownToolMessage, type ToolOutputData, type ToolTurn } from './tools.ts'
import type { Agent, AgentLimits, AgentOptions, AnswerRequest, GenerateRequest, HistoryTurn, TurnResult } from './types.ts'

/** Creates the agent. Nothing is contacted until a turn runs; an empty chain answers every turn with ModelNotConfigured. */
export function createAgent(options: AgentOptions): Agent {
  const env = options.env ?? process.env
  const limits = resolveLimits(options.limits)
  const retryAfterMs = options.retryAfterMs ?? defaultRetryAfterMs
  if (!Number.isInteger(retryAfterMs) || retryAfterMs < 0)
    throw validationError('retryAfterMs', `must be a whole number of ms ≥ 0, got ${String(retryAfterMs)}`)
  const scrub = makeScrubber(env)
  quietStrandsLogging(scrub)
  const chain = new ChainState(options.models, { retryAfterMs, endpointOf: (spec) => publicEndpoint(spec, env) })
  const shared = new Map<number, ProviderModel>()
  const modelFor = (index: number, signal: AbortSignal): ProviderModel => {
    const cached = shared.get(index)
    if (cached) return cached
    const made = createProviderModel(chain.entries[index]!.spec, env, limits.maxTokensPerCall, signal)
    if (made.shared) shared.set(index, made)
    return made
  }
  const context: TurnContext = { chain, modelFor, limits, scrub }
  return {
    answer: (request) => runTurn(context, { ...request, role: 'answer', systemPrompt: options.systemPrompt ?? answerSystemPrompt }),
    generate: (request) => runTurn(context, { ...request, role: 'generate', systemPrompt: generateSystemPrompt(request.language) }),
    status: () => chain.status(options.models.length ? undefined : describeMissingModel()),
  }
}

interface TurnContext {
  chain: ChainState
  modelFor(index: number, signal: AbortSignal): ProviderModel
  limits: AgentLimits
  scrub(text: string): string
}

type TurnRequest = ((AnswerRequest & { role: 'answer' }) | (GenerateRequest & { role: 'generate' })) & { systemPrompt: string }

/** One turn: Strands' loop over the fallback model, its events mapped onto AgentEvents. */
async function* runTurn(ctx: TurnContext, request: TurnRequest): AsyncGenerator<AgentEvent, TurnResult, undefined> {
  if (ctx.chain.entries.length === 0) return yield* fail(new CodeboxError('ModelNotConfigured', describeMissingModel()))
  if (request.signal?.aborted) return yield* fail(abortError(request.signal))
  const prefer = request.model === undefined ? undefined : ctx.chain.entries.findIndex((e) => e.spec.id === request.model)
  if (prefer === -1) return yield* fail(unknownModel(ctx, request.model!))

  const state: TurnState = { stop: new AbortController(), timedOut: false, skipped: [], ...(prefer !== undefined ? { prefer } : {}) }
  const timer = setTimeout(() => {
    state.timedOut = true
    state.stop.abort()
  }, ctx.limits.turnTimeoutMs)
  const cancelSignal = request.signal ? AbortSignal.any([state.stop.signal, request.signal]) : state.stop.signal
  const agent = strandsAgent(ctx, request, state)

  const usage: AgentUsage = { inputTokens: 0, outputTokens: 0 }
  let text = ''
  let result: AgentResult | undefined
  let thrown: unknown
  const stream = agent.stream(request.prompt, { cancelSignal, limits: { turns: ctx.limits.maxSteps, totalTokens: ctx.limits.maxTurnTokens } })
  try {
    for (;;) {
      const next = await stream.next()
      if (next.done) {
        result = next.value
        break
      }
      const mapped = mapEvent(next.value, state.toolTurn, usage)
      if (mapped.length && state.modelEvent) {
        yield state.modelEvent
        delete state.modelEvent
      }
      if (next.value.type === 'modelStreamUpdateEvent' && next.value.event.type === 'modelMessageStartEvent') text = ''
      for (const event of mapped) {
        if (event.type === 'text') text += event.delta
        yield event
      }
    }
  } catch (error) {
    thrown = error
  } finally {
    clearTimeout(timer)
    if (!result && thrown === undefined) {
      // The caller stopped reading: end the loop and the running tool call.
      state.stop.abort()
      void stream.return(undefined as never).catch(() => {})
    }
  }

  const ended = turnError({ ctx, request, fatal: state.fatal, timedOut: state.timedOut, thrown, stopReason: result?.stopReason })
  if (ended) return yield* fail(ended)
  const final: TurnResult = { text, model: state.answering ?? ctx.chain.entries[0]!.spec.id, skipped: state.skipped, stopReason: result!.stopReason, usage }
  if (request.role === 'generate') {
    final.code = extractCode(text, request.language)
    final.language = request.language
  }
  yield { type: 'final', ...final }
  return final
}

/** What a turn's parts tell each other: the stop switch, why it was pulled, and who answers. */
interface TurnState {
  /** Aborted by the turn timeout or a fatal tool error (the caller's signal is separate). */
  stop: AbortController
  fatal?: unknown
  timedOut: boolean
  /** Every model skipped during the turn, and why. */
  skipped: ModelSkip[]
  /** The chain entry the caller chose to try first. */
  prefer?: number
  /** The model answering now, and the `model` event not yet sent for it. */
  answering?: string
  modelEvent?: AgentEvent
  /** The answer role's tool calls. */
  toolTurn?: ToolTurn
}

/** The Strands agent of one turn: the fallback model, the tools bound to the turn's session, the history. */
function strandsAgent(ctx: TurnContext, request: TurnRequest, state: TurnState): StrandsAgent {
  const model = new FallbackModel({
    chain: ctx.chain,
    modelFor: ctx.modelFor,
    modelTimeoutMs: ctx.limits.modelTimeoutMs,
    ...(state.prefer !== undefined ? { prefer: state.prefer } : {}),
    scrub: ctx.scrub,
    onAnswer(spec, skips) {
      for (const s of skips) if (!state.skipped.some((k) => k.model === s.model && k.reason === s.reason)) state.skipped.push(s)
      if (spec.id !== state.answering) state.modelEvent = { type: 'model', model: spec.id, skipped: skips }
      state.answering = spec.id
    },
  })
  if (request.role === 'answer') {
    state.toolTurn = {
      target: request.tools,
      outcomes: new Map(),
      fail(error) {
        state.fatal ??= error
        state.stop.abort()
      },
    }
  }
  const agent = new StrandsAgent({
    model,
    tools: state.toolTurn ? codeboxTools(state.toolTurn) : [],
    systemPrompt: request.systemPrompt,
    messages: historyMessages(request.history),
    printer: false,
    retryStrategy: null,
    toolExecutor: 'sequential',
  })
  if (state.toolTurn) agent.addMiddleware(ExecuteToolStage, unknownToolMiddleware(state.toolTurn))
  return agent
}

/** The ValidationError of a turn that names a model the chain does not have. */
function unknownModel(ctx: TurnContext, model: string): CodeboxError {
  const ids = ctx.chain.entries.map((e) => e.spec.id).join(', ')
  return validationError('model', `must be one of the configured models (${ids}), got ${JSON.stringify(model.slice(0, 100))}`)
}

/** Why the turn failed, as the error to throw, or undefined when it answered. */
function turnError(o: {
  ctx: TurnContext
  request: TurnRequest
  fatal: unknown
  timedOut: boolean
  thrown: unknown
  stopReason: string | undefined
}): Error | undefined {
  const { limits } = o.ctx
  if (o.fatal !== undefined) return o.fatal instanceof Error ? o.fatal : new CodeboxError('Internal', String(o.fatal))
  if (o.timedOut) return new CodeboxError('Timeout', `the turn ran longer than ${limits.turnTimeoutMs / 1000} s (CODEBOX_AGENT_TURN_TIMEOUT_SECONDS)`)
  if (o.request.signal?.aborted) return abortError(o.request.signal)
  if (o.thrown !== undefined) {
    const known = findCodeboxError(o.thrown)
    if (known) return known
    const name = (o.thrown as Error)?.name
    if (name === 'MaxTokensError')
      return new CodeboxError(
        'LimitExceeded',
        `the model's reply reached its ${limits.maxTokensPerCall} tokens (CODEBOX_AGENT_MAX_TOKENS) before it was complete`,
      )
    return new CodeboxError('Internal', `the agent loop failed: ${oneLine(o.ctx.scrub((o.thrown as Error)?.message ?? String(o.thrown)))}`, { cause: o.thrown })
  }
  if (o.stopReason === 'limitTurns')
    return new CodeboxError('LimitExceeded', `the turn used its ${limits.maxSteps} model calls (CODEBOX_AGENT_MAX_STEPS) without reaching an answer`)
  if (o.stopReason === 'limitTotalTokens' || o.stopReason === 'limitOutputTokens')
    return new CodeboxError('LimitExceeded', `the turn used more than ${limits.maxTurnTokens} tokens (CODEBOX_AGENT_TURN_TOKENS) without reaching an answer`)
  if (o.stopReason === 'cancelled') return new CodeboxError('Internal', 'the agent loop stopped without a reason')
  return undefined
}

/** Yields the `error` event for `error` and throws it. */
async function* fail(error: Error): AsyncGenerator<AgentEvent, never, undefined> {
  const code = error instanceof CodeboxError ? error.code : error.name === 'AbortError' ? 'Canceled' : 'Internal'
  yield { type: 'error', code, message: error.message }
  throw error
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason
  if (reason instanceof Error && reason.name === 'AbortError') return reason
  return new DOMException(reason instanceof Error ? reason.message : 'the turn was canceled', 'AbortError')
}

function findCodeboxError(error: unknown): CodeboxError | undefined {
  for (let e = error, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) if (e instanceof CodeboxError) return e
  return undefined
}

/** Earlier turns as alternating user/assistant messages. */
function historyMessages(history: HistoryTurn[]): Message[] {
  return history.flatMap((turn) => [
    new Message({ role: 'user', content: [new TextBlock(turn.prompt)] }),
    new Message({ role: 'assistant', content: [new TextBlock(turn.answer.trim() === '' ? '(no answer)' : turn.answer)] }),
  ])
}

/** Maps one Strands event onto the AgentEvents it stands for (most map to none). */
function mapEvent(event: AgentStreamEvent, turn: ToolTurn | undefined, usage: AgentUsage): AgentEvent[] {
  switch (event.type) {
    case 'modelStreamUpdateEvent': {
      const e = event.event
      if (e.type === 'modelContentBlockDeltaEvent' && e.delta.type === 'textDelta' && e.delta.text) return [{ type: 'text', delta: e.delta.text }]
      if (e.type === 'modelMetadataEvent' && e.usage) {
        usage.inputTokens += e.usage.inputTokens
        usage.outputTokens += e.usage.outputTokens
      }
      return []
    }
    case 'contentBlockEvent':
      return event.contentBlock.type === 'toolUseBlock' ? [toolUseEvent(event.contentBlock)] : []
    case 'toolStreamUpdateEvent': {
      const out = (event.event.data as Partial<ToolOutputData> | undefined)?.codeboxOutput
      return out ? [{ type: 'tool_output', toolUseId: out.toolUseId, stream: out.stream, text: out.text }] : []
    }
    case 'toolResultEvent': {
      const r = event.result
      const outcome = turn?.outcomes.get(r.toolUseId)
      const text = outcome?.text ?? r.content.map((c) => (c instanceof TextBlock ? c.text : '')).join('\n')
      return [
        {
          type: 'tool_result',
          toolUseId: r.toolUseId,
          isError: outcome?.isError ?? r.status === 'error',
          text,
          ...(outcome?.exitCode !== undefined ? { exitCode: outcome.exitCode } : {}),
          images: outcome?.images ?? [],
        },
      ]
    }
    default:
      return []
  }
}

function toolUseEvent(block: Extract<ContentBlock, { type: 'toolUseBlock' }>): AgentEvent {
  const raw: unknown = block.input
  const input = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as Record<string, unknown>) : { value: raw }
  const extra: { code?: string; language?: string } = {}
  if (block.name === 'execute_code' && typeof input.code === 'string') {
    extra.code = input.code
    extra.language = typeof input.language === 'string' ? input.language : 'python'
  } else if (block.name === 'execute_command' && typeof input.command === 'string') extra.code = input.command
  if (INVALID_JSON_KEY in input) return { type: 'tool_use', toolUseId: block.toolUseId, name: block.name, input }
  return { type: 'tool_use', toolUseId: block.toolUseId, name: block.name, input, ...extra }
}

/** A call to a tool that does not exist gets an error result naming the tools, and the loop goes on. */
function unknownToolMiddleware(turn: ToolTurn) {
  return async function* (context: ExecuteToolContext, next: (c: ExecuteToolContext) => AsyncGenerator<AgentStreamEvent, ExecuteToolResult, undefined>) {
    if (context.tool) return yield* next(context)
    const text = unknownToolMessage(context.toolUse.name)
    turn.outcomes.set(context.toolUse.toolUseId, { isError: true, text, images: [] })
    return { result: new ToolResultBlock({ toolUseId: context.toolUse.toolUseId, status: 'error', content: [new TextBlock(text)] }) }
  }
}

const logScrubbers: ((text: string) => string)[] = []
/** Strands logs warnings and errors to the console; route them through every agent's scrubber, one line each. */
function quietStrandsLogging(scrub: (text: string) => string): void {
  logScrubbers.push(scrub)
  if (logScrubbers.length > 32) logScrubbers.shift()
  if (logScrubbers.length > 1) return
  const line = (args: unknown[]) =>
    oneLine(
      logScrubbers.reduce((text, s) => s(text), args.map((a) => (a instanceof Error ? a.message : typeof a === 'string' ? a : JSON.stringify(a))).join(' ')),
    )
  configureLogging({
    debug: () => {},
    info: () => {},
    warn: (...args: unknown[]) => console.warn(`[codebox-agent] ${line(args)}`),
    error: (...args: unknown[]) => console.error(`[codebox-agent] ${line(args)}`),
  })
}
