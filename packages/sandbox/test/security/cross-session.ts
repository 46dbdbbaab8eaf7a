/**
 * Attack catalogue, group "Cross-session" (SECURITY.md): two live sessions A and B. A leaves data
 * and services in every shared-looking place; B looks for them and must find nothing. Each check
 * first shows that A itself reaches what it left (so a miss in B means isolation, not a broken probe).
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { CodeboxError } from '@codebox/core'
import type { Session, SessionManager } from '@codebox/sandbox'
import { withSession } from '../fixtures.ts'
import { eventually, hostUids, hostView, hostViewUnavailable, pyCommand, pyJson, token } from './probe.ts'

const ENOENT = 2
const ESRCH = 3
const ECONNREFUSED = 111

/** Runs `fn(a, b)` with two live sessions. */
async function twoSessions(m: SessionManager, fn: (a: Session, b: Session) => Promise<void>): Promise<void> {
  await withSession(m, (a) => withSession(m, (b) => fn(a, b)))
}

/**
 * The group's tests on one driver; its test files (`cross-session.test.ts` for bwrap,
 * `cross-session-gvisor.test.ts`) call this. `hostPidsSkip`: why the driver's sandbox processes
 * cannot be found among the host's (the test that signals them by host pid then skips).
 */
export function defineCrossSessionSuite(
  driverName: string,
  unavailable: string | undefined,
  makeManager: () => Promise<SessionManager>,
  hostPidsSkip?: string,
): void {
  describe(`cross-session (${driverName})`, { skip: unavailable ?? false }, () => {
    let m: SessionManager
    before(async () => {
      m = await makeManager()
    })
    after(async () => {
      await m?.close()
    })

    test("B cannot see A's workspace, /tmp, /dev/shm files or SysV shared memory", async () => {
      const secret = `secret-${token()}`
      const key = 0x5ec00000 + Math.floor(Math.random() * 0xfffff)
      const look = `
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
def read(p):
    try:
        return open(p).read()
    except OSError as e:
        return e.errno
def grep(top):
    hits = []
    for root, dirs, files in os.walk(top):
        for n in files:
            try:
                if ${JSON.stringify(secret)} in open(os.path.join(root, n), errors='replace').read():
                    hits.append(os.path.join(root, n))
            except OSError:
                pass
    return hits
shm = libc.shmget(${key}, 0, 0)
out = {
    'workspace': read('/workspace/a.txt'), 'tmp': read('/tmp/a.txt'), 'shm': read('/dev/shm/a.txt'),
    'sysv': 'found' if shm >= 0 else ctypes.get_errno(),
    # gVisor has no /proc/sysvipc: None there (shmget above still looks the key up)
    'sysvList': [l.split()[0] for l in open('/proc/sysvipc/shm').read().splitlines()[1:]] if os.path.exists('/proc/sysvipc/shm') else None,
    'grep': grep('/workspace') + grep('/tmp') + grep('/dev/shm'),
}
print(json.dumps(out))`
      await twoSessions(m, async (a, b) => {
        await a.files.write('a.txt', secret)
        const made = await pyJson<{ shmid: number }>(
          a,
          `
import ctypes
for p in ('/tmp/a.txt', '/dev/shm/a.txt'):
    open(p, 'w').write(${JSON.stringify(secret)})
libc = ctypes.CDLL(None, use_errno=True)
print(json.dumps({'shmid': libc.shmget(${key}, 4096, 0o1666)}))`,
        )
        assert.ok(made.shmid >= 0, 'A could not create its SysV segment')
        const inA = await pyJson<Record<string, unknown>>(a, look)
        assert.deepEqual(
          { ...inA, sysvList: undefined, grep: undefined },
          { workspace: secret, tmp: secret, shm: secret, sysv: 'found', sysvList: undefined, grep: undefined },
        )
        if (inA.sysvList !== null) assert.equal((inA.sysvList as string[]).includes(String(key)), true)
        const inB = await pyJson<Record<string, unknown>>(b, look)
        assert.deepEqual(inB, { workspace: ENOENT, tmp: ENOENT, shm: ENOENT, sysv: ENOENT, sysvList: inA.sysvList === null ? null : [], grep: [] })
        const ipcs = await b.commands.run('ipcs -m')
        assert.ok(!ipcs.structuredContent.stdout.includes(key.toString(16)), ipcs.structuredContent.stdout)
      })
    })

    test("B cannot connect to A's abstract unix socket or A's loopback TCP service", async () => {
      const name = `codebox-xs-${token()}`
      const port = 20000 + Math.floor(Math.random() * 20000)
      const server = `
import socket, threading
def serve(s):
    while True:
        c, _ = s.accept()
        c.sendall(b'A says hi\\n')
        c.close()
u = socket.socket(socket.AF_UNIX)
u.bind('\\0${name}')
u.listen()
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(('127.0.0.1', ${port}))
t.listen()
threading.Thread(target=serve, args=(u,), daemon=True).start()
print('listening', flush=True)
serve(t)`
      const connect = `
import socket
def connect(family, addr):
    s = socket.socket(family)
    s.settimeout(3)
    try:
        s.connect(addr)
        return s.recv(100).decode()
    except OSError as e:
        return e.errno
    finally:
        s.close()
print(json.dumps({'abstract': connect(socket.AF_UNIX, '\\0${name}'), 'tcp': connect(socket.AF_INET, ('127.0.0.1', ${port}))}))`
      await twoSessions(m, async (a, b) => {
        // A's service runs as a background task (the probe guard runs first, as in every probe).
        await a.tasks.start(pyCommand(server))
        const up = await eventually(async () => (await pyJson<{ tcp: unknown }>(a, connect)).tcp === 'A says hi\n', 5000, 100)
        assert.ok(up, "A's service did not come up")
        assert.deepEqual(await pyJson(a, connect), { abstract: 'A says hi\n', tcp: 'A says hi\n' })
        assert.deepEqual(await pyJson(b, connect), { abstract: ECONNREFUSED, tcp: ECONNREFUSED })
      })
    })

    test("B cannot see or signal A's processes", { skip: hostPidsSkip ?? hostViewUnavailable() ?? false }, async () => {
      await twoSessions(m, async (a, b) => {
        const marker = `77777.${Math.floor(Math.random() * 1e6)}`
        const task = await a.tasks.start(`exec sleep ${marker}`)
        const taskId = task.structuredContent.taskId!
        const view = await hostView(a)
        const sleeper = view.pids.find((p) => {
          try {
            return readFileSync(`/proc/${p}/cmdline`, 'utf8') === `sleep\0${marker}\0`
          } catch {
            return false
          }
        })
        assert.ok(sleeper, "A's sleep was not found from the host")
        const r = await pyJson<{ seen: string[]; maxPid: number; kill: Record<string, number> }>(
          b,
          `
seen, pids = [], []
for n in os.listdir('/proc'):
    if n.isdigit():
        pids.append(int(n))
        if int(n) == os.getpid():
            continue  # this probe's own command line names the marker
        try:
            if ${JSON.stringify(marker)} in open('/proc/%s/cmdline' % n).read():
                seen.append(n)
        except OSError:
            pass
kill = {}
for pid in ${JSON.stringify(view.pids)}:
    if pid in pids:
        continue  # the same number names one of B's own processes, not A's
    try:
        os.kill(pid, 9)
        kill[str(pid)] = 0
    except OSError as e:
        kill[str(pid)] = e.errno
print(json.dumps({'seen': seen, 'maxPid': max(pids), 'kill': kill}))`,
        )
        assert.deepEqual(r.seen, [])
        assert.ok(Object.keys(r.kill).length > 0, 'every host pid of A collides with a pid in B; nothing was tried')
        for (const [pid, err] of Object.entries(r.kill)) assert.equal(err, ESRCH, `kill(${pid}) from B: ${err}`)
        // A's processes are all still there.
        assert.ok(hostUids(sleeper))
        const t = await a.tasks.get(taskId)
        assert.equal(t.structuredContent.taskStatus, 'working')
        await a.tasks.stop(taskId)
      })
    })

    test('a stopped session and an unknown id are the same NotFound', async () => {
      let id = ''
      await withSession(m, async (s) => {
        id = s.id
        assert.equal(m.get(id), s)
      })
      const errOf = (sid: string): CodeboxError => {
        try {
          m.get(sid)
        } catch (e) {
          return e as CodeboxError
        }
        assert.fail(`session ${sid} was found`)
      }
      const stopped = errOf(id)
      const unknown = errOf('0'.repeat(26))
      assert.ok(stopped instanceof CodeboxError && unknown instanceof CodeboxError)
      assert.equal(stopped.code, 'NotFound')
      assert.equal(unknown.code, 'NotFound')
      assert.equal(stopped.message.replace(id, 'ID'), unknown.message.replace('0'.repeat(26), 'ID'))
    })
  })
}
