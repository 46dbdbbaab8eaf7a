/**
 * The model chain's memory across turns: which model failed, why, and until when it is skipped
 * (the cool-down), which answered last. A failed model is tried again first once its cool-down is
 * over, not on every call; while every model is cooling down they are still tried, in chain
 * order, rather than failing a turn without asking anyone. status() is the `/v1/agent/status` view.
 */
import type { AgentStatus, ModelSkip } from '@codebox/core'
import type { ModelSpec } from './types.ts'

interface EntryState {
  spec: ModelSpec
  endpoint?: string
  lastError?: string
  /** When the last failure's cool-down ends (epoch ms). */
  retryAt?: number
  /** The last call's outcome. */
  lastOk?: boolean
}

/** One model to try, and whether it is only tried because nothing else is left. */
export interface Candidate {
  index: number
  spec: ModelSpec
  /** Set when the model is cooling down: the skip reason if another model answers. */
  cooling?: string
}

export class ChainState {
  readonly entries: EntryState[]
  #lastAnswered?: { model: string; at: string }
  readonly #retryAfterMs: number
  readonly #now: () => number

  constructor(specs: ModelSpec[], options: { retryAfterMs: number; endpointOf: (spec: ModelSpec) => string | undefined; now?: () => number }) {
    this.entries = specs.map((spec) => {
      const endpoint = options.endpointOf(spec)
      return { spec, ...(endpoint ? { endpoint } : {}) }
    })
    this.#retryAfterMs = options.retryAfterMs
    this.#now = options.now ?? Date.now
  }

  /**
   * The order to try models in now: those not cooling down in chain order, then the cooling ones.
   * `prefer` (an entry's index, a caller's choice) goes first even while it cools down.
   */
  candidates(prefer?: number): Candidate[] {
    const now = this.#now()
    const ready: Candidate[] = []
    const cooling: Candidate[] = []
    const chosen = prefer !== undefined && this.entries[prefer] ? [{ index: prefer, spec: this.entries[prefer].spec }] : []
    this.entries.forEach((e, index) => {
      if (index === prefer) return
      if (e.retryAt !== undefined && e.retryAt > now) {
        cooling.push({ index, spec: e.spec, cooling: `cooling down until ${new Date(e.retryAt).toISOString()} after: ${e.lastError ?? 'a failure'}` })
      } else ready.push({ index, spec: e.spec })
    })
    return [...chosen, ...ready, ...cooling]
  }

  recordFailure(index: number, reason: string): void {
    const e = this.entries[index]!
    e.lastError = reason
    e.lastOk = false
    e.retryAt = this.#now() + this.#retryAfterMs
  }

  recordSuccess(index: number): void {
    const e = this.entries[index]!
    e.lastOk = true
    delete e.retryAt
    this.#lastAnswered = { model: e.spec.id, at: new Date(this.#now()).toISOString() }
  }

  /**
   * The skips to report when `answered` answers: failures of this call, and cooling models before
   * it in the chain (none when the caller chose the model that answered: nothing was skipped).
   */
  static skipsBefore(answered: number, tried: (ModelSkip & { index: number })[], candidates: Candidate[], prefer?: number): ModelSkip[] {
    const triedIndexes = new Set(tried.map((t) => t.index))
    const cooled = candidates
      .filter((c) => answered !== prefer && c.cooling && c.index < answered && !triedIndexes.has(c.index))
      .map((c) => ({ index: c.index, model: c.spec.id, reason: c.cooling! }))
    return [...tried, ...cooled].sort((a, b) => a.index - b.index).map(({ model, reason }) => ({ model, reason }))
  }

  /** The status view (no credentials: endpoints are base URLs, errors are scrubbed when recorded). */
  status(hint: string | undefined): AgentStatus {
    const now = this.#now()
    return {
      configured: this.entries.length > 0,
      ...(hint ? { hint } : {}),
      models: this.entries.map((e) => {
        const cooling = e.retryAt !== undefined && e.retryAt > now
        return {
          model: e.spec.id,
          provider: e.spec.provider,
          ...(e.endpoint ? { endpoint: e.endpoint } : {}),
          state: cooling ? 'cooling-down' : e.lastOk ? 'ok' : 'unknown',
          ...(e.lastError ? { lastError: e.lastError } : {}),
          ...(cooling ? { retryAt: new Date(e.retryAt!).toISOString() } : {}),
        }
      }),
      ...(this.#lastAnswered ? { lastAnswered: this.#lastAnswered } : {}),
    }
  }
}
