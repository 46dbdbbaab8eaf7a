/**
 * The attack catalogue on the gVisor driver, with evidence proper to it (SECURITY.md): there is
 * no host seccomp mode or SIGSYS to observe inside gVisor, so what counts is that each attempt is
 * denied (an errno, a missing file, a dead end) and that the host shows no trace of it. The
 * bwrap-specific checks (host uids, the seccomp filter's program, the launcher's mounts) stay in
 * the other files of this folder; these cover escape, kernel surface, network, resources and
 * neighbours. Every probe first checks it runs in a sandbox (GUARD).
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { Session, SessionManager } from '@codebox/sandbox'
import { withSession } from '../fixtures.ts'
import { gvisorDriver, gvisorManager, gvisorUnavailable } from '../gvisor-fixtures.ts'
import { PY_GUARD_GVISOR, ccUnavailable, compileC, runC } from './probe.ts'

/** The gVisor guard (probe.ts), then a ctypes syscall helper: sc(nr, *args) -> [return value, errno]. */
const GUARD =
  PY_GUARD_GVISOR +
  String.raw`
import os, socket, json, ctypes, sys
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    ctypes.set_errno(0)
    r = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a & (2**64 - 1)) for a in args])
    return [r, ctypes.get_errno() if r == -1 else 0]
`

/** Exit 99 outside a gVisor sandbox; inside, makes an i386 (int 0x80) and an x32 getpid and prints what they returned. */
const ABI_PROBE = String.raw`
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
  char status[8192] = {0}, host[64] = {0};
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 99;
  fread(status, 1, sizeof status - 1, f);
  fclose(f);
  gethostname(host, sizeof host - 1);
  if (getuid() != 1000 || strcmp(host, "sandbox") != 0 || !strstr(status, "\nCapEff:\t0000000000000000\n")) return 99;
  long x32 = syscall(0x40000000 | SYS_getpid);
  printf("x32 %ld\n", x32);
  fflush(stdout);
  long ret = 20; /* __NR_getpid on i386 */
  __asm__ volatile("int $0x80" : "+a"(ret) : : "memory", "r8", "r9", "r10", "r11");
  printf("i386 %ld\n", ret);
  return 0;
}
`

/** Runs a guarded Python cell and returns the JSON its last line printed. */
async function probe<T = Record<string, unknown>>(s: Session, code: string, timeoutMs = 60_000): Promise<T> {
  const r = await s.runCode({ code: GUARD + code, language: 'python', timeoutMs })
  assert.equal(r.structuredContent.exitCode, 0, `probe failed: ${r.structuredContent.stderr}`)
  return JSON.parse(r.structuredContent.stdout.trim().split('\n').at(-1) ?? '') as T
}

const unavailable = await gvisorUnavailable()

describe('attack catalogue on gVisor', { skip: unavailable ?? false }, () => {
  let m: SessionManager
  before(async () => {
    m = await gvisorManager({ defaults: { memoryBytes: 256 * 1024 * 1024, pids: 64, workspaceBytes: 8 * 1024 * 1024 } })
  })
  after(async () => {
    await m?.close()
  })

  test('escape: host files are out of reach and the image is read-only', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'codebox-gvisor-'))
    const secret = path.join(dir, 'secret.txt')
    writeFileSync(secret, 'host-secret')
    try {
      await withSession(m, async (s) => {
        const r = await probe<Record<string, unknown>>(
          s,
          `
out = {'secret': os.path.exists(${JSON.stringify(secret)}), 'hostProcs': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())[:1]}
for p in ['/usr/bin/x', '/etc/passwd', '/opt/codebox/executor/executor.py']:
    try:
        open(p, 'a').close(); out[p] = 'written'
    except OSError as e:
        out[p] = e.errno
out['mounts'] = open('/proc/self/mounts').read()
print(json.dumps(out))`,
        )
        assert.equal(r.secret, false, 'a host file is visible in the sandbox')
        assert.deepEqual(r.hostProcs, [1], 'pid 1 is the sandbox executor')
        for (const p of ['/usr/bin/x', '/etc/passwd', '/opt/codebox/executor/executor.py']) assert.ok(r[p] === 30 || r[p] === 13, `${p}: ${String(r[p])}`)
        assert.doesNotMatch(String(r.mounts), new RegExp(dir), 'the host path shows in the sandbox mounts')
      })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('privilege: uid 1000, no capabilities, no way to gain any (setuid, mount, sudo)', async () => {
    await withSession(m, async (s) => {
      const r = await probe<Record<string, number[] | number | string>>(
        s,
        `
CLONE_NEWNS = 0x20000
out = {'uid': os.getuid(), 'setuid0': sc(105, 0), 'unshareMnt': sc(272, CLONE_NEWNS)}
src = ctypes.create_string_buffer(b'tmpfs'); dst = ctypes.create_string_buffer(b'/tmp')
out['mount'] = sc(165, ctypes.addressof(src), ctypes.addressof(dst), ctypes.addressof(src), 0, 0)
out['sudo'] = os.system('sudo -n true 2>/dev/null')
print(json.dumps(out))`,
      )
      assert.equal(r.uid, 1000)
      assert.equal((r.setuid0 as number[])[0], -1, 'setuid(0) succeeded')
      // gVisor lets an unprivileged task unshare a mount namespace (it is the sentry's, not the host's), but no mount works in it
      assert.equal((r.mount as number[])[0], -1, 'mount succeeded')
      assert.notEqual(r.sudo, 0, 'sudo worked')
    })
  })

  test('kernel surface: the calls bwrap filters are denied by gVisor (the denial is the evidence)', async () => {
    await withSession(m, async (s) => {
      // keyctl, add_key, bpf, perf_event_open, kexec_load, init_module, open_by_handle_at, userfaultfd, ptrace(PTRACE_ATTACH, 1)
      const calls: Record<string, [number, ...number[]]> = {
        keyctl: [250, 0, 0],
        add_key: [248, 0, 0, 0, 0, 0],
        bpf: [321, 0, 0, 0],
        perf_event_open: [298, 0, 0, -1, -1, 0],
        kexec_load: [246, 0, 0, 0, 0],
        init_module: [175, 0, 0, 0],
        open_by_handle_at: [304, 0, 0, 0],
        ptrace_attach_pid1: [101, 16, 1, 0, 0],
      }
      const r = await probe<Record<string, number[]>>(s, `print(json.dumps({k: sc(*v) for k, v in ${JSON.stringify(calls)}.items()}))`)
      for (const [name, [ret, errno]] of Object.entries(r)) {
        assert.equal(ret, -1, `${name} succeeded`)
        assert.ok([1, 3, 13, 14, 19, 22, 38, 95].includes(errno!), `${name}: errno ${errno}`)
      }
    })
  })

  test('kernel surface: i386 (int 0x80) and x32 system calls get no answer but a denial', async (t) => {
    const noCc = ccUnavailable()
    if (noCc) return t.skip(noCc)
    const binary = compileC(ABI_PROBE)
    await withSession(m, async (s) => {
      const r = await runC(s, binary)
      t.diagnostic(`exit ${r.exitCode}: ${r.stdout.trim().replace(/\n/g, '; ')}`)
      // Under bwrap the host's seccomp filter kills the process (SIGSYS); under gVisor there is no
      // host filter to observe: the sentry refuses the call (an error, or the process killed), which is what counts.
      const x32 = /^x32 (-?\d+)$/m.exec(r.stdout)?.[1]
      assert.equal(x32, '-1', `the x32 getpid answered: ${r.stdout} ${r.stderr}`)
      const i386 = /^i386 (-?\d+)$/m.exec(r.stdout)?.[1]
      assert.ok(i386 === undefined ? r.exitCode !== 0 : Number(i386) < 0, `the i386 getpid answered ${i386} (exit ${r.exitCode}): ${r.stderr}`)
    })
  })

  test('network: only loopback; no route out, no host loopback service', async () => {
    await withSession(m, async (s) => {
      const r = await probe<Record<string, unknown>>(
        s,
        `
out = {'ifaces': sorted(n for _, n in socket.if_nameindex())}
for name, addr in [('public', ('1.1.1.1', 53)), ('metadata', ('169.254.169.254', 80))]:
    c = socket.socket(); c.settimeout(3)
    try:
        c.connect(addr); out[name] = 'connected'
    except OSError as e:
        out[name] = e.errno or str(e)
print(json.dumps(out))`,
      )
      assert.deepEqual(r.ifaces, ['lo'])
      assert.notEqual(r.public, 'connected')
      assert.notEqual(r.metadata, 'connected')
    })
  })

  test('resources: a fork bomb gets EAGAIN at the pids limit and the sandbox lives on', async () => {
    await withSession(
      m,
      async (s) => {
        const r = await probe<{ forked: number; errno: number }>(
          s,
          `
import time
pids, err = [], 0
try:
    for i in range(1000):
        p = os.fork()
        if p == 0:
            time.sleep(5); os._exit(0)
        pids.append(p)
except OSError as e:
    err = e.errno
for p in pids: os.kill(p, 9); os.waitpid(p, 0)
print(json.dumps({'forked': len(pids), 'errno': err}))`,
        )
        assert.equal(r.errno, 11, `fork did not fail with EAGAIN: ${JSON.stringify(r)}`)
        assert.ok(r.forked < 64, `forked ${r.forked} processes under a pids limit of 64`)
        assert.equal((await s.runCode({ code: 'print("alive")' })).structuredContent.stdout, 'alive\n')
        // Under the ptrace platform each process costs the host ~6 MiB (its stubs): room for 64 of them.
      },
      { memoryBytes: 1024 * 1024 * 1024 },
    )
  })

  test('resources: the workspace is capped (ENOSPC past its size)', async () => {
    await withSession(m, async (s) => {
      const r = await probe<{ errno: number; written: number }>(
        s,
        `
n, err = 0, 0
try:
    with open('/workspace/fill', 'wb') as f:
        for i in range(64):
            f.write(b'x' * (1 << 20)); f.flush(); n += 1
except OSError as e:
    err = e.errno
os.remove('/workspace/fill')
print(json.dumps({'errno': err, 'written': n}))`,
      )
      assert.ok(r.errno === 28 || r.errno === 27, `no ENOSPC/EFBIG: ${JSON.stringify(r)}`)
      assert.ok(r.written <= 8)
    })
  })

  test('resources: past its memory limit the sandbox ends, reported as OOM, and a neighbour is untouched', async () => {
    await withSession(m, (neighbour) =>
      withSession(m, async (s) => {
        await s.runCode({ code: 'x = 1' })
        const r = await s.runCode({ code: 'b = []\nwhile True:\n    b.append(bytearray(16 << 20))', timeoutMs: 60_000 }).then(
          (res) => ({ error: undefined, res }),
          (e: Error & { code?: string }) => ({ error: e, res: undefined }),
        )
        assert.ok(r.error, `the cell returned instead of ending the sandbox: ${JSON.stringify(r.res?.structuredContent)}`)
        assert.equal(r.error.code, 'SessionTerminated')
        assert.match(r.error.message, /ran out of memory/)
        assert.equal(s.status, 'terminated')
        assert.equal((await neighbour.runCode({ code: 'print(6 * 7)' })).structuredContent.stdout, '42\n')
      }),
    )
  })

  test('neighbours: two sandboxes see neither each other’s files nor processes', async () => {
    await withSession(m, (a) =>
      withSession(m, async (b) => {
        await a.files.write('mine.txt', 'a')
        const ra = await probe<{ pids: number[] }>(a, `import time\nprint(json.dumps({'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}))`)
        const rb = await probe<{ exists: boolean; pids: number[] }>(
          b,
          `print(json.dumps({'exists': os.path.exists('/workspace/mine.txt'), 'pids': sorted(int(p) for p in os.listdir('/proc') if p.isdigit())}))`,
        )
        assert.equal(rb.exists, false)
        assert.ok(ra.pids.length < 10 && rb.pids.length < 10, `too many processes visible: ${ra.pids.length}, ${rb.pids.length}`)
      }),
    )
  })

  test('destroy leaves nothing behind: no runsc state, bundle, ports tmpfs or cgroup', async () => {
    const s = await m.start()
    const id = s.sandboxId
    assert.match(readFileSync('/proc/self/mountinfo', 'utf8'), new RegExp(`/bundles/${id}/ports `))
    await s.stop()
    const leftovers = [
      ...readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .filter((l) => l.includes(id)),
      ...readdirSync('/run/codebox/gvisor/state').filter((n) => n.includes(id)),
      ...readdirSync('/run/codebox/gvisor/bundles').filter((n) => n.includes(id)),
      ...['memory', 'pids', 'cpu', ''].map((c) => `/sys/fs/cgroup/${c}/codebox/${id}`).filter((p) => existsSync(p)),
    ]
    assert.deepEqual(leftovers, [])
  })

  test("a killed server's bundles are swept at start-up, never a live sandbox's", async () => {
    const driver = await gvisorDriver()
    const bundles = '/run/codebox/gvisor/bundles'
    const stale = `stale-${process.pid}`
    // As a killed server leaves one: its ports tmpfs still mounted.
    mkdirSync(`${bundles}/${stale}/ports`, { recursive: true })
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'codebox-ports', `${bundles}/${stale}/ports`])
    const old = new Date(Date.now() - 3600_000)
    utimesSync(`${bundles}/${stale}`, old, old)
    await withSession(m, async (s) => {
      utimesSync(`${bundles}/${s.sandboxId}`, old, old)
      assert.ok((await driver.sweepStaleBundles()) >= 1)
      assert.equal(existsSync(`${bundles}/${stale}`), false, 'the stale bundle is still there')
      assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(`${bundles}/${stale}/`), 'the stale ports tmpfs is still mounted')
      assert.equal(existsSync(`${bundles}/${s.sandboxId}`), true, 'the live sandbox lost its bundle')
      assert.equal((await s.runCode({ code: 'print(6 * 7)' })).structuredContent.stdout, '42\n')
    })
  })
})
