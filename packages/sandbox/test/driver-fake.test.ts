/**
 * The driver contract on the fake driver (the executor as a plain host process), plus what only
 * the fake can show from the host: that destroy() leaves none of the sandbox's processes behind.
 */
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { FakeDriver, SessionManager } from '@codebox/sandbox'
import { defineDriverTests } from '@codebox/sandbox/testing'
import { py } from './fixtures.ts'

defineDriverTests('fake', async () => new FakeDriver(), {
  skips: {
    oom: 'the fake driver sets no memory limit (no isolation at all)',
    pids: 'the fake driver sets no process limit (no isolation at all)',
    image: 'the fake driver runs on the host, not in the sandbox image: there is no /home/user leading to its workspace',
  },
})

/** True while the process exists and is not a zombie. */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  return stat !== '' && !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3))
}

describe('fake driver', () => {
  it('destroy() kills the kernel and the processes it started in sessions of their own', async () => {
    await using manager = new SessionManager({ driver: new FakeDriver(), poolSize: 0 })
    const session = await manager.start()
    let pids: number[] = []
    try {
      // The fake has no pid namespace, so the pids a cell sees are host pids.
      const out = await py(session, 'import os, subprocess\nchild = subprocess.Popen(["sleep", "60"], start_new_session=True)\nprint(os.getpid(), child.pid)')
      pids = out.trim().split(' ').map(Number)
      assert.equal(pids.length, 2)
      for (const pid of pids) assert.ok(await running(pid), `process ${pid} runs before the stop`)
    } finally {
      await session.stop()
    }
    // SIGKILL is sent by the time destroy() resolves; dying takes the kernel a moment more.
    const deadline = Date.now() + 2_000
    for (const pid of pids) {
      while ((await running(pid)) && Date.now() < deadline) await delay(10)
      assert.equal(await running(pid), false, `process ${pid} outlived its sandbox`)
    }
  })

  it("holds at most MAX_CONTROL_LINE of a kernel's unended control line: a longer one is dropped unread", async () => {
    await using manager = new SessionManager({ driver: new FakeDriver(), poolSize: 0 })
    const session = await manager.start()
    // The fake's executor is a host process, the kernel's parent: its peak memory can be read here.
    const executor = Number((await py(session, 'import os\nprint(os.getppid())')).trim())
    const peak = async (): Promise<number> => Number(/VmHWM:\s+(\d+) kB/.exec(await readFile(`/proc/${executor}/status`, 'utf8'))?.[1]) * 1024
    const before = await peak()
    const code =
      'import __main__, os\nchunk = b"x" * (1 << 20)\nfor _ in range(1024):\n    os.write(__main__._ctl_out, chunk)\nos.write(__main__._ctl_out, b"\\n")\nprint("wrote")'
    const r = await session.runCode({ code, timeoutMs: 120_000 })
    assert.equal(r.structuredContent.stdout, 'wrote\n', JSON.stringify(r.structuredContent))
    const grown = (await peak()) - before
    assert.ok(grown < 300 * 2 ** 20, `the executor's peak memory grew by ${Math.round(grown / 2 ** 20)} MiB for a 1 GiB line`)
  })
})
