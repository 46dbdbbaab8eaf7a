/**
 * Hosted agents' logs in the store: a session's last N bytes kept at a character boundary with
 * what was dropped counted, output buffered and written in batches (not per chunk), the per-runtime
 * bound and retention, tenants apart, logs surviving a re-opened store, and a log whose server went
 * away without ending it read as ended.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { defaultLimits } from '@codebox/core'
import { RuntimeLogs } from '../src/services/runtime-logs.ts'
import { builtInInterpreterId, dropLeadingBytes, Store, type RuntimeLogStore } from '../src/store/index.ts'

let dir: string
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'codebox-runtime-logs-'))
})
after(() => rmSync(dir, { recursive: true, force: true }))

const settings = {
  entrypoint: 'agent.py',
  language: 'python' as const,
  protocol: 'HTTP' as const,
  network: { mode: 'SANDBOX' as const },
  idleTimeoutSeconds: 900,
  maxLifetimeSeconds: 28800,
  limits: {},
}

/** A store with runtime `agent` of `tenant` deployed; `sandbox(id)` records a running codebox session. */
async function withRuntime(store: Store, tenant = 'acme'): Promise<{ runtimeId: string; sandbox: (id: string) => Promise<string> }> {
  const bundleId = await store.runtimes.beginBundle(tenant)
  await store.runtimes.appendBundleChunk(bundleId, 0, Buffer.from('x'))
  await store.runtimes.finishBundle(bundleId, tenant, 'f'.repeat(64), 1)
  const { runtime } = await store.runtimes.deploy({ tenant, name: 'agent', bundleId, settings })
  const sandbox = async (id: string): Promise<string> => {
    const now = new Date().toISOString()
    await store.sessions.insert({
      sessionId: id,
      tenant,
      interpreterId: builtInInterpreterId,
      name: id,
      status: 'READY',
      createdAt: now,
      lastUpdatedAt: now,
      timeoutSeconds: 900,
      limits: { ...defaultLimits },
      runtimeId: runtime.runtimeId,
    })
    return id
  }
  return { runtimeId: runtime.runtimeId, sandbox }
}

const rsid = (c: string): string => `${c.repeat(8)}-runtime-session-of-the-logs-test`

/** Counts the store's writes of log text. */
function countingStore(store: RuntimeLogStore): { store: RuntimeLogStore; appends: () => number } {
  let n = 0
  return {
    store: new Proxy(store, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target) as unknown
        if (prop === 'appendLog') return (...args: Parameters<RuntimeLogStore['appendLog']>) => (n++, target.appendLog(...args))
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v
      },
    }),
    appends: () => n,
  }
}

describe('hosted agents’ logs in the store', () => {
  it('cuts at a character boundary', () => {
    assert.deepEqual(dropLeadingBytes('aé€b', 2), { text: '€b', bytes: 4 }, 'é is 2 bytes: dropping 2 takes "a" and all of é')
    assert.deepEqual(dropLeadingBytes('aé€b', 4), { text: 'b', bytes: 1 }, 'a cut inside € (bytes 3-5) drops all of it')
    assert.deepEqual(dropLeadingBytes('abc', 10), { text: '', bytes: 0 })
  })

  it('keeps the last N bytes of a session, counts what went, and batches writes', async (t) => {
    const store = Store.open(':memory:')
    t.after(() => store.close())
    const { runtimeId, sandbox } = await withRuntime(store)
    const counted = countingStore(store.runtimeLogs)
    const logs = new RuntimeLogs({ store: counted.store, maxBytesPerSession: 1000, flushMs: 50 })
    const log = await logs.open({ tenant: 'acme', runtimeId, runtimeSessionId: rsid('a'), sessionId: await sandbox('s1'), version: '1' })
    for (let i = 0; i < 500; i++) log.write('stdout', `line ${String(i).padStart(4, '0')}\n`)
    assert.equal(counted.appends(), 0, 'nothing is written per chunk')
    await new Promise((r) => setTimeout(r, 200))
    assert.equal(counted.appends(), 1, 'one batched write')
    log.write('stderr', 'é'.repeat(100) + '\n')
    await log.end('its process exited with code 3')
    const [entry] = await logs.read('acme', runtimeId, { runtimeSessionId: rsid('a') })
    assert.ok(entry)
    assert.ok(Buffer.byteLength(entry.text) <= 1000 && Buffer.byteLength(entry.text) > 950, `kept ${Buffer.byteLength(entry.text)} bytes`)
    assert.ok(entry.text.endsWith(`line 0499\n${'é'.repeat(100)}\n`))
    assert.equal(entry.droppedBytes + Buffer.byteLength(entry.text), 500 * 10 + 201, 'every byte is kept or counted')
    assert.equal(entry.ended, 'its process exited with code 3')
    assert.ok(entry.endedAt)
    assert.equal(entry.sessionId, 's1')
    assert.match(log.tail(), /é\n$/)
    // Writes after the end are ignored; a second end keeps the first reason.
    log.write('stdout', 'late\n')
    await log.end('again')
    assert.equal((await logs.read('acme', runtimeId))[0]!.ended, 'its process exited with code 3')
    assert.deepEqual(await logs.read('globex', runtimeId), [], 'another tenant sees nothing')

    // Hostile text is kept as it came: NUL, escapes, a lone surrogate (as UTF-8's replacement), quotes.
    const odd = await logs.open({ tenant: 'acme', runtimeId, runtimeSessionId: rsid('o'), sessionId: await sandbox('s2'), version: '1' })
    odd.write('stdout', 'a\u0000b\x1b[31mred\x1b[0m \' "; DROP TABLE runtime_logs; --\n')
    odd.write('stderr', 'half \ud800 pair\n')
    await odd.end('stopped')
    assert.equal(
      (await logs.read('acme', runtimeId, { runtimeSessionId: rsid('o') }))[0]!.text,
      'a\u0000b\x1b[31mred\x1b[0m \' "; DROP TABLE runtime_logs; --\nhalf \ufffd pair\n',
    )
  })

  it('bounds logs per runtime (the oldest ended go, running ones stay) and expires ended ones', async (t) => {
    const store = Store.open(':memory:')
    t.after(() => store.close())
    const { runtimeId, sandbox } = await withRuntime(store)
    const logs = new RuntimeLogs({ store: store.runtimeLogs, maxSessionsPerRuntime: 3, flushMs: 10 })
    const running = await logs.open({ tenant: 'acme', runtimeId, runtimeSessionId: rsid('r'), sessionId: await sandbox('run'), version: '1' })
    running.write('stdout', 'still here\n')
    for (const c of ['b', 'c', 'd', 'e']) {
      const log = await logs.open({ tenant: 'acme', runtimeId, runtimeSessionId: rsid(c), sessionId: await sandbox(`s-${c}`), version: '1' })
      log.write('stdout', `${c}\n`)
      await log.end('stopped')
      await new Promise((r) => setTimeout(r, 5))
    }
    const kept = await logs.read('acme', runtimeId)
    assert.deepEqual(
      kept.map((e) => e.runtimeSessionId),
      [rsid('e'), rsid('d'), rsid('r')],
      'the oldest ended ones went; the running one stayed',
    )
    assert.equal(kept.find((e) => e.runtimeSessionId === rsid('r'))!.text, 'still here\n', 'a running log reads what was printed up to now')
    assert.equal((await logs.read('acme', runtimeId, { limit: 1 })).length, 1)

    // Retention: a reader with a short one sees ended logs go, the running one stays.
    const short = new RuntimeLogs({ store: store.runtimeLogs, retentionMs: 1 })
    await new Promise((r) => setTimeout(r, 10))
    assert.deepEqual(
      (await short.read('acme', runtimeId)).map((e) => e.runtimeSessionId),
      [rsid('r')],
    )
    await logs.forget('acme', runtimeId)
    assert.deepEqual(await logs.read('acme', runtimeId), [])
  })

  it('outlives the store being closed and opened again; a log its server never ended reads as ended with its session', async () => {
    const file = join(dir, 'reopen', 'codebox.db')
    const first = Store.open(file)
    const { runtimeId, sandbox } = await withRuntime(first)
    const logs = new RuntimeLogs({ store: first.runtimeLogs, flushMs: 10 })
    const ended = await logs.open({ tenant: 'acme', runtimeId, runtimeSessionId: rsid('a'), sessionId: await sandbox('s-ended'), version: '1' })
    ended.write('stdout', 'agent listening on 8080\n')
    ended.write('stderr', 'Traceback: boom\n')
    await ended.end('its process exited with code 1')
    // A server that goes away mid-session: its output up to the last flush is stored, the log never ended.
    const cut = await logs.open({ tenant: 'acme', runtimeId, runtimeSessionId: rsid('b'), sessionId: await sandbox('s-cut'), version: '2' })
    cut.write('stdout', 'working\n')
    await logs.flush()
    first.close()

    const second = Store.open(file)
    try {
      // The restarted server ends the sandboxes it could not re-adopt.
      await second.sessions.markTerminated('s-cut', 'stopped')
      const again = new RuntimeLogs({ store: second.runtimeLogs })
      const [b, a] = await again.read('acme', runtimeId)
      assert.equal(a!.text, 'agent listening on 8080\nTraceback: boom\n')
      assert.equal(a!.ended, 'its process exited with code 1')
      assert.equal(b!.text, 'working\n')
      assert.equal(b!.version, '2')
      assert.ok(b!.endedAt, 'the log of a session that is no longer running has ended')
      assert.match(b!.ended ?? '', /stopped/)
    } finally {
      second.close()
    }
  })
})
