/** Start-up sweep of cgroups a killed server left behind: stale empty ones go, the rest stay. */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, rmdir, utimes, writeFile } from 'node:fs/promises'
import { test } from 'node:test'
import { detectCgroups, sweepStaleCgroups } from '../src/drivers/bwrap/cgroups.ts'

const mode = detectCgroups()
const skip = process.getuid?.() !== 0 ? 'needs root' : mode !== 'v1' ? `this test drives cgroup v1; the host has ${mode}` : false

test('sweepStaleCgroups removes only old, empty sandbox cgroups', { skip }, async () => {
  const base = '/sys/fs/cgroup/pids/codebox'
  const tag = `sweep-test-${process.pid}`
  const stale = `${base}/${tag}-stale`
  const fresh = `${base}/${tag}-fresh`
  const busy = `${base}/${tag}-busy`
  for (const d of [stale, fresh, busy]) await mkdir(d, { recursive: true })
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' })
  try {
    await writeFile(`${busy}/cgroup.procs`, String(sleeper.pid))
    const anHourAgo = new Date(Date.now() - 3600_000)
    await utimes(stale, anHourAgo, anHourAgo)
    await utimes(busy, anHourAgo, anHourAgo)
    const removed = await sweepStaleCgroups('v1')
    assert.ok(removed >= 1)
    assert.equal(existsSync(stale), false, 'the stale empty cgroup is removed')
    assert.equal(existsSync(fresh), true, 'a new cgroup (a sandbox about to start) is kept')
    assert.equal(existsSync(busy), true, 'a cgroup with a process is kept')
  } finally {
    sleeper.kill('SIGKILL')
    await new Promise((r) => sleeper.once('exit', r))
    for (const d of [stale, fresh, busy]) await rmdir(d).catch(() => {})
  }
})
