import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseSse, SseParser, type SseEvent } from '../src/sse.ts'

const sample =
  ': keep-alive\n\n' +
  'event: stdout\ndata: {"type":"stdout","text":"héllo"}\n\n' +
  'event: display\ndata: {"type":"display",\ndata: "data":{}}\n\n' +
  'event: result\r\ndata: {"type":"result"}\r\n\r\n'

const expected: SseEvent[] = [
  { event: 'stdout', data: '{"type":"stdout","text":"héllo"}' },
  { event: 'display', data: '{"type":"display",\n"data":{}}' },
  { event: 'result', data: '{"type":"result"}' },
]

function feed(chunks: string[]): SseEvent[] {
  const parser = new SseParser()
  return chunks.flatMap((c) => parser.push(c))
}

function bytesStream(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (const c of chunks) controller.enqueue(c)
      controller.close()
    },
  })
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<SseEvent[]> {
  const events: SseEvent[] = []
  for await (const e of parseSse(stream)) events.push(e)
  return events
}

test('parses events whole', () => {
  assert.deepEqual(feed([sample]), expected)
})

test('parses the same events when the text is split at every position', () => {
  for (let i = 0; i <= sample.length; i++) {
    assert.deepEqual(feed([sample.slice(0, i), sample.slice(i)]), expected, `split at ${i}`)
  }
})

test('parses the same events fed one character at a time', () => {
  assert.deepEqual(feed([...sample]), expected)
})

test('CRLF split between CR and LF does not make an extra blank line', () => {
  // A lone CR ends a line; the LF arriving in the next chunk must not end an (empty) event.
  const events = feed(['data: a\r', '', '\ndata: b\r', '\n\r', '\n'])
  assert.deepEqual(events, [{ event: 'message', data: 'a\nb' }])
})

test('lone CR line endings work', () => {
  assert.deepEqual(feed(['event: stderr\rdata: x\r\r']), [{ event: 'stderr', data: 'x' }])
})

test('comments, unknown fields and events without data are not dispatched', () => {
  assert.deepEqual(feed([':comment\n\nevent: ping\n\nretry: 10\nfoo: bar\n\n']), [])
})

test('a field without a space after the colon, and an id, are read', () => {
  assert.deepEqual(feed(['id: 7\nevent:x\ndata:1\n\n']), [{ event: 'x', data: '1', id: '7' }])
})

test('parseSse decodes UTF-8 split inside a character', async () => {
  const bytes = new TextEncoder().encode(sample)
  // "é" is two bytes; split the stream after every single byte.
  const chunks = [...bytes].map((b) => Uint8Array.of(b))
  assert.deepEqual(await collect(bytesStream(chunks)), expected)
})

test('parseSse drops an event cut off before its blank line', async () => {
  const bytes = new TextEncoder().encode('data: {"a":1}\n\ndata: {"cut')
  assert.deepEqual(await collect(bytesStream([bytes])), [{ event: 'message', data: '{"a":1}' }])
})

test('leaving parseSse early cancels the stream', async () => {
  let cancelled = false
  const stream = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(new TextEncoder().encode('data: x\n\n'))
    },
    cancel() {
      cancelled = true
    },
  })
  for await (const e of parseSse(stream)) {
    assert.equal(e.data, 'x')
    break
  }
  assert.equal(cancelled, true)
})
