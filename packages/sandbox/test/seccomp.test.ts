/**
 * Tests for the bwrap seccomp filter: the compiled program is run by a small BPF interpreter for
 * every syscall number, then loaded by bubblewrap on this host, where probes inside the sandbox
 * (never on the host: each probe refuses to run without Seccomp 2 and NoNewPrivs 1) try the
 * denied syscalls and ABIs and check that ordinary programs still work.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, closeSync, existsSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { buildSeccompFilter, describeSeccompPolicy } from '../src/drivers/bwrap/seccomp.ts'
import { X86_64_SYSCALLS } from '../src/drivers/bwrap/syscalls-x86_64.ts'
import { hostIa32Support } from './driver-ia32.ts'

const ALLOW = 0x7fff0000
const KILL_PROCESS = 0x80000000
const errno = (value: number): number => 0x00050000 | value
const EPERM = 1
const ENOSYS = 38
/** EHWPOISON: no probed syscall returns it by itself, so seeing it proves the filter denied. */
const MARKER_ERRNO = 133

/** Native AIO draws on the host-wide fs.aio-max-nr pool: ENOSYS, so libaio users fall back. */
const AIO: Record<string, number> = { io_setup: 206, io_destroy: 207, io_getevents: 208, io_submit: 209, io_cancel: 210, io_pgetevents: 333 }

/** Denied by the brief whatever Docker allows; numbers from asm/unistd_64.h, not from the table. */
const MUST_DENY: Record<string, number> = {
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  bpf: 321,
  keyctl: 250,
  add_key: 248,
  request_key: 249,
  userfaultfd: 323,
  perf_event_open: 298,
  kexec_load: 246,
  kexec_file_load: 320,
  open_by_handle_at: 304,
  name_to_handle_at: 303,
  ptrace: 101,
  mount: 165,
  umount2: 166,
  pivot_root: 155,
  unshare: 272,
  setns: 308,
  init_module: 175,
  finit_module: 313,
  delete_module: 176,
  process_vm_readv: 310,
  process_vm_writev: 311,
  kcmp: 312,
  lookup_dcookie: 212,
  quotactl: 179,
  acct: 163,
  swapon: 167,
  swapoff: 168,
  reboot: 169,
  syslog: 103,
  vhangup: 153,
  iopl: 172,
  ioperm: 173,
  clock_settime: 227,
  settimeofday: 164,
  adjtimex: 159,
  clock_adjtime: 305,
  fanotify_init: 300,
  mbind: 237,
  set_mempolicy: 238,
  move_pages: 279,
}
const MUST_ALLOW: Record<string, number> = {
  read: 0,
  write: 1,
  openat: 257,
  mmap: 9,
  futex: 202,
  execve: 59,
  exit_group: 231,
  rt_sigreturn: 15,
  wait4: 61,
  getrandom: 318,
  rseq: 334,
  statx: 332,
}

interface SeccompData {
  nr: number
  arch?: number
  args?: bigint[]
}

/** Runs a seccomp program the way the kernel does and returns its SECCOMP_RET_* value. */
function runFilter(program: Buffer, { nr, arch = 0xc000003e, args = [] }: SeccompData): number {
  const data = Buffer.alloc(64)
  data.writeUInt32LE(nr >>> 0, 0)
  data.writeUInt32LE(arch, 4)
  args.forEach((arg, i) => data.writeBigUInt64LE(arg, 16 + 8 * i))
  let acc = 0
  let pc = 0
  for (;;) {
    assert.ok(pc * 8 < program.length, `instruction ${pc} is past the end of the program`)
    const code = program.readUInt16LE(pc * 8)
    const jt = program.readUInt8(pc * 8 + 2)
    const jf = program.readUInt8(pc * 8 + 3)
    const k = program.readUInt32LE(pc * 8 + 4)
    if (code === 0x06) return k
    if (code === 0x20) {
      assert.ok(k % 4 === 0 && k < 64, `load from offset ${k}`)
      acc = data.readUInt32LE(k)
      pc += 1
    } else if (code === 0x05) pc += 1 + k
    else if (code === 0x15) pc += 1 + (acc === k ? jt : jf)
    else if (code === 0x35) pc += 1 + (acc >= k ? jt : jf)
    else if (code === 0x45) pc += 1 + ((acc & k) !== 0 ? jt : jf)
    else assert.fail(`unexpected opcode 0x${code.toString(16)} at ${pc}`)
  }
}

describe('buildSeccompFilter', () => {
  const program = buildSeccompFilter()

  test('is a whole number of sock_filter entries within the kernel limit', () => {
    assert.equal(program.length % 8, 0)
    assert.ok(program.length / 8 <= 4096, `${program.length / 8} instructions`)
  })

  test('decides every x86_64 syscall number as the policy says', () => {
    const { allowed } = describeSeccompPolicy()
    const conditional = new Set(['clone', 'clone3', 'socket', 'socketpair', 'ioctl', 'personality', ...Object.keys(AIO)])
    for (const [name, nr] of Object.entries(X86_64_SYSCALLS)) {
      if (conditional.has(name)) continue
      const expected = allowed.includes(name) ? ALLOW : errno(EPERM)
      assert.equal(runFilter(program, { nr }), expected, name)
    }
    for (const [name, nr] of Object.entries(MUST_DENY)) {
      assert.equal(runFilter(program, { nr }), errno(EPERM), name)
      assert.equal(X86_64_SYSCALLS[name as keyof typeof X86_64_SYSCALLS], nr, name)
    }
    for (const [name, nr] of Object.entries(MUST_ALLOW)) {
      assert.equal(runFilter(program, { nr }), ALLOW, name)
    }
  })

  test('kills other ABIs, refuses x32, answers clone3 and unknown numbers with ENOSYS', () => {
    assert.equal(runFilter(program, { nr: 20, arch: 0x40000003 }), KILL_PROCESS) // i386
    assert.equal(runFilter(program, { nr: 0x40000000 | 39 }), errno(EPERM))
    assert.equal(runFilter(program, { nr: 0xffffffff }), errno(EPERM))
    assert.equal(runFilter(program, { nr: 435 }), errno(ENOSYS))
    assert.equal(runFilter(program, { nr: 452 }), errno(ENOSYS)) // fchmodat2, newer than the table
    for (let nr = 335; nr < 424; nr++) assert.equal(runFilter(program, { nr }), errno(EPERM), `${nr}`)
  })

  test('answers the native AIO syscalls (a host-wide pool) with ENOSYS', () => {
    for (const [name, nr] of Object.entries(AIO)) {
      assert.equal(runFilter(program, { nr }), errno(ENOSYS), name)
      assert.equal(X86_64_SYSCALLS[name as keyof typeof X86_64_SYSCALLS], nr, name)
    }
  })

  test('checks the arguments of clone, socket, socketpair, ioctl and personality', () => {
    const cases: [number, bigint[], number][] = [
      [56, [0x11n], ALLOW], // SIGCHLD: fork
      [56, [0x3d0f00n], ALLOW], // pthread_create's flags
      [56, [0x20011n], errno(EPERM)], // CLONE_NEWNS
      [56, [0x10000011n], errno(EPERM)], // CLONE_NEWUSER
      [56, [(1n << 32n) | 0x11n], errno(EPERM)],
      [41, [2n, 1n], ALLOW], // AF_INET
      [41, [16n, 3n], ALLOW], // AF_NETLINK
      [41, [40n, 1n], errno(EPERM)], // AF_VSOCK
      [41, [(1n << 32n) | 40n], errno(EPERM)], // the kernel reads an int: still AF_VSOCK
      [41, [38n, 5n], errno(EPERM)], // AF_ALG
      [41, [17n, 3n], errno(EPERM)], // AF_PACKET
      [53, [1n, 1n], ALLOW],
      [53, [40n, 1n], errno(EPERM)],
      [16, [0n, 0x541bn], ALLOW], // FIONREAD
      [16, [0n, 0x5412n], errno(EPERM)], // TIOCSTI
      [16, [0n, (1n << 32n) | 0x5412n], errno(EPERM)],
      [16, [0n, 0x541cn], errno(EPERM)], // TIOCLINUX
      [135, [0xffffffffn], ALLOW],
      [135, [0x20008n], ALLOW],
      [135, [0x40000n], errno(EPERM)], // ADDR_NO_RANDOMIZE
      [135, [0x400000n], errno(EPERM)], // READ_IMPLIES_EXEC
    ]
    for (const [nr, args, expected] of cases) {
      assert.equal(runFilter(program, { nr, args }), expected, `${nr}(${args.join(', ')})`)
    }
  })

  test('uses denyErrno for denials and rejects values that are not an errno', () => {
    const custom = buildSeccompFilter({ denyErrno: MARKER_ERRNO })
    assert.equal(runFilter(custom, { nr: 321 }), errno(MARKER_ERRNO))
    assert.equal(runFilter(custom, { nr: 435 }), errno(ENOSYS))
    for (const bad of [0, -1, 1.5, 4096]) {
      assert.throws(() => buildSeccompFilter({ denyErrno: bad }), RangeError)
    }
  })

  test('describeSeccompPolicy partitions the x86_64 table', () => {
    const { allowed, denied } = describeSeccompPolicy()
    assert.equal(allowed.length + denied.length, Object.keys(X86_64_SYSCALLS).length)
    for (const name of Object.keys(MUST_DENY)) assert.ok(denied.includes(name), name)
    for (const name of ['clone', 'socket', 'ioctl', 'execve']) assert.ok(allowed.includes(name))
  })
})

// ---- Under bubblewrap ---------------------------------------------------------------------

const BWRAP = '/usr/bin/bwrap'
const SETPRIV = '/usr/bin/setpriv'
const PYTHON = '/usr/bin/python3'
const isRoot = process.getuid?.() === 0

function sandboxSkipReason(): string | false {
  if (process.platform !== 'linux' || process.arch !== 'x64') return 'needs Linux on x86_64'
  for (const tool of [BWRAP, PYTHON, ...(isRoot ? [SETPRIV] : [])]) {
    if (!existsSync(tool)) return `${tool} is not installed`
  }
  return false
}

/** Refuses (exit 99) unless seccomp is on, no_new_privs is set and no capability is effective. */
const PROBE_PRELUDE = `
import ctypes, json, os, subprocess, sys
def _inside_sandbox():
    try:
        lines = open('/proc/self/status').read().splitlines()
    except OSError:
        return False
    f = dict(l.split(':', 1) for l in lines if ':' in l)
    g = lambda k: f.get(k, '').strip()
    return g('Seccomp') == '2' and g('NoNewPrivs') == '1' and g('CapEff') == '0' * 16
if not _inside_sandbox():
    sys.exit(99)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
def sc(nr, *args):
    ctypes.set_errno(0)
    r = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a & (2**64 - 1)) for a in args])
    return [r, ctypes.get_errno() if r == -1 else 0]
def addr(data):
    buf = ctypes.create_string_buffer(data)
    _keep.append(buf)
    return ctypes.addressof(buf)
_keep = []
def raw_clone(flags):
    r = sc(56, flags, 0, 0, 0, 0)
    if r[0] == 0:
        os._exit(0)
    if r[0] > 0:
        os.waitpid(r[0], 0)
    return r
`

/** Each entry: what a denied call looks like if the filter lets it through, in Python. */
const DENIED_PROBES = `
DENIED = {
    'io_uring_setup': lambda: sc(425, 1, addr(bytes(120))),
    'bpf': lambda: sc(321, 0, addr(bytes(72)), 72),
    'keyctl': lambda: sc(250, 0, -3, 0),
    'add_key': lambda: sc(248, addr(b'user'), addr(b'k'), addr(b'v'), 1, -3),
    'userfaultfd': lambda: sc(323, 1),
    'perf_event_open': lambda: sc(298, 0, 0, -1, -1, 0),
    'unshare(CLONE_NEWUSER)': lambda: sc(272, 0x10000000),
    'mount': lambda: sc(165, addr(b'none'), addr(b'/tmp'), addr(b'tmpfs'), 0, 0),
    'ptrace': lambda: sc(101, 3, 0x3fffffff, 0, 0),
    'process_vm_readv': lambda: sc(310, os.getpid(), 0, 0, 0, 0, 0),
    'kexec_load': lambda: sc(246, 0, 0, 0, 0),
    'open_by_handle_at': lambda: sc(304, -1, 0, 0),
    'name_to_handle_at': lambda: sc(303, -100, addr(b'/'), addr(bytes(136)), addr(bytes(4)), 0),
    'setns': lambda: sc(308, -1, 0),
    'finit_module': lambda: sc(313, -1, addr(b''), 0),
    'kcmp': lambda: sc(312, os.getpid(), os.getpid(), 0, 0, 0),
    'personality(ADDR_NO_RANDOMIZE)': lambda: sc(135, 0x40000),
    'clone(CLONE_NEWNS)': lambda: raw_clone(0x20000 | 17),
    'clone(CLONE_NEWUSER)': lambda: raw_clone(0x10000000 | 17),
    'socket(AF_VSOCK)': lambda: sc(41, 40, 1, 0),
    'socket(AF_VSOCK with high bits)': lambda: sc(41, (1 << 32) | 40, 1, 0),
    'socket(AF_ALG)': lambda: sc(41, 38, 5, 0),
    'socketpair(AF_VSOCK)': lambda: sc(53, 40, 1, 0, addr(bytes(8))),
    'ioctl(TIOCSTI)': lambda: sc(16, 0, 0x5412, addr(b'x')),
    'ioctl(TIOCSTI with high bits)': lambda: sc(16, 0, (1 << 32) | 0x5412, addr(b'x')),
    'x32 getpid': lambda: sc(0x40000000 | 39),
    'clone3': lambda: sc(435, 0, 0),
    'io_setup': lambda: sc(206, 1, addr(bytes(8))),
    'io_destroy': lambda: sc(207, 0),
    'io_getevents': lambda: sc(208, 0, 0, 1, addr(bytes(64)), 0),
    'io_submit': lambda: sc(209, 0, 0, 0),
    'io_cancel': lambda: sc(210, 0, 0, addr(bytes(64))),
    'io_pgetevents': lambda: sc(333, 0, 0, 1, addr(bytes(64)), 0, 0),
}
print(json.dumps({name: probe() for name, probe in DENIED.items()}))
`

const WORKING_PROBES = `
import socket, threading, fcntl, termios
def fork_exit_code():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
def thread_result():
    out = []
    t = threading.Thread(target=lambda: out.append('ran'))
    t.start()
    t.join()
    return out[0]
def tcp_listen():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        s.listen()
        return 'ok'
def unix_pair():
    a, b = socket.socketpair()
    a.sendall(b'x')
    return b.recv(1).decode()
def fionread():
    r, w = os.pipe()
    os.write(w, b'abc')
    return int.from_bytes(fcntl.ioctl(r, termios.FIONREAD, bytes(4)), 'little')
CHECKS = {
    'read a file': lambda: 'ID=' in open('/etc/os-release').read(),
    'subprocess': lambda: subprocess.run(['/bin/true']).returncode,
    'thread': thread_result,
    'fork': fork_exit_code,
    'AF_INET socket': tcp_listen,
    'AF_UNIX socketpair': unix_pair,
    'AF_NETLINK socket': lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0).close(),
    'personality query': lambda: sc(135, 0xffffffff)[1],
    'ioctl FIONREAD': fionread,
}
results = {}
for name, check in CHECKS.items():
    try:
        results[name] = check()
    except Exception as e:
        results[name] = repr(e)
print(json.dumps(results))
`

/** Exit 99 outside a sandbox; inside, makes the i386 getpid call and says whether it survived. */
const INT80_PROBE = String.raw`
#include <stdio.h>
#include <string.h>
int main(void) {
  char status[8192] = {0};
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return 99;
  fread(status, 1, sizeof status - 1, f);
  fclose(f);
  if (!strstr(status, "\nSeccomp:\t2\n") || !strstr(status, "\nNoNewPrivs:\t1\n")) return 99;
  long ret = 20; /* __NR_getpid on i386 */
  __asm__ volatile("int $0x80" : "+a"(ret) : : "memory", "r8", "r9", "r10", "r11");
  printf("survived %ld\n", ret);
  return 0;
}
`

interface RunResult {
  status: number | null
  stdout: string
  stderr: string
}

/** Runs argv as uid/gid 65534 (when root), with the seccomp program readable on fd 3 if given. */
function run(argv: string[], filterFd?: number): Promise<RunResult> {
  const dropRoot = [SETPRIV, '--reuid=65534', '--regid=65534', '--clear-groups']
  const [command, ...args] = isRoot ? [...dropRoot, ...argv] : argv
  const stdio: ('pipe' | number)[] = ['pipe', 'pipe', 'pipe']
  if (filterFd !== undefined) stdio.push(filterFd)
  const child = spawn(command!, args, {
    stdio,
    env: { PATH: '/usr/bin:/bin', LANG: 'C.UTF-8' },
    cwd: '/',
    timeout: 60_000,
  })
  child.stdin!.end()
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (status) => resolve({ status, stdout, stderr }))
  })
}

describe('the filter under bubblewrap', { skip: sandboxSkipReason() }, () => {
  let dir = ''
  let int80Probe: string | undefined
  let noCompilerReason: string | false = false

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'codebox-seccomp-'))
    chmodSync(dir, 0o755) // the probes run as an unprivileged uid
    writeFileSync(join(dir, 'int80.c'), INT80_PROBE)
    const cc = spawnSync('cc', ['-O0', '-o', join(dir, 'int80'), join(dir, 'int80.c')])
    if (cc.error) noCompilerReason = `cc is not available (${cc.error.message})`
    else if (cc.status !== 0) noCompilerReason = `cc failed: ${cc.stderr.toString()}`
    else int80Probe = join(dir, 'int80')
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  /** Runs `python3 -c code` in a fresh sandbox with the filter passed on fd 3. */
  async function inSandbox(code: string, options: { denyErrno?: number } = {}) {
    const filterPath = join(dir, `filter-${options.denyErrno ?? 'default'}.bpf`)
    writeFileSync(filterPath, buildSeccompFilter(options))
    const fd = openSync(filterPath, 'r') // one fd per sandbox: bwrap reads it from its offset
    try {
      const bwrap = [BWRAP, '--unshare-all', '--die-with-parent', '--ro-bind', '/', '/']
      bwrap.push('--dev', '/dev', '--proc', '/proc', '--chdir', '/', '--seccomp', '3', '--')
      return await run([...bwrap, PYTHON, '-c', PROBE_PRELUDE + code], fd)
    } finally {
      closeSync(fd)
    }
  }

  function parse(result: RunResult): Record<string, unknown> {
    assert.equal(result.status, 0, `probe exited ${result.status}: ${result.stderr}`)
    return JSON.parse(result.stdout) as Record<string, unknown>
  }

  test('the probes refuse to run outside a sandbox', async () => {
    const python = await run([PYTHON, '-c', `${PROBE_PRELUDE}\nprint('ran')`])
    assert.deepEqual([python.status, python.stdout], [99, ''])
    if (int80Probe) {
      const native = await run([int80Probe])
      assert.deepEqual([native.status, native.stdout], [99, ''])
    }
  })

  test('ordinary Python works', async () => {
    assert.deepEqual(parse(await inSandbox(WORKING_PROBES)), {
      'read a file': true,
      subprocess: 0,
      thread: 'ran',
      fork: 7,
      'AF_INET socket': 'ok',
      'AF_UNIX socketpair': 'x',
      'AF_NETLINK socket': null,
      'personality query': 0,
      'ioctl FIONREAD': 3,
    })
  })

  for (const denyErrno of [undefined, MARKER_ERRNO]) {
    const expectedErrno = denyErrno ?? EPERM
    test(`denied syscalls fail with errno ${expectedErrno}, clone3 and io_setup (AIO) with ENOSYS`, async () => {
      const results = parse(await inSandbox(DENIED_PROBES, { denyErrno }))
      for (const [name, result] of Object.entries(results)) {
        const expected = name === 'clone3' || name in AIO ? ENOSYS : expectedErrno
        assert.deepEqual(result, [-1, expected], `${name} returned ${JSON.stringify(result)}`)
      }
      assert.equal(Object.keys(results).length, 33)
    })
  }

  test('an i386 syscall through int 0x80 kills the process: SIGSYS, or SIGSEGV without IA-32 emulation', async (t) => {
    if (!int80Probe) return t.skip(noCompilerReason || 'no probe')
    const ia32 = hostIa32Support()
    if (typeof ia32 === 'string') return t.skip(ia32)
    const code = `r = subprocess.run([${JSON.stringify(int80Probe)}], capture_output=True)
print(json.dumps([r.returncode, r.stdout.decode()]))`
    // With IA-32 emulation the filter sees an i386 call and kills (SIGSYS); without it the kernel
    // refuses int 0x80 itself (SIGSEGV) before seccomp runs: the call is denied either way.
    const expected = ia32 ? [-31, ''] : [-11, '']
    assert.deepEqual(parse(await inSandbox(code)), expected, `this kernel ${ia32 ? 'has' : 'lacks'} IA-32 emulation (int 0x80 getpid on the host)`)
  })
})
