/**
 * The bwrap driver on the host it runs on: a checkout and state dir that sandbox uids cannot
 * enter (a clone under /root), a sandbox that cannot start, what a sandbox learns of the host
 * from mountinfo and inotify, and who may connect to a session's egress socket.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { cpSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, utimesSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { describe, test } from 'node:test'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { CodeboxError, type Sandbox, type SandboxDriver, type SandboxExit } from '@codebox/core'
import { BwrapDriver, EgressService, SessionManager, loadEngineConfig } from '@codebox/sandbox'
import { processState, SandboxRecords } from '../src/drivers/bwrap/records.ts'
import { bwrapDriver, bwrapManager, bwrapUnavailable, py, withSession } from './fixtures.ts'

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url))
const why = await bwrapUnavailable()
const stateDir = loadEngineConfig(process.env).stateDir

/** A directory only root can enter, like /root or what mktemp -d makes; removed after the suite. */
function privateDir(t: { after: (fn: () => void) => void }, prefix: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  assert.equal(lstatSync(dir).mode & 0o777, 0o700)
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

describe('the bwrap driver on its host', { skip: why }, () => {
  test('sessions work when the checkout and the state dir are in a folder sandbox uids cannot enter', async (t) => {
    const dir = privateDir(t, 'codebox-clone-')
    // A clone: the sandbox package's code and executor, with node_modules (acorn) beside it.
    const clone = path.join(dir, 'codebox')
    for (const part of ['packages/sandbox/src', 'packages/sandbox/executor', 'packages/sandbox/package.json']) {
      cpSync(path.join(repoRoot, part), path.join(clone, part), { recursive: true })
    }
    cpSync(path.join(repoRoot, 'node_modules/acorn'), path.join(clone, 'node_modules/acorn'), { recursive: true })
    symlinkSync(path.join(repoRoot, 'node_modules/@codebox'), path.join(clone, 'node_modules/@codebox'))
    // A state dir whose image is the real one, reached through the private folder.
    mkdirSync(path.join(dir, 'state/images'), { recursive: true })
    const real = await bwrapDriver()
    symlinkSync(real.imagePath, path.join(dir, 'state/images/image'))
    const cloned = (await import(pathToFileURL(path.join(clone, 'packages/sandbox/src/drivers/bwrap/driver.ts')).href)) as { BwrapDriver: typeof BwrapDriver }
    const driver = new cloned.BwrapDriver({ imagePath: path.join(dir, 'state/images/image') })
    await driver.check()
    const m = new SessionManager({ driver, poolSize: 0 })
    t.after(() => m.close())
    await withSession(m, async (s) => {
      assert.equal(await py(s, 'print(6 * 7)'), '42\n')
      const js = await s.runCode({ code: 'console.log([1, 2].map((x) => x * 2).join())', language: 'javascript' })
      assert.equal(js.structuredContent.stdout, '2,4\n', js.structuredContent.stderr)
    })
    // The runtime was installed into the state dir: root-owned, readable by all, written by root only.
    const [runtime, ...more] = readdirSync(path.join(dir, 'state/runtime'))
    assert.deepEqual(more, [], 'one runtime, no temp dir left behind')
    const executor = path.join(dir, 'state/runtime', runtime!, 'opt/codebox/executor')
    assert.equal(lstatSync(executor).mode & 0o777, 0o755)
    assert.equal(lstatSync(path.join(executor, 'executor.py')).mode & 0o777, 0o644)
  })

  test('a sandbox that cannot start fails its start within seconds, with bwrap’s own words', async (t) => {
    const dir = privateDir(t, 'codebox-noimage-')
    mkdirSync(path.join(dir, 'image'))
    const m = new SessionManager({ driver: new BwrapDriver({ imagePath: path.join(dir, 'image'), runtimeDir: path.join(dir, 'runtime') }), poolSize: 0 })
    t.after(() => m.close())
    const started = Date.now()
    await assert.rejects(m.start(), (e: CodeboxError) => {
      assert.ok(e instanceof CodeboxError, String(e))
      assert.match(e.message, /bwrap: /, e.message)
      return true
    })
    assert.ok(Date.now() - started < 10_000, `took ${Date.now() - started} ms`)
  })

  test('mountinfo names no host path: not the state dir, the image, the runtime or the checkout', async (t) => {
    const m = await bwrapManager()
    t.after(() => m.close())
    const image = (m.driver as BwrapDriver).imagePath
    await withSession(m, async (s) => {
      const mountinfo = await py(s, 'print(open("/proc/self/mountinfo").read())')
      for (const hostPath of [stateDir, image, repoRoot.replace(/\/$/, ''), '/var/lib/codebox', '/run/codebox/tmpfs']) {
        assert.ok(!mountinfo.includes(hostPath), `mountinfo shows ${hostPath}:\n${mountinfo}`)
      }
      assert.match(mountinfo, /^\d+ \d+ \S+ \/ \/ ro,\S* - overlay overlay /m, mountinfo)
      assert.ok(
        !/\buid=\d/.test(
          mountinfo
            .split('\n')
            .filter((l) => / - tmpfs codebox /.test(l))
            .join('\n'),
        ),
        mountinfo,
      )
    })
  })

  test('an inotify watch on the image sees this session’s opens, never another session’s', async (t) => {
    const m = await bwrapManager()
    t.after(() => m.close())
    const watcher = await m.start()
    const other = await m.start()
    t.after(() => Promise.all([watcher.stop(), other.stop()]))
    const watch = `
import ctypes, os, sysconfig
libc = ctypes.CDLL(None, use_errno=True)
IN_OPEN, IN_ACCESS, IN_NONBLOCK = 0x20, 0x1, 0x800
stdlib = sysconfig.get_paths()['stdlib']
ino = libc.inotify_init1(IN_NONBLOCK)
assert ino >= 0, ctypes.get_errno()
# Imports open the compiled files in __pycache__; the sources are opened by tracebacks and readers.
for d in (stdlib, os.path.join(stdlib, '__pycache__'), os.path.join(stdlib, 'email/__pycache__'), os.path.join(stdlib, 'xml/dom/__pycache__')):
    assert libc.inotify_add_watch(ino, d.encode(), IN_OPEN | IN_ACCESS) >= 0, ctypes.get_errno()
def pending():
    try:
        return len(os.read(ino, 65536))
    except BlockingIOError:
        return 0
print(pending())`
    assert.equal(await py(watcher, watch), '0\n')
    // The other session reads modules from the same image, in the watched folders.
    const read = 'import os, sysconfig\nopen(os.path.join(sysconfig.get_paths()["stdlib"], "wave.py")).read()\n'
    await py(other, `${read}import email.mime.text, xml.dom.minidom, colorsys, wave, tabnanny\nprint("imported")`)
    assert.equal(await py(watcher, 'print(pending())'), '0\n', 'the watch saw another session open files')
    // The watch works: this session's own opens show.
    assert.notEqual(await py(watcher, 'import colorsys\nprint(pending())'), '0\n', 'an import showed nothing at all')
    assert.notEqual(await py(watcher, `${read}print(pending())`), '0\n', 'an open showed nothing at all')
  })

  test('a session’s egress socket belongs to its sandbox uid, mode 0600, in a directory it cannot write', async (t) => {
    const socketDir = mkdtempSync(path.join(tmpdir(), 'codebox-egress-'))
    t.after(() => rmSync(socketDir, { recursive: true, force: true }))
    const egress = new EgressService({ socketDir })
    const m = new SessionManager({ driver: await bwrapDriver(), poolSize: 0, egress })
    t.after(() => m.close())
    const s = await m.start({ egress: { mode: 'allowlist', allow: ['example.com:443'] } })
    t.after(() => s.stop())
    // The listener lives in the sandbox launcher's own tmpfs, not in a host folder.
    assert.deepEqual(readdirSync(socketDir), [])
    // Inside, the socket is the sandbox user's own (uid 1000 in its user namespace; a root-owned
    // one would show as the overflow uid 65534), and connects; its directory is root's, 0711.
    const inside = await py(
      s,
      `import os, socket
p = os.environ['CODEBOX_EGRESS_SOCKET']
st = os.stat(p)
d = os.stat(os.path.dirname(p))
c = socket.socket(socket.AF_UNIX)
c.connect(p)
try:
    open(os.path.join(os.path.dirname(p), 'x'), 'w')
    wrote = 'wrote'
except OSError as e:
    wrote = type(e).__name__
print(st.st_uid, oct(st.st_mode & 0o777), d.st_uid, oct(d.st_mode & 0o777), wrote)`,
    )
    assert.equal(inside, '1000 0o600 65534 0o711 PermissionError\n')
  })
})

describe('egress sockets', () => {
  test('start-up removes the sockets a killed server left behind, never one that answers', async (t) => {
    const socketDir = mkdtempSync(path.join(tmpdir(), 'codebox-egress-'))
    t.after(() => rmSync(socketDir, { recursive: true, force: true }))
    const stale = path.join(socketDir, 'stale.sock')
    // Bound and never listened on, as a killed server's socket is: connecting is refused.
    const bound = spawnSync('/usr/bin/python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', stale])
    assert.equal(bound.status, 0, bound.stderr.toString())
    const live = createServer(() => {})
    const livePath = path.join(socketDir, 'live.sock')
    await new Promise<void>((resolve) => live.listen(livePath, resolve))
    t.after(() => new Promise<void>((resolve) => live.close(() => resolve())))
    const egress = new EgressService({ socketDir })
    const l = await egress.open({ sandboxId: 'fresh', policy: { mode: 'public', allow: [] } })
    t.after(() => egress.close())
    assert.deepEqual(readdirSync(socketDir).sort(), ['fresh.sock', 'live.sock'])
    assert.equal(lstatSync(l.socketPath).mode & 0o777, 0o600)
  })
})

describe('session start', () => {
  test('start-up removes runtime trees unused for a week, never the current one, a recent one, or one a live sandbox stands on', async (t) => {
    const dir = privateDir(t, 'codebox-runtimes-')
    const runtimeDir = path.join(dir, 'runtime')
    const week = Date.now() / 1000 - 8 * 24 * 3600
    const tree = (name: string, old: boolean): void => {
      mkdirSync(path.join(runtimeDir, name, 'opt'), { recursive: true })
      if (old) utimesSync(path.join(runtimeDir, name), week, week)
    }
    tree('aaaaaaaaaaaaaaaa', true) // an earlier version, unused: removed
    tree('bbbbbbbbbbbbbbbb', true) // as old, but a live sandbox stands on it: kept
    tree('cccccccccccccccc', false) // another checkout's, used lately: kept
    tree('.tmp-dddddddddddddddd-00000000', true) // an interrupted install: removed
    tree('not-a-runtime', true) // not ours to judge: kept
    // A live "sandbox": this test's own process, as a record names it.
    const records = new SandboxRecords(path.join(dir, 'sandboxes'))
    await records.ensureDir()
    await records.write({
      id: 'live',
      pid: process.pid,
      startTime: processState(process.pid)!.startTime,
      uid: 2_999_999,
      createdAt: new Date().toISOString(),
      egress: false,
      runtime: 'bbbbbbbbbbbbbbbb',
    })
    const real = await bwrapDriver()
    const driver = new BwrapDriver({ imagePath: real.imagePath, runtimeDir, recordsDir: records.dir })
    await driver.check()
    const left = readdirSync(runtimeDir).sort()
    const current = left.filter((n) => !['bbbbbbbbbbbbbbbb', 'cccccccccccccccc', 'not-a-runtime'].includes(n))
    assert.equal(current.length, 1, `only the current tree besides the kept ones: ${left.join(' ')}`)
    assert.match(current[0]!, /^[0-9a-f]{16}$/)
    assert.deepEqual(left, [...current, 'bbbbbbbbbbbbbbbb', 'cccccccccccccccc', 'not-a-runtime'].sort())
  })

  test('a sandbox that never says ready fails its start after startTimeoutMs and is destroyed', async () => {
    let destroyed = 0
    const driver: SandboxDriver = {
      name: 'silent',
      check: async () => {},
      create: async (spec): Promise<Sandbox> => {
        let exit: (e: SandboxExit) => void = () => {}
        const exited = new Promise<SandboxExit>((resolve) => (exit = resolve))
        return {
          id: spec.id,
          input: new PassThrough(),
          output: new PassThrough(),
          diagnostics: () => 'stuck before ready',
          exited,
          counters: async () => ({ oomKills: 0, pidsLimitHits: 0 }),
          memoryUsage: async () => 0,
          destroy: async () => {
            destroyed++
            exit({ code: null, signal: 'SIGKILL' })
          },
        }
      },
    }
    const m = new SessionManager({ driver, poolSize: 0, startTimeoutMs: 300 })
    const started = Date.now()
    await assert.rejects(
      m.start(),
      (e: CodeboxError) => e.code === 'Unavailable' && /not ready within 300 ms; the machine may be overloaded: stuck before ready/.test(e.message),
    )
    assert.ok(Date.now() - started < 5_000)
    assert.equal(destroyed, 1)
    await m.close()
  })
})
