/**
 * Code mounts on kubernetes sandbox pods: the code receiver (code_receiver.py, run here with the
 * host's python3) unpacks only what stays inside, within its bounds, and waits only so long; the
 * driver fills a pod's code volume from its init container and the session sees it read-only at
 * /app; a bad bundle fails before any pod exists, and a receiver that refuses or fails gives
 * Unavailable saying why and leaves no pod.
 */
import assert from 'node:assert/strict'
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { CodeboxError, defaultLimits, type SandboxSpec } from '@codebox/core'
import { findResource } from '@codebox/sandbox/testing/kubernetes'
import { connectExecutor, scanCode, sendCode } from '../src/index.ts'
import { checkCodeSession, makeBundle } from './code-bundle.ts'
import { hostReason, podMode, startKube, testId, type KubeFixture } from './kube-fixtures.ts'

const receiverScript = path.resolve(import.meta.dirname, '../../sandbox/executor/code_receiver.py')
const podsType = findResource('', 'v1', 'pods')!
const TOKEN = 'the-test-token'

const isUnavailable = (message: RegExp) => (e: unknown) => {
  assert.ok(e instanceof CodeboxError, `expected a CodeboxError, got ${String(e)}`)
  assert.equal(e.code, 'Unavailable', e.message)
  assert.match(e.message, message)
  return true
}

/** One ustar entry (a header, then the data padded to 512 bytes). */
function entry(name: string, options: { type?: string; mode?: number; data?: string; link?: string } = {}): Buffer {
  const data = Buffer.from(options.data ?? '')
  const h = Buffer.alloc(512)
  h.write(name, 0, 100)
  h.write(`${(options.mode ?? 0o644).toString(8).padStart(7, '0')}\0`, 100)
  h.write('0000000\0', 108)
  h.write('0000000\0', 116)
  h.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124)
  h.write('00000000000\0', 136)
  h.write('        ', 148)
  h.write(options.type ?? '0', 156)
  h.write(options.link ?? '', 157, 100)
  h.write('ustar\0', 257)
  h.write('00', 263)
  let sum = 0
  for (const b of h) sum += b
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148)
  return Buffer.concat([h, data, Buffer.alloc((512 - (data.length % 512)) % 512)])
}
const tarOf = (...entries: Buffer[]): Buffer => Buffer.concat([...entries, Buffer.alloc(1024)])

interface Receiver {
  socket: string
  dir: string
  exited: Promise<{ code: number | null; stderr: string }>
}

/** Starts the receiver on a unix socket with an empty CODEBOX_CODE_DIR; waits until it listens. */
async function startReceiver(env: Record<string, string> = {}): Promise<Receiver> {
  const root = mkdtempSync(path.join(tmpdir(), 'kcode-rcv-'))
  const dir = path.join(root, 'app')
  mkdirSync(dir)
  const socket = path.join(root, 'r.sock')
  const child = spawn('/usr/bin/python3', ['-s', '-B', receiverScript], {
    env: {
      CODEBOX_LISTEN: `unix:${socket}`,
      CODEBOX_EXECUTOR_TOKEN: TOKEN,
      CODEBOX_CODE_DIR: dir,
      CODEBOX_CODE_MAX_BYTES: '1000',
      CODEBOX_CODE_MAX_ENTRIES: '8',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('exit', (code) => resolve({ code, stderr })))
  const deadline = Date.now() + 10_000
  while (!stderr.includes('listening on')) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the receiver did not listen: ${stderr}`)
    await delay(10)
  }
  after(() => {
    child.kill('SIGKILL')
    rmSync(root, { recursive: true, force: true })
  })
  return { socket, dir, exited }
}

/** Authenticates, sends `bytes` as the stream, and returns the frames the receiver answered. */
async function sendRaw(r: Receiver, bytes: Buffer, token = TOKEN): Promise<Record<string, unknown>[]> {
  const socket = await connectExecutor({ dial: () => net.connect({ path: r.socket }), host: '', port: 0, token, what: 'the test receiver', timeoutMs: 5000 })
  const chunks: Buffer[] = []
  socket.on('data', (b: Buffer) => chunks.push(b))
  socket.on('error', () => {})
  socket.end(bytes)
  await new Promise((resolve) => socket.once('close', resolve))
  const all = Buffer.concat(chunks)
  const frames: Record<string, unknown>[] = []
  for (let at = 0; at + 9 <= all.length;) {
    const length = all.readUInt32BE(at)
    frames.push(JSON.parse(all.subarray(at + 9, at + 4 + length).toString()) as Record<string, unknown>)
    at += 4 + length
  }
  return frames
}

describe('the code receiver', () => {
  it('unpacks files (modes 0644 and 0755), directories, links inside and hard links; a wrong token first changes nothing', async () => {
    const r = await startReceiver()
    await assert.rejects(
      connectExecutor({ dial: () => net.connect({ path: r.socket }), host: '', port: 0, token: 'wrong', what: 'the test receiver', timeoutMs: 5000 }),
      /closed the connection without answering/,
    )
    const frames = await sendRaw(
      r,
      tarOf(
        entry('./', { type: '5', mode: 0o700 }),
        entry('bin/tool', { mode: 0o4777, data: '#!/bin/sh\n' }),
        entry('notes.txt', { mode: 0o600, data: 'hi' }),
        entry('bin/up', { type: '2', link: '../notes.txt' }),
        entry('same.txt', { type: '1', link: 'notes.txt' }),
      ),
    )
    assert.deepEqual(frames, [
      { op: 'ready', receiver: 'code' },
      { op: 'done', files: 3, entries: 5, bytes: 12 },
    ])
    const { code, stderr } = await r.exited
    assert.equal(code, 0, stderr)
    assert.match(stderr, /codebox code receiver: unpacked 3 files \(12 bytes\) into /)
    const mode = (p: string): string => (lstatSync(path.join(r.dir, p)).mode & 0o7777).toString(8)
    assert.deepEqual([mode('bin'), mode('bin/tool'), mode('notes.txt')], ['755', '755', '644'])
    assert.equal(readlinkSync(path.join(r.dir, 'bin/up')), '../notes.txt')
    assert.equal(readFileSync(path.join(r.dir, 'same.txt'), 'utf8'), 'hi')
    assert.ok(!existsSync(r.socket), 'the receiver removed its socket')
  })

  const refused: [string, Buffer, RegExp][] = [
    ['an absolute path', tarOf(entry('/etc/evil', { data: 'x' })), /'\/etc\/evil': an absolute path/],
    ['a path with ..', tarOf(entry('a/../../evil', { data: 'x' })), /a path with '\.\.'/],
    ['a link pointing outside', tarOf(entry('up', { type: '2', link: '../outside' })), /symbolic link 'up' points outside the bundle/],
    ['an absolute link', tarOf(entry('abs', { type: '2', link: '/etc/passwd' })), /only relative links inside the bundle/],
    ['a link not in normal form', tarOf(entry('d', { type: '5' }), entry('d/l', { type: '2', link: 'x/../../..' })), /normal form/],
    ['an entry beneath a link', tarOf(entry('l', { type: '2', link: '.' }), entry('l/f', { data: 'x' })), /beneath 'l', which is a symlink/],
    ['a FIFO', tarOf(entry('fifo', { type: '6' })), /not a file, directory or link/],
    ['a hard link to nothing unpacked', tarOf(entry('h', { type: '1', link: 'missing' })), /hard link 'h' must name a file earlier/],
    ['more bytes than declared', tarOf(entry('big', { data: 'x'.repeat(1001) })), /more than 1000 bytes of files/],
    ['more entries than declared', tarOf(...Array.from({ length: 9 }, (_, i) => entry(`f${i}`, { data: 'x' }))), /more than 8 entries/],
    ['a name twice', tarOf(entry('f', { data: 'x' }), entry('f', { data: 'y' })), /'f' appears twice/],
    ['not a tar', Buffer.alloc(2048, 0x41), /not a valid tar stream/],
  ]
  for (const [what, tar, message] of refused) {
    it(`refuses ${what}: an error answer, exit 1 with the reason on stderr`, async () => {
      const r = await startReceiver()
      const frames = await sendRaw(r, tar)
      assert.equal(frames[0]?.op, 'ready')
      assert.equal(frames[1]?.op, 'error', JSON.stringify(frames))
      assert.match(String(frames[1]?.message), message)
      const { code, stderr } = await r.exited
      assert.equal(code, 1)
      assert.match(stderr, message)
      assert.ok(!existsSync(path.join(path.dirname(r.dir), 'evil')) && !existsSync('/etc/evil'))
    })
  }

  it('gives up when no bundle arrives in CODEBOX_CODE_WAIT_S; bad variables end it at once', async () => {
    const r = await startReceiver({ CODEBOX_CODE_WAIT_S: '1' })
    const { code, stderr } = await r.exited
    assert.equal(code, 1)
    assert.match(stderr, /codebox code receiver: no bundle arrived within 1 s/)
    const out = execFileSync('/bin/sh', ['-c', `/usr/bin/python3 -s -B ${receiverScript} 2>&1; echo "exit $?"`], {
      env: { CODEBOX_LISTEN: 'unix:/tmp/x.sock', CODEBOX_EXECUTOR_TOKEN: 't', CODEBOX_CODE_MAX_BYTES: 'lots', CODEBOX_CODE_MAX_ENTRIES: '1' },
    }).toString()
    assert.equal(out, "codebox code receiver: CODEBOX_CODE_MAX_BYTES must be a positive whole number, got 'lots'\nexit 1\n")
  })
})

describe('scanCode and sendCode', () => {
  it('a missing directory, a FIFO in it, or a receiver that is gone: Unavailable saying which', async () => {
    await assert.rejects(scanCode({ hostPath: '/nonexistent/bundle' }), isUnavailable(/cannot read the code mount \/nonexistent\/bundle: ENOENT/))
    const bundle = makeBundle()
    after(bundle.remove)
    execFileSync('mkfifo', [path.join(bundle.hostPath, 'lib', 'pipe')])
    await assert.rejects(scanCode(bundle), isUnavailable(/lib\/pipe in the code mount is not a file, directory or symbolic link/))
    rmSync(path.join(bundle.hostPath, 'lib', 'pipe'))
    const scanned = await scanCode(bundle)
    assert.deepEqual(scanned.paths, ['agent.py', 'data-link', 'lib', 'lib/data.txt', 'run.sh'])
    await assert.rejects(
      sendCode({ dial: () => net.connect({ path: '/nonexistent.sock' }), host: '', port: 0, token: TOKEN, what: 'pod ns/p', bundle: scanned, timeoutMs: 2000 }),
      isUnavailable(/cannot connect to the executor of pod ns\/p: connect ENOENT/),
    )
  })
})

describe('kubernetes driver: code mounts', () => {
  let kube: KubeFixture
  before(async () => {
    kube = await startKube()
  })
  after(async () => {
    await kube?.close()
  })
  const pods = (): string[] => kube.fake.store.list(podsType, kube.namespace).map((p) => p.metadata.name)
  const spec = (hostPath: string, id = testId()): SandboxSpec => ({ id, limits: { ...defaultLimits }, network: { mode: 'none' }, code: { hostPath } })
  async function gone(name: string): Promise<void> {
    const deadline = Date.now() + 10_000
    while (pods().includes(name)) {
      if (Date.now() > deadline) assert.fail(`the pod ${name} was not deleted`)
      await delay(20)
    }
  }

  it('a session sees the bundle at /app: its files, modes and link, read-only', { skip: podMode === 'sandbox' ? false : hostReason }, async () => {
    const bundle = makeBundle()
    after(bundle.remove)
    await checkCodeSession(kube.driver(), bundle.hostPath)
  })

  it('the same over the loopback pod network: the driver dials the pod IP, as on a cluster', { skip: podMode === 'sandbox' ? false : hostReason }, async () => {
    const bundle = makeBundle()
    after(bundle.remove)
    const routed = await startKube({ kubelet: { podNetwork: 'loopback' } })
    try {
      await checkCodeSession(routed.driver({ dial: (o) => net.connect(o) }), bundle.hostPath)
    } finally {
      await routed.close()
    }
  })

  it('a bad bundle fails before any pod exists', async () => {
    const before = pods().length
    await assert.rejects(kube.driver().create(spec('/nonexistent/bundle')), isUnavailable(/cannot read the code mount \/nonexistent\/bundle/))
    assert.equal(pods().length, before, 'a pod was created for a bad bundle')
  })

  it('a bundle the receiver refuses: Unavailable with its reason and log, and no pod left', { skip: podMode === 'sandbox' ? false : hostReason }, async () => {
    const bundle = makeBundle()
    after(bundle.remove)
    symlinkSync('../../etc/passwd', path.join(bundle.hostPath, 'escape'))
    const s = spec(bundle.hostPath)
    await assert.rejects(
      kube.driver().create(s),
      isUnavailable(
        /code receiver of pod codebox\/cbx-t-[0-9a-f]+ refused the code mount .*symbolic link 'escape' points outside the bundle.*the code receiver's log ends: .*codebox code receiver: symbolic link 'escape'/s,
      ),
    )
    await gone(`cbx-${s.id}`)
  })

  it('a receiver that fails at start: Unavailable naming the init container and its log, and no pod left', async () => {
    const bundle = makeBundle()
    after(bundle.remove)
    const s = spec(bundle.hostPath, testId('crash'))
    await assert.rejects(
      kube.driver().create(s),
      isUnavailable(
        /cbx-crash-[0-9a-f]+ ended before it was running its code receiver: Failed; init container code terminated: Error, exit code 3.*the code receiver's log ends: executor: cannot start: boom/s,
      ),
    )
    await gone(`cbx-${s.id}`)
  })
})
