/**
 * The wire schemas of the native API v1 (zod): the server validates with them, the OpenAPI
 * document is generated from them, and the SDK's types are inferred from them. One place, so the
 * three cannot drift apart.
 */
import { z } from 'zod'
import { validationError } from './errors.ts'
import { maxPreloadModules, moduleNameProblem } from './preload.ts'
import { languages } from './results.ts'

/** Session ids: `[0-9a-zA-Z]{1,40}`, the AgentCore form (codebox issues 26 characters). */
export const sessionIdSchema = z.string().regex(/^[0-9a-zA-Z]{1,40}$/, 'must be 1-40 letters and digits')

/** The nine tools of AgentCore's InvokeCodeInterpreter, by name. */
export const toolNames = [
  'executeCode',
  'executeCommand',
  'startCommandExecution',
  'getTask',
  'stopTask',
  'writeFiles',
  'readFiles',
  'listFiles',
  'removeFiles',
] as const
export type ToolName = (typeof toolNames)[number]

const pathSchema = z.string().max(4096)
const pathList = z.array(pathSchema).min(1).max(1000)

/** Arguments of each tool, as AgentCore defines them (unknown fields are ignored, as AWS does). */
export const toolArgumentSchemas = {
  executeCode: z.object({
    code: z.string().describe('The code to run; up to 4 MiB.'),
    language: z.enum(languages).default('python'),
    clearContext: z.boolean().optional().describe("Start the language's kernel afresh first, dropping its state."),
    runtime: z.enum(['python', 'nodejs', 'deno']).optional().describe('AgentCore runtime name; must agree with the language.'),
  }),
  executeCommand: z.object({ command: z.string().describe('A shell command, run with sh -c in the working directory.') }),
  startCommandExecution: z.object({ command: z.string().describe('A shell command to run in the background.') }),
  getTask: z.object({ taskId: z.string() }),
  stopTask: z.object({ taskId: z.string() }),
  writeFiles: z.object({
    content: z
      .array(z.union([z.object({ path: pathSchema, text: z.string() }), z.object({ path: pathSchema, blob: z.string().describe('base64 bytes') })]))
      .min(1)
      .max(1000),
  }),
  readFiles: z.object({ paths: pathList }),
  listFiles: z.object({
    directoryPath: pathSchema.optional().describe('Directory relative to the working directory; empty or absent means the working directory.'),
    path: pathSchema.optional().describe('Accepted as an alias of directoryPath.'),
  }),
  removeFiles: z.object({ paths: pathList }),
} satisfies Record<ToolName, z.ZodType>

export type ToolArguments = { [K in ToolName]: z.input<(typeof toolArgumentSchemas)[K]> }

/** `POST /v1/sessions/{id}/invoke` body. */
export const invokeRequestSchema = z.strictObject({
  name: z
    .enum(toolNames, { error: (issue) => `unknown tool ${JSON.stringify(issue.input)}; use one of ${toolNames.join(', ')}` })
    .describe('One of the nine tool names.'),
  arguments: z.record(z.string(), z.unknown()).default({}).describe('The tool arguments; see the tool table in docs/api.md.'),
  timeoutMs: z.int().min(1).optional().describe('Wall-clock limit of this call, ms (codebox extension); default the session limit.'),
})
export type InvokeRequest = z.input<typeof invokeRequestSchema>

const contentBlockSchema = z.union([
  z.object({ type: z.literal('text'), text: z.string() }),
  z.object({ type: z.literal('image'), data: z.string(), mimeType: z.string() }),
  z.object({
    type: z.literal('resource'),
    resource: z.object({ type: z.enum(['text', 'blob']), uri: z.string(), mimeType: z.string(), text: z.string().optional(), blob: z.string().optional() }),
  }),
  z.object({
    type: z.literal('resource_link'),
    uri: z.string(),
    name: z.string(),
    description: z.string().optional(),
    mimeType: z.string().optional(),
    size: z.number().optional(),
  }),
])

export const toolResultSchema = z.object({
  content: z.array(contentBlockSchema),
  structuredContent: z.object({
    stdout: z.string(),
    stderr: z.string(),
    exitCode: z.number(),
    executionTime: z.number().describe('Wall time of the call, ms.'),
    taskId: z.string().optional(),
    taskStatus: z.enum(['submitted', 'working', 'completed', 'canceled', 'failed']).optional(),
    limitsExceeded: z.array(z.enum(['OOM', 'TIMEOUT', 'OUTPUT_TRUNCATED', 'PIDS'])).optional(),
  }),
  isError: z.boolean(),
})

export const executionEventSchema = z.union([
  z.object({ type: z.literal('stdout'), text: z.string() }),
  z.object({ type: z.literal('stderr'), text: z.string() }),
  z.object({
    type: z.literal('display'),
    data: z.record(z.string(), z.string()),
    executeResult: z.literal(true).optional().describe("The value of the cell's last expression (a notebook's Out[n])."),
  }),
  z.object({ type: z.literal('result'), result: toolResultSchema }),
])

export const limitsSchema = z.strictObject({
  memoryBytes: z.number(),
  cpuCores: z.number(),
  pids: z.number(),
  workspaceBytes: z.number(),
  tmpBytes: z.number(),
  openFiles: z.number(),
  outputBytes: z.number(),
  fileBytes: z.number(),
  callTimeoutMs: z.number(),
  idleTimeoutMs: z.number(),
  maxLifetimeMs: z.number(),
})

export const sessionStatuses = ['READY', 'TERMINATED'] as const
export const endReasons = ['stopped', 'idle-timeout', 'max-lifetime', 'sandbox-exited', 'shutdown', 'server-restart'] as const
export type SessionEndReason = (typeof endReasons)[number]

/** `POST /v1/sessions` body. */
export const startSessionRequestSchema = z.strictObject({
  interpreterId: z.string().min(1).max(100).default('codebox.v1').describe('Interpreter configuration to start; default the built-in codebox.v1.'),
  name: z.string().min(1).max(100).optional(),
  timeoutSeconds: z
    .int()
    .min(1)
    .max(28800)
    .optional()
    .describe('The session ends after this many seconds without a call (1-28800); default the interpreter idle timeout, 900.'),
  limits: limitsSchema.partial().optional().describe('Per-session limits within the configured maxima (codebox extension).'),
  clientToken: z.string().min(1).max(256).optional().describe('Idempotency token: a retried start with the same token returns the same session.'),
})
export type StartSessionRequest = z.input<typeof startSessionRequestSchema>

export const sessionInfoSchema = z.object({
  sessionId: z.string(),
  interpreterId: z.string(),
  name: z.string(),
  status: z.enum(sessionStatuses),
  createdAt: z.string().describe('ISO-8601'),
  lastUpdatedAt: z.string(),
  timeoutSeconds: z.number(),
  limits: limitsSchema,
  endedAt: z.string().optional(),
  endReason: z.enum(endReasons).optional(),
  expiresAt: z
    .string()
    .optional()
    .describe('READY sessions: when the session ends unless used again (the earlier of its idle deadline and its lifetime end), ISO-8601.'),
  endsAt: z.string().optional().describe('READY sessions: when its lifetime ends, used or not (createdAt + limits.maxLifetimeMs; PATCH moves it), ISO-8601.'),
})
export type SessionInfo = z.infer<typeof sessionInfoSchema>

/** `PATCH /v1/sessions/{id}` body: moves the end of the session's lifetime; exactly one of the two. */
export const updateSessionRequestSchema = z
  .strictObject({
    endsInSeconds: z
      .int()
      .min(0)
      .max(8 * 3600)
      .optional()
      .describe('The lifetime ends this many seconds from now (0 ends the session now); clamped to the interpreter maximum.'),
    endsAt: z.iso.datetime({ offset: true }).optional().describe('The lifetime ends at this time (ISO-8601); clamped to the interpreter maximum.'),
  })
  .refine((b) => (b.endsInSeconds === undefined) !== (b.endsAt === undefined), {
    message: 'give exactly one of endsInSeconds and endsAt',
    path: ['endsInSeconds'],
  })
export type UpdateSessionRequest = z.input<typeof updateSessionRequestSchema>

const pageLimit = z.coerce.number().int().min(1).max(100).default(50)
const nextToken = z.string().max(200).optional().describe('From the previous page; absent on the first.')

export const listSessionsQuerySchema = z.strictObject({ status: z.enum(sessionStatuses).optional(), limit: pageLimit, nextToken })
export const sessionListSchema = z.object({ items: z.array(sessionInfoSchema), nextToken: z.string().optional() })
export type SessionList = z.infer<typeof sessionListSchema>

export const interpreterIdSchema = z.string().regex(/^[a-zA-Z][a-zA-Z0-9_.-]{0,99}$/, 'is not an interpreter id')

/** AgentCore's network modes; codebox's meaning: none, public addresses via the egress proxy, or the allow-list only. */
export const networkModes = ['SANDBOX', 'PUBLIC', 'VPC'] as const
export const interpreterNetworkSchema = z
  .strictObject({
    mode: z.enum(networkModes).describe('SANDBOX: no network (default). PUBLIC: public addresses through the egress proxy. VPC: only the allow-list.'),
    allow: z
      .array(z.string().min(1).max(300))
      .max(256)
      .optional()
      .describe('VPC only: hosts (example.com, *.example.com), IPs or CIDRs, each with an optional :port.'),
  })
  .describe('Where sessions may connect; loopback, private, link-local and metadata addresses are refused in every mode.')
export type InterpreterNetworkConfig = z.infer<typeof interpreterNetworkSchema>

/** An interpreter's preload list; an entry that is not a module name fails with its own message. */
export const preloadSchema = z
  .array(
    z.string().superRefine((name, ctx) => {
      const problem = moduleNameProblem(name)
      if (problem) ctx.addIssue({ code: 'custom', message: problem })
    }),
  )
  .max(maxPreloadModules)
  .describe(
    'Python modules its sessions have imported before they are handed over (default numpy, pandas, matplotlib.pyplot; [] imports nothing). ' +
      'The names are in sys.modules, not in the session’s namespace.',
  )

/** A sandbox driver's name, as registered (`bwrap`, `gvisor`, ...). */
export const driverNameSchema = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'must be a driver name such as bwrap or gvisor')

export const createInterpreterRequestSchema = z.strictObject({
  name: z.string().regex(/^[a-zA-Z][a-zA-Z0-9_]{0,47}$/, 'must start with a letter and have only letters, digits and _ (at most 48)'),
  description: z.string().max(4096).optional(),
  limits: limitsSchema.partial().optional().describe('Default limits of sessions started from this interpreter.'),
  image: z.literal('default').default('default').describe('Sandbox image; only the built-in image exists today.'),
  network: interpreterNetworkSchema.optional(),
  preload: preloadSchema.optional(),
  driver: driverNameSchema.optional().describe('The sandbox driver of its sessions (`bwrap`, `gvisor`, ...); default the server’s (`CODEBOX_DRIVER`).'),
})
export type CreateInterpreterRequest = z.input<typeof createInterpreterRequestSchema>

export const interpreterSchema = z.object({
  interpreterId: z.string(),
  name: z.string(),
  description: z.string().optional(),
  type: z.enum(['SYSTEM', 'CUSTOM']),
  status: z.enum(['READY', 'DELETED']),
  image: z.string(),
  limits: limitsSchema,
  network: interpreterNetworkSchema,
  preload: z.array(z.string()).describe('Python modules its sessions have imported before they are handed over.'),
  driver: z.string().describe('The sandbox driver of its sessions.'),
  createdAt: z.string(),
  lastUpdatedAt: z.string(),
})
export type Interpreter = z.infer<typeof interpreterSchema>
export const interpreterListSchema = z.object({ items: z.array(interpreterSchema) })

export const auditOutcomes = ['ok', 'error', 'limit', 'rejected', 'failed'] as const
export const auditEntrySchema = z.object({
  id: z.number(),
  at: z.string(),
  tenant: z.string(),
  keyId: z.string().optional(),
  sessionId: z.string().optional(),
  action: z.string().describe('A tool name, or startSession / stopSession / uploadFile / downloadFile.'),
  language: z.string().optional(),
  codeBytes: z.number().optional(),
  codeSha256: z.string().optional(),
  exitCode: z.number().optional(),
  durationMs: z.number(),
  outcome: z.enum(auditOutcomes).describe('ok; error: the code failed; limit: a limit cut it short; rejected: a 4xx; failed: a 5xx.'),
  detail: z.string().optional().describe('Error code or the limits that were hit.'),
  requestId: z.string().optional(),
})
export type AuditEntry = z.infer<typeof auditEntrySchema>
export const auditQuerySchema = z.strictObject({
  sessionId: sessionIdSchema.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  nextToken,
})
export const auditListSchema = z.object({ items: z.array(auditEntrySchema), nextToken: z.string().optional() })

export const fileWriteResultSchema = z.object({ path: z.string(), size: z.number() })

export const pingSchema = z.object({ status: z.enum(['Healthy', 'HealthyBusy']), time_of_last_update: z.number() })

export const errorBodySchema = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()), requestId: z.string().optional() }),
})

/**
 * Parses with a schema; a failure is a ValidationError naming the first bad field
 * (`arguments.code: expected string, received number`).
 */
export function parseWire<S extends z.ZodType>(schema: S, value: unknown, where = ''): z.infer<S> {
  const r = schema.safeParse(value)
  if (r.success) return r.data
  const issue = r.error.issues[0]!
  const field = [where, ...issue.path.map(String)].filter(Boolean).join('.') || 'body'
  throw validationError(field, issue.message)
}
