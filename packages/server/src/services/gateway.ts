/**
 * The model gateway: what sandbox agents reach at `http://codebox-gateway/<provider>/...` through
 * their egress listener (the egress service hands such requests here, with the listener's
 * identity). Pass-through per provider, no translation: `/anthropic/...` to the Anthropic API
 * with `x-api-key`, `/openai/...` to an OpenAI-compatible API with `Authorization: Bearer`,
 * `/bedrock/...` to the Bedrock runtime re-signed with SigV4. Whatever credentials the agent sent
 * are removed; the operator's (or a per-runtime override, `credentialsFor`) are added here, on the
 * host. Request bodies are bounded; responses stream back as they arrive, metered for tokens in a
 * bounded window (gateway-usage.ts). Usage is kept per session and per tag (runtime) for metrics.
 * No key ever appears in an answer, a log line or a metric.
 */
import http, { type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http'
import https from 'node:https'
import { SignatureV4 } from '@smithy/signature-v4'
import { CodeboxError } from '@codebox/core'
import type { GatewayHandler, GatewayIdentity } from '@codebox/sandbox'
import { readBody } from '../http/body.ts'
import { endToEnd, forwardHeaders, joinUrl, NodeSha256, reply } from './gateway-http.ts'
import { tokenMeter, type TokenCounts } from './gateway-usage.ts'

export type GatewayProvider = 'anthropic' | 'openai' | 'bedrock'
export const gatewayProviders: readonly GatewayProvider[] = ['anthropic', 'openai', 'bedrock']

export interface AwsCredentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string
}

/** The operator's gateway settings (config.ts reads them: docs/config.md, "Model gateway"). */
export interface GatewayConfig {
  /** `CODEBOX_GATEWAY_ANTHROPIC_URL` (default https://api.anthropic.com) and `ANTHROPIC_API_KEY`. */
  anthropic: { url: string; apiKey?: string }
  /** `CODEBOX_GATEWAY_OPENAI_URL` (default https://api.openai.com) and `OPENAI_API_KEY`. */
  openai: { url: string; apiKey?: string }
  /**
   * `CODEBOX_GATEWAY_BEDROCK_URL` (default `https://bedrock-runtime.<region>.amazonaws.com`),
   * `AWS_REGION` (or `AWS_DEFAULT_REGION`), and `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`.
   */
  bedrock: { url?: string; region?: string; credentials?: AwsCredentials }
  /** `CODEBOX_GATEWAY_MAX_BODY_BYTES`: largest request body an agent may send. Default 20 MiB. */
  maxBodyBytes: number
  /** `CODEBOX_GATEWAY_TIMEOUT_MS`: an upstream exchange with no bytes either way for this long is ended. Default 10 min. */
  timeoutMs: number
}

/** A credential for one provider: an API key (Anthropic, OpenAI) or AWS credentials (Bedrock). */
export type GatewayCredential = { apiKey: string } | { aws: AwsCredentials }

/**
 * Chooses the credential for a request: a per-runtime secret (by `identity.tag`), say. Undefined
 * means the operator's own (the default for every request when no hook is given).
 */
export type CredentialsFor = (identity: GatewayIdentity, provider: GatewayProvider) => GatewayCredential | undefined | Promise<GatewayCredential | undefined>

/** codebox's own APIs a hosted agent reaches through the gateway: `/agentcore` (the AgentCore API) and `/codebox` (the native API). */
export type LocalApi = 'agentcore' | 'codebox'

/**
 * Serves a request for one of codebox's own APIs; `req.url` is already the path on that API
 * (`/code-interpreters/...`, `/v1/...`) with its query. Set by the server (app.ts).
 */
export type LocalApiHandler = (api: LocalApi, req: IncomingMessage, res: ServerResponse, identity: GatewayIdentity) => void | Promise<void>

export interface ModelGatewayOptions {
  config: GatewayConfig
  credentialsFor?: CredentialsFor
  /** Sessions whose usage is kept (the oldest is forgotten past this). Default 10,000. */
  maxSessions?: number
}

/** What the gateway carried for a session, a runtime or a provider. Tokens count only what responses reported. */
export interface GatewayUsage {
  requests: number
  /** Requests that did not end in a 2xx/3xx answer passed back whole (refused, upstream 4xx/5xx, unreachable, cut off). */
  errors: number
  requestBytes: number
  responseBytes: number
  inputTokens: number
  outputTokens: number
}

/** One session's usage: in total and per provider. */
export interface GatewaySessionUsage {
  tag?: string
  total: GatewayUsage
  providers: Partial<Record<GatewayProvider, GatewayUsage>>
}

/** One row of the totals `/metrics` exports: per provider and runtime (the tag; '' without). */
export interface GatewayUsageRow {
  provider: GatewayProvider | 'none'
  runtime: string
  usage: Readonly<GatewayUsage>
}

const emptyUsage = (): GatewayUsage => ({ requests: 0, errors: 0, requestBytes: 0, responseBytes: 0, inputTokens: 0, outputTokens: 0 })

/** Distinct runtime labels in the metrics; later ones are counted under `other`. */
const maxRuntimeLabels = 1000
/** Largest upstream response head accepted. */
const maxResponseHeaderBytes = 64 * 1024

export class ModelGateway {
  /** Give this to the EgressService (`gateway` option). */
  readonly handler: GatewayHandler
  private readonly config: GatewayConfig
  private credentialsFor: CredentialsFor | undefined
  private local: LocalApiHandler | undefined
  private readonly maxSessions: number
  private readonly sessions = new Map<string, GatewaySessionUsage>()
  private readonly rows = new Map<string, GatewayUsageRow & { usage: GatewayUsage }>()
  private readonly agents = { http: new http.Agent({ keepAlive: true, maxSockets: 256 }), https: new https.Agent({ keepAlive: true, maxSockets: 256 }) }

  constructor(options: ModelGatewayOptions) {
    this.config = options.config
    this.credentialsFor = options.credentialsFor
    this.maxSessions = options.maxSessions ?? 10_000
    this.handler = (req, res, identity) => this.serve(req, res, identity)
  }
  /** Replaces the per-runtime credential hook (the server sets it once its runtime registry exists). */
  useCredentials(credentialsFor: CredentialsFor | undefined): void {
    this.credentialsFor = credentialsFor
  }

  /** Serves `/agentcore/...` and `/codebox/...` (the server sets it: codebox's own APIs as the agent's tenant). */
  useLocalApis(handler: LocalApiHandler | undefined): void {
    this.local = handler
  }

  /** A session's usage so far (kept after it ends until `forget` or eviction); undefined when it never used the gateway. */
  usage(sessionId: string): GatewaySessionUsage | undefined {
    const u = this.sessions.get(sessionId)
    return u && structuredClone(u)
  }

  /** Drops a session's usage record. */
  forget(sessionId: string): void {
    this.sessions.delete(sessionId)
  }

  /** Totals per provider and runtime since start, for `/metrics`. */
  totals(): GatewayUsageRow[] {
    return [...this.rows.values()]
  }

  /** Which providers have operator credentials configured (for a status page; never the keys). */
  configured(): Record<GatewayProvider, boolean> {
    const c = this.config
    return { anthropic: Boolean(c.anthropic.apiKey), openai: Boolean(c.openai.apiKey), bedrock: Boolean(c.bedrock.credentials && c.bedrock.region) }
  }

  /** Ends the upstream connections kept alive. */
  close(): void {
    this.agents.http.destroy()
    this.agents.https.destroy()
  }

  private async serve(req: IncomingMessage, res: ServerResponse, identity: GatewayIdentity): Promise<void> {
    let target: URL
    try {
      target = new URL(req.url ?? '')
    } catch {
      return reply(res, undefined, 400, 'the request URL is not an absolute http:// URL')
    }
    const own = /^\/(agentcore|codebox)(\/.*)?$/.exec(target.pathname)
    if (own) {
      // Not model traffic: neither metered nor given a provider's credentials.
      if (!this.local) return reply(res, undefined, 404, `this server does not serve /${own[1]!} through the gateway`)
      req.url = `${own[2] ?? '/'}${target.search}`
      return this.local(own[1] as LocalApi, req, res, identity)
    }
    const route = /^\/(anthropic|openai|bedrock)(\/.*)?$/.exec(target.pathname)
    const provider = route?.[1] as GatewayProvider | undefined
    const meter = this.account(identity, provider ?? 'none')
    meter.add({ requests: 1 })
    const fail = (status: number, message: string, headers: Record<string, string> = {}): void => {
      meter.failed()
      reply(res, provider, status, message, headers)
    }
    if (!provider)
      return fail(404, `no gateway route ${target.pathname.slice(0, 200)}: use /anthropic/..., /openai/..., /bedrock/..., /agentcore/... or /codebox/...`)
    const rest = `${route![2] ?? '/'}${target.search}`
    let body: Buffer
    try {
      body = await readBody(req, { maxBytes: this.config.maxBodyBytes, idleTimeoutMs: 30_000 })
    } catch (e) {
      const err = e instanceof CodeboxError ? e : undefined
      return fail(err?.status ?? 400, err ? err.message : 'the request body could not be read')
    }
    meter.add({ requestBytes: body.length })
    let upstream: { url: URL; headers: OutgoingHttpHeaders }
    try {
      upstream = await this.prepare(provider, identity, req, rest, body)
    } catch (e) {
      if (!(e instanceof CodeboxError)) throw e
      return fail(e.status, e.message)
    }
    await this.exchange({ provider, req, res, body, upstream, meter, fail })
  }

  /** The upstream URL and headers, credentials added (and, for Bedrock, signed). CodeboxError when the provider is not configured. */
  private async prepare(
    provider: GatewayProvider,
    identity: GatewayIdentity,
    req: IncomingMessage,
    rest: string,
    body: Buffer,
  ): Promise<{ url: URL; headers: OutgoingHttpHeaders }> {
    const headers = forwardHeaders(req.rawHeaders)
    headers['accept-encoding'] = 'identity' // so the response can be metered as it passes
    if (body.length || !['GET', 'HEAD'].includes(req.method ?? 'GET')) headers['content-length'] = String(body.length)
    const own = await this.credentialsFor?.(identity, provider)
    const c = this.config
    if (provider === 'anthropic' || provider === 'openai') {
      const apiKey = own && 'apiKey' in own ? own.apiKey : c[provider].apiKey
      const variable = provider === 'anthropic' ? 'ANTHROPIC_API_KEY' : 'OPENAI_API_KEY'
      if (!apiKey) throw notConfigured(`the model gateway has no ${provider} key: the operator sets ${variable} for the codebox server`)
      const url = joinUrl(c[provider].url, rest)
      if (provider === 'anthropic') headers['x-api-key'] = apiKey
      else headers.authorization = `Bearer ${apiKey}`
      return { url, headers }
    }
    for (const name of Object.keys(headers)) if (name.startsWith('x-amz-')) delete headers[name]
    const region = c.bedrock.region
    if (!region) throw notConfigured('the model gateway has no AWS region for Bedrock: the operator sets AWS_REGION for the codebox server')
    const credentials = own && 'aws' in own ? own.aws : c.bedrock.credentials
    if (!credentials)
      throw notConfigured(
        'the model gateway has no AWS credentials for Bedrock: the operator sets AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the codebox server',
      )
    const url = joinUrl(c.bedrock.url ?? `https://bedrock-runtime.${region}.amazonaws.com`, rest)
    const query: Record<string, string | string[]> = {}
    for (const [k, v] of url.searchParams) {
      const had = query[k]
      query[k] = had === undefined ? v : [...(Array.isArray(had) ? had : [had]), v]
    }
    const signer = new SignatureV4({ service: 'bedrock', region, credentials, sha256: NodeSha256 })
    const signed = await signer.sign({
      method: req.method ?? 'POST',
      protocol: url.protocol,
      hostname: url.hostname,
      ...(url.port ? { port: Number(url.port) } : {}),
      path: url.pathname,
      query,
      headers: { ...(headers as Record<string, string>), host: url.host },
      body,
    })
    return { url, headers: signed.headers }
  }

  /** Sends the request upstream and streams the answer back, metering it. */
  private exchange(x: {
    provider: GatewayProvider
    req: IncomingMessage
    res: ServerResponse
    body: Buffer
    upstream: { url: URL; headers: OutgoingHttpHeaders }
    meter: Meter
    fail: (status: number, message: string) => void
  }): Promise<void> {
    const { provider, req, res, upstream, meter } = x
    const secure = upstream.url.protocol === 'https:'
    return new Promise((resolve) => {
      const out = (secure ? https : http).request(upstream.url, {
        method: req.method ?? 'POST',
        headers: upstream.headers,
        agent: secure ? this.agents.https : this.agents.http,
        maxHeaderSize: maxResponseHeaderBytes,
      })
      let answered = false
      out.setTimeout(this.config.timeoutMs, () => out.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })))
      out.on('error', (e: NodeJS.ErrnoException) => {
        if (!answered) {
          answered = true
          const code = e.code ?? 'error'
          const status = code === 'ETIMEDOUT' ? 504 : 502
          x.fail(status, `the ${provider} upstream ${upstream.url.host} could not be reached (${code})`)
        } else {
          meter.failed()
          res.destroy()
        }
        resolve()
      })
      out.on('response', (up) => {
        answered = true
        const status = up.statusCode ?? 502
        if (status >= 400) meter.failed()
        const tokens = tokenMeter(up.headers['content-type'], up.headers)
        // HTTP/2 (the AWS SDK for JavaScript's Bedrock client) has no status message.
        if (req.httpVersionMajor === 2) res.writeHead(status, endToEnd(up.rawHeaders))
        else res.writeHead(status, up.statusMessage, endToEnd(up.rawHeaders))
        res.flushHeaders()
        up.on('data', (chunk: Buffer) => {
          meter.add({ responseBytes: chunk.length })
          tokens.push(chunk)
        })
        up.on('end', () => meter.tokens(tokens.result()))
        up.on('error', () => {
          meter.failed()
          res.destroy()
        })
        up.pipe(res)
        res.once('close', () => {
          if (!up.complete) up.destroy()
          resolve()
        })
      })
      res.once('close', () => {
        if (!res.writableFinished) out.destroy()
        if (!answered) resolve()
      })
      out.end(x.body)
    })
  }

  /** Where a request's usage goes: its session's record and its provider and runtime row. */
  private account(identity: GatewayIdentity, provider: GatewayProvider | 'none'): Meter {
    const targets: GatewayUsage[] = [this.row(provider, identity.tag ?? '').usage]
    if (identity.sessionId) {
      let s = this.sessions.get(identity.sessionId)
      if (!s) {
        if (this.sessions.size >= this.maxSessions) this.sessions.delete(this.sessions.keys().next().value!)
        s = { ...(identity.tag ? { tag: identity.tag } : {}), total: emptyUsage(), providers: {} }
        this.sessions.set(identity.sessionId, s)
      }
      targets.push(s.total)
      if (provider !== 'none') targets.push((s.providers[provider] ??= emptyUsage()))
    }
    let failed = false
    return {
      add(delta) {
        for (const t of targets) for (const [k, v] of Object.entries(delta) as [keyof GatewayUsage, number][]) t[k] += v
      },
      failed() {
        if (!failed) this.add({ errors: 1 })
        failed = true
      },
      tokens(counts: TokenCounts) {
        this.add({ inputTokens: counts.input ?? 0, outputTokens: counts.output ?? 0 })
      },
    }
  }

  private row(provider: GatewayProvider | 'none', tag: string): GatewayUsageRow & { usage: GatewayUsage } {
    let runtime = tag
    if (!this.rows.has(`${provider}\0${runtime}`) && new Set([...this.rows.values()].map((r) => r.runtime)).size >= maxRuntimeLabels) runtime = 'other'
    const key = `${provider}\0${runtime}`
    let row = this.rows.get(key)
    if (!row) this.rows.set(key, (row = { provider, runtime, usage: emptyUsage() }))
    return row
  }
}

interface Meter {
  add(delta: Partial<GatewayUsage>): void
  /** Counts this request as an error, once whatever else goes wrong. */
  failed(): void
  tokens(counts: TokenCounts): void
}

const notConfigured = (message: string): CodeboxError => new CodeboxError('Unavailable', message)
