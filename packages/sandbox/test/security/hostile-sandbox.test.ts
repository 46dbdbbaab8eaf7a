/**
 * Attack catalogue, group "Hostile sandbox -> host" (SECURITY.md rule 8): a fuzzer that sends the
 * host malformed, NaN/Infinity, oversized, deeply nested and misaddressed frames, a stopped or
 * killed executor and a closed channel, through a hostile stand-in executor (fake driver hook) and
 * from hostile cells in real bwrap sandboxes, while a control session keeps answering. Each call
 * must end (a result or a CodeboxError) within its timeout plus a grace, the host must throw
 * nothing uncaught and stay under a memory bound, and new sessions must start afterwards.
 * Seeded: CODEBOX_FUZZ_SEED replays a run; every failure names the seed.
 */
import assert from 'node:assert/strict'
import { randomInt } from 'node:crypto'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { defaultLimits } from '@codebox/core'
import { FakeDriver, SessionManager, type Session } from '@codebox/sandbox'
import { bwrapDriver, bwrapUnavailable, fakeManager } from '../fixtures.ts'
import { PY_GUARD } from './probe.ts'
import { defineHostileCellSuite } from './hostile-cells.ts'
import * as h from './hostile-fuzz.ts'

const SEED = Number(process.env.CODEBOX_FUZZ_SEED) || randomInt(1, 2 ** 31)
console.log(`hostile-sandbox: seed ${SEED} (replay with CODEBOX_FUZZ_SEED=${SEED})`)
const RANDOM_CASES = 24
/** How long past its own timeout a call may take to end when its executor stops answering. */
const GRACE_MS = 15_000
/** How long stopping a session may take (ample on a loaded 2-core machine; a hang never ends). */
const STOP_MS = 30_000
const RSS_BOUND = 300 * 1024 * 1024
const MiB = 1024 * 1024
/** The most code one cell may carry (sandbox/src/input.ts): steps must fit, or the case tests nothing. */
const MAX_CODE_BYTES = 4 * MiB
const standIn = path.join(import.meta.dirname, 'hostile-executor.py')
const unavailable = await bwrapUnavailable()

interface Case {
  name: string
  steps: h.Step[]
  timeoutMs?: number
  /** The call must return a result (the hostile frames may only be dropped, not end the call). */
  result?: boolean
  /** The session must then answer a next call with exactly its own output (nothing stale or forged). */
  next?: boolean
  /** Moves 100 MB or more: run one at a time, so a slow one does not make its neighbours late. */
  large?: boolean
}

const cases: Case[] = [
  { name: 'NaN in a display bundle', steps: [h.json('self', '{"ev":"display","data":{"text/html":NaN,"text/plain":"n"}}'), h.done()] },
  { name: 'Infinity and -Infinity in done', steps: [h.json('self', '{"ev":"done","exitCode":Infinity,"durationMs":-Infinity}')] },
  { name: 'huge numbers', steps: [h.json('self', `{"ev":"done","exitCode":1e400,"durationMs":${'9'.repeat(100_000)}}`)] },
  { name: 'nesting 100k deep', steps: [h.json('self', `{"ev":"display","data":${'['.repeat(100_000)}${']'.repeat(100_000)}}`), h.done()] },
  { name: 'invalid UTF-8 in a string', steps: [h.bytesFrame('self', h.J, Buffer.from('{"ev":"stdout","text":"\xff\xfe\xc3("}', 'latin1')), h.done()] },
  { name: 'a 100 MB frame', steps: [['big', 'self', h.J, 100 * MiB], h.done()], large: true },
  { name: 'a header claiming 4 GiB, then silence', steps: [h.header(0xffffffff, 'self', h.J)] },
  { name: 'a header claiming 0 bytes', steps: [h.header(0, 'self', h.J), h.done()] },
  { name: 'a truncated frame, then exit', steps: [h.header(1000, 'self', h.J), h.raw(Buffer.from('{"ev":"std')), ['exit', 0]] },
  { name: 'truncated JSON in a whole frame', steps: [h.json('self', '{"ev":"stdout","te'), h.done()] },
  { name: 'unknown frame kinds', steps: [0, 1, 0x58, 0xff].map((k) => h.bytesFrame('self', k, Buffer.from('{"ev":"done"}'))).concat([h.done()]) },
  { name: 'frames for other call ids', steps: [h.stdout('x', 'self+1'), h.stdout('y', 0xffffffff), h.json(0, '{"ev":"done"}'), h.done()], next: true },
  {
    name: 'a done for a call never made',
    steps: [h.json('self+7', '{"ev":"done","exitCode":0}'), h.json(12345, '{"ev":"error","code":"NotFound"}'), h.done()],
    next: true,
  },
  { name: 'events of the wrong type', steps: [h.json('self', '{"ev":"stdout","text":12345}'), h.json('self', '{"ev":"stderr","text":{"a":1}}'), h.done()] },
  {
    name: 'display values that are not strings',
    steps: [h.json('self', '{"ev":"display","data":{"image/png":12345,"text/plain":["a"],"text/html":{"x":1}}}'), h.done()],
  },
  { name: 'an image that is not base64', steps: [h.json('self', '{"ev":"display","data":{"image/png":"!!! not base64 ***","text/plain":"i"}}'), h.done()] },
  { name: 'a payload that is not an object', steps: [h.json('self', 'null'), h.json('self', '42'), h.json('self', '[1]'), h.done()] },
  { name: 'an error code from the prototype', steps: [h.json('self', '{"ev":"error","code":"constructor","message":{"x":1}}')] },
  {
    name: 'done with fields of the wrong type',
    steps: [h.json('self', '{"ev":"done","exitCode":"x","truncated":"yes","timedOut":1,"signal":{},"error":{"traceback":7}}')],
  },
  { name: 'the executor stops itself mid-call', steps: [h.stdout('before the stop\n'), ['stop']] },
  { name: 'the executor closes its stdout mid-call', steps: [h.stdout('before the close\n'), ['close']] },
  { name: 'the executor exits mid-call', steps: [h.stdout('before the exit\n'), ['exit', 3]] },
  { name: 'silence: no answer at all', steps: [] },
  {
    name: 'a slow drip of a whole answer',
    steps: [h.dripFrame('{"ev":"stdout","text":"drip\\n"}', 10), h.dripFrame('{"ev":"done","exitCode":0}', 10)],
    result: true,
  },
  { name: 'a slow drip of half a frame, then silence', steps: [h.dripFrame('{"ev":"stdout","text":"never ends"}', 20, 20)] },
  { name: '150 MB of valid stdout events', steps: [['flood', 'self', 150 * MiB, MiB], h.done()], large: true },
  {
    name: '40 display events of 2 MB',
    steps: [h.json('self', JSON.stringify({ ev: 'display', data: { 'text/html': 'h'.repeat(2 * MiB), 'text/plain': 'd' } }), 40), h.done()],
    large: true,
  },
  { name: '200k frames of an unknown kind', steps: [h.raw(h.encode(1, 0x58, Buffer.from('z')), 200_000), h.done()] },
  {
    name: 'a duplicate done',
    steps: [h.done(), h.done(), h.json('self', '{"ev":"error","code":"SandboxFailure","message":"late"}')],
    result: true,
    next: true,
  },
]

/** Runs `steps` as one call in a new stand-in session; asserts it ends cleanly and the session stops. */
async function hostileCall(m: SessionManager, label: string, c: Case): Promise<void> {
  const session = await m.start()
  try {
    const timeoutMs = c.timeoutMs ?? 2_000
    const code = JSON.stringify(c.steps)
    assert.ok(code.length < MAX_CODE_BYTES, `${label}: the steps do not fit in one cell`)
    const call = session.runCode({ code, timeoutMs })
    const outcome = await h.endsCleanly(label, call, timeoutMs + GRACE_MS)
    if (c.result) assert.ok('result' in outcome, `${label}: expected a result, got ${'error' in outcome ? outcome.error.message : ''}`)
    if (c.name.startsWith('a slow drip of a whole') && 'result' in outcome) assert.equal(outcome.result.structuredContent.stdout, 'drip\n', label)
    if (c.next) {
      const second = await h.endsCleanly(
        `${label} (next call)`,
        session.runCode({ code: JSON.stringify([h.stdout('second\n'), h.done()]), timeoutMs }),
        timeoutMs + GRACE_MS,
      )
      assert.ok('result' in second, `${label}: the next call failed: ${'error' in second ? second.error.message : ''}`)
      assert.equal(second.result.structuredContent.stdout, 'second\n', `${label}: the next call got output that was not its own`)
    }
  } finally {
    await h.stopsInTime(label, session, STOP_MS)
  }
}

describe(`hostile sandbox -> host: a hostile stand-in executor (seed ${SEED})`, () => {
  let watch: ReturnType<typeof h.watchHost> | undefined
  const standIns = h.recording(new FakeDriver({ executorScript: standIn }))
  const hostile = new SessionManager({ driver: standIns.driver, poolSize: 0 })
  const control = fakeManager()
  const stopControl = new AbortController()
  let controlRun: Promise<number>
  before(async () => {
    watch = h.watchHost()
    controlRun = control.start().then((s) => h.controlLoop(s, SEED, stopControl.signal))
    controlRun.catch(() => {})
  })
  after(async () => {
    stopControl.abort()
    watch?.stop()
    // Bounded: a host that cannot end a stand-in has failed a test already; the file must still end.
    if (!(await h.within(hostile.close(), 20_000))) console.log(`[seed ${SEED}] the host could not close the stand-in sessions in 20 s; killing them`)
    h.killStandIns(standIns.created)
    await h.within(control.close(), 20_000)
  })

  describe('adversarial and random frames', { concurrency: 4 }, () => {
    for (const c of cases.filter((c) => !c.large)) test(c.name, () => hostileCall(hostile, `[seed ${SEED}] ${c.name}`, c))
    const r = h.rng(SEED)
    for (let i = 0; i < RANDOM_CASES; i++) {
      const steps = h.randomSteps(r)
      test(`random case ${i}`, () =>
        hostileCall(hostile, `[seed ${SEED}] random case ${i}: ${JSON.stringify(steps).slice(0, 300)}`, { name: `random ${i}`, steps }))
    }
  })

  describe('large frames and floods, one at a time', () => {
    for (const c of cases.filter((c) => c.large)) test(c.name, () => hostileCall(hostile, `[seed ${SEED}] ${c.name}`, c))
  })

  test('the host survived: no uncaught error, bounded memory, the control session always right, new sessions start', async () => {
    stopControl.abort()
    const answers = await controlRun
    assert.ok(answers > 0, `[seed ${SEED}] the control session never answered`)
    assert.ok(watch)
    assert.deepEqual(watch.uncaught.map(String), [], `[seed ${SEED}] the host had uncaught errors`)
    const grown = watch.peakRss() - watch.baseRss
    assert.ok(grown < RSS_BOUND, `[seed ${SEED}] host RSS grew by ${Math.round(grown / MiB)} MiB (bound ${RSS_BOUND / MiB} MiB)`)
    const fresh = await control.start()
    assert.equal((await fresh.runCode({ code: 'print(6 * 7)' })).structuredContent.stdout, '42\n')
  })
})

defineHostileCellSuite({ driverName: 'bwrap', unavailable, makeDriver: bwrapDriver, guard: PY_GUARD, seed: SEED })
