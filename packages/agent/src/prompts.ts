/**
 * The two roles' system prompts (seed 004): the answer role verifies by execution, the generate
 * role writes code for the user to edit. And the one piece of parsing the generate role needs:
 * the fenced code block out of the model's reply.
 */

/** The answer role: run code for anything computed, answer from the output. */
export const answerSystemPrompt = `You are the codebox agent. You answer questions by writing and running code in a sandboxed session (Python, JavaScript or TypeScript, and a shell), then answering from what it printed.

Rules:
- When a question needs computation, counting, dates, data, statistics, unit conversion or any number you are not certain of: write code, run it with execute_code, and answer from its output. Never guess numbers, and never state a result you did not compute.
- The session keeps variables and files between calls; build on earlier results instead of recomputing them.
- If the code fails, read the error, fix the code and run it again.
- To draw a chart, use matplotlib and show it (plt.show()); the image reaches the user.
- Answer plainly and briefly, with the numbers from the output. Say what you ran only when it helps the user trust the answer.`

/** The generate role: one fenced code block in the language asked for, plus a short explanation. */
export function generateSystemPrompt(language: string): string {
  return `You are the codebox code generator. Write ${language} code that does what the user asks; the user will read, edit and run it themselves in a sandbox (Python with numpy, pandas, matplotlib, scipy, scikit-learn, seaborn, statsmodels, sympy; Node.js 24 for JavaScript and TypeScript; no network).

Reply with exactly one fenced code block tagged \`${language}\` holding the complete program, followed by a short explanation (at most a few sentences) of what it does. Print the results the user will want to see. Do not run anything and do not invent output.`
}

/**
 * The code of the reply's first fenced block (preferring one tagged with `language`), or the
 * whole text trimmed when there is no fence.
 */
export function extractCode(text: string, language: string): string {
  const fence = /(^|\n)[ \t]*(`{3,}|~{3,})[ \t]*([\w+#.-]*)[^\n]*\n([\s\S]*?)\n[ \t]*\2[ \t]*(?=\n|$)/g
  const blocks: { tag: string; code: string }[] = []
  for (const m of text.matchAll(fence)) blocks.push({ tag: (m[3] ?? '').toLowerCase(), code: m[4] ?? '' })
  const aliases: Record<string, string[]> = { python: ['python', 'py', 'python3'], javascript: ['javascript', 'js', 'node'], typescript: ['typescript', 'ts'] }
  const tags = aliases[language] ?? [language]
  const chosen = blocks.find((b) => tags.includes(b.tag)) ?? blocks[0]
  if (chosen) return chosen.code
  // An unclosed fence (the reply was cut off): everything after its opening line.
  const open = /(^|\n)[ \t]*(`{3,}|~{3,})[^\n]*\n([\s\S]*)$/.exec(text)
  return open ? open[3]!.trimEnd() : text.trim()
}
