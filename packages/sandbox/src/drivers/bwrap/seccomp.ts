/**
 * Compiles the bwrap driver's seccomp policy into a classic-BPF program for `bwrap --seccomp FD`
 * (an array of `struct sock_filter`, 8 bytes each, little-endian). The policy is Docker's default
 * profile for an unprivileged amd64 container, tightened (see syscalls-x86_64.ts):
 *
 * - any ABI other than x86_64 (i386 through `int 0x80`) kills the process;
 * - x32 calls, and every syscall not allowed, fail with EPERM (the `denyErrno` option);
 * - syscalls newer than the table fail with ENOSYS, and so do clone3 and native AIO (io_setup
 *   and the rest), so libc and libaio fall back;
 * - clone, socket, socketpair, ioctl and personality are allowed only for harmless arguments.
 */
import { ALLOWED_SYSCALLS, NEVER_ALLOWED, X86_64_SYSCALLS, type SyscallName } from './syscalls-x86_64.ts'

export interface SeccompFilterOptions {
  /** errno returned by denied syscalls, 1..4095. Default EPERM (1), as Docker. */
  denyErrno?: number
}

const AUDIT_ARCH_X86_64 = 0xc000003e
const X32_SYSCALL_BIT = 0x40000000
const SECCOMP_RET_KILL_PROCESS = 0x80000000
const SECCOMP_RET_ERRNO = 0x00050000
const SECCOMP_RET_ALLOW = 0x7fff0000
const EPERM = 1
const ENOSYS = 38
const BPF_MAXINSNS = 4096
const MAX_JUMP = 255

// Opcodes: BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JA, BPF_JMP|BPF_{JEQ,JGE,JSET}|BPF_K, BPF_RET|BPF_K.
const LD_W_ABS = 0x20
const JA = 0x05
const JEQ = 0x15
const JGE = 0x35
const JSET = 0x45
const RET = 0x06

// struct seccomp_data: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64 each).
const NR_OFFSET = 0
const ARCH_OFFSET = 4
const argLow = (index: number): number => 16 + 8 * index
const argHigh = (index: number): number => 20 + 8 * index

/** clone flags that create namespaces: NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET. */
const CLONE_NAMESPACE_FLAGS = 0x7e020000
const AF_PACKET = 17
const AF_ALG = 38
const AF_VSOCK = 40
const TIOCSTI = 0x5412
const TIOCLINUX = 0x541c
/** PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (query): Docker's set. */
const ALLOWED_PERSONALITIES = [0, 0x8, 0x20000, 0x20008, 0xffffffff]

interface Instruction {
  code: number
  jt: number
  jf: number
  k: number
}

const load = (offset: number): Instruction => ({ code: LD_W_ABS, jt: 0, jf: 0, k: offset })
const ret = (value: number): Instruction => ({ code: RET, jt: 0, jf: 0, k: value })
const jump = (code: number, k: number, jt: number, jf: number): Instruction => ({ code, jt, jf, k })

/**
 * Loads the 32-bit word at `offset`, returns `onMatch` if it equals one of `values`, else
 * `otherwise`. The kernel reads socket's domain, ioctl's cmd and personality's argument as 32-bit
 * ints, so comparing the low word is exact: setting high bits cannot slip past the check.
 */
function matchWord(offset: number, values: number[], onMatch: number, otherwise: number) {
  const compares = values.map((value, i) => jump(JEQ, value, values.length - i, 0))
  return [load(offset), ...compares, ret(otherwise), ret(onMatch)]
}

type Rule = 'allow' | 'deny' | 'enosys' | 'clone' | 'socket' | 'ioctl' | 'personality'

const ARG_RULES: Partial<Record<SyscallName, Rule>> = {
  clone: 'clone',
  clone3: 'enosys', // BPF cannot read clone3's struct; ENOSYS makes glibc fall back to clone
  socket: 'socket',
  socketpair: 'socket',
  ioctl: 'ioctl',
  personality: 'personality',
  // Native AIO contexts come from one host-wide pool (fs.aio-max-nr) that a session could drain;
  // glibc's POSIX aio uses threads, and libaio users fall back on ENOSYS.
  io_setup: 'enosys',
  io_destroy: 'enosys',
  io_getevents: 'enosys',
  io_submit: 'enosys',
  io_cancel: 'enosys',
  io_pgetevents: 'enosys',
}

/** The leaf for one rule; every leaf ends in RET, so leaves can be laid out anywhere. */
function emitRule(rule: Rule, deny: number): Instruction[] {
  const allow = SECCOMP_RET_ALLOW
  switch (rule) {
    case 'allow':
      return [ret(allow)]
    case 'deny':
      return [ret(deny)]
    case 'enosys':
      return [ret(SECCOMP_RET_ERRNO | ENOSYS)]
    case 'clone':
      // The kernel only uses the low 32 bits of the flags; high bits are refused all the same.
      return [load(argHigh(0)), jump(JEQ, 0, 1, 0), ret(deny), load(argLow(0)), jump(JSET, CLONE_NAMESPACE_FLAGS, 0, 1), ret(deny), ret(allow)]
    case 'socket':
      return matchWord(argLow(0), [AF_VSOCK, AF_ALG, AF_PACKET], deny, allow)
    case 'ioctl':
      return matchWord(argLow(1), [TIOCSTI, TIOCLINUX], deny, allow)
    case 'personality':
      return matchWord(argLow(0), ALLOWED_PERSONALITIES, allow, deny)
  }
}

interface Range {
  /** First syscall number of the range; it runs up to the next range's start. */
  start: number
  rule: Rule
}

/** Splits 0..X32_SYSCALL_BIT-1 into runs of syscall numbers that share a rule. */
function ruleRanges(): Range[] {
  const rules = new Map<number, Rule>()
  for (const name of ALLOWED_SYSCALLS) rules.set(X86_64_SYSCALLS[name], 'allow')
  for (const [name, rule] of Object.entries(ARG_RULES) as [SyscallName, Rule][]) {
    rules.set(X86_64_SYSCALLS[name], rule)
  }
  for (const name of NEVER_ALLOWED) {
    const rule = rules.get(X86_64_SYSCALLS[name])
    if (rule !== undefined && rule !== 'enosys') {
      throw new Error(`seccomp policy allows ${name}, which must never be allowed`)
    }
  }
  const highest = Math.max(...Object.values(X86_64_SYSCALLS))
  const ranges: Range[] = []
  for (let nr = 0; nr <= highest; nr++) {
    const rule = rules.get(nr) ?? 'deny'
    if (ranges.at(-1)?.rule !== rule) ranges.push({ start: nr, rule })
  }
  ranges.push({ start: highest + 1, rule: 'enosys' })
  return ranges
}

/**
 * A balanced binary search over the ranges, on the syscall number held in the accumulator.
 * Conditional jumps reach 255 instructions at most; a longer one goes through a JA (32-bit).
 */
function emitSearch(ranges: Range[], deny: number): Instruction[] {
  const [first] = ranges
  if (first === undefined) throw new Error('no syscall ranges')
  if (ranges.length === 1) return emitRule(first.rule, deny)
  const middle = ranges.length >> 1
  const pivot = ranges[middle]!.start
  const below = emitSearch(ranges.slice(0, middle), deny)
  const above = emitSearch(ranges.slice(middle), deny)
  const test = below.length <= MAX_JUMP ? [jump(JGE, pivot, below.length, 0)] : [jump(JGE, pivot, 0, 1), jump(JA, below.length, 0, 0)]
  return [...test, ...below, ...above]
}

function validateDenyErrno(denyErrno: number): void {
  if (!Number.isInteger(denyErrno) || denyErrno < 1 || denyErrno > 4095) {
    throw new RangeError(`denyErrno must be an integer in 1..4095, got ${denyErrno}`)
  }
}

/**
 * Compiles the sandbox's seccomp policy for x86_64 to the bytes `bwrap --seccomp FD` reads.
 * Throws if the program would exceed the kernel's 4096 instructions.
 */
export function buildSeccompFilter(options: SeccompFilterOptions = {}): Buffer {
  const denyErrno = options.denyErrno ?? EPERM
  validateDenyErrno(denyErrno)
  const deny = SECCOMP_RET_ERRNO | denyErrno
  const program = [
    load(ARCH_OFFSET),
    jump(JEQ, AUDIT_ARCH_X86_64, 1, 0),
    ret(SECCOMP_RET_KILL_PROCESS),
    load(NR_OFFSET),
    jump(JGE, X32_SYSCALL_BIT, 0, 1),
    ret(deny),
    ...emitSearch(ruleRanges(), deny),
  ]
  if (program.length > BPF_MAXINSNS) {
    throw new Error(`seccomp program has ${program.length} instructions, over ${BPF_MAXINSNS}`)
  }
  const bytes = Buffer.alloc(program.length * 8)
  program.forEach(({ code, jt, jf, k }, i) => {
    if (jt > MAX_JUMP || jf > MAX_JUMP) throw new Error(`jump out of range at instruction ${i}`)
    bytes.writeUInt16LE(code, i * 8)
    bytes.writeUInt8(jt, i * 8 + 2)
    bytes.writeUInt8(jf, i * 8 + 3)
    bytes.writeUInt32LE(k >>> 0, i * 8 + 4)
  })
  return bytes
}

export interface SeccompPolicyDescription {
  /** Allowed syscalls, sorted; clone, socket, socketpair, ioctl, personality only for some args. */
  allowed: string[]
  /** Every other x86_64 syscall in the table, sorted. */
  denied: string[]
}

/** The policy by syscall name, for docs and tests. */
export function describeSeccompPolicy(): SeccompPolicyDescription {
  const allowed = new Set<string>(ALLOWED_SYSCALLS)
  for (const [name, rule] of Object.entries(ARG_RULES)) if (rule !== 'enosys') allowed.add(name)
  const denied = Object.keys(X86_64_SYSCALLS).filter((name) => !allowed.has(name))
  return { allowed: [...allowed].sort(), denied: denied.sort() }
}
