/**
 * Operations: `GET /ping` in the AgentCore runtime form, `GET /metrics` for Prometheus, the
 * OpenAPI document and its rendered reference page, and the landing page at `/`.
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
    const busy = options.agentBusy?.() === true || sessions.engine.list().some((s) => s.active > 0)
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
  app.get('/', { config: { auth: false } }, async (_request, reply) =>
    reply.type('text/html; charset=utf-8').send(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>codebox</title></head>
<body style="font:16px/1.5 system-ui,sans-serif;max-width:760px;margin:3em auto;padding:0 1em">
<h1>codebox ${version}</h1><p>A self-hosted code interpreter for AI agents. This server is up.</p>
<ul><li><a href="/docs">API reference</a> (<a href="/openapi.json">OpenAPI</a>)</li>
<li>AgentCore Code Interpreter API at <code>/code-interpreters</code>: point the AWS SDKs here (docs/agentcore.md)</li>
<li>MCP (Streamable HTTP) at <code>/mcp</code>; over stdio: <code>npx codebox mcp</code> (docs/mcp.md)</li>
<li>The codebox agent: <code>POST /invocations</code> (JSON or SSE) and <code>/ws</code>, the AgentCore Runtime contract; the IDE's <code>/v1/agent</code> routes (docs/agent.md)</li>
<li><a href="/ping">/ping</a> · <a href="/metrics">/metrics</a></li></ul>
<p>Try it: <code>npx codebox exec -l python 'print(6 * 7)'</code></p></body></html>`),
  )
}
