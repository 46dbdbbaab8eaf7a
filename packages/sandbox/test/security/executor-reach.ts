/**
 * Attack catalogue, group "Hostile sandbox → host" (SECURITY.md rule 8): code in a session tries
 * to take over the executor (its /proc/<pid>/mem, fd/ and environ) or the control channel between
 * the executor and a kernel, with a daemon left behind by one cell that reads the next cells'
 * code and answers for them. The later cells must run and return their own output. Each driver's
 * test file (executor-reach.test.ts for bwrap, executor-reach-gvisor.test.ts) calls defineExecutorReach.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Language, ToolResult } from '@codebox/core'
import type { JsRuntime, Session, SessionManager } from '@codebox/sandbox'
import { withSession } from '../fixtures.ts'
import { PY_SYSCALL, token } from './probe.ts'

/**
 * A daemon (Python, guarded) that for `seconds` writes forged displays and `done`s for cells 1-20
 * into every fd it has and into the kernel's channel, reads whatever reaches it, and logs it all to
 * `log`. It starts once `log`.go exists (assertLaterCellsHold makes it after the cell that started
 * the daemon returned: what a daemon does to the very cell that starts it is that cell's own
 * doing, which may answer or end its own call) and stops early once `log`.stop exists.
 */
function daemonSource(guard: string, log: string, seconds = 30): string {
  return `${guard}
import json, os, select, socket, time
log = open(${JSON.stringify(log)}, 'ab', buffering=0)
start = time.monotonic() + ${seconds}
while time.monotonic() < start and not os.path.exists(${JSON.stringify(log)} + '.go'):
    time.sleep(0.005)
# under PIPE_BUF, so that a write to a pipe select() calls writable never blocks
forged = ''.join(json.dumps({'id': i, 'type': 'display', 'data': {'text/plain': 'FORGED'}, 'executeResult': True}) + '\\n'
                 + json.dumps({'id': i, 'type': 'done', 'ok': True}) + '\\n' for i in range(1, 21)).encode()
assert len(forged) < 4096
name = os.environ.get('CODEBOX_KERNEL_CHANNEL')
end = time.monotonic() + ${seconds}
while time.monotonic() < end and not os.path.exists(${JSON.stringify(log)} + '.stop'):
    log.write(b'alive\\n')
    for fd in range(3, 64):
        if fd == log.fileno():
            continue
        # no O_NONBLOCK: it would be set on the kernel's own end too
        try:
            readable, writable, _ = select.select([fd], [fd], [], 0)
            if readable:
                data = os.read(fd, 65536)
                if data:
                    log.write(b'read: ' + data + b'\\n')
            if writable:
                os.write(fd, forged)
        except (OSError, ValueError):
            pass
    if name:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(0.05)
            s.connect('\\0' + name)
            s.sendall(forged)
            data = s.recv(65536)
            if data:
                log.write(b'received: ' + data + b'\\n')
            s.close()
        except OSError:
            pass
    time.sleep(0.002)
os._exit(0)
`
}

const b64 = (s: string): string => Buffer.from(s).toString('base64')
/** A shell command line that runs the daemon under python3. */
const daemonCommand = (guard: string, log: string): string => `python3 -c "$(printf %s ${b64(daemonSource(guard, log))} | base64 -d)"`

/** Runs a cell and returns its stdout; fails on an error or a forged display. */
async function run(session: Session, code: string, language: Language, runtime?: JsRuntime): Promise<string> {
  const r = await session.runCode({ code, language, runtime, timeoutMs: 30_000 })
  const { stdout, stderr } = r.structuredContent
  assert.equal(r.isError, false, `cell failed: ${stderr}`)
  assert.ok(!JSON.stringify(r.content).includes('FORGED'), `a forged display came back: ${JSON.stringify(r.content)}`)
  return stdout
}

/**
 * After a daemon started by a cell that also set `kept`: later cells run their own code in the
 * same kernel and return their own output, and the daemon, though alive, saw none of their code.
 */
async function assertLaterCellsHold(guard: string, session: Session, log: string, language: Language, runtime?: JsRuntime): Promise<void> {
  const secret = `secret-${token()}`
  // let the daemon go, and wait until it runs: it writes its log
  const waited = await session.runCode({
    code: `${guard}\nimport os, time\nopen(${JSON.stringify(log)} + '.go', 'w').close()\nend = time.monotonic() + 20\ndef alive():\n    try:\n        return b'alive' in open(${JSON.stringify(log)}, 'rb').read()\n    except OSError:\n        return False\nwhile time.monotonic() < end and not alive():\n    time.sleep(0.01)\nprint(alive())`,
    language: 'python',
    timeoutMs: 30_000,
  })
  assert.equal(waited.structuredContent.stdout, 'True\n', `the daemon started: ${waited.structuredContent.stderr}`)
  for (let i = 0; i < 5; i++) {
    const code =
      language === 'python'
        ? `import time\ntime.sleep(0.05)\nprint(kept, ${JSON.stringify(`${secret}-${i}`)})`
        : `await new Promise((resolve) => setTimeout(resolve, 50))\nconsole.log(globalThis.kept, ${JSON.stringify(`${secret}-${i}`)})`
    // `kept` was set before the daemon started: the kernel was not restarted either
    assert.equal(await run(session, code, language, runtime), `kept ${secret}-${i}\n`, `cell ${i} after the daemon`)
  }
  const seen = await session.runCode({
    code: `import os\ndata = open(${JSON.stringify(log)}, 'rb').read()\nopen(${JSON.stringify(log)} + '.stop', 'w').close()\nprint(data.count(b'alive') > 0, ${JSON.stringify(secret)}.encode() in data)`,
    language: 'python',
  })
  assert.equal(seen.structuredContent.stdout, 'True False\n', `the daemon ran and saw none of the later cells' code: ${seen.structuredContent.stderr}`)
}

export interface ExecutorReachOptions {
  driverName: string
  /** Why the driver cannot run here; the suite skips with it. */
  unavailable: string | undefined
  makeManager: () => Promise<SessionManager>
  /** Python run first in every probe: exits unless inside a sandbox of this driver (probe.ts). */
  guard: string
  /**
   * What this driver lets a cell see of the executor through /proc although it is non-dumpable
   * (gVisor: its environ and fd list, and reopening its fds). Then the test asserts only that no
   * channel reopens (every fd a cell opens is /dev/null: the executor's channels are host fds and
   * sockets there, kernel_channel.output_pair) and its memory stays shut, and notes the rest.
   */
  procFdGap?: string
}

/** The group's tests on one driver. */
export function defineExecutorReach({ driverName, unavailable, makeManager, guard, procFdGap }: ExecutorReachOptions): void {
  /** Runs a guarded Python cell with the ctypes helpers of probe.ts. */
  const cell = (session: Session, code: string): Promise<ToolResult> => session.runCode({ code: guard + PY_SYSCALL + code, language: 'python' })
  describe(`executor and kernel channel out of reach (${driverName})`, { skip: unavailable ?? false }, () => {
    let m: SessionManager
    before(async () => {
      m = await makeManager()
    })
    after(async () => {
      await m?.close()
    })

    test("a cell cannot open the executor's /proc/<pid>/mem (read or write), fd/N or environ", async (t) => {
      await withSession(m, async (s) => {
        const r = await cell(
          s,
          `
executor = os.getppid()
opened = []
for path, mode in ((f'/proc/{executor}/mem', 'rb'), (f'/proc/{executor}/mem', 'r+b'), (f'/proc/{executor}/environ', 'rb')):
    try:
        open(path, mode).close()
        opened.append(path + ' ' + mode)
    except OSError:
        pass
try:
    opened += ['fd/' + n for n in os.listdir(f'/proc/{executor}/fd')]
except OSError:
    pass
for fd in range(0, 32):
    for flags in (os.O_RDONLY, os.O_WRONLY):
        try:
            os.close(os.open(f'/proc/{executor}/fd/{fd}', flags | os.O_NONBLOCK))
            try:
                target = os.readlink(f'/proc/{executor}/fd/{fd}')
            except OSError:
                target = '?'
            opened.append(f'fd/{fd} {flags} {target}')
        except OSError:
            pass
with open(f'/proc/{executor}/cmdline', 'rb') as f:
    assert b'executor.py' in f.read(), 'the parent of the kernel is the executor'
print(json.dumps(opened))
`,
        )
        assert.equal(r.isError, false, r.structuredContent.stderr)
        const opened = JSON.parse(r.structuredContent.stdout) as string[]
        assert.deepEqual(
          opened.filter((p) => p.includes('/mem')),
          [],
          'opened the executor memory from a cell',
        )
        if (procFdGap) {
          const reopened = opened.filter((p) => /^fd\/\d+ \d+ /.test(p))
          assert.deepEqual(
            reopened.filter((p) => !p.endsWith(' /dev/null')),
            [],
            'reopened a channel of the executor from a cell',
          )
          return t.diagnostic(`${procFdGap}; opened: ${opened.join(', ')}`)
        }
        assert.deepEqual(opened, [], 'opened from a cell')
      })
    })

    test("a process a cell starts cannot open the Python kernel's /proc/<pid>/mem", async () => {
      await withSession(m, async (s) => {
        const r = await cell(
          s,
          `
import subprocess
probe = "import sys\\ntry:\\n    open('/proc/%d/mem', 'r+b').close(); print('opened')\\nexcept OSError as e:\\n    print('refused', e.errno)" % os.getpid()
print(subprocess.run(['python3', '-c', probe], capture_output=True, text=True).stdout.strip())
`,
        )
        assert.equal(r.isError, false, r.structuredContent.stderr)
        assert.match(r.structuredContent.stdout, /^refused \d+\n$/)
      })
    })

    test("a process a Deno cell starts cannot open the Deno kernel's /proc/<pid>/mem", async (t) => {
      await withSession(m, async (s) => {
        if (!s.runtimes.includes('deno')) return t.skip('the image has no deno')
        const probe = "try:\n    open('/proc/%d/mem' % int(input()), 'r+b').close(); print('opened')\nexcept OSError as e:\n    print('refused', e.errno)"
        const out = await run(
          s,
          `const child = new Deno.Command('python3', { args: ['-c', ${JSON.stringify(probe)}], stdin: 'piped', stdout: 'piped' }).spawn()
const writer = child.stdin.getWriter()
await writer.write(new TextEncoder().encode(Deno.pid + '\\n'))
await writer.close()
console.log(new TextDecoder().decode((await child.output()).stdout).trim())`,
          'javascript',
          'deno',
        )
        assert.match(out, /^refused \d+\n$/)
      })
    })

    test('a daemon forked by a Python cell (os.fork) can neither read later cells nor answer for them', async () => {
      await withSession(m, async (s) => {
        const log = `/tmp/daemon-${token()}.log`
        const r = await cell(
          s,
          `
kept = 'kept'
source = ${JSON.stringify(daemonSource(guard, log))}
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        try:
            exec(compile(source, '<daemon>', 'exec'), {})
        finally:
            os._exit(0)
    os._exit(0)
os.waitpid(pid, 0)
print('started')
`,
        )
        assert.equal(r.structuredContent.stdout, 'started\n', r.structuredContent.stderr)
        await assertLaterCellsHold(guard, s, log, 'python')
      })
    })

    test("a daemon a Python cell leaves through the shell ('&' in os.system) can neither read later cells nor answer for them", async () => {
      await withSession(m, async (s) => {
        const log = `/tmp/daemon-${token()}.log`
        const r = await cell(s, `kept = 'kept'\nprint(os.system(${JSON.stringify(`(${daemonCommand(guard, log)}) >/dev/null 2>&1 &`)}))`)
        assert.equal(r.structuredContent.stdout, '0\n', r.structuredContent.stderr)
        await assertLaterCellsHold(guard, s, log, 'python')
      })
    })

    for (const runtime of ['nodejs', 'deno'] as const) {
      test(`a daemon a ${runtime} cell spawns with its stdio and every channel fd of the kernel can neither read later cells nor answer for them`, async (t) => {
        await withSession(m, async (s) => {
          if (!s.runtimes.includes(runtime)) return t.skip(`the image has no ${runtime}`)
          const log = `/tmp/daemon-${token()}.log`
          const spawn =
            runtime === 'nodejs'
              ? `const fs = require('node:fs')
const link = (fd) => { try { return fs.readlinkSync('/proc/self/fd/' + fd) } catch { return '' } }
const fds = fs.readdirSync('/proc/self/fd').map(Number).filter((fd) => fd > 2 && fd < 64)
const links = fds.map(link)
// every fd that leads to another process: sockets, and pipes the kernel holds one end of (not
// libuv's own self-pipes and eventfds: garbage there would kill the kernel itself)
const channels = fds.filter((fd, i) => links[i].startsWith('socket:') || (links[i].startsWith('pipe:') && links.indexOf(links[i]) === links.lastIndexOf(links[i])))
const stdio = ['inherit', 'inherit', 'inherit']
for (let fd = 3; fd <= Math.max(2, ...channels); fd++) stdio.push(channels.includes(fd) ? fd : 'ignore')
require('node:child_process').spawn('python3', ['-c', ${JSON.stringify(daemonSource(guard, log))}], { stdio, detached: true }).unref()`
              : `new Deno.Command('python3', { args: ['-c', ${JSON.stringify(daemonSource(guard, log))}], stdin: 'inherit', stdout: 'inherit', stderr: 'inherit' }).spawn().unref()`
          await run(s, `globalThis.kept = 'kept'\n${spawn}\nconsole.log('started')`, 'javascript', runtime)
          await assertLaterCellsHold(guard, s, log, 'javascript', runtime)
        })
      })
    }
  })
}
