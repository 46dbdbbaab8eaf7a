/**
 * What the agent service keeps of a turn and gives back to the model: the turn's events in a
 * bounded form for the store (text deltas merged, big outputs and images cut with a note saying
 * so), and earlier turns as the model's history when a conversation resumes.
 */
import type { AgentEvent, AgentTurn } from '@codebox/core'
import type { HistoryTurn } from '@codebox/agent'

/** How much of a turn's events the store keeps. */
export interface StoredEventLimits {
  /** Events kept per turn (the closing `final` or `error` always is). Default 1000. */
  maxEvents: number
  /** Characters of one text, tool output, tool result text or code. Default 65536. */
  maxTextChars: number
  /** Base64 characters of one image. Default 524288 (about 384 KB of PNG). */
  maxImageChars: number
  /** Base64 characters of all images of a turn. Default 2097152. */
  maxTurnImageChars: number
}

export const defaultStoredEventLimits: Readonly<StoredEventLimits> = Object.freeze({
  maxEvents: 1000,
  maxTextChars: 65_536,
  maxImageChars: 524_288,
  maxTurnImageChars: 2_097_152,
})

/** Cuts `text` to `max` characters and says how much was left out. */
export function cut(text: string, max: number, what = 'characters'): string {
  return text.length <= max ? text : `${text.slice(0, max)}\n[codebox: ${text.length - max} more ${what} not stored]`
}

/**
 * A turn's events as the store keeps them: consecutive text deltas become one `text` event, and
 * consecutive `tool_output` chunks of one call and stream become one; every text is cut at
 * `maxTextChars`, images past the limits are left out (the result's text says so), and events
 * past `maxEvents` are counted in a note instead of kept.
 */
export class StoredEvents {
  readonly #limits: StoredEventLimits
  readonly #events: AgentEvent[] = []
  readonly #overflow = new Map<AgentEvent, number>()
  #imageChars = 0
  #dropped = 0

  constructor(limits: Partial<StoredEventLimits> = {}) {
    this.#limits = { ...defaultStoredEventLimits, ...limits }
  }

  add(event: AgentEvent): void {
    const last = this.#events.at(-1)
    if (event.type === 'text' && last?.type === 'text') {
      last.delta = this.#append(last, last.delta, event.delta)
      return
    }
    if (event.type === 'tool_output' && last?.type === 'tool_output' && last.toolUseId === event.toolUseId && last.stream === event.stream) {
      last.text = this.#append(last, last.text, event.text)
      return
    }
    const closing = event.type === 'final' || event.type === 'error'
    if (!closing && this.#events.length >= this.#limits.maxEvents) {
      this.#dropped++
      return
    }
    // Texts and outputs may grow by merging: their cut is counted as they grow, and noted in list().
    if (event.type === 'text') {
      const copy = { ...event, delta: '' }
      copy.delta = this.#append(copy, '', event.delta)
      this.#events.push(copy)
      return
    }
    if (event.type === 'tool_output') {
      const copy = { ...event, text: '' }
      copy.text = this.#append(copy, '', event.text)
      this.#events.push(copy)
      return
    }
    this.#events.push(this.#bounded(event))
  }

  /** The events to store, with notes on what was cut or left out. */
  list(): AgentEvent[] {
    const note = (e: AgentEvent): string => {
      const n = this.#overflow.get(e)
      return n ? `\n[codebox: ${n} more characters not stored]` : ''
    }
    const events = this.#events.map((e): AgentEvent => {
      if (e.type === 'text') return { ...e, delta: e.delta + note(e) }
      if (e.type === 'tool_output') return { ...e, text: e.text + note(e) }
      return { ...e }
    })
    if (this.#dropped === 0) return events
    const dropped: AgentEvent = { type: 'text', delta: `[codebox: ${this.#dropped} more events of this turn not stored]` }
    const closing = events.at(-1)
    return closing && (closing.type === 'final' || closing.type === 'error') ? [...events.slice(0, -1), dropped, closing] : [...events, dropped]
  }

  /** `text + more`, kept to maxTextChars; what does not fit is counted against `event`. */
  #append(event: AgentEvent, text: string, more: string): string {
    const room = Math.max(0, this.#limits.maxTextChars - text.length)
    if (more.length > room) this.#overflow.set(event, (this.#overflow.get(event) ?? 0) + more.length - room)
    return more.length > room ? text + more.slice(0, room) : text + more
  }

  #bounded(event: AgentEvent): AgentEvent {
    const max = this.#limits.maxTextChars
    switch (event.type) {
      case 'text':
      case 'tool_output':
      case 'turn_start':
      case 'model':
        return { ...event }
      case 'tool_use': {
        const inputChars = JSON.stringify(event.input).length
        return {
          ...event,
          input: inputChars <= max ? event.input : { note: `[codebox: input of ${inputChars} characters not stored]` },
          ...(event.code !== undefined ? { code: cut(event.code, max) } : {}),
        }
      }
      case 'tool_result': {
        const kept: typeof event.images = []
        const left: string[] = []
        for (const image of event.images) {
          if (image.data.length <= this.#limits.maxImageChars && this.#imageChars + image.data.length <= this.#limits.maxTurnImageChars) {
            kept.push(image)
            this.#imageChars += image.data.length
          } else left.push(`${image.mimeType}, ${Math.floor((image.data.length * 3) / 4)} bytes`)
        }
        const note = left.length ? `\n[codebox: ${left.length} image(s) not stored (${left.join('; ')})]` : ''
        return { ...event, text: cut(event.text, max) + note, images: kept }
      }
      case 'final':
        return { ...event, text: cut(event.text, max * 4), ...(event.code !== undefined ? { code: cut(event.code, max * 4) } : {}) }
      case 'error':
        return { ...event, message: cut(event.message, max) }
    }
  }
}

/** How many earlier turns, and how many characters of them, go back into the model's context. */
export interface HistoryLimits {
  /** Default 50. */
  maxTurns: number
  /** Characters of prompts and answers together, newest kept first. Default 100000. */
  maxChars: number
}

export const defaultHistoryLimits: Readonly<HistoryLimits> = Object.freeze({ maxTurns: 50, maxChars: 100_000 })

/**
 * The model's view of earlier turns (oldest first): each prompt with its answer; a failed or
 * canceled turn says so, so the model does not take a partial answer for a whole one. The newest
 * turns are kept when the limits cut.
 */
export function historyFrom(turns: readonly AgentTurn[], limits: HistoryLimits = defaultHistoryLimits): HistoryTurn[] {
  const out: HistoryTurn[] = []
  let chars = 0
  for (let i = turns.length - 1; i >= 0 && out.length < limits.maxTurns; i--) {
    const t = turns[i] as AgentTurn
    const answer =
      t.outcome === 'ok'
        ? t.text
        : t.outcome === 'canceled'
          ? `(this turn was canceled before it finished${t.text ? `: ${t.text}` : ''})`
          : `(this turn failed: ${t.text})`
    chars += t.prompt.length + answer.length
    if (chars > limits.maxChars && out.length > 0) break
    out.unshift({ prompt: cut(t.prompt, limits.maxChars), answer: cut(answer, limits.maxChars) })
  }
  return out
}

/** A conversation's title: the first line of its first prompt, at most 80 characters. */
export function titleOf(prompt: string): string {
  const line = prompt.trim().split('\n')[0]?.trim() ?? ''
  return line.length <= 80 ? line : `${line.slice(0, 79)}…`
}
