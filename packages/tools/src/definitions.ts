/**
 * The agent-facing tools of codebox: what a model sees (snake_case names, descriptions written for
 * a model, small input schemas) and how each maps onto one of the nine codebox tools. The MCP
 * server and every framework adapter (Vercel AI SDK, LangChain.js, Anthropic, OpenAI) use these
 * same definitions, so a model gets the same tools everywhere.
 */
import { z } from 'zod'
import type { ToolArguments, ToolName } from '@codebox/core'

const LIBRARIES =
  'Python 3.11 with numpy, pandas, matplotlib, scipy, scikit-learn, seaborn, statsmodels, sympy, openpyxl, pillow, bs4, lxml, requests; Node.js 24 for JavaScript and TypeScript'
const SESSION =
  'Runs in an isolated sandbox session whose state persists between calls: variables, imports and files stay until the session ends. The working directory is /workspace.'

const path = z.string().min(1).max(4096)

/** Input schemas of the agent tools, by name. */
export const agentToolSchemas = {
  execute_code: z.object({
    code: z.string().min(1).describe('The code to run.'),
    language: z.enum(['python', 'javascript', 'typescript']).default('python').describe('Default python.'),
  }),
  execute_command: z.object({ command: z.string().min(1).describe('A shell command (sh -c), run in /workspace.') }),
  write_files: z.object({
    files: z
      .array(
        z.object({
          path: path.describe('Relative to /workspace; directories are created.'),
          text: z.string().optional().describe('UTF-8 content.'),
          base64: z.string().optional().describe('Binary content, base64; give text or base64.'),
        }),
      )
      .min(1)
      .max(1000),
  }),
  read_files: z.object({ paths: z.array(path).min(1).max(1000).describe('Paths relative to /workspace.') }),
  list_files: z.object({ path: z.string().max(4096).default('').describe('A directory relative to /workspace; empty for /workspace itself.') }),
  remove_files: z.object({ paths: z.array(path).min(1).max(1000).describe('Files or directories (removed with their contents).') }),
  start_task: z.object({ command: z.string().min(1).describe('A shell command to run in the background.') }),
  get_task: z.object({ task_id: z.string().min(1).describe('From start_task.') }),
  stop_task: z.object({ task_id: z.string().min(1).describe('From start_task.') }),
} as const

export type AgentToolName = keyof typeof agentToolSchemas
export type AgentToolInput = { [K in AgentToolName]: z.input<(typeof agentToolSchemas)[K]> }
export const agentToolNames = Object.keys(agentToolSchemas) as AgentToolName[]

/** What each tool does, for a model. */
export const agentToolDescriptions: Record<AgentToolName, string> = {
  execute_code: `Run Python, JavaScript or TypeScript code and get its stdout, stderr, and rich output: matplotlib figures come back as PNG images, pandas DataFrames as tables, the value of the last expression is shown. ${SESSION} Installed: ${LIBRARIES}. No network unless the session's interpreter allows it; no pip install. A call may run up to 5 minutes; output beyond 1 MiB is truncated. Code that raises returns the traceback with an error flag.`,
  execute_command: `Run a shell command and wait for it (stdout, stderr, exit code). ${SESSION} Coreutils, python3, node, curl, tar, zip are available. Up to 5 minutes; use start_task for longer work.`,
  write_files: `Create or overwrite files in the session's /workspace (text, or base64 for binary; up to 100 MB each). ${SESSION}`,
  read_files: "Read files from the session's /workspace: text files come back as text, binary files as base64 resources, PNG/JPEG as images.",
  list_files: "List a directory of the session's /workspace: names, types (file or directory) and sizes.",
  remove_files: "Remove files or directories (with their contents) from the session's /workspace.",
  start_task: `Start a shell command in the background and return at once with a task id; poll it with get_task, end it with stop_task. For servers, long builds or training runs. ${SESSION}`,
  get_task: "A background task's status (submitted, working, completed, canceled, failed) and its output so far.",
  stop_task: 'Stop a background task and every process it started.',
}

/** The codebox tool call behind an agent tool call (arguments already validated). */
export function toCodeboxCall<N extends AgentToolName>(
  name: N,
  input: z.output<(typeof agentToolSchemas)[N]>,
): { name: ToolName; arguments: ToolArguments[ToolName] } {
  const a = input as Record<string, unknown>
  switch (name) {
    case 'execute_code':
      return { name: 'executeCode', arguments: { code: a.code as string, language: a.language as 'python' } }
    case 'execute_command':
      return { name: 'executeCommand', arguments: { command: a.command as string } }
    case 'write_files':
      return {
        name: 'writeFiles',
        arguments: {
          content: (a.files as { path: string; text?: string; base64?: string }[]).map((f, i) => {
            if ((f.text === undefined) === (f.base64 === undefined)) throw new TypeError(`files[${i}]: give exactly one of text or base64`)
            return f.text !== undefined ? { path: f.path, text: f.text } : { path: f.path, blob: f.base64! }
          }),
        },
      }
    case 'read_files':
      return { name: 'readFiles', arguments: { paths: a.paths as string[] } }
    case 'list_files':
      return { name: 'listFiles', arguments: { directoryPath: (a.path as string | undefined) ?? '' } }
    case 'remove_files':
      return { name: 'removeFiles', arguments: { paths: a.paths as string[] } }
    case 'start_task':
      return { name: 'startCommandExecution', arguments: { command: a.command as string } }
    case 'get_task':
      return { name: 'getTask', arguments: { taskId: a.task_id as string } }
    case 'stop_task':
      return { name: 'stopTask', arguments: { taskId: a.task_id as string } }
    default:
      throw new TypeError(`unknown tool ${JSON.stringify(name)}; the tools are ${agentToolNames.join(', ')}`)
  }
}
