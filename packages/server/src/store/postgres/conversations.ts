/** The agent's short-term memory, in PostgreSQL (the SQLite store's conversations.ts has the records and rules). */
import type { AgentTurn, Conversation } from '@codebox/core'
import { CodeboxError } from '@codebox/core'
import {
  pageKind,
  toConversation,
  toTurn,
  turnValues,
  type ConversationRow,
  type ConversationStore,
  type ListConversationsOptions,
  type NewConversation,
  type NewTurn,
  type TurnRow,
} from '../conversations.ts'
import { checkPageLimit, decodePageToken, encodePageToken, isoNow, type Page } from '../sql.ts'
import { isUniqueViolation, type Db } from './db.ts'

const columns = `c.*, (SELECT count(*) FROM conversation_turns t WHERE t.tenant = c.tenant AND t.conversation_id = c.conversation_id) AS turns`

export class PgConversationRepository implements ConversationStore {
  readonly #db: Db

  constructor(db: Db) {
    this.#db = db
  }

  async get(tenant: string, conversationId: string, now: Date = new Date()): Promise<Conversation | undefined> {
    const row = (
      await this.#db.query<ConversationRow>(`SELECT ${columns} FROM conversations c WHERE c.tenant = $1 AND c.conversation_id = $2 AND c.expires_at > $3`, [
        tenant,
        conversationId,
        isoNow(now),
      ])
    ).rows[0]
    return row && toConversation(row)
  }

  async create(c: NewConversation): Promise<Conversation> {
    const at = isoNow(c.createdAt)
    try {
      await this.#db.tx(async (q) => {
        await q.query('DELETE FROM conversations WHERE tenant = $1 AND conversation_id = $2 AND expires_at <= $3', [c.tenant, c.conversationId, at])
        await q.query(
          `INSERT INTO conversations (tenant, conversation_id, actor, title, session_id, created_at, last_updated_at, expires_at)
           VALUES ($1, $2, $3, $4, NULL, $5, $5, $6)`,
          [c.tenant, c.conversationId, c.actor, c.title, at, isoNow(c.expiresAt)],
        )
      })
    } catch (e) {
      if (!isUniqueViolation(e)) throw e
      throw new CodeboxError('Conflict', `conversation ${c.conversationId} already exists`, { cause: e })
    }
    return { conversationId: c.conversationId, actor: c.actor, title: c.title, turns: 0, createdAt: at, lastUpdatedAt: at, expiresAt: isoNow(c.expiresAt) }
  }

  async setSession(tenant: string, conversationId: string, sessionId: string | undefined): Promise<void> {
    await this.#db.query('UPDATE conversations SET session_id = $1 WHERE tenant = $2 AND conversation_id = $3', [sessionId ?? null, tenant, conversationId])
  }

  async appendTurn(turn: NewTurn, expiresAt: Date): Promise<AgentTurn | undefined> {
    return this.#db.tx(async (c) => {
      // The update locks the conversation's row: a delete from another replica waits, or wins first.
      const moved = await c.query(
        `UPDATE conversations SET last_updated_at = $1, expires_at = $2 WHERE tenant = $3 AND conversation_id = $4 AND expires_at > $1`,
        [turn.createdAt, isoNow(expiresAt), turn.tenant, turn.conversationId],
      )
      if (!moved.rowCount) return undefined
      const row = (
        await c.query<{ turn_id: number }>(
          `INSERT INTO conversation_turns (tenant, conversation_id, role, prompt, text, outcome, model, skipped, usage, events, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING turn_id`,
          turnValues(turn),
        )
      ).rows[0]!
      const { tenant: _tenant, ...rest } = turn
      return { turnId: row.turn_id, ...rest }
    })
  }

  async turns(tenant: string, conversationId: string, limit = 10_000): Promise<AgentTurn[]> {
    checkPageLimit(limit)
    const rows = await this.#db.query<TurnRow>(
      `SELECT * FROM (SELECT * FROM conversation_turns WHERE tenant = $1 AND conversation_id = $2 ORDER BY turn_id DESC LIMIT $3) t ORDER BY turn_id`,
      [tenant, conversationId, limit],
    )
    return rows.rows.map(toTurn)
  }

  async list(options: ListConversationsOptions): Promise<Page<Conversation>> {
    checkPageLimit(options.limit)
    const after = options.nextToken === undefined ? undefined : decodePageToken(pageKind, options.nextToken, { u: 'string', c: 'string' })
    const values: unknown[] = [options.tenant, isoNow(options.now)]
    let page = ''
    if (after) {
      values.push(after.u, after.c)
      page = 'AND (c.last_updated_at, c.conversation_id) < ($3, $4)'
    }
    values.push(options.limit + 1)
    const rows = (
      await this.#db.query<ConversationRow>(
        `SELECT ${columns} FROM conversations c WHERE c.tenant = $1 AND c.expires_at > $2 ${page}
         ORDER BY c.last_updated_at DESC, c.conversation_id DESC LIMIT $${values.length}`,
        values,
      )
    ).rows
    const items = rows.slice(0, options.limit).map(toConversation)
    const last = items.at(-1)
    return rows.length > options.limit && last ? { items, nextToken: encodePageToken(pageKind, { u: last.lastUpdatedAt, c: last.conversationId }) } : { items }
  }

  async delete(tenant: string, conversationId: string, now: Date = new Date()): Promise<boolean> {
    const r = await this.#db.query('DELETE FROM conversations WHERE tenant = $1 AND conversation_id = $2 AND expires_at > $3', [
      tenant,
      conversationId,
      isoNow(now),
    ])
    return (r.rowCount ?? 0) > 0
  }

  async deleteExpired(now: Date = new Date()): Promise<number> {
    return (await this.#db.query('DELETE FROM conversations WHERE expires_at <= $1', [isoNow(now)])).rowCount ?? 0
  }
}
