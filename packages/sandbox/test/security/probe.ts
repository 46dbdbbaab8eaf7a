/**
 * Helpers for the attack catalogue (SECURITY.md): probes that run INSIDE a sandbox session and
 * refuse to run anywhere else, and host-side views of a session (its host pids, uid, cgroups).
 *
 * Every probe program starts with a guard that exits 99 (Python: raises SystemExit(99)) unless
 * the process has a seccomp filter, no_new_privs, no effective capability and the sandbox's
 * hostname. A probe that reports 99 fails the test: it never ran its attack.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import type { ToolResult } from '@codebox/core'
import type { Session } from '@codebox/sandbox'

/** The exit code of a probe that found itself outside a sandbox, and what it prints. */
export const REFUSED = 99
export const REFUSAL = 'codebox-probe: refusing to run outside a sandbox'

/** Python guard: raises SystemExit(99) unless inside a codebox sandbox (bwrap's or gVisor's). Works in scripts and cells. */
export const PY_GUARD = String.raw`
def _codebox_probe_guard():
    import socket
    try:
        with open('/proc/self/status') as f:
            status = f.read()
    except OSError:
        return False
    if '\nCapEff:\t0000000000000000\n' not in status or socket.gethostname() != 'sandbox':
        return False
    if '\nSeccomp:\t2\n' in status and '\nNoNewPrivs:\t1\n' in status:
        return True  # bwrap
    import os
    return os.getuid() == 1000 and 'gVisor' in os.popen('dmesg 2>/dev/null').read()  # gVisor: no host seccomp to show
if not _codebox_probe_guard():
    import sys
    print('codebox-probe: refusing to run outside a sandbox', file=sys.stderr, flush=True)
    raise SystemExit(99)
del _codebox_probe_guard
`

/**
 * Python guard for gVisor sandboxes, which have no seccomp mode to show (the sentry serves every
 * syscall): hostname `sandbox`, uid 1000, no effective capability, and gVisor's own kernel log.
 */
export const PY_GUARD_GVISOR = String.raw`
def _codebox_probe_guard():
    import os, socket
    try:
        with open('/proc/self/status') as f:
            status = f.read()
    except OSError:
        return False
    return (socket.gethostname() == 'sandbox' and os.getuid() == 1000 and '\nCapEff:\t0000000000000000\n' in status
            and 'gVisor' in os.popen('dmesg 2>/dev/null').read())
if not _codebox_probe_guard():
    import sys
    print('codebox-probe: refusing to run outside a sandbox', file=sys.stderr, flush=True)
    raise SystemExit(99)
del _codebox_probe_guard
`

/** ctypes syscall helper for probes: sc(nr, *args) -> [return value, errno]. */
export const PY_SYSCALL = String.raw`
import ctypes, errno, json, os, sys
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_keep = []
def sc(nr, *args):
    ctypes.set_errno(0)
    r = _libc.syscall(ctypes.c_long(nr), *[ctypes.c_ulong(a & (2**64 - 1)) for a in args])
    return [r, ctypes.get_errno() if r == -1 else 0]
def buf(data):
    b = ctypes.create_string_buffer(data)
    _keep.append(b)
    return ctypes.addressof(b)
`

/** C guard: call `codebox_probe_guard()` first thing in main(). */
export const C_GUARD = String.raw`
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void codebox_probe_refuse(void) {
  fputs("codebox-probe: refusing to run outside a sandbox\n", stderr);
  exit(99);
}
static void codebox_probe_guard(void) {
  char status[8192] = {0}, host[64] = {0};
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) codebox_probe_refuse();
  fread(status, 1, sizeof status - 1, f);
  fclose(f);
  if (!strstr(status, "\nSeccomp:\t2\n") || !strstr(status, "\nNoNewPrivs:\t1\n") ||
      !strstr(status, "\nCapEff:\t0000000000000000\n")) codebox_probe_refuse();
  if (gethostname(host, sizeof host - 1) != 0 || strcmp(host, "sandbox") != 0) codebox_probe_refuse();
}
`

export interface ProbeResult {
  exitCode: number
  stdout: string
  stderr: string
  result: ToolResult
}

const b64 = (s: string): string => Buffer.from(s).toString('base64')

/** The shell command that runs a guarded Python probe (for commands.run and tasks.start). */
export function pyCommand(code: string): string {
  return `python3 -c "$(printf %s ${b64(PY_GUARD + PY_SYSCALL + code)} | base64 -d)"`
}

/**
 * Runs a Python probe as its own process (`python3 -c`) through the session's shell and returns
 * its exit code and output. Fails the test if the probe refused to run.
 */
export async function runPy(session: Session, code: string, options: { timeoutMs?: number } = {}): Promise<ProbeResult> {
  const result = await session.commands.run(pyCommand(code), { timeoutMs: options.timeoutMs ?? 30_000 })
  const { exitCode, stdout, stderr } = result.structuredContent
  assert.notEqual(exitCode, REFUSED, `the probe refused to run (not inside a sandbox?): ${stderr}`)
  return { exitCode, stdout, stderr, result }
}

/** runPy, expecting exit 0 and a JSON document on the last line of stdout. */
export async function pyJson<T = Record<string, unknown>>(session: Session, code: string, options: { timeoutMs?: number } = {}): Promise<T> {
  const r = await runPy(session, code, options)
  assert.equal(r.exitCode, 0, `probe failed (exit ${r.exitCode}): ${r.stderr}`)
  const last = r.stdout.trim().split('\n').at(-1) ?? ''
  return JSON.parse(last) as T
}

/** Runs a guarded Python cell in the session's kernel. */
export async function cell(session: Session, code: string, timeoutMs?: number): Promise<ToolResult> {
  const r = await session.runCode({ code: PY_GUARD + PY_SYSCALL + code, language: 'python', timeoutMs })
  assert.ok(!r.structuredContent.stderr.includes(REFUSAL), 'the probe refused to run (not inside a sandbox?)')
  return r
}

/** Runs a shell probe: the guard (in Python) first, then `script` under sh. */
export async function sh(session: Session, script: string, timeoutMs = 30_000): Promise<ProbeResult> {
  const guard = `python3 -c "$(printf %s ${b64(PY_GUARD)} | base64 -d)" || exit ${REFUSED}`
  const result = await session.commands.run(`${guard}\n${script}`, { timeoutMs })
  const { exitCode, stdout, stderr } = result.structuredContent
  assert.notEqual(exitCode, REFUSED, `the probe refused to run (not inside a sandbox?): ${stderr}`)
  return { exitCode, stdout, stderr, result }
}

/** Why C probes cannot be built here, or undefined. */
export function ccUnavailable(): string | undefined {
  const r = spawnSync('cc', ['--version'])
  if (r.error) return `cc is not available on the host (${r.error.message}); the image has no compiler`
  return undefined
}

/** Compiles a C probe (static, so it runs on the image's libc) and returns the binary. */
export function compileC(source: string): Buffer {
  const dir = mkdtempSync(path.join(tmpdir(), 'codebox-probe-'))
  try {
    writeFileSync(path.join(dir, 'probe.c'), source)
    const r = spawnSync('cc', ['-static', '-O1', '-o', path.join(dir, 'probe'), path.join(dir, 'probe.c')], { encoding: 'utf8' })
    assert.equal(r.status, 0, `cc failed: ${r.stderr}`)
    return readFileSync(path.join(dir, 'probe'))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** Copies a compiled probe into the session's workspace and runs it there. */
export async function runC(session: Session, binary: Buffer, args = ''): Promise<ProbeResult> {
  const name = `.probe-${randomBytes(4).toString('hex')}`
  await session.files.write(name, binary)
  const result = await session.commands.run(`chmod +x ${name} && ./${name} ${args}; code=$?; rm -f ${name}; exit $code`, { timeoutMs: 30_000 })
  const { exitCode, stdout, stderr } = result.structuredContent
  assert.notEqual(exitCode, REFUSED, `the probe refused to run (not inside a sandbox?): ${stderr}`)
  return { exitCode, stdout, stderr, result }
}

// ---- The host's view of a session ----------------------------------------------------------

const CGROUP_ROOT = '/sys/fs/cgroup'
export const CGROUP_CONTROLLERS = ['memory', 'pids', 'cpu'] as const

export interface HostView {
  /** The sandbox's cgroup name under codebox/. */
  cgroupId: string
  /** Host pids in the sandbox's pids cgroup. */
  pids: number[]
  /** Host uid of the sandbox's processes. */
  uid: number
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

/** Real, effective, saved and fs uid of a host process, or undefined when it is gone. */
export function hostUids(pid: number): number[] | undefined {
  const status = readText(`/proc/${pid}/status`)
  const line = status?.split('\n').find((l) => l.startsWith('Uid:'))
  return line?.split(/\s+/).slice(1, 5).map(Number)
}

/** Host pids of the processes in one sandbox cgroup. */
export function cgroupPids(cgroupId: string): number[] {
  return (readText(path.join(CGROUP_ROOT, 'pids', 'codebox', cgroupId, 'cgroup.procs')) ?? '').split('\n').filter(Boolean).map(Number)
}

/** The sandbox's cgroup directories, one per controller. */
export function cgroupDirs(cgroupId: string): string[] {
  return CGROUP_CONTROLLERS.map((c) => path.join(CGROUP_ROOT, c, 'codebox', cgroupId))
}

/** Names of the sandbox cgroups under /sys/fs/cgroup/pids/codebox now. */
export function sandboxCgroups(): string[] {
  const dir = path.join(CGROUP_ROOT, 'pids', 'codebox')
  return existsSync(dir) ? readdirSync(dir).filter((d) => !d.includes('.')) : []
}

/** Why the host view cannot be taken here (no cgroup v1 pids hierarchy), or undefined. */
export function hostViewUnavailable(): string | undefined {
  return existsSync(path.join(CGROUP_ROOT, 'pids', 'codebox')) || existsSync(path.join(CGROUP_ROOT, 'pids'))
    ? undefined
    : 'no cgroup v1 pids hierarchy at /sys/fs/cgroup/pids on this host'
}

/**
 * Finds a session's processes from the host: starts a uniquely named `sleep` in it, finds the
 * cgroup that holds it (robust to other sandboxes starting meanwhile), then stops the sleep.
 */
export async function hostView(session: Session): Promise<HostView> {
  const marker = `86399.${Date.now() % 1e6}${randomBytes(2).readUInt16BE()}`
  const task = await session.tasks.start(`exec sleep ${marker}`)
  const taskId = task.structuredContent.taskId!
  try {
    for (let i = 0; i < 200; i++) {
      for (const id of sandboxCgroups()) {
        for (const pid of cgroupPids(id)) {
          if (readText(`/proc/${pid}/cmdline`) === `sleep\0${marker}\0`) {
            const uid = hostUids(pid)![0]!
            return { cgroupId: id, pids: cgroupPids(id), uid }
          }
        }
      }
      await delay(25)
    }
    throw new Error(`the marker process sleep ${marker} did not show up in any sandbox cgroup`)
  } finally {
    await session.tasks.stop(taskId)
  }
}

/** Host pids whose real or effective uid is `uid`. */
export function hostProcessesOfUid(uid: number): number[] {
  const out: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const uids = hostUids(Number(name))
    if (uids?.some((u) => u === uid)) out.push(Number(name))
  }
  return out
}

/** Polls `check` until it returns true or `ms` pass; returns its last answer. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 5000, every = 50): Promise<boolean> {
  const end = Date.now() + ms
  for (;;) {
    if (await check()) return true
    if (Date.now() > end) return false
    await delay(every)
  }
}

/** A short random token for names and canaries. */
export const token = (): string => randomBytes(6).toString('hex')
