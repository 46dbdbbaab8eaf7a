/**
 * The Python kernel as a notebook user meets it, on the bwrap driver and the real image (the
 * data stack lives there): state, clearContext, shown values, streaming, figures, DataFrames,
 * errors, top-level await, the preinstalled libraries and subprocess output.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { ContentBlock, ExecutionEvent, ToolResult } from '@codebox/core'
import { bwrapUnavailable, py, sharedBwrapSession, withSession } from './fixtures.ts'

const unavailable = await bwrapUnavailable()

const images = (r: ToolResult): Extract<ContentBlock, { type: 'image' }>[] =>
  r.content.filter((b): b is Extract<ContentBlock, { type: 'image' }> => b.type === 'image')

/** Asserts `base64` is a PNG image (signature and IHDR chunk) and returns its size. */
function assertPng(base64: string): { width: number; height: number } {
  const png = Buffer.from(base64, 'base64')
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature')
  assert.equal(png.toString('latin1', 12, 16), 'IHDR')
  const size = { width: png.readUInt32BE(16), height: png.readUInt32BE(20) }
  assert.ok(size.width > 50 && size.height > 50, `a real figure, not ${size.width}x${size.height}`)
  return size
}

function assertHtmlTable(r: ToolResult, ...cells: string[]): void {
  const html = r.content.find((b) => b.type === 'resource')
  assert.ok(html?.type === 'resource', `no HTML block in ${JSON.stringify(r.content).slice(0, 300)}`)
  assert.equal(html.resource.mimeType, 'text/html')
  assert.match(html.resource.text ?? '', /<table/)
  for (const c of cells) assert.ok(html.resource.text?.includes(c), `the table shows ${c}`)
}

describe('Python kernel (bwrap)', { skip: unavailable }, () => {
  const shared = sharedBwrapSession()

  it('keeps variables, functions and imports between cells', async () => {
    await py(shared.session, 'import math\nradius = 2\ndef area(r):\n    return math.pi * r * r')
    assert.equal(await py(shared.session, 'print(round(area(radius), 3))'), '12.566\n')
  })

  it('clearContext starts from an empty namespace', async () => {
    await withSession(shared.manager, async (s) => {
      await py(s, 'import json\nsecret = 41')
      assert.equal(await py(s, 'print(secret + 1)'), '42\n')
      const cleared = await s.runCode({ code: 'print("secret" in dir(), "json" in dir())', clearContext: true })
      assert.equal(cleared.structuredContent.stdout, 'False False\n')
      const gone = await s.runCode({ code: 'secret' })
      assert.equal(gone.isError, true)
      assert.match(gone.structuredContent.stderr, /NameError: name 'secret' is not defined/)
    })
  })

  it('shows the value of the last expression, and nothing for None or a statement', async () => {
    const value = await shared.session.runCode({ code: 'x = 20\nx * 2 + 2' })
    assert.deepEqual(value.content, [{ type: 'text', text: '42' }])
    assert.equal(value.structuredContent.stdout, '')
    assert.deepEqual((await shared.session.runCode({ code: '"text"' })).content, [{ type: 'text', text: "'text'" }])
    for (const code of ['None', 'y = 1', 'def f():\n    pass\nf()']) {
      const r = await shared.session.runCode({ code })
      assert.deepEqual(r.content, [], `${JSON.stringify(code)} shows nothing`)
      assert.equal(r.isError, false)
    }
    assert.deepEqual((await shared.session.runCode({ code: 'print("only printed")\nNone' })).content, [{ type: 'text', text: 'only printed\n' }])
  })

  it('streams output while the cell runs', async () => {
    const code = 'import time\nprint("first")\ntime.sleep(0.3)\nprint("second")'
    const arrived: { event: ExecutionEvent; at: number }[] = []
    for await (const event of shared.session.executeCode({ code })) arrived.push({ event, at: performance.now() })
    assert.deepEqual(
      arrived.map((a) => (a.event.type === 'stdout' ? a.event.text : a.event.type)),
      ['first\n', 'second\n', 'result'],
    )
    const gap = arrived[2]!.at - arrived[0]!.at
    assert.ok(gap >= 250, `"first" arrived only ${gap.toFixed(0)} ms before the end of the cell`)
  })

  it('returns a matplotlib figure as a PNG image block, with or without plt.show()', async () => {
    const implicit = await shared.session.runCode({ code: 'import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.title("squares")\nNone' })
    assert.equal(implicit.isError, false, implicit.structuredContent.stderr)
    assert.equal(images(implicit).length, 1)
    assert.equal(images(implicit)[0]!.mimeType, 'image/png')
    assertPng(images(implicit)[0]!.data)

    const shown = await shared.session.runCode({ code: 'plt.figure()\nplt.bar(["a", "b"], [3, 5])\nplt.show()\nprint("after show")' })
    assert.equal(shown.structuredContent.stdout, 'after show\n')
    assert.equal(images(shown).length, 1, 'plt.show() shows the figure once')
    assertPng(images(shown)[0]!.data)

    const two = await shared.session.runCode({ code: 'plt.figure(); plt.plot([1]); plt.figure(); plt.plot([2]); None' })
    assert.equal(images(two).length, 2)
    assert.equal(images(await shared.session.runCode({ code: 'print("no figure")' })).length, 0, 'figures are not shown twice')
  })

  it('renders an ordinary figure with one draw, and one drawn past its edge as savefig(bbox_inches="tight") does', async () => {
    // Counts the Agg canvas's draws: savefig's tight bounding box costs a second one.
    await shared.session.runCode({
      code: `import matplotlib.pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg as _C
_draws = [0]
if not hasattr(_C, "_codebox_counted"):
    _orig_draw = _C.draw
    def _counted(self, *a, **k):
        _draws[0] += 1
        return _orig_draw(self, *a, **k)
    _C.draw = _counted
    _C._codebox_counted = True`,
    })
    const count = async (code: string) => {
      const r = await shared.session.runCode({ code: `_draws[0] = 0\n${code}\nplt.show()\nprint(_draws[0])` })
      assert.equal(r.isError, false, r.structuredContent.stderr)
      assert.equal(images(r).length, 1)
      return { draws: Number(r.structuredContent.stdout.trim()), size: assertPng(images(r)[0]!.data) }
    }
    const plain = await count('plt.figure(); plt.plot([1, 2], label="a")')
    assert.equal(plain.draws, 1, 'an ordinary figure is drawn once')
    assert.ok(plain.size.width < 600, `cropped to what was drawn: ${plain.size.width} wide`)
    const outside = await count('plt.figure(); plt.plot([1, 2], label="a"); plt.legend(bbox_to_anchor=(1.05, 1), loc="upper left")')
    assert.equal(outside.draws, 2, 'a legend past the edge: measured from the first draw, drawn once more to save')
    assert.ok(outside.size.width > plain.size.width + 30, `the legend outside the axes is in the picture: ${outside.size.width} > ${plain.size.width}`)
  })

  it('shows a DataFrame as text and an HTML table, as the last expression and through display()', async () => {
    const last = await shared.session.runCode({ code: 'import pandas as pd\ndf = pd.DataFrame({"city": ["Oslo", "Lima"], "temp": [3, 19]})\ndf' })
    assert.equal(last.isError, false, last.structuredContent.stderr)
    const text = last.content.find((b) => b.type === 'text')
    assert.ok(text?.type === 'text')
    assert.match(text.text, /city\s+temp\n0\s+Oslo\s+3\n1\s+Lima\s+19/)
    assertHtmlTable(last, 'Oslo', 'Lima')

    const shown = await shared.session.runCode({ code: 'display(df[df.temp > 10])\nprint("displayed")\nrows = len(df)' })
    assert.equal(shown.structuredContent.stdout, 'displayed\n')
    assertHtmlTable(shown, 'Lima')
    assert.ok(!shown.content.some((b) => b.type === 'resource' && b.resource.text?.includes('Oslo')), 'display() shows the filtered frame')
  })

  it('reports an exception with its type, message and traceback, keeping earlier state', async () => {
    const r = await shared.session.runCode({ code: 'kept = "before"\ndef check(v):\n    raise ValueError(f"bad value {v}")\ncheck(42)\nkept = "after"' })
    assert.equal(r.isError, true)
    assert.equal(r.structuredContent.exitCode, 1)
    const { stderr } = r.structuredContent
    assert.match(stderr, /^Traceback \(most recent call last\):/)
    assert.match(stderr, /line 4, in <module>\n\s+check\(42\)/)
    assert.match(stderr, /line 3, in check\n\s+raise ValueError\(f"bad value \{v\}"\)/)
    assert.match(stderr, /ValueError: bad value 42\n$/)
    assert.doesNotMatch(stderr, /kernel_python/, 'the kernel’s own frames are hidden')
    assert.ok(r.content.some((b) => b.type === 'text' && b.text.includes('ValueError: bad value 42')))
    assert.equal(await py(shared.session, 'print(kept)'), 'before\n')
  })

  it('reports a SyntaxError without running any of the cell', async () => {
    const r = await shared.session.runCode({ code: 'print("never")\nvalue = (1,\n' })
    assert.equal(r.isError, true)
    assert.equal(r.structuredContent.exitCode, 1)
    assert.equal(r.structuredContent.stdout, '')
    assert.match(r.structuredContent.stderr, /line 2\n\s+value = \(1,\n/)
    assert.match(r.structuredContent.stderr, /SyntaxError: '\(' was never closed/)
    assert.equal(await py(shared.session, 'print("next cell")'), 'next cell\n')
  })

  it('runs top-level await, across cells', async () => {
    const r = await shared.session.runCode({
      code: 'import asyncio\nawait asyncio.sleep(0.01)\nasync def double(n):\n    await asyncio.sleep(0)\n    return 2 * n\n"awaited"',
    })
    assert.deepEqual(r.content, [{ type: 'text', text: "'awaited'" }])
    assert.deepEqual((await shared.session.runCode({ code: 'sum(await asyncio.gather(double(1), double(20)))' })).content, [{ type: 'text', text: '42' }])
  })

  it('imports the preinstalled data stack', async () => {
    const modules = ['numpy', 'scipy', 'sklearn', 'seaborn', 'statsmodels', 'sympy', 'openpyxl', 'PIL', 'bs4', 'lxml', 'requests', 'IPython']
    const out = await py(shared.session, `import importlib\nfor m in ${JSON.stringify(modules)}:\n    importlib.import_module(m)\n    print(m)`, 60_000)
    assert.deepEqual(out.trim().split('\n'), modules)
  })

  it('captures the output of subprocesses, in order with print()', async () => {
    const r = await shared.session.runCode({
      code: 'import os, subprocess\nprint("before")\nos.system("echo hi")\nsubprocess.run("echo oops >&2", shell=True)\nprint("after")',
    })
    assert.equal(r.structuredContent.stdout, 'before\nhi\nafter\n')
    assert.equal(r.structuredContent.stderr, 'oops\n')
  })
})
