/**
 * The OpenAPI 3.1 document of the native API, generated from the routes' own zod schemas
 * (RouteRegistry), and a self-contained HTML reference page rendered from it (no scripts, no
 * network: it works on an offline machine).
 */
import { errorBodySchema } from '@codebox/core'
import { z } from 'zod'
import type { RouteRegistry, RouteSpec } from './http/route.ts'

type Json = Record<string, unknown>

const jsonSchema = (schema: z.ZodType, io: 'input' | 'output'): Json => {
  const s = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Json
  delete s.$schema
  return s
}

export function openApiDocument(registry: RouteRegistry, info: { version: string }): Json {
  const paths: Record<string, Record<string, Json>> = {}
  for (const r of registry.routes) {
    const op: Json = {
      operationId: r.operationId,
      summary: r.summary,
      ...(r.description ? { description: r.description } : {}),
      tags: [r.tag],
      parameters: [...parameters(r, 'path'), ...parameters(r, 'query'), ...headerParameters(r)],
      responses: responses(r),
      ...(r.auth === false ? { security: [] } : {}),
    }
    if (r.body === 'binary') op.requestBody = { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } }
    else if (r.body) op.requestBody = { required: true, content: { 'application/json': { schema: jsonSchema(r.body, 'input') } } }
    ;(paths[r.path] ??= {})[r.method.toLowerCase()] = op
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'codebox API',
      version: info.version,
      description:
        'The native REST API v1 of codebox: sessions, tool invocation (JSON or SSE), streaming files, interpreters and the audit log. Errors are `{error: {code, message, details, requestId}}`; see docs/errors.md.',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }],
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'An API key from `codebox keys create`; not needed on an open loopback server.' },
      },
      schemas: { Error: jsonSchema(errorBodySchema, 'output') },
    },
    paths,
  }
}

function parameters(r: RouteSpec, where: 'path' | 'query'): Json[] {
  const schema = where === 'path' ? r.params : r.query
  if (!schema || !(schema instanceof z.ZodObject)) return []
  return Object.entries(schema.shape as Record<string, z.ZodType>).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' || !s.safeParse(undefined).success,
    schema: jsonSchema(s, 'input'),
    ...(where === 'path' && name === 'path' ? { description: 'A path under the working directory; may contain slashes.' } : {}),
  }))
}

function headerParameters(r: RouteSpec): Json[] {
  return Object.entries(r.headers ?? {}).map(([name, description]) => ({ name, in: 'header', required: true, description, schema: { type: 'string' } }))
}

function responses(r: RouteSpec): Json {
  const out: Json = {}
  for (const [status, res] of Object.entries(r.responses)) {
    const code = Number(status)
    const kind = res.kind ?? (res.schema ? 'json' : code >= 400 ? 'json' : 'empty')
    // An SSE stream is documented as a 200 alternative of the JSON result.
    const key = kind === 'sse' ? '200' : status
    const content: Json =
      code >= 400
        ? { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } }
        : kind === 'json' && res.schema
          ? { 'application/json': { schema: jsonSchema(res.schema, 'output') } }
          : kind === 'sse'
            ? { 'text/event-stream': { schema: res.schema ? jsonSchema(res.schema, 'output') : { type: 'string' } } }
            : kind === 'binary'
              ? { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } }
              : kind === 'text'
                ? { 'text/plain': { schema: { type: 'string' } } }
                : kind === 'html'
                  ? { 'text/html': { schema: { type: 'string' } } }
                  : {}
    const existing = out[key] as { description: string; content?: Json } | undefined
    if (existing) existing.content = { ...existing.content, ...content }
    else out[key] = { description: res.description, ...(Object.keys(content).length ? { content } : {}) }
  }
  return out
}

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

/** The API reference as one HTML page, rendered from the OpenAPI document. */
export function referencePage(doc: Json): string {
  const info = doc.info as { title: string; version: string; description: string }
  const byTag = new Map<string, string[]>()
  for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, Json>>)) {
    for (const [method, op] of Object.entries(ops)) {
      const tag = (op.tags as string[])[0] ?? 'Other'
      const params = (op.parameters as Json[]).map(
        (p) =>
          `<tr><td><code>${esc(String(p.name))}</code></td><td>${esc(String(p.in))}</td><td>${p.required ? 'yes' : ''}</td><td><code>${esc(JSON.stringify(p.schema))}</code> ${esc(String(p.description ?? ''))}</td></tr>`,
      )
      const body = (op.requestBody as { content: Record<string, { schema: unknown }> } | undefined)?.content
      const res = Object.entries(op.responses as Record<string, { description: string; content?: Record<string, { schema: unknown }> }>)
      const html = `<section id="${esc(String(op.operationId))}">
<h3><span class="m ${method}">${method.toUpperCase()}</span> <code>${esc(path)}</code></h3>
<p><b>${esc(String(op.summary))}</b>${op.description ? ` — ${esc(String(op.description))}` : ''}</p>
${params.length ? `<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th></tr>${params.join('')}</table>` : ''}
${
  body
    ? Object.entries(body)
        .map(
          ([type, c]) =>
            `<details open><summary>Request body <code>${esc(type)}</code></summary><pre>${esc(JSON.stringify(c.schema, null, 2))}</pre></details>`,
        )
        .join('')
    : ''
}
${res
  .map(
    ([status, r]) =>
      `<details${status.startsWith('2') ? '' : ''}><summary><b>${status}</b> ${esc(r.description)}</summary>${Object.entries(r.content ?? {})
        .map(([type, c]) => `<p><code>${esc(type)}</code></p><pre>${esc(JSON.stringify(c.schema, null, 2))}</pre>`)
        .join('')}</details>`,
  )
  .join('')}
</section>`
      byTag.set(tag, [...(byTag.get(tag) ?? []), html])
    }
  }
  const nav = [...byTag.keys()].map((t) => `<a href="#tag-${esc(t)}">${esc(t)}</a>`).join(' · ')
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(info.title)} reference</title>
<meta name="viewport" content="width=device-width,initial-scale=1">
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#16191f}
code,pre{font-family:ui-monospace,monospace;font-size:13px}pre{background:#f4f4f4;padding:.6em;overflow:auto;max-height:30em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}
section{border-top:1px solid #ddd;padding:.5em 0}.m{display:inline-block;min-width:4.5em;color:#fff;border-radius:3px;padding:0 .3em;font-size:13px;text-align:center}
.get{background:#1d8102}.post{background:#0972d3}.put{background:#8a5b00}.delete{background:#d91515}</style></head><body>
<h1>${esc(info.title)} <small>${esc(info.version)}</small></h1><p>${esc(info.description)}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>. ${nav}</p>
${[...byTag.entries()].map(([tag, ops]) => `<h2 id="tag-${esc(tag)}">${esc(tag)}</h2>${ops.join('\n')}`).join('\n')}
</body></html>`
}
