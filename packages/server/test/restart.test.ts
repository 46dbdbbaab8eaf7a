/**
 * Lifecycle across restarts: a server killed with SIGKILL leaves no sandbox running, and the next
 * one marks the sessions it had as TERMINATED (`server-restart`), keeping the records of the
 * others. One server per state directory.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { bwrapUnavailable } from '../../sandbox/test/fixtures.ts'

const child = path.join(import.meta.dirname, 'serve-child.ts')

async function serve(stateDir: string, driver: string, args: string[] = []): Promise<{ proc: ChildProcess; url: string; output: () => string }> {
  const proc = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', child, ...args], {
    env: { ...process.env, CODEBOX_STATE_DIR: stateDir, CODEBOX_DRIVER: driver, CODEBOX_POOL_SIZE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  const url = await new Promise<string>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /listening (\S+)/.exec(out)
      if (m) resolve(m[1]!)
    })
    proc.on('exit', (code) => reject(new Error(`server exited ${code}: ${err}`)))
  })
  return { proc, url, output: () => out + err }
}

/** Every process below `pid`, found through /proc. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>()
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8')
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
    } catch {
      // exited meanwhile
    }
  }
  const out: number[] = []
  const walk = (p: number): void => {
    for (const [c, pp] of parent) if (pp === p) (out.push(c), walk(c))
  }
  walk(pid)
  return out
}

const aliveAll = (pids: number[]): number[] => pids.filter((p) => fs.existsSync(`/proc/${p}`))

test('a SIGKILLed server leaves no sandbox behind; the next one reconciles its sessions', async (t) => {
  const driver = (await bwrapUnavailable()) === undefined ? 'bwrap' : 'fake'
  t.diagnostic(`driver: ${driver}`)
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-restart-'))
  if (driver === 'bwrap') fs.symlinkSync(path.join(process.env.CODEBOX_STATE_DIR ?? '/var/lib/codebox', 'images'), path.join(stateDir, 'images'))
  t.after(() => fs.rmSync(stateDir, { recursive: true, force: true }))

  const first = await serve(stateDir, driver)
  const post = (url: string, p: string, body: unknown): Promise<Response> =>
    fetch(url + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const a = ((await (await post(first.url, '/v1/sessions', {})).json()) as { sessionId: string }).sessionId
  const b = ((await (await post(first.url, '/v1/sessions', {})).json()) as { sessionId: string }).sessionId
  const r = await post(first.url, `/v1/sessions/${a}/invoke`, { name: 'executeCommand', arguments: { command: 'sleep 300 & echo started' } })
  assert.equal(((await r.json()) as { structuredContent: { stdout: string } }).structuredContent.stdout, 'started\n')
  await fetch(`${first.url}/v1/sessions/${b}`, { method: 'DELETE' })

  const second = await serve(stateDir, driver).then(
    (s) => (s.proc.kill('SIGKILL'), 'started'),
    (e: Error) => e.message,
  )
  assert.match(second, /another codebox server \(pid \d+\) is using/)

  const procs = descendants(first.proc.pid!)
  assert.ok(procs.length > 0, 'the server has sandbox processes')
  first.proc.kill('SIGKILL')
  const deadline = Date.now() + 10_000
  while (aliveAll(procs).length && Date.now() < deadline) await new Promise((res) => setTimeout(res, 100))
  assert.deepEqual(aliveAll(procs), [], 'every sandbox process died with the server')

  const next = await serve(stateDir, driver)
  t.after(() => next.proc.kill('SIGTERM'))
  const infoA = (await (await fetch(`${next.url}/v1/sessions/${a}`)).json()) as { status: string; endReason: string }
  const infoB = (await (await fetch(`${next.url}/v1/sessions/${b}`)).json()) as { status: string; endReason: string }
  assert.deepEqual([infoA.status, infoA.endReason], ['TERMINATED', 'server-restart'])
  assert.deepEqual([infoB.status, infoB.endReason], ['TERMINATED', 'stopped'])
  const again = await post(next.url, `/v1/sessions/${a}/invoke`, { name: 'executeCommand', arguments: { command: 'true' } })
  assert.equal(again.status, 410)
  const audit = (await (await fetch(`${next.url}/v1/audit?sessionId=${a}`)).json()) as { items: { action: string; outcome: string }[] }
  assert.deepEqual(
    audit.items.map((e) => `${e.action}:${e.outcome}`),
    ['startSession:ok', 'executeCommand:ok', 'executeCommand:rejected'],
  )
})

test('an uncaught exception from a timer and an unhandled rejection are logged, and the server keeps serving', async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-faults-'))
  t.after(() => fs.rmSync(stateDir, { recursive: true, force: true }))
  const server = await serve(stateDir, 'fake', ['--faults'])
  let exited: number | null | undefined
  server.proc.on('exit', (code) => (exited = code))
  t.after(() => server.proc.kill('SIGKILL'))
  // Both faults went off (the child prints this after them), or the process died of the first.
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (server.output().includes('faults raised')) resolve()
    }
    server.proc.stdout!.on('data', check)
    server.proc.on('exit', (code) => reject(new Error(`the server died of the fault (exit ${code}): ${server.output().slice(-2000)}`)))
    check()
  })
  assert.equal(exited, undefined)
  const post = (p: string, body: unknown): Promise<Response> =>
    fetch(server.url + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const started = await post('/v1/sessions', {})
  assert.equal(started.status, 201)
  const { sessionId } = (await started.json()) as { sessionId: string }
  const r = await post(`/v1/sessions/${sessionId}/invoke`, { name: 'executeCode', arguments: { code: 'print(6 * 7)' } })
  assert.equal(((await r.json()) as { structuredContent: { stdout: string } }).structuredContent.stdout, '42\n')
  const log = server.output()
  assert.match(log, /uncaught exception; the server keeps serving/)
  assert.match(log, /deliberate fault from a timer/)
  assert.match(log, /unhandled promise rejection; the server keeps serving/)
  assert.match(log, /deliberate unhandled rejection/)
  const exit = new Promise<number | null>((resolve) => server.proc.on('exit', resolve))
  server.proc.kill('SIGTERM')
  assert.equal(await exit, 0)
})
