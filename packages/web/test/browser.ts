/**
 * Browser test fixtures: the built IDE (scripts/build-web.mjs builds it when stale), a real codebox
 * server on the bwrap driver, and Debian's Chromium driven by playwright-core (never a downloaded
 * browser), headless, with reduced motion so Cloudscape does not animate. Every request the pages
 * make is recorded, to check that none leaves the server's origin.
 */
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import type { RunningServer } from '@codebox/server'
import { realServer } from '../../server/test/fixtures.ts'

/** Debian's Chromium; `npm test` installs it (scripts/bootstrap.mjs). */
export const chromiumPath = process.env.CODEBOX_CHROMIUM ?? '/usr/bin/chromium'

const repoRoot = path.resolve(import.meta.dirname, '../../..')

/** Why the browser tests cannot run here, or undefined when they can. */
export function browserSkipReason(): string | undefined {
  if (!fs.existsSync(chromiumPath)) return `no Chromium at ${chromiumPath} (apt-get install chromium, or set CODEBOX_CHROMIUM)`
  if (!fs.existsSync(path.join(process.env.CODEBOX_STATE_DIR ?? '/var/lib/codebox', 'images'))) return 'no sandbox image (run codebox image build)'
  return undefined
}

/** Builds the IDE if its sources changed since the last build; throws when the build fails. */
export function ensureWebBuild(): void {
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'scripts', 'build-web.mjs')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  if (r.status !== 0) throw new Error(`the web IDE did not build: ${r.stderr.slice(-2000)}`)
}

/** A running IDE: the server, the browser, one context, and the URLs of every request made. */
export interface Ide {
  server: RunningServer
  browser: Browser
  context: BrowserContext
  requests: string[]
  /** Errors thrown in the pages (uncaught), to fail on. */
  pageErrors: string[]
  /** Console errors of the pages (CSP violations show up here). */
  consoleErrors: string[]
  newPage(): Promise<Page>
  close(): Promise<void>
}

/** Starts the server (`env` adds its settings, e.g. the agent's models) and the browser; `close` ends both and removes the state dir. */
export async function startIde(options: { env?: Record<string, string> } = {}): Promise<Ide> {
  ensureWebBuild()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-web-test-'))
  const server = await realServer(dir, options.env)
  let browser: Browser | undefined
  try {
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    })
    const context = await browser.newContext({ reducedMotion: 'reduce', viewport: { width: 1400, height: 1000 }, acceptDownloads: true })
    const requests: string[] = []
    const pageErrors: string[] = []
    const consoleErrors: string[] = []
    context.on('request', (r) => requests.push(r.url()))
    const b = browser
    return {
      server,
      browser: b,
      context,
      requests,
      pageErrors,
      consoleErrors,
      newPage: async () => {
        const page = await context.newPage()
        page.on('pageerror', (e) => pageErrors.push(e.message))
        page.on('console', (m) => {
          if (m.type() === 'error') consoleErrors.push(m.text())
        })
        page.setDefaultTimeout(60_000)
        await page.goto(server.url)
        return page
      },
      close: async () => {
        await b.close()
        await server.close()
        fs.rmSync(dir, { recursive: true, force: true })
      },
    }
  } catch (e) {
    await browser?.close()
    await server.close()
    fs.rmSync(dir, { recursive: true, force: true })
    throw e
  }
}

/** Waits for Monaco, then puts `code` into it (setting the model's value: typing at full speed drops keys). */
export async function setCode(page: Page, code: string): Promise<void> {
  await page.waitForFunction(() => (globalThis as unknown as { codeboxEditor?: unknown }).codeboxEditor !== undefined)
  await page.evaluate((c) => (globalThis as unknown as { codeboxEditor: { setValue(v: string): void } }).codeboxEditor.setValue(c), code)
}

/** Puts `code` into the editor, runs it with the Run button, and waits until the run ends. */
export async function runCell(page: Page, code: string, timeoutMs = 90_000): Promise<string> {
  await setCode(page, code)
  const before = await runStamp(page)
  await page.getByRole('button', { name: 'Run', exact: true }).click()
  return waitForRunEnd(page, before, timeoutMs)
}

/** When the current (or last) run started, as the output region says (0: none yet). */
export async function runStamp(page: Page): Promise<string> {
  return (await page.getByRole('region', { name: 'Output' }).getAttribute('data-started')) ?? '0'
}

/** Waits until a run that started after `before` has ended; returns the output region's text. */
export async function waitForRunEnd(page: Page, before: string, timeoutMs = 90_000): Promise<string> {
  await page.waitForFunction(
    (b) => {
      type Element = { getAttribute(name: string): string | null }
      const doc = (globalThis as unknown as { document: { querySelector(s: string): Element | null } }).document
      const el = doc.querySelector('section[aria-label="Output"]')
      return el !== null && el.getAttribute('data-started') !== b && el.getAttribute('aria-busy') === 'false'
    },
    before,
    { timeout: timeoutMs },
  )
  return page.getByRole('region', { name: 'Output' }).innerText()
}
