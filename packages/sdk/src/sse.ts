/**
 * A small Server-Sent Events parser (the WHATWG `text/event-stream` rules): chunks may split
 * anywhere, even inside a UTF-8 character or between CR and LF; lines end with LF, CRLF or CR;
 * `data:` lines join with LF; lines starting with `:` are comments. Browser-safe.
 */

/** One dispatched event: its `event:` name (default `message`), its joined `data:` and `id:`. */
export interface SseEvent {
  event: string
  data: string
  id?: string
}

/** Incremental parser: push decoded text as it arrives, get the events it completed. */
export class SseParser {
  #buffer = ''
  /** The previous chunk ended with CR, so an LF at the start of the next one belongs to it. */
  #skipLeadingLf = false
  #event = ''
  #data: string[] = []
  #id: string | undefined

  /** Feeds text; returns the events completed by it (possibly none). */
  push(text: string): SseEvent[] {
    if (text === '') return []
    if (this.#skipLeadingLf && text.startsWith('\n')) text = text.slice(1)
    this.#skipLeadingLf = false
    this.#buffer += text
    const events: SseEvent[] = []
    let start = 0
    for (let i = 0; i < this.#buffer.length; i++) {
      const ch = this.#buffer[i]
      if (ch !== '\n' && ch !== '\r') continue
      const event = this.#line(this.#buffer.slice(start, i))
      if (event) events.push(event)
      if (ch === '\r') {
        if (i + 1 === this.#buffer.length) this.#skipLeadingLf = true
        else if (this.#buffer[i + 1] === '\n') i++
      }
      start = i + 1
    }
    this.#buffer = this.#buffer.slice(start)
    return events
  }

  /**
   * Ends the stream. As the standard says, an event without its closing blank line is dropped:
   * it may be a cut-off JSON document.
   */
  end(): void {
    this.#buffer = ''
    this.#data = []
    this.#event = ''
  }

  #line(line: string): SseEvent | undefined {
    if (line === '') return this.#dispatch()
    if (line.startsWith(':')) return undefined
    const colon = line.indexOf(':')
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? '' : line.slice(colon + 1)
    if (value.startsWith(' ')) value = value.slice(1)
    if (field === 'event') this.#event = value
    else if (field === 'data') this.#data.push(value)
    else if (field === 'id' && !value.includes('\0')) this.#id = value
    return undefined
  }

  #dispatch(): SseEvent | undefined {
    const event = this.#event || 'message'
    const data = this.#data
    this.#event = ''
    this.#data = []
    if (data.length === 0) return undefined
    return { event, data: data.join('\n'), ...(this.#id !== undefined ? { id: this.#id } : {}) }
  }
}

/**
 * Reads a byte stream as SSE and yields its events. Leaving the loop early cancels the stream,
 * so the connection behind it is released.
 */
export async function* parseSse(stream: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent, void, undefined> {
  const reader = stream.getReader()
  const decoder = new TextDecoder()
  const parser = new SseParser()
  let finished = false
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      yield* parser.push(decoder.decode(value, { stream: true }))
    }
    yield* parser.push(decoder.decode())
    parser.end()
    finished = true
  } finally {
    if (!finished) await reader.cancel().catch(() => undefined)
    reader.releaseLock()
  }
}
