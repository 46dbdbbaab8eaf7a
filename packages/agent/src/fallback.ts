/**
 * The fallback policy as a Strands Model: each model call goes to the first model of the chain
 * that answers. A model that is down, throttled, overloaded, refused, or silent past
 * `modelTimeoutMs` before its reply starts hands over to the next one and cools down (ChainState).
 * Kept small and separate from the loop so Strands' provisional ModelRouter can replace it later.
 *
 * Two repairs on the way through: tool-call arguments are held until their block ends and, when
 * they are not JSON, replaced by a marker the tool turns into an error result the model can fix
 * (Strands would otherwise end the turn); and images are described in text for a model that does
 * not take them.
 */
import { CodeboxError, type ModelSkip } from '@codebox/core'
import {
  ImageBlock,
  Message,
  Model,
  TextBlock,
  ToolResultBlock,
  type BaseModelConfig,
  type ContentBlock,
  type ModelStreamEvent,
  type StreamOptions,
} from '@strands-agents/sdk'
import { ChainState, type Candidate } from './chain.ts'
import { classifyModelError, type ModelFailure } from './failures.ts'
import { ProviderConfigError, type ProviderModel } from './providers.ts'
import type { ModelSpec } from './types.ts'

/** The key under which unparsable tool arguments reach the tool (as `{[key]: rawText}`). */
export const INVALID_JSON_KEY = '__codebox_invalid_json__'

export interface FallbackModelOptions {
  chain: ChainState
  /** Builds (or returns the cached) model of a chain entry for one call; `signal` aborts that call. */
  modelFor(index: number, signal: AbortSignal): ProviderModel
  modelTimeoutMs: number
  /** The chain entry (index) the caller chose: tried first, the rest of the chain stays the fallback. */
  prefer?: number
  scrub(text: string): string
  /** Called when a model's reply starts, with the models skipped before it in this call. */
  onAnswer(spec: ModelSpec, skipped: ModelSkip[]): void
}

export class FallbackModel extends Model<BaseModelConfig> {
  readonly #o: FallbackModelOptions
  #config: BaseModelConfig = {}

  constructor(options: FallbackModelOptions) {
    super()
    this.#o = options
  }

  updateConfig(modelConfig: BaseModelConfig): void {
    this.#config = { ...this.#config, ...modelConfig }
  }

  getConfig(): BaseModelConfig {
    return { ...this.#config, modelId: this.#o.chain.entries[0]?.spec.id ?? 'none' }
  }

  async *stream(messages: Message[], options?: StreamOptions): AsyncGenerator<ModelStreamEvent, void, undefined> {
    const candidates = this.#o.chain.candidates(this.#o.prefer)
    const tried: (ModelSkip & { index: number })[] = []
    for (const candidate of candidates) {
      const outcome = yield* this.#attempt(candidate, candidates, tried, messages, options)
      if (outcome === 'answered') return
      tried.push({ index: candidate.index, model: candidate.spec.id, reason: outcome.reason })
    }
    const list = tried.map((t) => `${t.model}: ${t.reason}`).join('; ')
    throw new CodeboxError('ModelUnavailable', `every model of the chain failed: ${list}`, {
      details: { skipped: tried.map(({ model, reason }) => ({ model, reason })) },
    })
  }

  /** One model's try: its events, or why it failed before its reply started. */
  async *#attempt(
    candidate: Candidate,
    candidates: Candidate[],
    tried: (ModelSkip & { index: number })[],
    messages: Message[],
    options: StreamOptions | undefined,
  ): AsyncGenerator<ModelStreamEvent, 'answered' | ModelFailure, undefined> {
    const { chain, scrub } = this.#o
    const outer = options?.cancelSignal
    const timeout = new AbortController()
    const signal = outer ? AbortSignal.any([outer, timeout.signal]) : timeout.signal
    const timer = setTimeout(() => timeout.abort(new Error(`timed out after ${this.#o.modelTimeoutMs} ms`)), this.#o.modelTimeoutMs)
    let provider: ProviderModel | undefined
    let iterator: AsyncIterator<ModelStreamEvent> | undefined
    let started = false
    let finished = false
    try {
      provider = this.#o.modelFor(candidate.index, signal)
      const input = provider.takesImages ? messages : withoutImages(messages)
      iterator = provider.model.stream(input, { ...options, cancelSignal: signal })[Symbol.asyncIterator]()
      const repair = new ToolInputRepair()
      for (;;) {
        const next = await untilAborted(iterator.next(), signal)
        if (next.done) break
        if (!started) {
          started = true
          this.#o.onAnswer(candidate.spec, ChainState.skipsBefore(candidate.index, tried, candidates, this.#o.prefer))
        }
        for (const event of repair.pass(next.value)) yield event
      }
      finished = true
      chain.recordSuccess(candidate.index)
      return 'answered'
    } catch (error) {
      if (outer?.aborted) throw error
      const failure: ModelFailure = timeout.signal.aborted
        ? { kind: 'unavailable', reason: `timed out: no complete reply within ${this.#o.modelTimeoutMs / 1000} s` }
        : error instanceof ProviderConfigError
          ? { kind: 'refused', reason: `not configured: ${error.message}` }
          : classifyModelError(error, scrub)
      chain.recordFailure(candidate.index, failure.reason)
      if (started) throw new CodeboxError('ModelUnavailable', `${candidate.spec.id} failed in the middle of its reply: ${failure.reason}`, { cause: error })
      return failure
    } finally {
      clearTimeout(timer)
      if (!finished) {
        if (!timeout.signal.aborted) timeout.abort(new Error('model call abandoned'))
        iterator?.return?.().catch(() => {})
      }
      if (provider && !provider.shared) provider.dispose()
    }
  }
}

/** Resolves like `promise`, or rejects as soon as `signal` aborts (a provider that ignores its signal cannot hold a turn). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason as Error)
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error)
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(e as Error)
      },
    )
  })
}

/** Holds a tool call's argument deltas until its block stops, then passes them as one JSON object (or the invalid-JSON marker). */
class ToolInputRepair {
  #buffer: string | undefined;

  *pass(event: ModelStreamEvent): Generator<ModelStreamEvent> {
    if (event.type === 'modelContentBlockStartEvent' && event.start?.type === 'toolUseStart') {
      this.#buffer = ''
      yield event
    } else if (this.#buffer !== undefined && event.type === 'modelContentBlockDeltaEvent' && event.delta.type === 'toolUseInputDelta') {
      this.#buffer += event.delta.input
    } else if (this.#buffer !== undefined && event.type === 'modelContentBlockStopEvent') {
      const raw = this.#buffer
      this.#buffer = undefined
      if (raw.trim() !== '') yield { type: 'modelContentBlockDeltaEvent', delta: { type: 'toolUseInputDelta', input: repairJson(raw) } }
      yield event
    } else yield event
  }
}

function repairJson(raw: string): string {
  try {
    JSON.parse(raw)
    return raw
  } catch {
    return JSON.stringify({ [INVALID_JSON_KEY]: raw.slice(0, 2000) })
  }
}

/** The messages with every image replaced by a line of text saying what it was. */
function withoutImages(messages: Message[]): Message[] {
  const describe = (block: ImageBlock) => {
    const bytes = block.source.type === 'imageSourceBytes' ? `, ${block.source.bytes.length} bytes` : ''
    return new TextBlock(`[image: ${block.format}${bytes}; this model does not take images]`)
  }
  return messages.map((m) => {
    if (!m.content.some((b) => b instanceof ImageBlock || (b instanceof ToolResultBlock && b.content.some((c) => c instanceof ImageBlock)))) return m
    const content: ContentBlock[] = m.content.map((b) => {
      if (b instanceof ImageBlock) return describe(b)
      if (b instanceof ToolResultBlock && b.content.some((c) => c instanceof ImageBlock)) {
        return new ToolResultBlock({
          toolUseId: b.toolUseId,
          status: b.status,
          content: b.content.map((c) => (c instanceof ImageBlock ? describe(c) : c)),
          ...(b.error ? { error: b.error } : {}),
        })
      }
      return b
    })
    return new Message({ role: m.role, content, trackingId: m.trackingId })
  })
}
