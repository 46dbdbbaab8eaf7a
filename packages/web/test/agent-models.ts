/**
 * The codebox agent behind the IDE's browser tests and screenshots: a two-model chain whose first
 * model (a scripted Anthropic server) is overloaded, so the second (a scripted OpenAI-compatible
 * server) answers and the fallback shows. The answering model runs code before it answers: it
 * calls execute_code, and answers from what the code printed in the real sandbox. Asked to
 * generate, it replies with one fenced code block. The scripted servers are the agent's own
 * (packages/agent/test/model-servers.ts); the server talks to them, never the browser.
 */
import { modelEnv, startModelServer, type ModelRequestView, type ModelServer, type ScriptedReply } from '../../agent/test/model-servers.ts'

/** The chain, first choice first (CODEBOX_AGENT_MODELS). */
export const overloadedModel = 'anthropic:claude-scripted'
export const answeringModel = 'openai:local-llm'

/** What the answering model runs for a question about sales: prints the total, draws a bar chart. */
export const salesCode = [
  'import pandas as pd',
  'import matplotlib.pyplot as plt',
  'df = pd.DataFrame({"month": ["Jan", "Feb", "Mar"], "sales": [120, 150, 90]})',
  'print(df.sales.sum())',
  'df.plot(x="month", y="sales", kind="bar", figsize=(5, 2.5), legend=False, title="Sales by month")',
  'plt.show()',
].join('\n')

/** What the answering model runs when the prompt asks it to wait: a cell that outlasts any test. */
export const slowCode = 'import time\nprint("waiting", flush=True)\ntime.sleep(120)'

/** What the answering model runs for a question about a CSV file the prompt names: reads it from the working directory (the IDE's session), prints the total, plots it by month. */
export const fileCode = (file: string): string =>
  [
    'import pandas as pd',
    'import matplotlib.pyplot as plt',
    `df = pd.read_csv("${file}")`,
    'print(int(df.sales.sum()))',
    'if "month" in df.columns:',
    '    df.groupby("month", sort=False).sales.sum().plot(kind="bar", figsize=(5, 2.5), title="Sales by month")',
    '    plt.show()',
  ].join('\n')

/** What the generate role replies: the code block the editor gets, and a sentence. */
export const generatedCode = 'import pandas as pd\ndf = pd.DataFrame({"sales": [120, 150, 90]})\nprint(df.sales.mean())'

/** Whether the request's last message is a tool result (the model has seen its code's output). */
function afterToolResult(req: ModelRequestView): boolean {
  const messages = (req.raw as { messages?: { role?: string }[] }).messages ?? []
  return messages.at(-1)?.role === 'tool'
}

/** The answering model's script. */
export function answeringScript(req: ModelRequestView): ScriptedReply {
  if (req.system.includes('code generator')) return { text: `\`\`\`python\n${generatedCode}\n\`\`\`\nThis prints the mean of the sales.` }
  if (!afterToolResult(req)) {
    const prompt = req.userTexts.at(-1) ?? ''
    const file = /\b[\w-]+\.csv\b/.exec(prompt)?.[0]
    const code = /wait/i.test(prompt) ? slowCode : file ? fileCode(file) : salesCode
    return { toolUse: { name: 'execute_code', input: { code, language: 'python' } }, text: 'Let me add up the sales. ' }
  }
  const printed = /\d+/.exec(req.toolResults.at(-1) ?? '')?.[0] ?? 'not printed'
  return { text: `The total sales are ${printed}.` }
}

/** The scripted model servers and the server settings that point the agent at them. */
export interface ScriptedAgent {
  env: Record<string, string>
  overloaded: ModelServer
  answering: ModelServer
  close(): Promise<void>
}

/** Starts both model servers; `close` stops them. */
export async function startScriptedAgent(): Promise<ScriptedAgent> {
  const overloaded = await startModelServer('anthropic', () => ({ status: 529, message: 'Overloaded' }))
  let answering: ModelServer
  try {
    answering = await startModelServer('openai', answeringScript)
  } catch (e) {
    await overloaded.close()
    throw e
  }
  return {
    env: {
      CODEBOX_AGENT_MODELS: `${overloadedModel},${answeringModel}`,
      ...modelEnv('anthropic', overloaded),
      ...modelEnv('openai', answering),
    },
    overloaded,
    answering,
    close: async () => {
      await overloaded.close()
      await answering.close()
    },
  }
}
