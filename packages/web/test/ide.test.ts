/**
 * The web IDE in a real browser (Debian's Chromium, headless) against a real codebox server on the
 * bwrap driver: code typed into Monaco runs, output streams, charts and tables show, a long cell
 * stops, files upload and are analysed, errors show their traceback, tabs are isolated, a reload
 * keeps the history, the page asks for a key once the server has keys, and no request leaves the
 * server's origin.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { browserSkipReason, runCell, runStamp, setCode, startIde, waitForRunEnd, type Ide } from './browser.ts'

const skip = browserSkipReason()

describe('web IDE in a browser', { skip, timeout: 600_000 }, () => {
  let ide: Ide
  before(async () => {
    ide = await startIde()
  })
  after(async () => {
    await ide?.close()
  })

  test('the page loads, starts a session and names every control', async () => {
    const page = await ide.newPage()
    await page.getByTestId('session-id').waitFor()
    for (const name of ['Run', 'Stop', 'Clear context', 'Upload', 'New session', 'Stop session']) {
      assert.equal(await page.getByRole('button', { name, exact: true }).count(), 1, `one button named ${name}`)
    }
    assert.equal(await page.getByRole('region', { name: 'Output' }).count(), 1)
    await page.getByRole('tab', { name: 'Generate' }).click()
    assert.equal(await page.getByRole('button', { name: 'Send', exact: true }).count(), 1)
    assert.match((await page.getByTestId('remaining').innerText()).trim(), /^\d+ min \d+ s$/)
    await page.close()
  })

  test('code typed into Monaco runs, and stdout streams before the cell ends', async () => {
    const page = await ide.newPage()
    await page.waitForFunction(() => (globalThis as unknown as { codeboxEditor?: unknown }).codeboxEditor !== undefined)
    // Typed with a delay through the keyboard (full speed drops keys), then run with Ctrl+Enter.
    await page.evaluate(() => (globalThis as unknown as { codeboxEditor: { setValue(v: string): void } }).codeboxEditor.setValue(''))
    await page.locator('.monaco-editor .view-lines').click()
    // 80 ms a key: at 15 ms headless Chromium drops keys in Monaco's EditContext input.
    const typed = "import time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second')"
    await page.keyboard.type(typed, { delay: 80 })
    assert.equal(await page.evaluate(() => (globalThis as unknown as { codeboxEditor: { getValue(): string } }).codeboxEditor.getValue()), typed)
    const started = await runStamp(page)
    await page.keyboard.press('Control+Enter')
    const stdout = page.getByTestId('stdout')
    await stdout.filter({ hasText: 'first' }).waitFor({ timeout: 30_000 })
    assert.equal(await page.getByRole('region', { name: 'Output' }).getAttribute('aria-busy'), 'true', 'first arrived while the cell still ran')
    assert.doesNotMatch(await stdout.innerText(), /second/)
    const text = await waitForRunEnd(page, started)
    assert.match(text, /first\s+second/)
    assert.match(text, /Done/)
    assert.ok(Number((await page.getByTestId('timer').innerText()).replace(' s', '')) >= 3, 'the timer counts the 3 s cell')
    await page.close()
  })

  test('a matplotlib chart appears with a download link, a DataFrame as a table', async () => {
    const page = await ide.newPage()
    await runCell(
      page,
      'import pandas as pd, matplotlib.pyplot as plt\ndf = pd.DataFrame({"k": ["a", "b"], "v": [3, 5]})\ndf.plot(x="k", y="v")\nplt.show()\ndf',
    )
    const chart = page.getByTestId('chart')
    await chart.waitFor()
    assert.match((await chart.getAttribute('src')) ?? '', /^data:image\/png;base64,iVBOR/)
    assert.ok((await chart.evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth)) > 100, 'the PNG decodes')
    const link = page.getByRole('link', { name: 'Download chart 1' })
    assert.equal(await link.getAttribute('download'), 'chart-1.png')
    const table = page.getByTestId('html-output').locator('table')
    assert.deepEqual(await table.locator('tbody tr td').allInnerTexts(), ['a', '3', 'b', '5'])
    await page.close()
  })

  test('HTML output from the sandbox cannot run script in the page', async () => {
    const consoleBefore = ide.consoleErrors.length
    const page = await ide.newPage()
    await runCell(
      page,
      [
        'class Evil:',
        '    def _repr_html_(self):',
        '        return \'<table><tr><td id="cell">safe</td></tr></table><script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"><a href="javascript:window.pwned=3">x</a>\'',
        'Evil()',
      ].join('\n'),
    )
    const out = page.getByTestId('html-output')
    assert.equal(await out.locator('td').innerText(), 'safe')
    assert.equal(await out.locator('script, img, a').count(), 0)
    assert.equal(await page.evaluate(() => (globalThis as unknown as { pwned?: number }).pwned), undefined)
    // While DOMPurify parses the payload Chromium checks its onerror attribute against the CSP and
    // blocks it: the only console errors of this test are those blocks (the other layer holding).
    const fromPayload = ide.consoleErrors.splice(consoleBefore)
    assert.ok(
      fromPayload.every((e) => /inline event handler/.test(e)),
      fromPayload.join('\n'),
    )
    await page.close()
  })

  test('an exception shows its type, message and traceback', async () => {
    const page = await ide.newPage()
    const text = await runCell(page, 'def f():\n    return 1 / 0\nf()')
    assert.match(text, /Error \(exit code 1\)/)
    const traceback = await page.getByTestId('traceback').innerText()
    assert.match(traceback, /Traceback \(most recent call last\)/)
    assert.match(traceback, /in f/)
    assert.match(traceback, /ZeroDivisionError: division by zero/)
    await page.close()
  })

  test('a limit that cut the call short is shown', async () => {
    const page = await ide.newPage()
    await runCell(page, 'import sys\nfor i in range(3000):\n    sys.stdout.write("y" * 1000 + "\\n")')
    await page.getByText('A limit cut this call short').waitFor()
    assert.match(await page.getByRole('region', { name: 'Output' }).innerText(), /the output limit was reached/)
    await page.close()
  })

  test('Stop interrupts a long cell; the kernel keeps its state and the next run works', async () => {
    const page = await ide.newPage()
    await runCell(page, 'kept = 41')
    await setCode(page, 'import time\nfor i in range(600):\n    print(i, flush=True)\n    time.sleep(0.1)')
    const started = await runStamp(page)
    await page.getByRole('button', { name: 'Run', exact: true }).click()
    await page.getByTestId('stdout').filter({ hasText: '3' }).waitFor()
    const clicked = Date.now()
    await page.getByRole('button', { name: 'Stop', exact: true }).click()
    const text = await waitForRunEnd(page, started, 20_000)
    assert.ok(Date.now() - clicked < 15_000, 'stopped well before the 60 s cell would end')
    assert.match(text, /Stopped/)
    // The interrupt is a KeyboardInterrupt in the cell: the loop's `i` and the earlier `kept` stay.
    const after = await runCell(page, 'print("alive", kept + 1 if "kept" in globals() else "state-lost", "i" in globals() and 3 <= i < 599)')
    assert.match(after, /alive 42 True/)
    assert.match(after, /Done/)
    await page.close()
  })

  test('a CSV uploads (with progress), previews, and is analysed', async () => {
    const page = await ide.newPage()
    await page.getByTestId('session-id').waitFor()
    const rows = ['city,sales', ...Array.from({ length: 200 }, (_, i) => `c${i % 4},${i}`)].join('\n')
    await page.locator('input[type=file]').setInputFiles({ name: 'sales.csv', mimeType: 'text/csv', buffer: Buffer.from(rows) })
    await page.getByRole('button', { name: 'Preview sales.csv' }).click()
    const dialog = page.getByRole('dialog')
    await dialog.getByRole('columnheader', { name: 'city' }).waitFor()
    assert.equal(await dialog.locator('tbody tr').count(), 50)
    await page.keyboard.press('Escape')
    const text = await runCell(page, 'import pandas as pd\ndf = pd.read_csv("sales.csv")\nprint(df.groupby("city").sales.sum().to_dict())')
    const expected = [0, 1, 2, 3].map((k) => `'c${k}': ${Array.from({ length: 50 }, (_, i) => 4 * i + k).reduce((a, b) => a + b)}`).join(', ')
    assert.match(text, new RegExp(`\\{${expected}\\}`))
    await page.close()
  })

  test('a file dropped on the panel uploads with a progress bar', async () => {
    const page = await ide.newPage()
    await page.getByTestId('session-id').waitFor()
    // Note every progress value shown, from the page itself (the upload is quick on loopback).
    await page.evaluate(() => {
      const g = globalThis as unknown as {
        seen: string[]
        MutationObserver: new (cb: () => void) => { observe(n: unknown, o: unknown): void }
        document: { body: unknown; querySelectorAll(s: string): ArrayLike<{ getAttribute(n: string): string | null }> }
      }
      g.seen = []
      new g.MutationObserver(() => {
        for (const el of Array.from(g.document.querySelectorAll('progress'))) g.seen.push(el.getAttribute('value') ?? '')
      }).observe(g.document.body, { subtree: true, childList: true, attributes: true })
    })
    const dataTransfer = await page.evaluateHandle(() => {
      const g = globalThis as unknown as { DataTransfer: new () => { items: { add(f: unknown): void } }; File: new (parts: unknown[], name: string) => unknown }
      const dt = new g.DataTransfer()
      dt.items.add(new g.File([new Uint8Array(48 * 2 ** 20).fill(65)], 'big.bin'))
      return dt
    })
    const zone = page.getByText('Drop files here to upload')
    await zone.dispatchEvent('dragenter', { dataTransfer })
    await zone.dispatchEvent('dragover', { dataTransfer })
    await zone.dispatchEvent('drop', { dataTransfer })
    await page.getByRole('button', { name: 'Download big.bin' }).waitFor()
    const seen = await page.evaluate(() => (globalThis as unknown as { seen: string[] }).seen)
    assert.ok(
      seen.some((v) => Number(v) > 0),
      `the progress bar moved during the upload: ${seen.join(',')}`,
    )
    const files = await page.getByRole('table', { name: 'Files in the workspace' }).innerText()
    assert.match(files, /big\.bin\s+48\.0 MiB/)
    await page.close()
  })

  test('files written by code can be listed, downloaded and deleted', async () => {
    const page = await ide.newPage()
    await runCell(page, 'open("report.txt", "w").write("hello report")')
    await page.getByRole('button', { name: 'Download report.txt' }).waitFor()
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Download report.txt' }).click()])
    assert.equal(download.suggestedFilename(), 'report.txt')
    const stream = await download.createReadStream()
    const chunks: Buffer[] = []
    for await (const c of stream) chunks.push(c as Buffer)
    assert.equal(Buffer.concat(chunks).toString(), 'hello report')
    await page.getByRole('button', { name: 'Delete report.txt' }).click()
    await page.getByRole('button', { name: 'Download report.txt' }).waitFor({ state: 'detached' })
    // Folders open one level at a time; the breadcrumb goes back up.
    await runCell(page, 'import os\nos.makedirs("out/deep", exist_ok=True)\nopen("out/deep/result.csv", "w").write("a,b\\n1,2\\n")')
    await page.getByRole('button', { name: 'Open folder out' }).click()
    await page.getByRole('button', { name: 'Open folder deep' }).click()
    await page.getByRole('button', { name: 'Preview result.csv' }).click()
    await page.getByRole('dialog').getByRole('columnheader', { name: 'b' }).waitFor()
    await page.keyboard.press('Escape')
    await page.getByRole('link', { name: 'workspace' }).click()
    await page.getByRole('button', { name: 'Open folder out' }).waitFor()
    await page.close()
  })

  test('two browser tabs have their own sessions and state', async () => {
    const a = await ide.newPage()
    const b = await ide.newPage()
    await a.getByTestId('session-id').waitFor()
    await b.getByTestId('session-id').waitFor()
    assert.notEqual(await a.getByTestId('session-id').innerText(), await b.getByTestId('session-id').innerText())
    await runCell(a, 'secret = 7')
    const text = await runCell(b, 'print(secret)')
    assert.match(text, /NameError: name 'secret' is not defined/)
    await a.close()
    await b.close()
  })

  test('a reload keeps the session, the draft and the cell history', async () => {
    const page = await ide.newPage()
    await runCell(page, 'marker = "reload-check"\nprint(marker)')
    const sessionId = await page.getByTestId('session-id').innerText()
    await page.reload()
    await page.getByTestId('session-id').waitFor()
    assert.equal(await page.getByTestId('session-id').innerText(), sessionId)
    await page.getByRole('tab', { name: 'History' }).click()
    assert.ok((await page.getByTestId('cell-code').allInnerTexts()).includes('marker = "reload-check"'))
    await page.getByRole('tab', { name: 'Code editor' }).click()
    assert.match(await runCell(page, 'print(marker)'), /reload-check/)
    await page.close()
  })

  test('Clear context drops the kernel state', async () => {
    const page = await ide.newPage()
    await runCell(page, 'gone = 1')
    const before = await runStamp(page)
    await page.getByRole('button', { name: 'Clear context', exact: true }).click()
    await waitForRunEnd(page, before)
    assert.match(await runCell(page, 'print(gone)'), /NameError/)
    await page.close()
  })

  test('JavaScript and TypeScript run in their kernels', async () => {
    const page = await ide.newPage()
    await page.getByRole('button', { name: 'Language' }).click()
    await page.getByRole('option', { name: 'TypeScript' }).click()
    assert.match(await runCell(page, 'const n: number = 6 * 7\nconsole.log(`ts says ${n}`)'), /ts says 42/)
    await page.close()
  })

  test('without a model the Generate tab shows the server hint and Send is off', async () => {
    // This server has no CODEBOX_AGENT_MODELS: its status says so, with what to set (generate.test.ts has a model).
    const page = await ide.newPage()
    await page.getByRole('tab', { name: 'Generate' }).click()
    const hint = page.getByText(/^No model is configured for the codebox agent\. Set CODEBOX_AGENT_MODELS/)
    await hint.waitFor()
    assert.match(await hint.innerText(), /openai:llama3\.1:8b@http:\/\/127\.0\.0\.1:11434\/v1/)
    assert.ok(await page.getByRole('textbox', { name: 'Prompt' }).isDisabled())
    assert.ok(await page.getByRole('button', { name: 'Send', exact: true }).isDisabled())
    await page.close()
  })

  test('the keyboard reaches Run and switches tabs', async () => {
    const page = await ide.newPage()
    await page.getByTestId('session-id').waitFor()
    await setCode(page, 'print("by keyboard")')
    await page.getByRole('tab', { name: 'Code editor' }).focus()
    let onRun = false
    for (let i = 0; i < 15 && !onRun; i++) {
      await page.keyboard.press('Tab')
      onRun = (await page.locator(':focus').getAttribute('aria-label')) === 'Run'
    }
    assert.ok(onRun, 'Tab reaches the Run button')
    const before = await runStamp(page)
    await page.keyboard.press('Enter')
    assert.match(await waitForRunEnd(page, before), /by keyboard/)
    await page.getByRole('tab', { name: 'Code editor' }).focus()
    await page.keyboard.press('ArrowRight')
    await page.keyboard.press('Enter')
    await page.getByRole('tab', { name: 'History', selected: true }).waitFor()
    await page.close()
  })

  test('every request stayed on the server origin', () => {
    const origin = new URL(ide.server.url).origin
    const off = ide.requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('data:') && !u.startsWith('blob:'))
    assert.deepEqual(off, [])
    assert.ok(
      ide.requests.some((u) => u.includes('/app/') && u.includes('editor.worker')),
      'Monaco worker came from /app/',
    )
    assert.deepEqual(ide.pageErrors, [])
    assert.deepEqual(
      ide.consoleErrors.filter((e) => /Content Security Policy|Refused to/i.test(e)),
      [],
      'no CSP violation',
    )
  })

  test('with API keys, the page asks for one and keeps it out of the URL', async () => {
    const { secret } = await ide.server.store.keys.create({ tenant: 'web' })
    const page = await ide.newPage()
    const dialog = page.getByRole('dialog')
    await dialog.getByLabel('API key').fill(secret)
    await dialog.getByRole('button', { name: 'Use key' }).click()
    await page.getByTestId('session-id').waitFor()
    assert.ok(!page.url().includes(secret))
    assert.ok(!ide.requests.some((u) => u.includes(secret)))
    assert.match(await runCell(page, 'print("with key")'), /with key/)
    await page.close()
  })
})
