/**
 * SessionManager and egress, on the fake driver (runs as any user) wrapped as a driver that wires
 * egress the way the bwrap driver does (a listener from the gateway it is given, closed when the
 * sandbox is destroyed): a session with an egress policy gets an `egress` network spec with its
 * policy and the host's gateway, never a warm sandbox; its listener closes on every end path,
 * failed starts included; sessions without egress keep the network-less spec.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import { CodeboxError, type EgressListenerHandle, type SandboxDriver, type SandboxSpec } from '@codebox/core'
import { EgressService, FakeDriver, SessionManager } from '@codebox/sandbox'

const dir = mkdtempSync(path.join(tmpdir(), 'codebox-egress-session-'))
const policy = { mode: 'allowlist' as const, allow: ['example.com:443'] }

/** The fake driver wiring egress through the gateway it is given, recording each spec and the socket it opened. */
function specRecorder(fail?: 'create' | 'ready'): { driver: SandboxDriver; specs: { spec: SandboxSpec; socketPath?: string; socketExisted: boolean }[] } {
  const inner = new FakeDriver({ python: fail === 'ready' ? '/bin/true' : undefined })
  const specs: { spec: SandboxSpec; socketPath?: string; socketExisted: boolean }[] = []
  const driver: SandboxDriver = {
    name: 'recording-fake',
    check: () => inner.check(),
    create: async (spec, options) => {
      let listener: EgressListenerHandle | undefined
      if (spec.network.mode === 'egress') {
        assert.ok(options?.egress, 'the manager hands the driver the egress gateway')
        listener = await options.egress.open({ sandboxId: spec.id, policy: spec.network.policy })
      }
      specs.push({ spec, ...(listener ? { socketPath: listener.socketPath } : {}), socketExisted: listener !== undefined && existsSync(listener.socketPath) })
      if (fail === 'create') {
        listener?.close()
        throw new CodeboxError('SandboxFailure', 'create failed on purpose')
      }
      const sandbox = await inner.create(spec)
      return {
        ...sandbox,
        input: sandbox.input,
        output: sandbox.output,
        diagnostics: sandbox.diagnostics,
        exited: sandbox.exited,
        counters: () => sandbox.counters(),
        memoryUsage: () => sandbox.memoryUsage(),
        ...(listener ? { egressCounters: () => listener.counters } : {}),
        destroy: async () => {
          await sandbox.destroy()
          listener?.close()
        },
      }
    },
  }
  return { driver, specs }
}

describe('sessions with egress', () => {
  after(() => rmSync(dir, { recursive: true, force: true }))

  test('a session with egress gets its own sandbox and listener; stop() closes the listener', async () => {
    const { driver, specs } = specRecorder()
    const egress = new EgressService({ socketDir: path.join(dir, 'a') })
    const m = new SessionManager({ driver, poolSize: 1, egress })
    try {
      const plain = await m.start()
      assert.deepEqual(specs.at(-1)?.spec.network, { mode: 'none' })
      await plain.stop()
      const s = await m.start({ egress: policy })
      const last = specs.at(-1)!
      assert.deepEqual(last.spec.network, { mode: 'egress', policy, sessionId: s.id })
      assert.ok(last.socketExisted, 'the listener was not open when the sandbox was created')
      const socketPath = last.socketPath ?? ''
      assert.equal(socketPath, path.join(egress.socketDir, `${s.sandboxId}.sock`))
      assert.deepEqual(m.egressCounters(s.id), { allowed: 0, denied: 0 })
      assert.equal(egress.openCount, 1)
      await s.stop()
      assert.equal(existsSync(socketPath), false, 'the socket outlived the session')
      assert.equal(egress.openCount, 0)
      assert.equal(m.egressCounters(s.id), undefined)
      assert.ok(
        specs.every((r) => r.spec.network.mode === 'none' || r === last),
        'a pool sandbox was created with a network',
      )
    } finally {
      await m.close()
    }
  })

  test('an egress session never takes a warm sandbox', async () => {
    const { driver, specs } = specRecorder()
    const m = new SessionManager({ driver, poolSize: 1, egress: new EgressService({ socketDir: path.join(dir, 'b') }) })
    try {
      const warm = specs[0]!.spec.id
      const s = await m.start({ egress: { mode: 'public', allow: [] } })
      assert.notEqual(s.sandboxId, warm)
      await s.stop()
    } finally {
      await m.close()
    }
  })

  test('a bad policy is a ValidationError and starts nothing', async () => {
    const { driver, specs } = specRecorder()
    const egress = new EgressService({ socketDir: path.join(dir, 'c') })
    const m = new SessionManager({ driver, poolSize: 0, egress })
    try {
      await assert.rejects(
        m.start({ egress: { mode: 'allowlist', allow: ['http://example.com'] } }),
        (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError' && /egress\.allow\[0\]/.test(e.message),
      )
      assert.equal(specs.length, 0)
      assert.equal(egress.openCount, 0)
    } finally {
      await m.close()
    }
  })

  for (const fail of ['create', 'ready'] as const) {
    test(`a start that fails at ${fail} closes the listener`, async () => {
      const { driver, specs } = specRecorder(fail)
      const egress = new EgressService({ socketDir: path.join(dir, `fail-${fail}`) })
      const m = new SessionManager({ driver, poolSize: 0, egress, startTimeoutMs: 2000 })
      try {
        await assert.rejects(m.start({ egress: policy }), CodeboxError)
        assert.equal(specs.length, 1)
        const { spec, socketPath } = specs[0]!
        assert.ok(spec.network.mode === 'egress' && socketPath && !existsSync(socketPath), 'the socket outlived the failed start')
        assert.equal(egress.openCount, 0)
      } finally {
        await m.close()
      }
    })
  }

  test('close() ends every session and its listener', async () => {
    const { driver } = specRecorder()
    const egress = new EgressService({ socketDir: path.join(dir, 'd') })
    const m = new SessionManager({ driver, poolSize: 0, egress })
    await m.start({ egress: policy })
    await m.start({ egress: policy })
    assert.equal(egress.openCount, 2)
    await m.close()
    assert.equal(egress.openCount, 0)
  })
})
