/**
 * Takes the README's screenshots of the IDE (docs/ide-*.png) against a real server on the bwrap
 * driver: a CSV uploaded and analysed in the Code editor tab, the Generate tab as this server
 * has it, and the History tab.
 *
 *   node packages/web/test/screenshots.ts
 */
import path from 'node:path'
import { runCell, startIde } from './browser.ts'

const docs = path.resolve(import.meta.dirname, '../../../docs')
const ide = await startIde()
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
  await page.getByText(/The agent is not available|No model is configured|Models:/).waitFor()
  await page.screenshot({ path: path.join(docs, 'ide-generate.png'), fullPage: true })
  await page.getByRole('tab', { name: 'History' }).click()
  await page.getByTestId('cell-code').first().waitFor()
  await page.screenshot({ path: path.join(docs, 'ide-history.png'), fullPage: true })
  process.stdout.write(`screenshots in ${docs}\n`)
} finally {
  await ide.close()
}
