/**
 * Per-tenant rate limits as token buckets: session starts and agent turns per minute, invocations
 * per second. A refused call is RateLimited (429) with the seconds until a token is back, which the
 * HTTP layer sends as Retry-After.
 */
import { CodeboxError } from '@codebox/core'

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

export class RateLimiter {
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
    // A quota of 0 never refills: say so with a long wait instead of Infinity.
    const retryAfterSeconds = spec.perSecond > 0 ? Math.max(1, Math.ceil((1 - b.tokens) / spec.perSecond)) : 3600
    throw new CodeboxError('RateLimited', `too many ${what} for this tenant; try again in ${retryAfterSeconds} s`, { details: { retryAfterSeconds } })
  }
}

/** A per-minute quota as a bucket: `n` tokens a minute, bursts of up to `n` (session starts, agent turns). */
export const perMinute = (n: number): RateSpec => ({ perSecond: n / 60, burst: n })
