/**
 * Operations: `GET /ping` in the AgentCore runtime form, `GET /metrics` for Prometheus, the
 * OpenAPI document and its rendered reference page. The page at `/` is the web IDE (routes/web.ts).
 */
import { pingSchema } from '@codebox/core'
import type { FastifyInstance } from 'fastify'
import type { Metrics } from '../metrics.ts'
import { openApiDocument, referencePage } from '../openapi.ts'
import { route, type RouteRegistry } from '../http/route.ts'
import type { SessionService } from '../services/sessions.ts'

/** What else makes the server busy besides code calls: an agent turn (`AgentDoor.busy`). */
export interface OpsOptions {
  agentBusy?: () => boolean
}

export function opsRoutes(
  app: FastifyInstance,
  registry: RouteRegistry,
  sessions: SessionService,
  metrics: Metrics,
  version: string,
  options: OpsOptions = {},
): void {
  let status: 'Healthy' | 'HealthyBusy' = 'Healthy'
  let changedAt = Math.floor(Date.now() / 1000)
  const sample = (): void => {
    const busy = options.agentBusy?.() === true || sessions.busy
    const now = busy ? 'HealthyBusy' : 'Healthy'
    if (now !== status) {
      status = now
      changedAt = Math.floor(Date.now() / 1000)
    }
  }
  // Sampled every second as well as on each ping, so the time of a change does not wait for the next ping.
  const sampler = setInterval(sample, 1000).unref()
  app.addHook('onClose', async () => clearInterval(sampler))
  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/ping',
      operationId: 'ping',
      tag: 'Operations',
      summary: 'Health in the AgentCore runtime form',
      description: '`HealthyBusy` while any agent turn or any session’s call runs; `time_of_last_update` is when the status last changed (unix seconds).',
      auth: false,
      responses: { 200: { description: 'Healthy', schema: pingSchema } },
    },
    async () => {
      sample()
      return { status, time_of_last_update: changedAt }
    },
  )
  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/metrics',
      operationId: 'metrics',
      tag: 'Operations',
      summary: 'Prometheus metrics',
      auth: false,
      responses: { 200: { description: 'Prometheus text format', kind: 'text' } },
    },
    async ({ reply }) => reply.type(metrics.registry.contentType).send(await metrics.text()),
  )
  let doc: Record<string, unknown> | undefined
  const document = (): Record<string, unknown> => (doc ??= openApiDocument(registry, { version }))
  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/openapi.json',
      operationId: 'openapi',
      tag: 'Operations',
      summary: 'This API as OpenAPI 3.1',
      auth: false,
      responses: { 200: { description: 'The document', kind: 'json' } },
    },
    async () => document(),
  )
  route(
    app,
    registry,
    {
      method: 'GET',
      path: '/docs',
      operationId: 'reference',
      tag: 'Operations',
      summary: 'The API reference page',
      auth: false,
      responses: { 200: { description: 'HTML', kind: 'html' } },
    },
    async ({ reply }) => reply.type('text/html; charset=utf-8').send(referencePage(document())),
  )
}
