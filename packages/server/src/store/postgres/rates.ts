/**
 * Rate limits every replica takes from (RateStore): one token bucket per row, refilled and taken
 * from in one statement on the database's clock. Concurrent takes of one bucket queue on its row.
 */
import type { RateStore } from '../types.ts'
import type { Db } from './db.ts'

/** The bucket's tokens after refilling from `b.updated_ms` to now (EXCLUDED.updated_ms), capped at the burst ($2). */
const refilled = `least($2::float8, b.tokens + greatest(0, EXCLUDED.updated_ms - b.updated_ms) / 1000.0 * $3::float8)`

export class PgRateRepository implements RateStore {
  readonly #db: Db

  constructor(db: Db) {
    this.#db = db
  }

  async take(key: string, spec: { perSecond: number; burst: number }): Promise<{ taken: boolean; tokens: number }> {
    const row = (
      await this.#db.query<{ taken: boolean; tokens: number }>(
        `INSERT INTO rate_buckets AS b (key, tokens, updated_ms, taken)
         VALUES ($1, CASE WHEN $2::float8 >= 1 THEN $2::float8 - 1 ELSE $2::float8 END,
                 (extract(epoch FROM clock_timestamp()) * 1000)::bigint, $2::float8 >= 1)
         ON CONFLICT (key) DO UPDATE SET
           tokens = CASE WHEN ${refilled} >= 1 THEN ${refilled} - 1 ELSE ${refilled} END,
           taken = ${refilled} >= 1,
           updated_ms = greatest(b.updated_ms, EXCLUDED.updated_ms)
         RETURNING taken, tokens`,
        [key, spec.burst, spec.perSecond],
      )
    ).rows[0]!
    return { taken: row.taken, tokens: Number(row.tokens) }
  }
}
