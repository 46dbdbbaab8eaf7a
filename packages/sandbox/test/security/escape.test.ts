/**
 * Attack catalogue, group "Escape" (SECURITY.md): sandbox code tries to reach the host — its
 * files, processes, kernel interfaces, environment, fds and privileges — and must be refused.
 * Every probe runs inside a session and refuses to run anywhere else (probe.ts).
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { chmodSync, closeSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import type { SessionManager } from '@codebox/sandbox'
import { hostIa32Support } from '../driver-ia32.ts'
import { bwrapManager, bwrapUnavailable, withSession } from '../fixtures.ts'
import {
  C_GUARD,
  PY_GUARD,
  PY_SYSCALL,
  REFUSAL,
  REFUSED,
  ccUnavailable,
  compileC,
  hostUids,
  hostView,
  hostViewUnavailable,
  pyJson,
  runC,
  token,
} from './probe.ts'

const EPERM = 1
const EACCES = 13
const EROFS = 30

const unavailable = await bwrapUnavailable()

describe('escape', { skip: unavailable ?? false }, () => {
  let m: SessionManager
  before(async () => {
    m = await bwrapManager({ poolSize: 0 })
  })
  after(async () => {
    await m?.close()
  })

  test('the probes refuse to run outside a sandbox', async (t) => {
    const py = spawnSync('python3', ['-c', `${PY_GUARD}${PY_SYSCALL}\nprint('ran')`], { encoding: 'utf8' })
    assert.equal(py.status, REFUSED, py.stderr)
    assert.equal(py.stdout, '')
    assert.ok(py.stderr.includes(REFUSAL))
    const why = ccUnavailable()
    if (why) return t.skip(why)
    const dir = mkdtempSync(path.join(tmpdir(), 'codebox-guard-'))
    try {
      const bin = path.join(dir, 'probe')
      writeFileSync(bin, compileC(`${C_GUARD}\nint main(void) { codebox_probe_guard(); puts("ran"); return 0; }\n`), { mode: 0o755 })
      const c = spawnSync(bin, { encoding: 'utf8' })
      assert.equal(c.status, REFUSED, c.stderr)
      assert.equal(c.stdout, '')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test("host files are not visible: / is the image, the host's marker and repository are absent, shadow is unreadable", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'codebox-marker-'))
    const marker = path.join(dir, `marker-${token()}`)
    writeFileSync(marker, 'host secret', { mode: 0o644 })
    chmodSync(dir, 0o755) // readable by anyone: only isolation, not permissions, may hide it
    const repo = path.dirname(fileURLToPath(import.meta.url))
    try {
      await withSession(m, async (s) => {
        const r = await pyJson<Record<string, unknown>>(
          s,
          `
def attempt(p):
    try:
        with open(p, 'rb') as f:
            return f.read().decode('latin-1')
    except OSError as e:
        return e.errno
found = []
for root, dirs, files in os.walk('/'):
    if root == '/' :
        dirs[:] = [d for d in dirs if d not in ('proc', 'sys')]
    found += [os.path.join(root, n) for n in files + dirs if n == ${JSON.stringify(path.basename(marker))}]
print(json.dumps({
    'marker': os.path.exists(${JSON.stringify(marker)}),
    'markerDir': os.path.exists(${JSON.stringify(dir)}),
    'repo': os.path.exists(${JSON.stringify(repo)}),
    'found': found,
    'shadow': [attempt(p) for p in ('/etc/shadow', '/etc/gshadow', '/proc/1/root/etc/shadow', '/proc/self/root/etc/shadow')],
    'imagePasswd': 'sandbox:x:1000' in open('/etc/passwd').read(),
}))`,
        )
        assert.deepEqual(r, {
          marker: false,
          markerDir: false,
          repo: false,
          found: [],
          shadow: [EACCES, EACCES, EACCES, EACCES],
          imagePasswd: true,
        })
        assert.ok(
          !readFileSync('/etc/passwd', 'utf8').includes('sandbox:x:1000'),
          "the host's own /etc/passwd looks like the image's; the check above proves nothing",
        )
      })
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test("/proc shows only the sandbox's own processes", async () => {
    await withSession(m, async (s) => {
      const r = await pyJson<{ procs: [number, string, string][]; hostPid: boolean; kill: number }>(
        s,
        `
procs = []
for p in sorted(int(n) for n in os.listdir('/proc') if n.isdigit()):
    try:
        st = dict(l.split(':\\t', 1) for l in open('/proc/%d/status' % p).read().splitlines() if ':\\t' in l)
        procs.append([p, st['Name'], st['Uid'].split()[0]])
    except OSError:
        pass
try:
    os.kill(${process.pid}, 0)
    kill = 0
except OSError as e:
    kill = e.errno
print(json.dumps({'procs': procs, 'hostPid': os.path.exists('/proc/${process.pid}'), 'kill': kill}))`,
      )
      assert.ok(r.procs.length > 0 && r.procs.length < 20, JSON.stringify(r.procs))
      assert.deepEqual(r.procs[0]!.slice(0, 2), [1, 'bwrap'])
      for (const [pid, name, uid] of r.procs) assert.equal(uid, '1000', `pid ${pid} (${name}) is not the sandbox user's`)
      assert.ok(!r.procs.some(([, name]) => ['node', 'systemd', 'init', 'sshd'].includes(name)), JSON.stringify(r.procs))
      const maxPid = Math.max(...r.procs.map(([p]) => p))
      if (process.pid > maxPid) {
        assert.equal(r.hostPid, false, "the test process's host pid is visible")
        assert.equal(r.kill, 3, 'kill(<host pid>, 0) must fail with ESRCH')
      }
    })
  })

  test('mount, umount and pivot_root are refused', async () => {
    await withSession(m, async (s) => {
      const r = await pyJson<Record<string, unknown>>(
        s,
        `
import subprocess
before = open('/proc/self/mountinfo').read()
out = {
    'mount tmpfs': sc(165, buf(b'none'), buf(b'/tmp'), buf(b'tmpfs'), 0, 0),
    'bind /': sc(165, buf(b'/'), buf(b'/workspace'), 0, 0x1000, 0),
    'remount / rw': sc(165, 0, buf(b'/'), 0, 0x20, 0),
    'umount /proc': sc(166, buf(b'/proc'), 2),
    'pivot_root': sc(155, buf(b'/tmp'), buf(b'/tmp')),
    'fsopen': sc(430, buf(b'tmpfs'), 0),
    'mount(8)': subprocess.run(['mount', '-t', 'tmpfs', 'none', '/mnt'], capture_output=True).returncode != 0,
    'unchanged': open('/proc/self/mountinfo').read() == before,
}
print(json.dumps(out))`,
      )
      assert.deepEqual(r, {
        'mount tmpfs': [-1, EPERM],
        'bind /': [-1, EPERM],
        'remount / rw': [-1, EPERM],
        'umount /proc': [-1, EPERM],
        pivot_root: [-1, EPERM],
        fsopen: [-1, EPERM],
        'mount(8)': true,
        unchanged: true,
      })
    })
  })

  test('no new namespaces: unshare and clone with CLONE_NEW* fail, unshare(1) fails', async () => {
    await withSession(m, async (s) => {
      const r = await pyJson<Record<string, [number, number] | boolean>>(
        s,
        `
import subprocess
def clone(flags):
    r = sc(56, flags | 17, 0, 0, 0, 0)
    if r[0] == 0:
        os._exit(0)
    if r[0] > 0:
        os.waitpid(r[0], 0)
    return r
out = {}
for name, flag in [('USER', 0x10000000), ('NS', 0x20000), ('NET', 0x40000000), ('PID', 0x20000000), ('IPC', 0x8000000), ('UTS', 0x4000000), ('CGROUP', 0x2000000)]:
    out['unshare ' + name] = sc(272, flag)
    out['clone ' + name] = clone(flag)
out['unshare -U'] = subprocess.run(['unshare', '-U', 'true'], capture_output=True).returncode != 0
out['unshare -r'] = subprocess.run(['unshare', '-r', 'id'], capture_output=True).returncode != 0
print(json.dumps(out))`,
      )
      for (const [name, v] of Object.entries(r)) {
        if (typeof v === 'boolean') assert.equal(v, true, `${name} succeeded`)
        else assert.deepEqual(v, [-1, EPERM], `${name} returned ${JSON.stringify(v)}`)
      }
      assert.equal(Object.keys(r).length, 16)
    })
  })

  test('ptrace and process_vm_readv of any process are refused', async () => {
    await withSession(m, async (s) => {
      const r = await pyJson<Record<string, [number, number]>>(
        s,
        `
import time
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
iov = buf(bytes(16))
out = {
    'PTRACE_ATTACH 1': sc(101, 16, 1, 0, 0),
    'PTRACE_SEIZE 1': sc(101, 0x4206, 1, 0, 0),
    'PTRACE_ATTACH parent': sc(101, 16, os.getppid(), 0, 0),
    'PTRACE_ATTACH child': sc(101, 16, child, 0, 0),
    'PTRACE_TRACEME': sc(101, 0, 0, 0, 0),
    'process_vm_readv 1': sc(310, 1, iov, 1, iov, 1, 0),
    'process_vm_writev child': sc(311, child, iov, 1, iov, 1, 0),
    'kcmp': sc(312, 1, child, 0, 0, 0),
}
os.kill(child, 9)
print(json.dumps(out))`,
      )
      for (const [name, v] of Object.entries(r)) assert.deepEqual(v, [-1, EPERM], `${name} returned ${JSON.stringify(v)}`)
      assert.equal(Object.keys(r).length, 8)
    })
  })

  test('kernel modules, kexec, bpf, perf_event_open, io_uring, userfaultfd, keyrings, handles: all EPERM', async () => {
    await withSession(m, async (s) => {
      const r = await pyJson<Record<string, [number, number]>>(
        s,
        `
null = os.open('/dev/null', os.O_RDONLY)
elf = buf(b'\\x7fELF' + bytes(60))
out = {
    'init_module': sc(175, elf, 64, buf(b'')),
    'finit_module': sc(313, null, buf(b''), 0),
    'delete_module': sc(176, buf(b'ext4'), 0x800),
    'kexec_load': sc(246, 0, 0, 0, 0),
    'kexec_file_load': sc(320, null, null, 1, buf(b''), 0),
    'bpf MAP_CREATE': sc(321, 0, buf(bytes(72)), 72),
    'bpf PROG_LOAD': sc(321, 5, buf(bytes(128)), 128),
    'perf_event_open': sc(298, buf(bytes(128)), 0, -1, -1, 0),
    'io_uring_setup': sc(425, 8, buf(bytes(120))),
    'io_uring_enter': sc(426, 0, 0, 0, 0, 0, 0),
    'io_uring_register': sc(427, 0, 0, 0, 0),
    'userfaultfd': sc(323, 0o2000000),
    'keyctl': sc(250, 0, -3 & 0xffffffff, 1),
    'add_key': sc(248, buf(b'user'), buf(b'k'), buf(b'v'), 1, -3 & 0xffffffff),
    'request_key': sc(249, buf(b'user'), buf(b'k'), 0, 0),
    'name_to_handle_at': sc(303, -100 & 0xffffffff, buf(b'/etc/passwd'), buf(bytes(136)), buf(bytes(4)), 0),
    'open_by_handle_at': sc(304, null, buf(bytes(136)), 0),
    'syslog': sc(103, 3, buf(bytes(64)), 64),
}
print(json.dumps(out))`,
      )
      for (const [name, v] of Object.entries(r)) assert.deepEqual(v, [-1, EPERM], `${name} returned ${JSON.stringify(v)}`)
      assert.equal(Object.keys(r).length, 18)
    })
  })

  test('raw, packet, vsock and alg sockets are refused', async () => {
    await withSession(m, async (s) => {
      const r = await pyJson<Record<string, number | string>>(
        s,
        `
import socket
def make(family, kind, proto=0):
    try:
        socket.socket(family, kind, proto).close()
        return 'created'
    except OSError as e:
        return e.errno
out = {
    'AF_INET SOCK_RAW ICMP': make(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
    'AF_INET SOCK_RAW RAW': make(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW),
    'AF_INET6 SOCK_RAW': make(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6),
    'AF_PACKET SOCK_RAW': make(17, socket.SOCK_RAW, 0x0300),
    'AF_PACKET SOCK_DGRAM': make(17, socket.SOCK_DGRAM, 0x0300),
    'AF_VSOCK SOCK_STREAM': make(40, socket.SOCK_STREAM),
    'AF_VSOCK SOCK_DGRAM': make(40, socket.SOCK_DGRAM),
    'AF_VSOCK SOCK_SEQPACKET': make(40, socket.SOCK_SEQPACKET),
    'AF_ALG': make(38, socket.SOCK_SEQPACKET),
    'AF_VSOCK high bits (raw)': sc(41, (1 << 32) | 40, 1, 0)[1],
    'socketpair AF_VSOCK (raw)': sc(53, 40, 1, 0, buf(bytes(8)))[1],
}
print(json.dumps(out))`,
      )
      for (const [name, v] of Object.entries(r)) assert.equal(v, EPERM, `${name}: ${v}`)
      assert.equal(Object.keys(r).length, 11)
    })
  })

  test('device nodes: /dev holds only the safe ones, mknod of devices fails, /dev is read-only', async () => {
    await withSession(m, async (s) => {
      const r = await pyJson<{ dev: string[]; mknod: Record<string, number | string>; create: number | string; mem: number }>(
        s,
        `
import stat
def mknod(p, mode, dev):
    try:
        os.mknod(p, mode, dev)
        return 'created'
    except OSError as e:
        return e.errno
def create(p):
    try:
        open(p, 'w').close()
        return 'created'
    except OSError as e:
        return e.errno
try:
    open('/dev/mem', 'rb')
    mem = 0
except OSError as e:
    mem = e.errno
print(json.dumps({
    'dev': sorted(os.listdir('/dev')),
    'mknod': {
        '/tmp/mem c 1:1': mknod('/tmp/mem', stat.S_IFCHR | 0o666, os.makedev(1, 1)),
        '/workspace/kmsg c 1:11': mknod('/workspace/kmsg', stat.S_IFCHR | 0o666, os.makedev(1, 11)),
        '/tmp/vda b 254:0': mknod('/tmp/vda', stat.S_IFBLK | 0o666, os.makedev(254, 0)),
    },
    'create': create('/dev/codebox-probe'),
    'mem': mem,
}))`,
      )
      const safe = new Set(['null', 'zero', 'full', 'random', 'urandom', 'tty', 'ptmx', 'pts', 'shm', 'fd', 'stdin', 'stdout', 'stderr', 'core'])
      for (const name of r.dev) assert.ok(safe.has(name), `/dev/${name} is not one of the safe devices`)
      assert.deepEqual(r.mknod, { '/tmp/mem c 1:1': EPERM, '/workspace/kmsg c 1:11': EPERM, '/tmp/vda b 254:0': EPERM })
      // A writable /dev is a tmpfs without a size cap: it would bypass workspaceBytes and tmpBytes.
      assert.equal(r.create, EROFS, 'a file could be created in /dev')
      assert.equal(r.mem, 2)
    })
  })

  test('setuid binaries give no privilege: every process keeps the sandbox uid (NoNewPrivs, nosuid)', async () => {
    await withSession(m, async (s) => {
      const r = await pyJson<{ setuid: string[]; samples: Record<string, string[]>; rootNosuid: boolean }>(
        s,
        `
import stat, subprocess, time
setuid = []
for top in ('/usr', '/opt'):
    for root, dirs, files in os.walk(top):
        for n in files:
            p = os.path.join(root, n)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                setuid.append(p)
samples = {}
# These prompt for a password on stdin; while they wait, their credentials are visible in /proc.
for argv in (['su', 'root', '-c', 'id'], ['passwd'], ['chsh'], ['chfn'], ['newgrp', 'root']):
    path = '/usr/bin/' + argv[0]
    if path not in setuid:
        continue
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = []
    end = time.monotonic() + 1.5
    while time.monotonic() < end and p.poll() is None:
        try:
            st = dict(l.split(':\\t', 1) for l in open('/proc/%d/status' % p.pid).read().splitlines() if ':\\t' in l)
        except OSError:
            break
        if st['Name'] == argv[0]:
            seen.append(st['Uid'] + ' / ' + st['Gid'])
            if len(seen) >= 3:
                break
        time.sleep(0.02)
    p.kill()
    p.wait()
    samples[argv[0]] = seen
root = [l.split() for l in open('/proc/self/mountinfo') if l.split()[4] == '/'][0]
print(json.dumps({'setuid': setuid, 'samples': samples, 'rootNosuid': 'nosuid' in root[5].split(',')}))`,
      )
      assert.ok(r.setuid.length > 0, 'the image has no setuid binaries; nothing was tested')
      const observed = Object.entries(r.samples).filter(([, seen]) => seen.length > 0)
      assert.ok(observed.length >= 2, `too few setuid programs observed while running: ${JSON.stringify(r.samples)}`)
      for (const [name, seen] of observed) {
        for (const line of seen) assert.equal(line, '1000\t1000\t1000\t1000 / 1000\t1000\t1000\t1000', `${name} ran with ${line}`)
      }
      assert.equal(r.rootNosuid, true)
    })
  })

  test('no capabilities, no_new_privs and seccomp in every process', async () => {
    await withSession(m, async (s) => {
      await s.runCode({ code: 'print(1)' })
      const r = await pyJson<Record<string, Record<string, string>>>(
        s,
        `
out = {}
for n in os.listdir('/proc'):
    if not n.isdigit():
        continue
    try:
        st = dict(l.split(':\\t', 1) for l in open('/proc/%s/status' % n).read().splitlines() if ':\\t' in l)
    except OSError:
        continue
    out[n + ' ' + st['Name']] = {k: st[k].strip() for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp')}
print(json.dumps(out))`,
      )
      assert.ok(Object.keys(r).length >= 4, JSON.stringify(Object.keys(r)))
      const zero = '0000000000000000'
      for (const [proc, st] of Object.entries(r)) {
        assert.deepEqual(st, { CapInh: zero, CapPrm: zero, CapEff: zero, CapBnd: zero, CapAmb: zero, NoNewPrivs: '1', Seccomp: '2' }, proc)
      }
    })
  })

  test('the image and the mounted executor are read-only', async () => {
    const executor = fileURLToPath(new URL('../../executor/executor.py', import.meta.url))
    const before = createHash('sha256').update(readFileSync(executor)).digest('hex')
    await withSession(m, async (s) => {
      const r = await pyJson<Record<string, number | string>>(
        s,
        `
def attempt(fn):
    try:
        fn()
        return 'done'
    except OSError as e:
        return e.errno
out = {
    'create /usr/x': attempt(lambda: open('/usr/x', 'w')),
    'create /etc/x': attempt(lambda: open('/etc/x', 'w')),
    'create /x': attempt(lambda: open('/x', 'w')),
    'append /etc/passwd': attempt(lambda: open('/etc/passwd', 'a')),
    'unlink /etc/passwd': attempt(lambda: os.unlink('/etc/passwd')),
    'chmod python3': attempt(lambda: os.chmod('/usr/bin/python3', 0o777)),
    'mkdir /var/x': attempt(lambda: os.mkdir('/var/x')),
    'append executor.py': attempt(lambda: open('/opt/codebox/executor/executor.py', 'a')),
    'create in executor': attempt(lambda: open('/opt/codebox/executor/x.py', 'w')),
    'append acorn': attempt(lambda: open('/opt/codebox/node_modules/acorn/package.json', 'a')),
}
print(json.dumps(out))`,
      )
      for (const [name, v] of Object.entries(r)) assert.ok(v === EROFS || v === EACCES || v === EPERM, `${name}: ${v}`)
      assert.equal(Object.keys(r).length, 10)
    })
    assert.equal(createHash('sha256').update(readFileSync(executor)).digest('hex'), before)
  })

  test("setns into /proc/*/ns fails, and every namespace differs from the host's", async () => {
    const kinds = ['user', 'pid', 'net', 'mnt', 'ipc', 'uts', 'cgroup']
    const host = Object.fromEntries(kinds.map((k) => [k, readlinkSync(`/proc/self/ns/${k}`)]))
    await withSession(m, async (s) => {
      const r = await pyJson<{ ns: Record<string, string>; setns: Record<string, [number, number] | number> }>(
        s,
        `
setns = {}
for pid in ('1', 'self'):
    for k in sorted(os.listdir('/proc/%s/ns' % pid)):
        try:
            fd = os.open('/proc/%s/ns/%s' % (pid, k), os.O_RDONLY)
        except OSError as e:
            setns[pid + '/' + k] = e.errno
            continue
        setns[pid + '/' + k] = sc(308, fd, 0)
        os.close(fd)
print(json.dumps({'ns': {k: os.readlink('/proc/self/ns/' + k) for k in ${JSON.stringify(kinds)}}, 'setns': setns}))`,
      )
      for (const k of kinds) assert.notEqual(r.ns[k], host[k], `the sandbox shares the host's ${k} namespace`)
      assert.ok(Object.keys(r.setns).length >= 14)
      for (const [name, v] of Object.entries(r.setns)) assert.deepEqual(v, [-1, EPERM], `setns ${name}: ${JSON.stringify(v)}`)
    })
  })

  test('x32 syscalls fail with EPERM; an i386 int 0x80 syscall kills the process', async (t) => {
    await withSession(m, async (s) => {
      const r = await pyJson<Record<string, [number, number]>>(
        s,
        `
print(json.dumps({
    'x32 getpid': sc(0x40000000 | 39),
    'x32 write': sc(0x40000000 | 1, 1, buf(b'leak\\n'), 5),
    'x32 open': sc(0x40000000 | 2, buf(b'/etc/passwd'), 0),
}))`,
      )
      assert.deepEqual(r, { 'x32 getpid': [-1, EPERM], 'x32 write': [-1, EPERM], 'x32 open': [-1, EPERM] })
      const why = ccUnavailable()
      if (why) return t.skip(why)
      const bin = compileC(`${C_GUARD}
int main(void) {
  codebox_probe_guard();
  printf("before\\n");
  fflush(stdout);
  long ret = 20; /* getpid on i386 */
  __asm__ volatile("int $0x80" : "+a"(ret) : : "memory", "r8", "r9", "r10", "r11");
  printf("survived %ld\\n", ret);
  return 0;
}
`)
      const ia32 = hostIa32Support()
      if (typeof ia32 === 'string') return t.skip(ia32)
      const c = await runC(s, bin)
      assert.equal(c.stdout, 'before\n')
      // Without IA-32 emulation the kernel refuses int 0x80 itself (SIGSEGV) before seccomp runs.
      const [signal, name] = ia32 ? [31, 'SIGSYS'] : [11, 'SIGSEGV (this kernel lacks IA-32 emulation)']
      assert.equal(c.exitCode, 128 + signal, `expected death by ${name}, got exit ${c.exitCode}: ${c.stderr}`)
    })
  })

  test('no host environment reaches sandbox code: only the allow-listed variables', async () => {
    const canary = token()
    const saved = { ...process.env }
    process.env.CODEBOX_TEST_CANARY = canary
    process.env.AWS_SECRET_ACCESS_KEY = canary
    process.env.NODE_OPTIONS = '--max-old-space-size=4097'
    process.env.PYTHONPATH = `/tmp/${canary}`
    process.env.LD_LIBRARY_PATH = `/tmp/${canary}`
    const allowed = new Set([
      'PATH',
      'HOME',
      'USER',
      'LANG',
      'LC_ALL',
      'TERM',
      'MPLBACKEND',
      'MPLCONFIGDIR',
      'XDG_CACHE_HOME',
      'OPENBLAS_NUM_THREADS',
      'OMP_NUM_THREADS',
      'PYTHONDONTWRITEBYTECODE',
      'CODEBOX_WORKSPACE',
      'CODEBOX_NODE',
      'CODEBOX_PYTHON',
      'CODEBOX_KERNEL_CHANNEL', // the abstract socket name a kernel connects to for each cell
      'PIP_BREAK_SYSTEM_PACKAGES', // pip installs into the workspace (the image is read-only)
      'PWD',
      'SHLVL',
      '_',
      'OLDPWD',
    ])
    try {
      await withSession(m, async (s) => {
        const r = await pyJson<{ envs: Record<string, string[]>; leaked: string[] }>(
          s,
          `
envs, leaked = {}, []
for n in os.listdir('/proc'):
    if not n.isdigit():
        continue
    try:
        raw = open('/proc/%s/environ' % n, 'rb').read()
        name = open('/proc/%s/comm' % n).read().strip()
    except OSError:
        continue
    if ${JSON.stringify(canary)}.encode() in raw:
        leaked.append(n + ' ' + name)
    envs[n + ' ' + name] = sorted(set(e.split(b'=', 1)[0].decode() for e in raw.split(b'\\0') if e))
print(json.dumps({'envs': envs, 'leaked': leaked}))`,
        )
        assert.deepEqual(r.leaked, [])
        assert.ok(Object.keys(r.envs).length >= 3, JSON.stringify(r.envs))
        for (const [proc, keys] of Object.entries(r.envs)) {
          for (const k of keys) assert.ok(allowed.has(k), `${proc} has ${k} in its environment`)
        }
        const js = await s.runCode({ code: 'console.log(JSON.stringify(process.env))', language: 'javascript' })
        assert.equal(js.isError, false, js.structuredContent.stderr)
        const env = JSON.parse(js.structuredContent.stdout) as Record<string, string>
        for (const k of Object.keys(env)) assert.ok(allowed.has(k), `the Node kernel has ${k}`)
        assert.ok(!js.structuredContent.stdout.includes(canary))
      })
    } finally {
      for (const k of ['CODEBOX_TEST_CANARY', 'AWS_SECRET_ACCESS_KEY', 'NODE_OPTIONS', 'PYTHONPATH', 'LD_LIBRARY_PATH']) {
        if (saved[k] === undefined) delete process.env[k]
        else process.env[k] = saved[k]
      }
    }
  })

  test("no inherited fds: sandbox processes hold only their own pipes, the host's canary file is unreachable", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'codebox-fdcanary-'))
    const canary = path.join(dir, `canary-${token()}`)
    writeFileSync(canary, 'host fd canary')
    // libuv opens with O_CLOEXEC; the launcher must also close anything that does get inherited.
    const fd = openSync(canary, 'r')
    const dirFd = openSync(dir, 'r')
    try {
      await withSession(m, async (s) => {
        const r = await pyJson<{ own: string[]; fds: Record<string, Record<string, string>> }>(
          s,
          `
import re
def describe(path):
    """A pipe, socket or anon inode; 'inside' for a file the sandbox itself reaches at that path;
    else the path: an fd from outside (its path is the host's, or another file's)."""
    target = os.readlink(path)
    if re.match(r'^(pipe|socket|anon_inode):', target):
        return target
    try:
        a, b = os.stat(path), os.stat(target)
        if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
            return 'inside'
    except OSError:
        pass
    return target
fds = {}
for n in os.listdir('/proc'):
    if not n.isdigit() or n == str(os.getpid()):
        continue
    try:
        name = open('/proc/%s/comm' % n).read().strip()
        entries = os.listdir('/proc/%s/fd' % n)
    except OSError:
        continue
    targets = {}
    for e in entries:
        try:
            targets[e] = describe('/proc/%s/fd/%s' % (n, e))
        except OSError:
            pass
    fds[n + ' ' + name] = targets
own = []
for e in os.listdir('/proc/self/fd'):
    try:
        own.append(e + ' ' + os.readlink('/proc/self/fd/' + e))
    except OSError:
        pass
print(json.dumps({'own': sorted(own), 'fds': fds}))`,
        )
        const ownNumbers = r.own.map((l) => l.split(' ')[0]).filter((n) => n !== '3') // 3: the listing's own dir fd
        assert.deepEqual(ownNumbers, ['0', '1', '2'], JSON.stringify(r.own))
        // The executor and the Python kernel are not dumpable, so their fds cannot be listed from a
        // cell (executor-reach.test.ts); what can be listed must hold only the sandbox's own files.
        assert.ok(Object.keys(r.fds).length >= 1, JSON.stringify(r.fds))
        for (const [proc, targets] of Object.entries(r.fds)) {
          for (const [n, target] of Object.entries(targets)) {
            assert.ok(!target.includes(path.basename(canary)) && !target.includes(dir), `${proc} fd ${n} reaches the host canary: ${target}`)
            assert.match(target, /^(pipe:\[\d+\]|socket:\[\d+\]|anon_inode:.+|inside)$/, `${proc} fd ${n} is ${target}, not a file of the sandbox`)
          }
        }
      })
    } finally {
      closeSync(fd)
      closeSync(dirFd)
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('sandbox processes run as an unprivileged host uid, different for each session', { skip: hostViewUnavailable() ?? false }, async () => {
    await withSession(m, async (a) => {
      await withSession(m, async (b) => {
        const va = await hostView(a)
        const vb = await hostView(b)
        assert.notEqual(va.cgroupId, vb.cgroupId)
        for (const v of [va, vb]) {
          assert.ok(v.pids.length >= 3, `${v.cgroupId}: ${v.pids.join(' ')}`)
          assert.notEqual(v.uid, 0)
          assert.notEqual(v.uid, process.getuid!())
          assert.ok(v.uid >= 1000, `host uid ${v.uid} is in the range of system accounts`)
          for (const pid of v.pids) {
            const uids = hostUids(pid)
            if (uids) assert.deepEqual(uids, [v.uid, v.uid, v.uid, v.uid], `host pid ${pid}`)
          }
        }
        assert.notEqual(va.uid, vb.uid, 'two sessions share a host uid')
      })
    })
  })
})
