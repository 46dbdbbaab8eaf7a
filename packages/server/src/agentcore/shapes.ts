/**
 * Request shapes of the AgentCore Code Interpreter API (data plane and control plane), as the
 * AWS service model defines them: field names, types, ranges and patterns. Fields AWS has and
 * codebox does not implement are accepted only when empty; codebox's own extensions (limits,
 * image, egress allow-list) ride along as extra fields that AWS clients never send.
 */
import { driverNameSchema, limitsSchema, preloadSchema, sessionStatuses } from '@codebox/core'
import { z } from 'zod'

/** The built-in interpreter's AWS identifier, an alias of codebox's own `codebox.v1`. */
export const awsBuiltInId = 'aws.codeinterpreter.v1'

const clientToken = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,256}$/, 'must be letters and digits, optionally with hyphens')
/** Certificates and filesystem configurations: not implemented, so only an empty list is accepted. */
const unsupportedList = (what: string) => z.array(z.unknown()).max(0, `${what} are not supported by codebox`).optional()

export const startBodySchema = z.object({
  name: z.string().min(1).max(100).optional(),
  sessionTimeoutSeconds: z.int().min(1).max(28800).optional(),
  clientToken: clientToken.optional(),
  certificates: unsupportedList('certificates'),
  filesystemConfigurations: unsupportedList('filesystemConfigurations'),
  /** codebox extension: per-session limits within the configured maxima. */
  limits: limitsSchema.partial().optional(),
})

export const listBodySchema = z.object({
  maxResults: z.int().min(1).max(100).optional(),
  nextToken: z.string().min(1).max(2048).optional(),
  status: z.enum(sessionStatuses).optional(),
})

export const stopBodySchema = z.object({ clientToken: clientToken.optional() })

export const sessionIdQuerySchema = z.object({
  sessionId: z.string().regex(/^[0-9a-zA-Z]{1,40}$/, 'must be 1-40 letters and digits'),
})

export const invokeBodySchema = z.object({
  name: z.string().min(1).max(100),
  arguments: z.record(z.string(), z.unknown()).optional(),
})

export const networkModes = ['SANDBOX', 'PUBLIC', 'VPC'] as const

export const createInterpreterBodySchema = z.object({
  name: z.string().regex(/^[a-zA-Z][a-zA-Z0-9_]{0,47}$/, 'must start with a letter and have 1-48 letters, digits and underscores'),
  description: z.string().min(1).max(4096).optional(),
  executionRoleArn: z.string().min(1).max(2048).optional(),
  networkConfiguration: z.object({
    networkMode: z.enum(networkModes),
    vpcConfig: z
      .object({
        securityGroups: z.array(z.string().min(1).max(128)).min(1).max(16),
        subnets: z.array(z.string().min(1).max(128)).min(1).max(16),
        requireServiceS3Endpoint: z.boolean().optional(),
      })
      .optional(),
  }),
  certificates: unsupportedList('certificates'),
  filesystemConfigurations: unsupportedList('filesystemConfigurations'),
  clientToken: clientToken.optional(),
  tags: z
    .record(z.string().min(1).max(128), z.string().max(256))
    .refine((t) => Object.keys(t).length <= 50, 'may have at most 50 tags')
    .optional(),
  /** codebox extension: what AWS clients cannot say. */
  codebox: z
    .strictObject({
      limits: limitsSchema.partial().optional(),
      image: z.literal('default').optional(),
      egressAllowList: z.array(z.string().min(1).max(300)).max(256).optional(),
      preload: preloadSchema.optional(),
      driver: driverNameSchema.optional(),
    })
    .optional(),
})

export const listInterpretersQuerySchema = z.object({
  maxResults: z.coerce.number().int().min(1).max(100).optional(),
  nextToken: z.string().min(1).max(2048).optional(),
  type: z.enum(['SYSTEM', 'CUSTOM']).optional(),
})

/** The tag through which an AWS client (which cannot send codebox's extension) gives a VPC allow-list. */
export const egressAllowTag = 'codebox:egress-allow'
