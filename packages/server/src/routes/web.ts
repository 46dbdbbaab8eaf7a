/**
 * The web IDE's files: the built page at `/` (never cached, so a rebuild shows at once), its
 * assets under `/app/` (content-hashed names, cached for a year), and the server's front page of
 * API links at `/about`. Only the files Vite wrote are served, from a list taken when the server
 * starts (and again when the build changes), so no request path ever reaches the file system.
 * Every other root path (`/ping`, `/invocations`, `/mcp`, `/v1`, ...) stays with its own route:
 * there is no catch-all fallback.
 */
import fs from 'node:fs'
import path from 'node:path'
import type { FastifyInstance, FastifyReply } from 'fastify'

/** The prefix of the IDE's assets; vite.config.ts builds into `dist/app/` with `base: '/app/'`. */
export const webAssetPrefix = '/app/'

/**
 * The IDE page's Content-Security-Policy: everything from this origin only. Monaco's workers are
 * module workers from `/app/` (`worker-src 'self'`); Monaco and Cloudscape inject style elements
 * (`style-src 'unsafe-inline'`); charts are `data:` images and downloads `blob:` URLs. No script
 * from a sandbox's output can run: scripts only from `/app/`, no inline script, no eval.
 */
export const webContentSecurityPolicy = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self' data:",
  "worker-src 'self'",
  "connect-src 'self'",
  "frame-src 'none'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

const types: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ttf': 'font/ttf',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
}

/** A Vite output name carries an 8+ character content hash before its extension: `index-B1x_9aZc.js`. */
const hashedName = /[-.][A-Za-z0-9_-]{8,}\.[a-z0-9]+$/

interface WebFiles {
  /** When index.html was last written; a change means a rebuild, so the list is taken again. */
  stamp: number
  index: Buffer
  /** URL path under /app/ → file on disk. */
  assets: Map<string, string>
}

/** Reads the build's file list; undefined when there is no build. */
function scan(webDir: string): WebFiles | undefined {
  const indexPath = path.join(webDir, 'index.html')
  let stamp: number
  try {
    stamp = fs.statSync(indexPath).mtimeMs
  } catch {
    return undefined
  }
  const assets = new Map<string, string>()
  const appDir = path.join(webDir, 'app')
  const walk = (dir: string, rel: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name)
      if (entry.isDirectory()) walk(full, `${rel}${entry.name}/`)
      else if (entry.isFile() && path.extname(entry.name) in types) assets.set(`${rel}${entry.name}`, full)
    }
  }
  if (fs.existsSync(appDir)) walk(appDir, '')
  return { stamp, index: fs.readFileSync(indexPath), assets }
}

/** The security headers every IDE response carries. */
function secure(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', webContentSecurityPolicy)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('cross-origin-opener-policy', 'same-origin')
}

/** The front page of API links, shown at `/about` (and at `/` when the IDE is not built). */
export function aboutPage(version: string, ideBuilt: boolean): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>codebox</title></head>
<body style="font:16px/1.5 system-ui,sans-serif;max-width:760px;margin:3em auto;padding:0 1em">
<h1>codebox ${version}</h1><p>A self-hosted code interpreter for AI agents. This server is up.</p>
<ul>${ideBuilt ? '<li><a href="/">Web IDE</a></li>' : '<li>Web IDE: not built here (<code>npm start</code> builds it; or <code>npm run build -w packages/web</code>)</li>'}
<li><a href="/docs">API reference</a> (<a href="/openapi.json">OpenAPI</a>)</li>
<li>AgentCore Code Interpreter API at <code>/code-interpreters</code>: point the AWS SDKs here (docs/agentcore.md)</li>
<li>MCP (Streamable HTTP) at <code>/mcp</code>; over stdio: <code>npx codebox mcp</code> (docs/mcp.md)</li>
<li>The codebox agent: <code>POST /invocations</code> (JSON or SSE) and <code>/ws</code>, the AgentCore Runtime contract; the IDE's <code>/v1/agent</code> routes (docs/agent.md)</li>
<li><a href="/ping">/ping</a> · <a href="/metrics">/metrics</a></li></ul>
<p>Try it: <code>npx codebox exec -l python 'print(6 * 7)'</code></p></body></html>`
}

/** Registers `/`, `/app/*` and `/about`. Public routes: the page asks for an API key itself when the server has keys. */
export function webRoutes(app: FastifyInstance, options: { webDir: string; version: string }): void {
  let files = scan(options.webDir)
  const current = (): WebFiles | undefined => {
    let stamp: number | undefined
    try {
      stamp = fs.statSync(path.join(options.webDir, 'index.html')).mtimeMs
    } catch {
      stamp = undefined
    }
    if (stamp !== files?.stamp) files = scan(options.webDir)
    return files
  }
  app.get('/', { config: { auth: false } }, async (_request, reply) => {
    const built = current()
    if (!built) return reply.type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(aboutPage(options.version, false))
    return secure(reply).type('text/html; charset=utf-8').header('cache-control', 'no-cache').send(built.index)
  })
  app.get('/about', { config: { auth: false } }, async (_request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-cache')
      .send(aboutPage(options.version, current() !== undefined)),
  )
  app.get(`${webAssetPrefix}*`, { config: { auth: false } }, async (request, reply) => {
    const rel = (request.params as { '*': string })['*']
    const file = current()?.assets.get(rel)
    if (file === undefined)
      return reply
        .code(404)
        .type('text/plain; charset=utf-8')
        .send(`no IDE asset ${webAssetPrefix}${rel.slice(0, 200)}`)
    const cache = hashedName.test(rel) ? 'public, max-age=31536000, immutable' : 'no-cache'
    return secure(reply)
      .type(types[path.extname(file)] ?? 'application/octet-stream')
      .header('cache-control', cache)
      .send(fs.createReadStream(file))
  })
}
