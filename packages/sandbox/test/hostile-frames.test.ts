/**
 * The host end of the executor protocol under hostile frames, on a fake sandbox whose executor
 * is this test (PassThrough streams): NaN, invalid UTF-8, deep nesting, huge numbers, wrong field
 * types, unknown kinds and ids, a bad length, a cut-off frame, oversized display output and an
 * executor that stops answering; and a consumer that stops reading a cell early. Nothing may throw
 * out of the stream listener; the right call fails (or, when the framing breaks, the sandbox
 * ends) and the rest keep working.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import path from 'node:path'
import { describe, it } from 'node:test'
import { PassThrough } from 'node:stream'
import { CodeboxError, defaultLimits, toolResultSchema, type Sandbox, type SandboxExit, type ToolResult } from '@codebox/core'
import { ExecutorClient } from '../src/executor-client.ts'
import { encodeFrame, encodeJson, FrameDecoder, FrameKind } from '../src/protocol.ts'
import { Session } from '../src/session.ts'

interface Sent {
  id: number
  msg: Record<string, unknown>
}

/** A sandbox whose executor end is in the test's hands. */
function fakeExecutor() {
  const input = new PassThrough()
  const output = new PassThrough()
  let exit!: (e: SandboxExit) => void
  const exited = new Promise<SandboxExit>((r) => (exit = r))
  const state = { destroyed: 0 }
  const sandbox: Sandbox = {
    id: 'hostile',
    input,
    output,
    diagnostics: () => '',
    exited,
    counters: () => Promise.resolve({ oomKills: 0, pidsLimitHits: 0 }),
    memoryUsage: () => Promise.resolve(0),
    destroy: () => {
      state.destroyed++
      exit({ code: null, signal: 'SIGKILL' })
      return Promise.resolve()
    },
  }
  const decoder = new FrameDecoder()
  const sent: Sent[] = []
  const waiters: { op: string; resolve: (s: Sent) => void }[] = []
  input.on('data', (chunk: Buffer) => {
    for (const f of decoder.push(chunk)) {
      if (f.kind !== FrameKind.Json) continue
      const s = { id: f.requestId, msg: JSON.parse(f.payload.toString()) as Record<string, unknown> }
      sent.push(s)
      const i = waiters.findIndex((w) => w.op === s.msg.op)
      if (i >= 0) waiters.splice(i, 1)[0]!.resolve(s)
    }
  })
  return {
    sandbox,
    output,
    state,
    sent,
    /** The next request with this op the host sends (or one it already sent and nobody took). */
    request(op: string): Promise<Sent> {
      const i = sent.findIndex((s) => s.msg.op === op && !(s as { taken?: boolean }).taken)
      if (i >= 0) return Promise.resolve(Object.assign(sent[i]!, { taken: true }))
      return new Promise((resolve) => waiters.push({ op, resolve: (s) => resolve(Object.assign(s, { taken: true })) }))
    },
    raw(id: number, payload: Buffer | string, kind: number = FrameKind.Json): void {
      const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload)
      const header = Buffer.alloc(9)
      header.writeUInt32BE(5 + body.length, 0)
      header.writeUInt32BE(id, 4)
      header.writeUInt8(kind, 8)
      output.write(Buffer.concat([header, body]))
    },
    json(id: number, value: unknown): void {
      output.write(encodeJson(id, value))
    },
  }
}

async function rejectsWith(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof CodeboxError, `expected a CodeboxError, got ${String(e)}`)
    assert.equal(e.code, code, e.message)
    assert.match(e.message, message)
    return true
  })
}

/** Sends one bad frame for a ping call: that call fails with SandboxFailure, the next one works. */
async function badFrameEndsOnlyThatCall(payload: Buffer | string, message: RegExp, kind: number = FrameKind.Json): Promise<void> {
  const ex = fakeExecutor()
  const client = new ExecutorClient(ex.sandbox)
  const call = client.call('ping', {})
  const { id } = await ex.request('ping')
  ex.raw(id, payload, kind)
  await rejectsWith(call, 'SandboxFailure', message)
  const next = client.call('ping', {})
  const second = await ex.request('ping')
  ex.json(second.id, { ev: 'done', pid: 7 })
  assert.deepEqual(await next, { ev: 'done', pid: 7 })
  assert.equal(ex.state.destroyed, 0)
  assert.equal(client.closed, false)
}

describe('hostile frames: the host parses every frame defensively', () => {
  it('NaN and Infinity in a frame end only that call', async () => {
    await badFrameEndsOnlyThatCall('{"ev":"display","data":{"text/html":NaN}}', /not JSON/)
    await badFrameEndsOnlyThatCall('{"ev":"done","exitCode":Infinity}', /not JSON/)
  })

  it('invalid UTF-8, truncated JSON, non-objects and wrong field types end only that call', async () => {
    await badFrameEndsOnlyThatCall(Buffer.from([0x7b, 0x22, 0x65, 0x76, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), /not valid UTF-8/)
    await badFrameEndsOnlyThatCall('{"ev":"do', /not JSON/)
    await badFrameEndsOnlyThatCall('[1,2]', /not a JSON object/)
    await badFrameEndsOnlyThatCall('null', /not a JSON object/)
    await badFrameEndsOnlyThatCall('{"ev":5}', /without a string `ev`/)
    await badFrameEndsOnlyThatCall('{"ev":"stdout","text":{"toString":1}}', /text is not a string/)
    await badFrameEndsOnlyThatCall('{"ev":"error","code":"toString","message":{"toString":1}}', /error event/)
    await badFrameEndsOnlyThatCall('{"ev":"display","data":[1]}', /data is not an object/)
  })

  it('deep nesting and huge numbers neither throw nor end the call', async () => {
    const deep = `${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`
    await badFrameEndsOnlyThatCall(deep, /not a JSON object/)
    const ex = fakeExecutor()
    const client = new ExecutorClient(ex.sandbox)
    const call = client.call('ping', {})
    const { id } = await ex.request('ping')
    ex.raw(id, `{"ev":"stdout","text":"x","nested":${'['.repeat(100_000)}${']'.repeat(100_000)}}`)
    ex.raw(id, `{"ev":"done","pid":1e999,"big":${'9'.repeat(100_000)}}`)
    assert.deepEqual(Object.keys(await call), ['ev', 'pid', 'big'])
  })

  it('an error event with a code that is not a registry code becomes SandboxFailure', async () => {
    const ex = fakeExecutor()
    const client = new ExecutorClient(ex.sandbox)
    for (const code of ['toString', '__proto__', 'constructor', 'Nope']) {
      const call = client.call('ping', {})
      const { id } = await ex.request('ping')
      ex.json(id, { ev: 'error', code, message: 'x' })
      await rejectsWith(call, 'SandboxFailure', /^x$/)
    }
  })

  it('an unknown frame kind ends only that call', async () => {
    await badFrameEndsOnlyThatCall('{}', /unknown kind 0x58/, 0x58)
  })

  it('an executor of another protocol version is refused: ready fails naming both versions', async () => {
    for (const [ready, named] of [
      ['{"ev":"ready","protocol":2,"runtimes":["python"]}', 'protocol 2'],
      ['{"ev":"ready","runtimes":["python"]}', 'protocol an older one'],
    ] as const) {
      const ex = fakeExecutor()
      const client = new ExecutorClient(ex.sandbox)
      ex.raw(0, ready)
      await assert.rejects(
        client.ready,
        (e: unknown) => e instanceof CodeboxError && e.code === 'SandboxFailure' && e.message.includes(`speaks ${named}, this server 1`),
      )
      assert.ok(client.closed)
    }
  })

  it('frames for ids not in flight, and a malformed id-0 frame, are dropped', async () => {
    const ex = fakeExecutor()
    const client = new ExecutorClient(ex.sandbox)
    ex.raw(0, '{"ev":"ready","protocol":1,"runtimes":[{"toString":1},"python",NaN]}')
    ex.raw(0, '{"ev":"ready","protocol":1,"runtimes":[{"toString":1},"python","nodejs"]}')
    await client.ready
    assert.deepEqual(client.runtimes, ['python', 'nodejs'])
    const call = client.call('ping', {})
    const { id } = await ex.request('ping')
    for (const other of [id + 1, id + 1000, 0xffffffff]) {
      ex.json(other, { ev: 'done', forged: true })
      ex.raw(other, 'NaN')
      ex.raw(other, Buffer.from([0xff]), FrameKind.Bytes)
    }
    ex.json(id, { ev: 'done', forged: false })
    assert.deepEqual(await call, { ev: 'done', forged: false })
    // a late frame for the call that ended
    ex.json(id, { ev: 'done', late: true })
    ex.raw(id, 'NaN')
    const next = client.call('ping', {})
    const second = await ex.request('ping')
    ex.json(second.id, { ev: 'done' })
    await next
  })

  it('a frame over the maximum length ends the sandbox, not the host', async () => {
    for (const length of [0xffffffff, 8 * 1024 * 1024 + 1, 4, 0]) {
      const ex = fakeExecutor()
      const client = new ExecutorClient(ex.sandbox)
      const call = client.call('ping', {})
      await ex.request('ping')
      const header = Buffer.alloc(9)
      header.writeUInt32BE(length, 0)
      header.writeUInt32BE(1, 4)
      ex.output.write(header)
      await rejectsWith(call, 'SandboxFailure', /protocol error: executor sent a frame of \d+ bytes/)
      assert.equal(ex.state.destroyed, 1)
      await rejectsWith(client.call('ping', {}), 'SandboxFailure', /protocol error/)
    }
  })

  it('after a broken length, what the sandbox still writes is dropped, not buffered', async () => {
    const ex = fakeExecutor()
    const client = new ExecutorClient(ex.sandbox)
    const call = client.call('ping', {})
    await ex.request('ping')
    ex.raw(1, Buffer.alloc(100 * 1024 * 1024 - 5))
    await rejectsWith(call, 'SandboxFailure', /protocol error/)
    const started = Date.now()
    const chunk = Buffer.alloc(1024 * 1024, 0x41)
    for (let i = 0; i < 200; i++) ex.output.write(chunk)
    while (ex.output.readableLength > 0 || ex.output.writableLength > 0) await new Promise((resolve) => setImmediate(resolve))
    assert.ok(Date.now() - started < 5000, `dropping 200 MiB took ${Date.now() - started} ms`)
    assert.ok(process.memoryUsage().arrayBuffers < 400 * 1024 * 1024, 'the dropped bytes were kept')
  })

  it('a frame cut off by the sandbox ending fails the call with SessionTerminated', async () => {
    const ex = fakeExecutor()
    const client = new ExecutorClient(ex.sandbox)
    const call = client.call('ping', {})
    const { id } = await ex.request('ping')
    const frame = encodeJson(id, { ev: 'done', padding: 'x'.repeat(1000) })
    ex.output.write(frame.subarray(0, 500))
    await ex.sandbox.destroy()
    await rejectsWith(call, 'SessionTerminated', /the sandbox ended/)
  })

  it('a frame written in one-byte pieces still decodes', async () => {
    const ex = fakeExecutor()
    const client = new ExecutorClient(ex.sandbox)
    const call = client.call('ping', {})
    const { id } = await ex.request('ping')
    const frame = encodeFrame(id, FrameKind.Json, Buffer.from('{"ev":"done","ok":true}'))
    for (const byte of frame) ex.output.write(Buffer.from([byte]))
    assert.deepEqual(await call, { ev: 'done', ok: true })
  })
})

describe('hostile frames: an executor that stops answering', () => {
  it('a call past its deadline and grace ends with its own error and the sandbox is destroyed', async () => {
    const ex = fakeExecutor()
    const client = new ExecutorClient(ex.sandbox, { graceMs: 200 })
    const started = Date.now()
    const call = client.call('exec', {}, { deadlineMs: 100 })
    const other = client.call('files.list', {})
    await rejectsWith(call, 'SandboxFailure', /the executor stopped answering/)
    const took = Date.now() - started
    assert.ok(took >= 500 && took < 5000, `ended after ${took} ms`)
    await rejectsWith(other, 'SandboxFailure', /the executor stopped answering/)
    assert.equal(ex.state.destroyed, 1)
    assert.ok(ex.sent.some((s) => s.msg.op === 'cancel'))
  })

  it('an executor that answers the ping keeps its call (it may wait for a busy kernel)', async () => {
    const ex = fakeExecutor()
    const client = new ExecutorClient(ex.sandbox, { graceMs: 100 })
    const call = client.call('exec', {}, { deadlineMs: 50 })
    const exec = await ex.request('exec')
    for (let i = 0; i < 3; i++) {
      const ping = await ex.request('ping')
      ex.json(ping.id, { ev: 'done' })
    }
    ex.json(exec.id, { ev: 'done', exitCode: 0 })
    assert.deepEqual(await call, { ev: 'done', exitCode: 0 })
    assert.equal(ex.state.destroyed, 0)
  })
})

describe('hostile frames: calls without a deadline of their own', () => {
  it('a file call to a stopped executor ends after the default deadline; a live one is not cancelled', async () => {
    const ex = fakeExecutor()
    const client = new ExecutorClient(ex.sandbox, { graceMs: 100, defaultDeadlineMs: 100 })
    const live = client.call('files.read', {})
    const read = await ex.request('files.read')
    const ping = await ex.request('ping')
    ex.json(ping.id, { ev: 'done' })
    const again = await ex.request('ping')
    assert.ok(!ex.sent.some((s) => s.msg.op === 'cancel'), 'a call without its own deadline was cancelled')
    ex.json(read.id, { ev: 'done', size: 0 })
    assert.deepEqual(await live, { ev: 'done', size: 0 })
    void again
    await rejectsWith(client.call('files.list', {}), 'SandboxFailure', /the executor stopped answering/)
    assert.equal(ex.state.destroyed, 1)
  })
})

function fakeSession(graceMs = 5000) {
  const ex = fakeExecutor()
  const client = new ExecutorClient(ex.sandbox, { graceMs })
  const session = new Session({
    id: 'fake',
    sandbox: ex.sandbox,
    client,
    limits: { ...defaultLimits },
    maxCallTimeoutMs: 900_000,
    onActivity: () => {},
    onEnd: () => {},
  })
  return { ex, session }
}

const valid = (r: ToolResult): ToolResult => {
  const parsed = toolResultSchema.safeParse(r)
  assert.ok(parsed.success, parsed.success ? '' : parsed.error.message)
  return r
}

describe('hostile frames: what the session makes of them', () => {
  it('display data over the per-call limit is dropped on the host, whatever the executor says', async () => {
    const { ex, session } = fakeSession()
    const run = session.runCode({ code: 'x', language: 'python' })
    const { id } = await ex.request('exec')
    const twoMB = 'A'.repeat(2 * 1024 * 1024)
    for (let i = 0; i < 40; i++) ex.json(id, { ev: 'display', data: { 'image/png': twoMB, 'text/plain': `<Figure ${i}>` } })
    ex.json(id, { ev: 'display', data: { 'text/plain': 'small' } })
    ex.json(id, { ev: 'stdout', text: 'y'.repeat(2 * 1024 * 1024) })
    ex.json(id, { ev: 'done', exitCode: 0, truncated: false })
    const r = valid(await run)
    const kept = r.content.reduce((n, c) => n + JSON.stringify(c).length, 0)
    assert.ok(kept <= defaultLimits.outputBytes + 4096, `kept ${kept} bytes`)
    assert.deepEqual(r.structuredContent.limitsExceeded, ['OUTPUT_TRUNCATED'])
    assert.match(r.structuredContent.stderr, /OUTPUT_TRUNCATED/)
    assert.equal(r.structuredContent.stdout, '')
    await session.stop()
  })

  it('display values of the wrong type are dropped with a note; bad base64 images too', async () => {
    const { ex, session } = fakeSession()
    const run = session.runCode({ code: 'x', language: 'python' })
    const { id } = await ex.request('exec')
    ex.json(id, { ev: 'display', data: { 'image/png': 12345, 'text/plain': 'X()' } })
    ex.json(id, { ev: 'display', data: { 'text/html': { a: 1 }, 'image/svg+xml': null, 'text/plain': 'Y()' } })
    ex.json(id, { ev: 'display', data: { 'image/jpeg': 'not base64!', 'image/png': 'iVBORw0KGgo=' } })
    ex.json(id, { ev: 'display', data: { __proto__: 'x', 'text/plain': ['a'] } })
    ex.json(id, { ev: 'done', exitCode: '3', signal: { toString: 1 }, killed: true, error: { traceback: { toString: 1 } } })
    const r = valid(await run)
    assert.equal(r.structuredContent.exitCode, 1)
    assert.deepEqual(
      r.content.filter((c) => c.type === 'image'),
      [{ type: 'image', data: 'iVBORw0KGgo=', mimeType: 'image/png' }],
    )
    assert.ok(!r.content.some((c) => c.type === 'resource'))
    assert.match(r.structuredContent.stderr, /display data dropped: image\/png \(a number, not a string\), text\/html \(a object/)
    assert.match(r.structuredContent.stderr, /image\/jpeg \(not base64\)/)
    await session.stop()
  })

  it('a stopped executor ends the call within timeout and grace, and the session with it', async () => {
    const { ex, session } = fakeSession(300)
    const started = Date.now()
    await rejectsWith(session.runCommand('kill -STOP $PPID', { timeoutMs: 200 }), 'SandboxFailure', /the executor stopped answering/)
    assert.ok(Date.now() - started < 5000)
    assert.equal(session.status, 'terminated')
    assert.equal(session.active, 0)
    assert.ok(ex.state.destroyed >= 1)
    await rejectsWith(session.runCommand('true'), 'SessionTerminated', /has ended/)
  })
})

describe('the executor never writes a frame the host refuses', () => {
  it('NaN, lone surrogates, other types and huge strings come out as standard, valid, bounded JSON', () => {
    const script = [
      'import json, sys',
      'from frame_json import encode_json, MAX_JSON_FRAME',
      'class X: pass',
      'cases = [{"ev": "display", "data": {"text/html": float("nan"), "x": [float("inf"), -float("inf")]}},',
      '         {"ev": "stdout", "text": "a\\udc80b"}, {"ev": "x", "v": b"raw", "w": X()},',
      '         {"ev": "done", "error": {"message": "m" * 5000000, "traceback": "t" * 9000000}}]',
      'for c in cases:',
      '    p = encode_json(c)',
      '    assert len(p) <= MAX_JSON_FRAME, len(p)',
      '    sys.stdout.buffer.write(p + b"\\n")',
    ].join('\n')
    const out = execFileSync('python3', ['-c', script], { cwd: path.join(import.meta.dirname, '../executor'), maxBuffer: 64 * 1024 * 1024 })
    const lines = out.toString('utf8').trim().split('\n')
    assert.equal(lines.length, 4)
    const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.deepEqual(parsed[0], { ev: 'display', data: { 'text/html': null, x: [null, null] } })
    assert.equal(parsed[1]!.text, 'a\udc80b')
    assert.deepEqual(parsed[2], { ev: 'x', v: '<bytes>', w: '<X>' })
    assert.match(JSON.stringify(parsed[3]), /more characters cut: too large to send/)
  })
})

describe('a consumer that stops reading a cell early', () => {
  it('ends the executor call at once: the cell is cancelled and its watchdog timer cleared', async () => {
    const graceMs = 200
    const { ex, session } = fakeSession(graceMs)
    // A client that goes away (the web IDE's Stop, an SSE reader that hangs up) stops iterating without a signal.
    const cell = session.executeCode({ code: 'while True: pass', language: 'python', timeoutMs: 300 })
    const first = cell.next()
    const exec = await ex.request('exec')
    ex.json(exec.id, { ev: 'stdout', text: 'working\n' })
    assert.deepEqual((await first).value, { type: 'stdout', text: 'working\n' })
    const stoppedAt = Date.now()
    await cell.return(undefined as never)
    const cancel = await ex.request('cancel')
    assert.equal(cancel.msg.target, exec.id)
    assert.ok(Date.now() - stoppedAt < 300, 'cancelled when the consumer left, not by the watchdog past the deadline')
    ex.json(exec.id, { ev: 'done', exitCode: 1, cancelled: true, interrupted: true })
    // Past the call's deadline and grace, a live watchdog would cancel again and ping the executor.
    await new Promise((r) => setTimeout(r, 300 + 2 * graceMs + 200))
    assert.deepEqual(
      ex.sent.filter((s) => s.msg.op !== 'exec').map((s) => s.msg.op),
      ['cancel'],
      'nothing more was sent: the watchdog was cleared',
    )
    assert.equal(ex.state.destroyed, 0)
    assert.equal(session.active, 0)
    const next = session.runCode({ code: 'print(1)', language: 'python' })
    const again = await ex.request('exec')
    ex.json(again.id, { ev: 'stdout', text: '1\n' })
    ex.json(again.id, { ev: 'done', exitCode: 0 })
    assert.equal((await next).structuredContent.stdout, '1\n')
  })
})

describe('hostile frames: process streams, listings, entries and watches', () => {
  it('a process stream without a task id and pid is refused; malformed output events are skipped; a bad end is made safe', async () => {
    const { ex, session } = fakeSession()
    const bad = session.tasks.spawn({ command: 'x' })
    const first = await ex.request('task.start')
    ex.json(first.id, { ev: 'task.started', taskId: '../../etc', pid: -1 })
    await rejectsWith(bad, 'SandboxFailure', /without a task id and pid/)
    const good = session.tasks.spawn({ command: 'x' })
    const { id } = await ex.request('task.start')
    ex.json(id, { ev: 'task.started', taskId: 'task-2', pid: 42 })
    const stream = await good
    ex.json(id, { ev: 'task.data', stream: 'stdout', offset: 0, data: Buffer.from('ok').toString('base64') })
    ex.json(id, { ev: 'task.data', stream: 'stdin', offset: 0, data: 'AAAA' })
    ex.json(id, { ev: 'task.data', stream: 'stdout', offset: -5, data: 'AAAA' })
    ex.json(id, { ev: 'task.data', stream: 'stdout', offset: 2, data: 7 })
    ex.json(id, { ev: 'task.data', stream: 'stderr', offset: 0, data: 'A'.repeat(600 * 1024) })
    ex.json(id, { ev: 'task.dropped', stream: 'stdout', bytes: 'many' })
    ex.json(id, { ev: 'done', status: 'pwned', exitCode: 1e9, signal: { x: 1 }, truncated: 'yes' })
    const events: unknown[] = []
    for await (const e of stream.events) events.push(e.type === 'stdout' || e.type === 'stderr' ? { ...e, data: e.data.toString() } : e)
    assert.deepEqual(events, [
      { type: 'stdout', data: 'ok', offset: 0 },
      { type: 'end', taskId: 'task-2', pid: 42, status: 'failed', exitCode: null, signal: null, truncated: false },
    ])
    await session.stop()
  })

  it('a listing or a file entry with fields of the wrong type fails the call; strings are cut', async () => {
    const { ex, session } = fakeSession()
    const list = session.tasks.list()
    ex.json((await ex.request('task.list')).id, { ev: 'done', tasks: [{ taskId: 'task-1', pid: 'one' }] })
    await rejectsWith(list, 'SandboxFailure', /without a task id and pid/)
    const list2 = session.tasks.list()
    const long = 'c'.repeat(100_000)
    ex.json((await ex.request('task.list')).id, {
      ev: 'done',
      tasks: [{ taskId: 'task-1', pid: 5, status: 'working', argv: [long, 3], command: long, env: { A: long, B: 2 }, cwd: long, tag: 9, stdin: 'yes' }],
    })
    const [info] = await list2
    assert.deepEqual(
      { argv: info!.argv.map((a) => a.length), command: info!.command?.length, env: Object.keys(info!.env), tag: info!.tag, stdin: info!.stdin },
      { argv: [8192, 0], command: 8192, env: ['A'], tag: null, stdin: false },
    )
    const stat = session.files.stat('a')
    ex.json((await ex.request('files.stat')).id, { ev: 'done', entry: { path: 'a', name: 'a', type: 'device', size: 1 } })
    await rejectsWith(stat, 'SandboxFailure', /bad type/)
    const stat2 = session.files.stat('a')
    const entry = {
      path: 'a',
      name: 'a',
      type: 'symlink',
      size: 0,
      mimeType: 'x',
      modifiedAt: 'now',
      mode: 0o170777,
      permissions: 'l'.repeat(99),
      owner: 'u',
      group: 'g',
      symlinkTarget: long,
    }
    ex.json((await ex.request('files.stat')).id, { ev: 'done', entry })
    const info2 = await stat2
    assert.deepEqual([info2.mode, info2.permissions.length, info2.symlinkTarget?.length], [0o777, 16, 8192])
    await session.stop()
  })

  it('watch events of unknown types or without a name are skipped; stop ends the watch', async () => {
    const { ex, session } = fakeSession()
    const opening = session.files.watch('w')
    const { id } = await ex.request('files.watch')
    ex.json(id, { ev: 'watch.started', mode: 'something' })
    const watch = await opening
    assert.equal(watch.mode, 'inotify')
    ex.json(id, {
      ev: 'watch',
      events: [{ name: 'a', type: 'create' }, { name: 'b', type: 'explode' }, { type: 'write' }, 'junk', null, { name: 'c', type: 'remove' }],
    })
    ex.json(id, { ev: 'watch', events: 'nope', overflow: true })
    ex.json(id, { ev: 'watch', events: [{ name: 'd', type: 'chmod' }] })
    const seen: unknown[] = []
    const it = watch.events[Symbol.asyncIterator]()
    seen.push((await it.next()).value, (await it.next()).value, (await it.next()).value)
    assert.deepEqual(seen, [
      { type: 'create', name: 'a' },
      { type: 'remove', name: 'c' },
      { type: 'chmod', name: 'd' },
    ])
    const stopping = watch.stop()
    await ex.request('cancel')
    ex.json(id, { ev: 'done', ended: 'stopped' })
    await stopping
    assert.equal(watch.overflowed, true)
    assert.equal(watch.ended, 'stopped')
    assert.equal((await it.next()).done, true)
    await session.stop()
  })
})
