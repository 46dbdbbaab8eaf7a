/**
 * Takes the README's screenshots of the IDE (docs/ide-*.png) against a real server on the bwrap
 * driver whose agent has the scripted model chain of agent-models.ts: a CSV uploaded and analysed
 * in the Code editor tab, its preview, a question answered in the Generate tab (the agent's code
 * run in a sandbox, its chart, the answer, the fallback), and the History tab.
 *
 *   node packages/web/test/screenshots.ts
 */
import path from 'node:path'
import { startScriptedAgent } from './agent-models.ts'
import { runCell, startIde } from './browser.ts'

const docs = path.resolve(import.meta.dirname, '../../../docs')
const agent = await startScriptedAgent()
const ide = await startIde({ env: agent.env })
try {
  const page = await ide.newPage()
  await page.getByTestId('session-id').waitFor()
  const csv = [
    'month,region,sales',
    ...['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun'].flatMap((m, i) => [`${m},north,${100 + i * 17}`, `${m},south,${80 + ((i * 23) % 60)}`]),
  ].join('\n')
  await page.locator('input[type=file]').setInputFiles({ name: 'sales.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) })
  await page.getByRole('button', { name: 'Download sales.csv' }).waitFor()
  await runCell(
    page,
    [
      'import pandas as pd',
      'import matplotlib.pyplot as plt',
      '',
      'df = pd.read_csv("sales.csv")',
      'pivot = df.pivot(index="month", columns="region", values="sales").loc[["Jan", "Feb", "Mar", "Apr", "May", "Jun"]]',
      'print("total sales:", df.sales.sum())',
      'pivot.plot(kind="bar", figsize=(6, 3), title="Sales by month")',
      'plt.tight_layout()',
      'plt.show()',
      'pivot.head(3)',
    ].join('\n'),
  )
  await page.screenshot({ path: path.join(docs, 'ide-code.png'), fullPage: true })
  await page.getByRole('button', { name: 'Preview sales.csv' }).click()
  await page.getByRole('dialog').getByRole('columnheader', { name: 'region' }).waitFor()
  await page.screenshot({ path: path.join(docs, 'ide-files.png') })
  await page.keyboard.press('Escape')
  await page.getByRole('tab', { name: 'Generate' }).click()
  await page.getByText(/^Models:/).waitFor()
  await page.getByRole('textbox', { name: 'Prompt' }).fill('What are the total sales in sales.csv? Show them by month.')
  await page.getByRole('button', { name: 'Send', exact: true }).click()
  await page.getByRole('region', { name: 'Conversation' }).getByText('The total sales are 1500.').first().waitFor({ timeout: 120_000 })
  await page.getByText(/cooling-down/).waitFor()
  await page.screenshot({ path: path.join(docs, 'ide-generate.png'), fullPage: true })
  await page.getByRole('tab', { name: 'History' }).click()
  await page.getByTestId('cell-code').first().waitFor()
  await page.getByRole('button', { name: /^Open conversation What are the total sales/ }).waitFor()
  await page.screenshot({ path: path.join(docs, 'ide-history.png'), fullPage: true })
  process.stdout.write(`screenshots in ${docs}\n`)
} finally {
  await ide.close()
  await agent.close()
}
