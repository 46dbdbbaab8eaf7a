/**
 * The agent's short-term memory: conversations, keyed by (tenant, conversation id), with the code
 * session each one owns, and their turns (prompt, answer, outcome, model, events). A conversation
 * expires a set time after its last turn: from then on every read treats it as gone, and
 * `deleteExpired` removes it with its turns.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite'
import type { AgentEvent, AgentTurn, AgentUsage, Conversation, ModelSkip } from '@codebox/core'
import { CodeboxError } from '@codebox/core'
import type { Page } from './sql.ts'
import { checkPageLimit, decodePageToken, encodePageToken, isoNow, isUniqueViolation, opt, transaction } from './sql.ts'

/** A new conversation: who owns it and until when it is remembered. */
export interface NewConversation {
  tenant: string
  conversationId: string
  actor: string
  /** The first prompt, shortened. */
  title: string
  createdAt: Date
  expiresAt: Date
}

/** A turn to store; the store gives it its `turnId`. */
export type NewTurn = Omit<AgentTurn, 'turnId'> & { tenant: string }

export interface ListConversationsOptions {
  tenant: string
  /** Page size, a whole number ≥ 1. */
  limit: number
  nextToken?: string
  /** The clock reads compare `expires_at` with. Default now. */
  now?: Date
}

export interface ConversationRow {
  tenant: string
  conversation_id: string
  actor: string
  title: string
  session_id: string | null
  created_at: string
  last_updated_at: string
  expires_at: string
  turns: number
}

export interface TurnRow {
  turn_id: number
  conversation_id: string
  role: AgentTurn['role']
  prompt: string
  text: string
  outcome: AgentTurn['outcome']
  model: string | null
  skipped: string
  usage: string
  events: string
  created_at: string
}

export const toConversation = (r: ConversationRow): Conversation => ({
  conversationId: r.conversation_id,
  actor: r.actor,
  title: r.title,
  ...opt('sessionId', r.session_id),
  turns: Number(r.turns),
  createdAt: r.created_at,
  lastUpdatedAt: r.last_updated_at,
  expiresAt: r.expires_at,
})

export const toTurn = (r: TurnRow): AgentTurn => ({
  turnId: Number(r.turn_id),
  conversationId: r.conversation_id,
  role: r.role,
  prompt: r.prompt,
  text: r.text,
  outcome: r.outcome,
  ...opt('model', r.model),
  skipped: JSON.parse(r.skipped) as ModelSkip[],
  usage: JSON.parse(r.usage) as AgentUsage,
  events: JSON.parse(r.events) as AgentEvent[],
  createdAt: r.created_at,
})

/** The agent's memory as its callers see it: what a second store backend implements. */
export interface ConversationStore {
  get(tenant: string, conversationId: string, now?: Date): Promise<Conversation | undefined>
  create(conversation: NewConversation): Promise<Conversation>
  setSession(tenant: string, conversationId: string, sessionId: string | undefined): Promise<void>
  appendTurn(turn: NewTurn, expiresAt: Date): Promise<AgentTurn | undefined>
  turns(tenant: string, conversationId: string, limit?: number): Promise<AgentTurn[]>
  list(options: ListConversationsOptions): Promise<Page<Conversation>>
  delete(tenant: string, conversationId: string, now?: Date): Promise<boolean>
  deleteExpired(now?: Date): Promise<number>
}

const columns = `c.*, (SELECT count(*) FROM conversation_turns t WHERE t.tenant = c.tenant AND t.conversation_id = c.conversation_id) AS turns`
export const pageKind = 'conversations'

/** Conversations and turns of all tenants; every call takes the tenant, so one never sees another's. */
/** A new turn's columns in the order both stores insert them (tenant ... created_at). */
export function turnValues(turn: NewTurn): (string | null)[] {
  return [
    turn.tenant,
    turn.conversationId,
    turn.role,
    turn.prompt,
    turn.text,
    turn.outcome,
    turn.model ?? null,
    JSON.stringify(turn.skipped),
    JSON.stringify(turn.usage),
    JSON.stringify(turn.events),
    turn.createdAt,
  ]
}

export class ConversationRepository implements ConversationStore {
  readonly #db: DatabaseSync
  readonly #q: Record<
    'get' | 'insert' | 'dropExpired' | 'setSession' | 'insertTurn' | 'extend' | 'lastTurns' | 'list' | 'delete' | 'deleteExpired',
    StatementSync
  >

  constructor(db: DatabaseSync) {
    this.#db = db
    this.#q = {
      get: db.prepare(`SELECT ${columns} FROM conversations c WHERE c.tenant = ? AND c.conversation_id = ? AND c.expires_at > ?`),
      insert: db.prepare(
        `INSERT INTO conversations (tenant, conversation_id, actor, title, session_id, created_at, last_updated_at, expires_at)
         VALUES (?, ?, ?, ?, NULL, ?, ?, ?)`,
      ),
      dropExpired: db.prepare('DELETE FROM conversations WHERE tenant = ? AND conversation_id = ? AND expires_at <= ?'),
      setSession: db.prepare('UPDATE conversations SET session_id = ? WHERE tenant = ? AND conversation_id = ?'),
      insertTurn: db.prepare(
        `INSERT INTO conversation_turns (tenant, conversation_id, role, prompt, text, outcome, model, skipped, usage, events, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING turn_id`,
      ),
      extend: db.prepare(
        `UPDATE conversations SET last_updated_at = :at, expires_at = :expires
         WHERE tenant = :tenant AND conversation_id = :id AND expires_at > :at`,
      ),
      lastTurns: db.prepare(
        `SELECT * FROM (SELECT * FROM conversation_turns WHERE tenant = ? AND conversation_id = ? ORDER BY turn_id DESC LIMIT ?) ORDER BY turn_id`,
      ),
      list: db.prepare(
        `SELECT ${columns} FROM conversations c
         WHERE c.tenant = :tenant AND c.expires_at > :now
           AND (:afterUpdated IS NULL OR (c.last_updated_at, c.conversation_id) < (:afterUpdated, :afterId))
         ORDER BY c.last_updated_at DESC, c.conversation_id DESC LIMIT :limit`,
      ),
      delete: db.prepare('DELETE FROM conversations WHERE tenant = ? AND conversation_id = ? AND expires_at > ?'),
      deleteExpired: db.prepare('DELETE FROM conversations WHERE expires_at <= ?'),
    }
  }

  /** The conversation if `tenant` has it and it has not expired; undefined otherwise. */
  async get(tenant: string, conversationId: string, now: Date = new Date()): Promise<Conversation | undefined> {
    const row = this.#q.get.get(tenant, conversationId, isoNow(now)) as ConversationRow | undefined
    return row && toConversation(row)
  }

  /**
   * Stores a new conversation without turns. An expired one with the same key is removed first
   * (its memory is gone already); a live one is a Conflict.
   */
  async create(c: NewConversation): Promise<Conversation> {
    const at = isoNow(c.createdAt)
    try {
      transaction(this.#db, () => {
        this.#q.dropExpired.run(c.tenant, c.conversationId, at)
        this.#q.insert.run(c.tenant, c.conversationId, c.actor, c.title, at, at, isoNow(c.expiresAt))
      })
    } catch (e) {
      if (!isUniqueViolation(e)) throw e
      throw new CodeboxError('Conflict', `conversation ${c.conversationId} already exists`, { cause: e })
    }
    return { conversationId: c.conversationId, actor: c.actor, title: c.title, turns: 0, createdAt: at, lastUpdatedAt: at, expiresAt: isoNow(c.expiresAt) }
  }

  /** Records the code session the conversation owns now (undefined: none). */
  async setSession(tenant: string, conversationId: string, sessionId: string | undefined): Promise<void> {
    this.#q.setSession.run(sessionId ?? null, tenant, conversationId)
  }

  /**
   * Appends a turn and moves the conversation's expiry to `expiresAt`, in one transaction.
   * Returns the stored turn, or undefined when the conversation is gone (deleted or expired
   * while the turn ran): a deleted conversation is not brought back.
   */
  async appendTurn(turn: NewTurn, expiresAt: Date): Promise<AgentTurn | undefined> {
    return transaction(this.#db, () => {
      const moved = this.#q.extend.run({ tenant: turn.tenant, id: turn.conversationId, at: turn.createdAt, expires: isoNow(expiresAt) })
      if (Number(moved.changes) === 0) return undefined
      const row = this.#q.insertTurn.get(...turnValues(turn)) as { turn_id: number }
      const { tenant: _tenant, ...rest } = turn
      return { turnId: Number(row.turn_id), ...rest }
    })
  }

  /** The conversation's last `limit` turns (default all, up to 10000), oldest first. */
  async turns(tenant: string, conversationId: string, limit = 10_000): Promise<AgentTurn[]> {
    checkPageLimit(limit)
    return (this.#q.lastTurns.all(tenant, conversationId, limit) as unknown as TurnRow[]).map(toTurn)
  }

  /** A page of the tenant's live conversations, most recently updated first. */
  async list(options: ListConversationsOptions): Promise<Page<Conversation>> {
    checkPageLimit(options.limit)
    const after = options.nextToken === undefined ? undefined : decodePageToken(pageKind, options.nextToken, { u: 'string', c: 'string' })
    const rows = this.#q.list.all({
      tenant: options.tenant,
      now: isoNow(options.now),
      afterUpdated: after?.u ?? null,
      afterId: after?.c ?? null,
      limit: options.limit + 1,
    }) as unknown as ConversationRow[]
    const items = rows.slice(0, options.limit).map(toConversation)
    const last = items.at(-1)
    return rows.length > options.limit && last ? { items, nextToken: encodePageToken(pageKind, { u: last.lastUpdatedAt, c: last.conversationId }) } : { items }
  }

  /** Removes a live conversation and its turns; false if `tenant` has no such conversation. */
  async delete(tenant: string, conversationId: string, now: Date = new Date()): Promise<boolean> {
    return Number(this.#q.delete.run(tenant, conversationId, isoNow(now)).changes) > 0
  }

  /** Removes every conversation (of any tenant) that expired by `now`, with its turns; returns how many. */
  async deleteExpired(now: Date = new Date()): Promise<number> {
    return Number(this.#q.deleteExpired.run(isoNow(now)).changes)
  }
}
