/**
 * The Generate and History tabs end to end, in a real browser (Debian's Chromium, headless): the
 * real codebox server on the bwrap driver, its real agent, and scripted model servers behind
 * CODEBOX_AGENT_MODELS (the first model overloaded, so the fallback shows). The page reaches the
 * agent only through the SDK's AgentClient; the agent's code runs in a real sandbox and the model
 * answers from what it printed.
 */
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { AgentTurn, Conversation } from '@codebox/sdk'
import { answeringModel, generatedCode, overloadedModel, salesCode, startScriptedAgent, fileCode, type ScriptedAgent } from './agent-models.ts'
import { browserSkipReason, startIde, type Ide } from './browser.ts'

const skip = browserSkipReason()

/** Reads a JSON route of the test's server (open on loopback: it has no API keys). */
async function serverJson<T>(ide: Ide, path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`${ide.server.url}${path}`)
  return { status: res.status, body: (await res.json()) as T }
}

const editorValue = (): string => (globalThis as unknown as { codeboxEditor: { getValue(): string } }).codeboxEditor.getValue()

describe('the Generate tab with the real agent and scripted models', { skip, timeout: 600_000 }, () => {
  let agent: ScriptedAgent
  let ide: Ide
  before(async () => {
    agent = await startScriptedAgent()
    ide = await startIde({ env: agent.env })
  })
  after(async () => {
    await ide?.close()
    await agent?.close()
  })

  test('Ask streams the turn: fallback model, text, the tool call run in a sandbox with its chart, the answer; a follow-up continues it', async () => {
    const page = await ide.newPage()
    await page.getByRole('tab', { name: 'Generate' }).click()
    await page.getByText(`Models: ${overloadedModel} (unknown) → ${answeringModel} (unknown)`).waitFor()
    await page.getByRole('textbox', { name: 'Prompt' }).fill('What are the total sales?')
    await page.getByRole('button', { name: 'Send', exact: true }).click()
    const chat = page.getByRole('region', { name: 'Conversation' })
    await chat.getByText('The total sales are 360.').first().waitFor({ timeout: 120_000 })
    const text = await chat.innerText()
    assert.match(text, new RegExp(`Model: ${answeringModel} \\(skipped: ${overloadedModel} — overloaded: HTTP 529`))
    assert.match(text, /Let me add up the sales\./)
    assert.match(text, /Tool call: execute_code/)
    assert.match(text, /Done\s+360/)
    assert.match(text, new RegExp(`Answered by ${answeringModel}; skipped ${overloadedModel}\n`))
    assert.equal(await chat.getByText('The total sales are 360.').count(), 1, 'the answer is shown once, in the Answer box')
    const chart = chat.getByRole('img', { name: 'Chart from execute_code' })
    assert.ok((await chart.evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth)) > 100, 'the chart from the sandbox decodes')
    // The model answered from what the code printed in the sandbox.
    assert.equal(agent.answering.requests[1]?.toolResults.at(-1)?.match(/\d+/)?.[0], '360')

    const conversationId = /Conversation (\S+)/.exec(await page.getByText(/^Conversation \S+$/).innerText())?.[1]
    assert.ok(conversationId, 'the tab names the conversation the server started')
    await page.getByRole('textbox', { name: 'Prompt' }).fill('And once more, please?')
    await page.getByRole('button', { name: 'Send', exact: true }).click()
    await page.locator('[aria-label="Conversation"] h3', { hasText: 'Answer' }).nth(1).waitFor({ timeout: 120_000 })
    const history = await serverJson<{ conversation: Conversation; turns: AgentTurn[] }>(ide, `/v1/agent/conversations/${conversationId}`)
    assert.equal(history.status, 200)
    assert.deepEqual(
      history.body.turns.map((t) => [t.prompt, t.outcome, t.model]),
      [
        ['What are the total sales?', 'ok', answeringModel],
        ['And once more, please?', 'ok', answeringModel],
      ],
    )
    assert.ok(agent.answering.requests.at(-1)?.userTexts.includes('What are the total sales?'), 'the follow-up carried the earlier prompt')
    await page.getByText(new RegExp(`${overloadedModel} \\(cooling-down\\)`)).waitFor()

    // "Open in editor" on the tool call's code puts that code into the editor.
    await chat.getByRole('button', { name: 'Open in editor' }).first().click()
    await page.getByRole('tab', { name: 'Code editor', selected: true }).waitFor()
    await page.waitForFunction(() => (globalThis as unknown as { codeboxEditor?: unknown }).codeboxEditor !== undefined)
    assert.equal(await page.evaluate(editorValue), salesCode)
    await page.close()
  })

  test('Generate code streams code for the editor; History reopens the conversation from the server and deletes it', async () => {
    const page = await ide.newPage()
    await page.getByRole('tab', { name: 'Generate' }).click()
    await page.getByText('Generate code', { exact: true }).click()
    await page.getByRole('textbox', { name: 'Prompt' }).fill('Code for the mean of the sales')
    await page.getByRole('button', { name: 'Send', exact: true }).click()
    const chat = page.getByRole('region', { name: 'Conversation' })
    await chat.getByText('This prints the mean of the sales.').first().waitFor({ timeout: 120_000 })
    assert.ok(agent.answering.requests.at(-1)?.system.includes('Write python code'), 'the generate role, for the editor’s language')
    assert.equal(await chat.getByRole('button', { name: 'Open in editor' }).count(), 1, 'the code block is shown once')
    await chat.getByRole('button', { name: 'Open in editor' }).click()
    await page.waitForFunction(() => (globalThis as unknown as { codeboxEditor?: unknown }).codeboxEditor !== undefined)
    assert.equal(await page.evaluate(editorValue), generatedCode)

    const list = await serverJson<{ items: Conversation[] }>(ide, '/v1/agent/conversations')
    const generated = list.body.items.find((c) => c.title.startsWith('Code for the mean'))
    assert.ok(generated, `the server lists the conversation: ${JSON.stringify(list.body)}`)
    // A reload starts a fresh tab state; History reopens the conversation from the server's memory.
    await page.reload()
    await page.getByRole('tab', { name: 'History' }).click()
    await page.getByRole('button', { name: `Open conversation ${generated.title}` }).click()
    await page.getByRole('tab', { name: 'Generate', selected: true }).waitFor()
    await chat.getByText('This prints the mean of the sales.').first().waitFor()
    await page.getByText(`Conversation ${generated.conversationId}`).waitFor()

    await page.getByRole('tab', { name: 'History' }).click()
    await page.getByRole('button', { name: `Delete conversation ${generated.title}` }).click()
    await page.getByRole('button', { name: `Open conversation ${generated.title}` }).waitFor({ state: 'detached' })
    assert.equal((await serverJson(ide, `/v1/agent/conversations/${generated.conversationId}`)).status, 404)
    await page.close()
  })

  test('Stop ends a turn whose cell is running; the server records it as canceled and the conversation goes on', async () => {
    const page = await ide.newPage()
    await page.getByRole('tab', { name: 'Generate' }).click()
    await page.getByRole('textbox', { name: 'Prompt' }).fill('Wait a while, then add up the sales')
    await page.getByRole('button', { name: 'Send', exact: true }).click()
    const chat = page.getByRole('region', { name: 'Conversation' })
    await chat.getByText('Running').waitFor({ timeout: 120_000 })
    const conversationId = /Conversation (\S+)/.exec(await page.getByText(/^Conversation \S+$/).innerText())?.[1]
    assert.ok(conversationId)
    const clicked = Date.now()
    await page.getByRole('button', { name: 'Stop answer' }).click()
    await chat.getByText('stopped by you').waitFor({ timeout: 20_000 })
    assert.ok(Date.now() - clicked < 15_000, 'the turn ended well before its 120 s cell would')
    let outcome: string | undefined
    for (let i = 0; i < 50 && outcome !== 'canceled'; i++) {
      const history = await serverJson<{ turns: AgentTurn[] }>(ide, `/v1/agent/conversations/${conversationId}`)
      outcome = history.body.turns.at(-1)?.outcome
      if (outcome !== 'canceled') await new Promise((r) => setTimeout(r, 200))
    }
    assert.equal(outcome, 'canceled')
    // The conversation goes on after the stop.
    await page.getByRole('textbox', { name: 'Prompt' }).fill('What are the total sales?')
    await page.getByRole('button', { name: 'Send', exact: true }).click()
    await chat.getByText('The total sales are 360.').first().waitFor({ timeout: 120_000 })
    await page.getByText(`Conversation ${conversationId}`).waitFor()
    await page.close()
  })

  test('the model picker asks the chosen model first; Ask works in the IDE’s session, so it analyses the file uploaded there', async () => {
    const page = await ide.newPage()
    await page.getByTestId('session-id').waitFor()
    const sessionId = (await page.getByTestId('session-id').innerText()).trim()
    const rows = ['city,sales', 'Oslo,10', 'Rome,20', 'Lima,30.5'].join('\n')
    await page.locator('input[type=file]').setInputFiles({ name: 'uploaded.csv', mimeType: 'text/csv', buffer: Buffer.from(rows) })
    await page.getByRole('button', { name: 'Preview uploaded.csv' }).waitFor()
    await page.getByRole('tab', { name: 'Generate' }).click()
    await page.getByText(/^Models: /).waitFor()
    await page.getByRole('button', { name: 'Model' }).click()
    await page.getByRole('option', { name: new RegExp(`^${answeringModel}`) }).click()
    const overloadedBefore = agent.overloaded.requests.length
    await page.getByRole('textbox', { name: 'Prompt' }).fill('Sum the sales in uploaded.csv')
    await page.getByRole('button', { name: 'Send', exact: true }).click()
    const chat = page.getByRole('region', { name: 'Conversation' })
    await chat.getByText('The total sales are 60.').first().waitFor({ timeout: 120_000 })
    const text = await chat.innerText()
    assert.match(text, new RegExp(`Model: ${answeringModel}\n`), 'the chosen model answered, nothing was skipped')
    assert.equal(agent.overloaded.requests.length, overloadedBefore, 'the first model of the chain was not asked')
    assert.ok(text.includes(fileCode('uploaded.csv').split('\n')[2]!), 'the tool call shows the code')
    // The code ran in this tab's session (where the file was uploaded), not in a session of the conversation's own.
    const conversationId = /Conversation (\S+)/.exec(await page.getByText(/^Conversation \S+$/).innerText())?.[1]
    const history = await serverJson<{ turns: AgentTurn[] }>(ide, `/v1/agent/conversations/${conversationId}`)
    const start = history.body.turns[0]?.events[0]
    assert.ok(start?.type === 'turn_start' && start.sessionId === sessionId, JSON.stringify(start))
    await page.close()
  })

  test('every request of the pages stayed on the server origin', () => {
    const origin = new URL(ide.server.url).origin
    assert.deepEqual(
      ide.requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('data:') && !u.startsWith('blob:')),
      [],
    )
    assert.ok(
      ide.requests.some((u) => u.startsWith(`${origin}/v1/agent/ask`)),
      'the agent was reached on the page origin',
    )
    assert.deepEqual(ide.pageErrors, [])
  })
})
