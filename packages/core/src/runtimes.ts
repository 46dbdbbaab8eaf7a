/**
 * Wire schemas of hosted agent runtimes (the native `/v1/runtimes` and `/v1/runtime-bundles`
 * routes): a runtime is a tenant's named agent with immutable numbered versions, each a code
 * bundle plus its settings, and a `DEFAULT` endpoint that follows the latest version unless a
 * rollback pinned it.
 */
import { z } from 'zod'
import { interpreterNetworkSchema, limitsSchema } from './wire.ts'

/** A runtime's name, as AWS's agentRuntimeName: a letter, then letters, digits and `_` (at most 48). */
export const runtimeNameSchema = z.string().regex(/^[a-zA-Z][a-zA-Z0-9_]{0,47}$/, 'must start with a letter and have only letters, digits and _ (at most 48)')

/** The protocol an agent serves: the runtime contract on 8080 (HTTP), MCP on 8000, A2A on 9000. */
export const runtimeProtocols = ['HTTP', 'MCP', 'A2A'] as const
export type RuntimeProtocol = (typeof runtimeProtocols)[number]

/** The language an entrypoint runs in, inferred from its extension. */
export const runtimeLanguages = ['node', 'python'] as const
export type RuntimeLanguage = (typeof runtimeLanguages)[number]

/** AWS's lifecycle bounds, in seconds. */
export const runtimeTimeoutBounds = { min: 60, max: 28_800, idleDefault: 900, lifetimeDefault: 28_800 } as const

/** An entrypoint: a relative path inside the bundle, without `.` or `..` segments. */
export const entrypointSchema = z
  .string()
  .min(1)
  .max(512)
  .regex(/^[A-Za-z0-9_@+=,-][A-Za-z0-9_@+=,.-]*(\/[A-Za-z0-9_@+=,.-]+)*$/, 'must be a relative path inside the bundle (letters, digits, _ @ + = , . - and /)')
  .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'must not have . or .. segments')

const seconds = (what: string, def: number) =>
  z
    .number()
    .int()
    .min(runtimeTimeoutBounds.min)
    .max(runtimeTimeoutBounds.max)
    .describe(`${what}, ${runtimeTimeoutBounds.min}-${runtimeTimeoutBounds.max} seconds; default ${def} (AWS's), or the previous version's.`)

/** `POST /v1/runtimes`: deploys a bundle as version 1 of a new runtime, or as the next version of the tenant's runtime of that name. */
export const deployRuntimeRequestSchema = z.strictObject({
  name: runtimeNameSchema,
  bundleId: z.string().regex(/^bnd_[0-9A-Za-z]{20}$/, 'is not a bundle id from POST /v1/runtime-bundles'),
  entrypoint: entrypointSchema
    .optional()
    .describe(
      'The file to run (.js/.mjs/.cjs/.ts: Node; .py: Python); default the previous version’s, else the first of index.js, main.py, app.py, agent.py, package.json’s main.',
    ),
  description: z.string().max(4096).optional(),
  protocol: z.enum(runtimeProtocols).optional().describe('HTTP (the runtime contract on 8080, default), MCP (/mcp on 8000) or A2A (9000).'),
  network: interpreterNetworkSchema.optional(),
  idleTimeoutSeconds: seconds('A runtime session without a request for this long is ended', runtimeTimeoutBounds.idleDefault).optional(),
  maxLifetimeSeconds: seconds('A runtime session is ended this long after it started', runtimeTimeoutBounds.lifetimeDefault).optional(),
  limits: limitsSchema.partial().optional().describe('Sandbox limits of its sessions; a field left out means the server default.'),
})
export type DeployRuntimeRequest = z.input<typeof deployRuntimeRequestSchema>

/** The settings of one version, as stored with it. */
export const runtimeSettingsSchema = z.object({
  entrypoint: z.string(),
  language: z.enum(runtimeLanguages),
  protocol: z.enum(runtimeProtocols),
  network: interpreterNetworkSchema,
  idleTimeoutSeconds: z.number(),
  maxLifetimeSeconds: z.number(),
  limits: limitsSchema.partial(),
})
export type RuntimeSettingsWire = z.infer<typeof runtimeSettingsSchema>

export const runtimeBundleSchema = z.object({ bundleId: z.string(), sha256: z.string(), bytes: z.number() })
export type RuntimeBundleInfo = z.infer<typeof runtimeBundleSchema>

export const runtimeVersionSchema = z.object({
  agentRuntimeVersion: z.string().describe('"1", "2", ... as AWS writes it'),
  createdAt: z.string(),
  settings: runtimeSettingsSchema,
  bundle: runtimeBundleSchema,
})
export type RuntimeVersionInfo = z.infer<typeof runtimeVersionSchema>

export const runtimeSchema = z.object({
  agentRuntimeArn: z.string(),
  agentRuntimeId: z.string(),
  agentRuntimeName: z.string(),
  agentRuntimeVersion: z.string().describe('The version the DEFAULT endpoint serves.'),
  latestVersion: z.string(),
  pinned: z.boolean().describe('True after a rollback: DEFAULT stays on agentRuntimeVersion until the next deploy.'),
  builtIn: z.boolean().describe('The codebox agent: listed, not deployable or deletable.'),
  description: z.string().optional(),
  status: z.enum(['READY']),
  createdAt: z.string(),
  lastUpdatedAt: z.string(),
  settings: runtimeSettingsSchema.optional().describe('The DEFAULT version’s settings (absent for the built-in agent).'),
})
export type RuntimeInfo = z.infer<typeof runtimeSchema>
export const runtimeListSchema = z.object({ items: z.array(runtimeSchema) })
export const runtimeVersionListSchema = z.object({ items: z.array(runtimeVersionSchema) })

export const rollbackRuntimeRequestSchema = z.strictObject({
  version: z.union([z.number().int().min(1), z.string().regex(/^[1-9][0-9]{0,8}$/, 'must be a version number')]).transform(Number),
})

export const runtimeSecretNameSchema = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,127}$/, 'must be a letter or _, then letters, digits and _ (at most 128)')
export const putRuntimeSecretRequestSchema = z.strictObject({ value: z.string().min(1).max(65_536) })
export const runtimeSecretSchema = z.object({ name: z.string(), updatedAt: z.string() })
export const runtimeSecretListSchema = z.object({ items: z.array(runtimeSecretSchema) })
export type RuntimeSecretInfo = z.infer<typeof runtimeSecretSchema>

/** AWS's runtime session id: 33-256 characters. */
export const runtimeSessionIdSchema = z.string().regex(/^[0-9a-zA-Z_.:-]{33,256}$/, 'must be 33-256 letters, digits, _ . : or -')

export const runtimeSessionSchema = z.object({
  runtimeSessionId: z.string(),
  agentRuntimeId: z.string(),
  agentRuntimeVersion: z.string(),
  sessionId: z.string().describe('The codebox session (sandbox) that runs the agent.'),
  startedAt: z.string(),
  lastInvocationAt: z.string(),
  activeInvocations: z.number().int(),
})
export type RuntimeSessionView = z.infer<typeof runtimeSessionSchema>
export const runtimeSessionListSchema = z.object({ items: z.array(runtimeSessionSchema) })

export const runtimeLogEntrySchema = z.object({
  runtimeSessionId: z.string(),
  sessionId: z.string(),
  agentRuntimeVersion: z.string(),
  startedAt: z.string(),
  endedAt: z.string().optional(),
  ended: z.string().optional().describe('Why the agent’s session ended.'),
  droppedBytes: z.number().int().describe('Output dropped from the start to keep the last CODEBOX_RUNTIME_LOG_MAX_BYTES (1 MiB).'),
  text: z.string().describe('What the agent printed (stdout and stderr, in arrival order).'),
})
export type RuntimeLogEntryView = z.infer<typeof runtimeLogEntrySchema>
export const runtimeLogListSchema = z.object({ items: z.array(runtimeLogEntrySchema) })
