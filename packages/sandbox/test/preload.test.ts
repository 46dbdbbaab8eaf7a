/**
 * An interpreter's preload on the bwrap driver and the real image: a pooled session's kernel has
 * the data stack in sys.modules before its first cell yet a clean namespace, no open figure and
 * an empty workspace; a lean one has imported nothing; a module missing from the image is
 * reported and the session serves cells anyway; the image's matplotlib font cache is in place.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { defaultLimits, defaultPreload } from '@codebox/core'
import { SessionManager, type Session } from '@codebox/sandbox'
import { bwrapDriver, bwrapUnavailable, py, withSession } from './fixtures.ts'

const unavailable = await bwrapUnavailable()

/** Prints, before any import of the cell's own, what the kernel holds: a JSON line. */
const probe = `import json as _j, os as _o, sys as _s
_p = _s.modules.get("matplotlib.pyplot")
print(_j.dumps({
  "modules": sorted(m for m in ("numpy", "pandas", "matplotlib", "matplotlib.pyplot") if m in _s.modules),
  "names": sorted(k for k in globals() if not k.startswith("_")),
  "figures": _p.get_fignums() if _p else None,
  "backend": _s.modules["matplotlib"].get_backend() if "matplotlib" in _s.modules else None,
  "workspace": sorted(_o.listdir("/workspace")),
}))`

interface Probe {
  modules: string[]
  names: string[]
  figures: number[] | null
  backend: string | null
  workspace: string[]
}

async function until(pred: () => boolean, what: string, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe('preload (bwrap)', { skip: unavailable }, () => {
  let manager: SessionManager
  before(async () => {
    manager = new SessionManager({ driver: await bwrapDriver(), poolSize: 1, defaults: defaultLimits, preload: defaultPreload })
  })
  after(async () => {
    await manager?.close()
  })

  it('a pooled session of the default preload has the data stack in sys.modules, and a clean namespace', async () => {
    await until(() => manager.warmCount === 1, 'a warm preloaded sandbox')
    await withSession(manager, async (s) => {
      assert.deepEqual(s.preload?.loaded, [...defaultPreload])
      assert.deepEqual(s.preload?.failed, [])
      const seen = JSON.parse(await py(s, probe)) as Probe
      assert.deepEqual(seen.modules, ['matplotlib', 'matplotlib.pyplot', 'numpy', 'pandas'])
      assert.deepEqual(seen.names, [], 'no pd, plt or np in the cell namespace')
      assert.deepEqual(seen.figures, [], 'the warm-up figure is closed')
      assert.equal(seen.backend?.toLowerCase(), 'agg')
      assert.deepEqual(seen.workspace, [], 'nothing left in /workspace')
      // The first data cell still works as a user writes it, and shows its figure.
      const r = await s.runCode({ code: "import pandas as pd, matplotlib.pyplot as plt\npd.DataFrame({'a': [1, 2, 3]}).plot(); plt.show()" })
      assert.equal(r.isError, false, r.structuredContent.stderr)
      assert.deepEqual(
        r.content.map((b) => b.type),
        ['image'],
      )
    })
  })

  it('a lean session (preload []) has imported none of it; the font cache is in place all the same', async () => {
    await withSession(
      manager,
      async (s) => {
        assert.equal(s.preload, undefined)
        const seen = JSON.parse(await py(s, probe)) as Probe
        assert.deepEqual(seen.modules, [])
        assert.deepEqual(seen.workspace, [])
        const cache = await py(s, 'import os, sys\nprint(sorted(os.listdir(os.environ["MPLCONFIGDIR"])))')
        assert.match(cache, /fontlist-v\d+\.json/, 'the image’s font cache was copied to MPLCONFIGDIR before matplotlib ran')
      },
      undefined,
      [],
    )
  })

  it('a module missing from the image is reported, the rest is imported, and the session serves cells', async () => {
    await withSession(
      manager,
      async (s) => {
        assert.deepEqual(s.preload?.loaded, ['json', 'fractions'])
        assert.deepEqual(
          s.preload?.failed.map((f) => f.module),
          ['codebox_no_such_module'],
        )
        assert.match(s.preload!.failed[0]!.error, /ModuleNotFoundError: No module named 'codebox_no_such_module'/)
        assert.equal(await py(s, 'import sys\nprint("fractions" in sys.modules, "codebox_no_such_module" in sys.modules)'), 'True False\n')
        // The sandbox's diagnostics (its stderr) say so too.
        assert.match(s.diagnostics(), /preload of codebox_no_such_module failed: ModuleNotFoundError/)
      },
      undefined,
      ['json', 'codebox_no_such_module', 'fractions'],
    )
  })

  it('a preload that is not a list of module names is refused, naming the bad entry', async () => {
    await assert.rejects(manager.start({ preload: ['numpy', 'os; import shutil'] }), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'ValidationError')
      assert.match(e.message, /preload\[1\]: "os; import shutil" is not a Python module name/)
      return true
    })
  })
})

describe('the Python kernel of a lean session (bwrap)', { skip: unavailable }, () => {
  /** The sandbox's Python kernels, seen from a shell command (which starts no kernel). */
  const kernels = async (s: Session): Promise<number> => {
    const r = await s.commands.run('ps -e -o args=')
    assert.equal(r.structuredContent.exitCode, 0, r.structuredContent.stderr)
    return r.structuredContent.stdout.split('\n').filter((l) => l.includes('kernel_python.py')).length
  }

  it('a lean session from the pool has no kernel until its first Python cell', async () => {
    const manager = new SessionManager({ driver: await bwrapDriver(), poolSize: 1, defaults: defaultLimits, preload: [] })
    try {
      await until(() => manager.warmCount === 1, 'a warm lean sandbox')
      await withSession(manager, async (s) => {
        assert.equal(await kernels(s), 0, 'an idle lean session is the executor alone')
        assert.equal(await py(s, 'print(6 * 7)'), '42\n')
        assert.equal(await kernels(s), 1)
      })
    } finally {
      await manager.close()
    }
  })

  it('a lean session booted cold (no pool) starts its kernel with its first Python cell', async () => {
    const manager = new SessionManager({ driver: await bwrapDriver(), poolSize: 0, defaults: defaultLimits, preload: [] })
    try {
      await withSession(manager, async (s) => {
        assert.equal(await kernels(s), 0, 'no kernel while the session has run no Python')
        assert.equal(await py(s, 'x = 6 * 7\nprint(x)'), '42\n')
        assert.equal(await kernels(s), 1)
        assert.equal(await py(s, 'print(x)'), '42\n', 'the kernel keeps its state')
      })
    } finally {
      await manager.close()
    }
  })
})
