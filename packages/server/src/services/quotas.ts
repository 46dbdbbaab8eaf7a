/**
 * Per-tenant rate limits as token buckets: session starts and agent turns per minute, invocations
 * per second. A refused call is RateLimited (429) with the seconds until a token is back, which the
 * HTTP layer sends as Retry-After. One server (SQLite) keeps its buckets in memory; replicas
 * sharing PostgreSQL take from buckets in the store (RateStore), so a tenant gets its rate across
 * all of them, not once per replica.
 */
import { CodeboxError } from '@codebox/core'
import type { RateStore } from '../store/index.ts'

/** Where a server takes its tokens: in memory (RateLimiter) or in the store replicas share (SharedRateLimiter). */
export interface Rates {
  /** Takes one token for `key`, or throws RateLimited saying when to try again. */
  take(key: string, spec: RateSpec, what: string): void | Promise<void>
}

/** The rate limiter of a store: the shared one when the store has buckets (PostgreSQL), else one in memory. */
export function ratesFor(store: { rates?: RateStore }): Rates {
  return store.rates ? new SharedRateLimiter(store.rates) : new RateLimiter()
}

interface Bucket {
  tokens: number
  updatedAt: number
}

export interface RateSpec {
  /** Tokens added per second. */
  perSecond: number
  /** Most tokens a bucket holds (the burst). */
  burst: number
}

export class RateLimiter implements Rates {
  private readonly buckets = new Map<string, Bucket>()
  private readonly now: () => number

  constructor(now: () => number = () => performance.now()) {
    this.now = now
  }

  /** Takes one token for `key`, or throws RateLimited saying when to try again. */
  take(key: string, spec: RateSpec, what: string): void {
    const t = this.now()
    const b = this.buckets.get(key) ?? { tokens: spec.burst, updatedAt: t }
    b.tokens = Math.min(spec.burst, b.tokens + ((t - b.updatedAt) / 1000) * spec.perSecond)
    b.updatedAt = t
    this.buckets.set(key, b)
    if (b.tokens >= 1) {
      b.tokens -= 1
      return
    }
    throw rateLimited(b.tokens, spec, what)
  }
}

/** Token buckets in the store every replica shares, on the database's clock. */
export class SharedRateLimiter implements Rates {
  private readonly store: RateStore

  constructor(store: RateStore) {
    this.store = store
  }

  async take(key: string, spec: RateSpec, what: string): Promise<void> {
    const { taken, tokens } = await this.store.take(key, spec)
    if (!taken) throw rateLimited(tokens, spec, what)
  }
}

/** The refusal of a bucket holding `tokens` (less than one): RateLimited with the seconds until one is back. */
function rateLimited(tokens: number, spec: RateSpec, what: string): CodeboxError {
  // A quota of 0 never refills: say so with a long wait instead of Infinity.
  const retryAfterSeconds = spec.perSecond > 0 ? Math.max(1, Math.ceil((1 - tokens) / spec.perSecond)) : 3600
  return new CodeboxError('RateLimited', `too many ${what} for this tenant; try again in ${retryAfterSeconds} s`, { details: { retryAfterSeconds } })
}

/** A per-minute quota as a bucket: `n` tokens a minute, bursts of up to `n` (session starts, agent turns). */
export const perMinute = (n: number): RateSpec => ({ perSecond: n / 60, burst: n })
