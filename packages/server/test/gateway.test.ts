/**
 * The model gateway on the host, against scripted upstreams on 127.0.0.1 that check what the
 * gateway added: the operator's Anthropic key replacing the agent's, the OpenAI bearer token, a
 * Bedrock request re-signed with the operator's AWS credentials (the signature recomputed here);
 * SSE and event streams passed on incrementally; token usage per session and runtime, in
 * /metrics; clear answers when a provider is not configured, the upstream is unreachable or a
 * body is too large, none of them carrying a key. Requests go through a real egress listener
 * (the way sandboxes reach the gateway); the official SDKs drive it from the host through a
 * loopback shim that gives the handler a fixed identity.
 */
import assert from 'node:assert/strict'
import { crc32 } from 'node:zlib'
import http, { request, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, test } from 'node:test'
import { SignatureV4 } from '@smithy/signature-v4'
import { Sha256 } from '@aws-crypto/sha256-js'
import Anthropic from '@anthropic-ai/sdk'
import OpenAI from 'openai'
import { BedrockRuntimeClient, ConverseStreamCommand } from '@aws-sdk/client-bedrock-runtime'
import { NodeHttpHandler } from '@smithy/node-http-handler'
import { defaultLimits } from '@codebox/core'
import { EgressService, type AdoptRecord, type EgressListener, type SessionManager } from '@codebox/sandbox'
import { Metrics } from '../src/metrics.ts'
import { SessionService } from '../src/services/sessions.ts'
import { builtInInterpreterId, Store } from '../src/store/index.ts'
import { ModelGateway, type GatewayConfig } from '../src/services/gateway.ts'

const keys = {
  anthropic: 'sk-ant-OPERATOR-SECRET-1234567890',
  openai: 'sk-OPERATOR-SECRET-abcdef',
  aws: { accessKeyId: 'AKIAOPERATORSECRET01', secretAccessKey: 'OPERATOR-aws-SECRET-key-0123456789' },
}
const secrets = [keys.anthropic, keys.openai, keys.aws.secretAccessKey]

interface Seen {
  method: string
  url: string
  headers: IncomingMessage['headers']
  body: Buffer
}

/** A scripted upstream: records each request, answers with `answer`. */
async function upstream(answer: (req: Seen, res: ServerResponse) => void | Promise<void>): Promise<{ url: string; seen: Seen[]; close(): void }> {
  const seen: Seen[] = []
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = []
    req.on('data', (c: Buffer) => parts.push(c))
    req.on('end', () => {
      const s = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(parts) }
      seen.push(s)
      void answer(s, res)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => (server.closeAllConnections(), server.close()),
  }
}

/** One AWS event-stream message with string headers and a JSON payload. */
function eventMessage(type: string, payload: unknown): Buffer {
  const hs: Buffer[] = []
  for (const [n, v] of Object.entries({ ':event-type': type, ':content-type': 'application/json', ':message-type': 'event' })) {
    const name = Buffer.from(n)
    const value = Buffer.from(v)
    const h = Buffer.alloc(4 + name.length)
    h.writeUInt8(name.length, 0)
    name.copy(h, 1)
    h.writeUInt8(7, 1 + name.length)
    h.writeUInt16BE(value.length, 2 + name.length)
    hs.push(h, value)
  }
  const headers = Buffer.concat(hs)
  const body = Buffer.from(JSON.stringify(payload))
  const prelude = Buffer.alloc(12)
  prelude.writeUInt32BE(16 + headers.length + body.length, 0)
  prelude.writeUInt32BE(headers.length, 4)
  prelude.writeUInt32BE(crc32(prelude.subarray(0, 8)), 8)
  const m = Buffer.concat([prelude, headers, body, Buffer.alloc(4)])
  m.writeUInt32BE(crc32(m.subarray(0, m.length - 4)), m.length - 4)
  return m
}

/** Sends a request through an egress listener (as the sandbox's relay does); resolves at the response head. */
function send(
  socketPath: string,
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: init.method ?? 'POST', path: url, headers: init.headers ?? {} }, resolve)
    req.on('error', reject)
    req.end(init.body)
  })
}

const text = async (res: IncomingMessage): Promise<string> => {
  let s = ''
  for await (const c of res) s += (c as Buffer).toString('utf8')
  return s
}

function config(over: Partial<GatewayConfig> = {}): GatewayConfig {
  return {
    anthropic: { url: 'http://127.0.0.1:9', apiKey: keys.anthropic },
    openai: { url: 'http://127.0.0.1:9', apiKey: keys.openai },
    bedrock: { url: 'http://127.0.0.1:9', region: 'us-west-2', credentials: keys.aws },
    maxBodyBytes: 64 * 1024,
    timeoutMs: 30_000,
    ...over,
  }
}

const dir = mkdtempSync(path.join(tmpdir(), 'codebox-gateway-'))
after(() => rmSync(dir, { recursive: true, force: true }))

/** A gateway behind a real egress listener opened for session `sess-1`, tag `rt-1`. */
async function gatewayBehindListener(cfg: GatewayConfig): Promise<{ gateway: ModelGateway; listener: EgressListener; close(): void }> {
  const gateway = new ModelGateway({ config: cfg })
  const egress = new EgressService({ socketDir: path.join(dir, `s${Math.random().toString(36).slice(2, 8)}`), gateway: gateway.handler })
  const listener = await egress.open({ sandboxId: 'sb1', sessionId: 'sess-1', policy: { mode: 'none', allow: [] }, gateway: { tag: 'rt-1' } })
  return { gateway, listener, close: () => (egress.close(), gateway.close()) }
}

describe('model gateway (host side, scripted upstreams)', () => {
  test('Anthropic: the agent key is replaced by the operator key; JSON usage is counted', async () => {
    const up = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_1' })
      res.end(JSON.stringify({ id: 'msg_1', type: 'message', content: [{ type: 'text', text: 'hi' }], usage: { input_tokens: 11, output_tokens: 7 } }))
    })
    const g = await gatewayBehindListener(config({ anthropic: { url: up.url, apiKey: keys.anthropic } }))
    try {
      const res = await send(g.listener.socketPath, 'http://codebox-gateway/anthropic/v1/messages?beta=true', {
        headers: { 'x-api-key': 'agent-own-key', authorization: 'Bearer agent-token', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
        body: '{"model":"m","max_tokens":5,"messages":[]}',
      })
      assert.equal(res.statusCode, 200)
      assert.equal(res.headers['request-id'], 'req_1')
      assert.match(await text(res), /"msg_1"/)
      const s = up.seen[0]!
      assert.equal(s.url, '/v1/messages?beta=true')
      assert.equal(s.headers['x-api-key'], keys.anthropic)
      assert.equal(s.headers.authorization, undefined)
      assert.equal(s.headers['anthropic-version'], '2023-06-01')
      assert.equal(s.body.toString(), '{"model":"m","max_tokens":5,"messages":[]}')
      const usage = g.gateway.usage('sess-1')!
      const a = usage.providers.anthropic!
      assert.deepEqual([a.requests, a.errors, a.requestBytes, a.inputTokens, a.outputTokens], [1, 0, 42, 11, 7])
      assert.ok(a.responseBytes > 50 && usage.total.responseBytes === a.responseBytes)
      assert.equal(usage.tag, 'rt-1')
    } finally {
      g.close()
      up.close()
    }
  })

  test('Anthropic SSE streams through incrementally, and its usage is read from message_start/message_delta', async () => {
    let release!: () => void
    const released = new Promise<void>((r) => (release = r))
    let finished = false
    const up = await upstream(async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(`event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { usage: { input_tokens: 25, output_tokens: 1 } } })}\n\n`)
      await released // the client must have the first event before the upstream goes on
      res.write(`event: message_delta\ndata: ${JSON.stringify({ type: 'message_delta', usage: { output_tokens: 9 } })}\n\n`)
      res.end('event: message_stop\ndata: {"type":"message_stop"}\n\n')
      finished = true
    })
    const g = await gatewayBehindListener(config({ anthropic: { url: up.url, apiKey: keys.anthropic } }))
    try {
      const res = await send(g.listener.socketPath, 'http://codebox-gateway/anthropic/v1/messages', { body: '{"stream":true}' })
      const it = res[Symbol.asyncIterator]()
      const first = await Promise.race([
        it.next(),
        new Promise<never>((_, r) => setTimeout(() => r(new Error('no first chunk within 10 s: buffered?')), 10_000)),
      ])
      assert.match((first.value as Buffer).toString(), /message_start/)
      assert.equal(finished, false, 'the upstream had already finished')
      release()
      let rest = ''
      for (let n = await it.next(); !n.done; n = await it.next()) rest += (n.value as Buffer).toString()
      assert.match(rest, /message_stop/)
      await new Promise((r) => setTimeout(r, 50))
      const usage = g.gateway.usage('sess-1')!.providers.anthropic!
      assert.equal(usage.inputTokens, 25)
      assert.equal(usage.outputTokens, 9)
    } finally {
      g.close()
      up.close()
    }
  })

  test('OpenAI: Bearer operator key, path after /openai kept; Bedrock: re-signed by the operator, event stream metered', async () => {
    const oa = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ id: 'c1', choices: [], usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 } }))
    })
    const br = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream' })
      res.write(eventMessage('messageStart', { role: 'assistant' }))
      res.write(eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'hello' } }))
      res.end(eventMessage('metadata', { usage: { inputTokens: 13, outputTokens: 17, totalTokens: 30 }, metrics: { latencyMs: 1 } }))
    })
    const g = await gatewayBehindListener(
      config({ openai: { url: `${oa.url}/proxy`, apiKey: keys.openai }, bedrock: { url: br.url, region: 'us-west-2', credentials: keys.aws } }),
    )
    try {
      const o = await send(g.listener.socketPath, 'http://codebox-gateway/openai/v1/chat/completions', {
        headers: { authorization: 'Bearer codebox-gateway', 'openai-organization': 'org-agent', 'content-type': 'application/json' },
        body: '{"model":"gpt"}',
      })
      assert.equal(o.statusCode, 200)
      await text(o)
      assert.equal(oa.seen[0]!.url, '/proxy/v1/chat/completions')
      assert.equal(oa.seen[0]!.headers.authorization, `Bearer ${keys.openai}`)
      assert.equal(oa.seen[0]!.headers['openai-organization'], undefined)

      const body = '{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'
      const b = await send(g.listener.socketPath, 'http://codebox-gateway/bedrock/model/us.anthropic.claude%3A0/converse-stream', {
        headers: {
          authorization: 'AWS4-HMAC-SHA256 Credential=codebox-gateway/20250101/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00',
          'x-amz-date': '20250101T000000Z',
          'x-amz-security-token': 'agent-token',
          'content-type': 'application/json',
        },
        body,
      })
      assert.equal(b.statusCode, 200)
      const frames = await text(b)
      assert.match(frames, /hello/)
      const s = br.seen[0]!
      assert.equal(s.url, '/model/us.anthropic.claude%3A0/converse-stream')
      assert.equal(s.headers['x-amz-security-token'], undefined)
      const auth = String(s.headers.authorization)
      assert.match(
        auth,
        new RegExp(`^AWS4-HMAC-SHA256 Credential=${keys.aws.accessKeyId}/\\d{8}/us-west-2/bedrock/aws4_request, SignedHeaders=[^,]+, Signature=[0-9a-f]{64}$`),
      )
      // The signature is what the operator's credentials give for the request as it arrived.
      const amzDate = String(s.headers['x-amz-date'])
      const signingDate = new Date(`${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`)
      const signedHeaders = /SignedHeaders=([^,]+)/.exec(auth)![1]!.split(';')
      const check = await new SignatureV4({ service: 'bedrock', region: 'us-west-2', credentials: keys.aws, sha256: Sha256 }).sign(
        {
          method: 'POST',
          protocol: 'http:',
          hostname: '127.0.0.1',
          port: Number(new URL(br.url).port),
          path: '/model/us.anthropic.claude%3A0/converse-stream',
          query: {},
          headers: Object.fromEntries(signedHeaders.map((h) => [h, String(s.headers[h])])),
          body: s.body,
        },
        { signingDate },
      )
      assert.equal(auth, check.headers.authorization)
      await new Promise((r) => setTimeout(r, 50))
      const usage = g.gateway.usage('sess-1')!
      assert.deepEqual([usage.providers.openai?.inputTokens, usage.providers.openai?.outputTokens], [3, 4])
      assert.deepEqual([usage.providers.bedrock?.inputTokens, usage.providers.bedrock?.outputTokens], [13, 17])
      assert.equal(usage.total.requests, 2)
    } finally {
      g.close()
      oa.close()
      br.close()
    }
  })

  test('not configured, unreachable, unknown route, too large, upstream error: clear answers without keys, counted as errors', async () => {
    const failing = await upstream((_req, res) => {
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '3' })
      res.end('{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}')
    })
    const g = await gatewayBehindListener(
      config({
        anthropic: { url: failing.url, apiKey: keys.anthropic },
        openai: { url: 'http://127.0.0.1:9' },
        bedrock: { url: 'http://127.0.0.1:1', region: 'us-west-2', credentials: keys.aws },
      }),
    )
    try {
      const sock = g.listener.socketPath
      const limited = await send(sock, 'http://codebox-gateway/anthropic/v1/messages', { body: '{}' })
      assert.equal(limited.statusCode, 429)
      assert.equal(limited.headers['retry-after'], '3')
      assert.match(await text(limited), /slow down/)

      const noKey = await send(sock, 'http://codebox-gateway/openai/v1/chat/completions', { body: '{}' })
      assert.equal(noKey.statusCode, 503)
      const noKeyBody = JSON.parse(await text(noKey)) as { error: { message: string } }
      assert.match(noKeyBody.error.message, /no openai key: the operator sets OPENAI_API_KEY/)

      const down = await send(sock, 'http://codebox-gateway/bedrock/model/m/converse', { body: '{}' })
      assert.equal(down.statusCode, 502)
      assert.equal(down.headers['x-amzn-errortype'], 'InternalServerException')
      assert.match((JSON.parse(await text(down)) as { message: string }).message, /bedrock upstream 127\.0\.0\.1:1 could not be reached \(ECONNREFUSED\)/)

      const lost = await send(sock, 'http://codebox-gateway/gemini/v1/x', { body: '{}' })
      assert.equal(lost.statusCode, 404)
      assert.match(await text(lost), /use \/anthropic\/\.\.\., \/openai\/\.\.\., \/bedrock\/\.\.\., \/agentcore\/\.\.\. or \/codebox\/\.\.\./)

      const big = await send(sock, 'http://codebox-gateway/anthropic/v1/messages', { body: Buffer.alloc(65 * 1024, 'a') })
      assert.equal(big.statusCode, 413)
      const bigBody = JSON.parse(await text(big)) as { error: { type: string; message: string } }
      assert.equal(bigBody.error.type, 'request_too_large')
      assert.equal(failing.seen.length, 1, 'an oversized body went upstream')

      const all = [noKeyBody, bigBody].map((b) => JSON.stringify(b)).join()
      for (const k of secrets) assert.ok(!all.includes(k), 'a key appeared in an answer')
      const usage = g.gateway.usage('sess-1')!
      assert.equal(usage.total.requests, 5)
      assert.equal(usage.total.errors, 5)
      const rows = g.gateway.totals()
      assert.deepEqual(rows.map((r) => [r.provider, r.runtime, r.usage.requests]).sort(), [
        ['anthropic', 'rt-1', 2],
        ['bedrock', 'rt-1', 1],
        ['none', 'rt-1', 1],
        ['openai', 'rt-1', 1],
      ])
      const metrics = new Metrics({
        liveSessions: () => 0,
        startingSessions: () => 0,
        warmSandboxes: () => 0,
        egressRequests: () => ({ allowed: 0, denied: 0 }),
        gatewayUsage: () => g.gateway.totals(),
      })
      const exported = await metrics.text()
      assert.match(exported, /codebox_gateway_requests_total\{provider="anthropic",runtime="rt-1"\} 2/)
      assert.match(exported, /codebox_gateway_errors_total\{provider="openai",runtime="rt-1"\} 1/)
      assert.ok(!exported.includes('sess-1'), 'session ids are no metric labels')
      for (const k of secrets) assert.ok(!exported.includes(k))
    } finally {
      g.close()
      failing.close()
    }
  })
})

describe('model gateway (official SDKs, from the host)', () => {
  let shim: http.Server
  let base: string
  let gateway: ModelGateway
  const ups: Awaited<ReturnType<typeof upstream>>[] = []

  before(async () => {
    const sse = (res: ServerResponse, events: [string, unknown][]): void => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      for (const [event, data] of events) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`)
      res.end()
    }
    const anthropic = await upstream((_req, res) =>
      sse(res, [
        [
          'message_start',
          {
            type: 'message_start',
            message: {
              id: 'msg_sdk',
              type: 'message',
              role: 'assistant',
              content: [],
              model: 'claude-test',
              stop_reason: null,
              stop_sequence: null,
              usage: { input_tokens: 5, output_tokens: 1 },
            },
          },
        ],
        ['content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }],
        ['content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'from anthropic' } }],
        ['content_block_stop', { type: 'content_block_stop', index: 0 }],
        ['message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 3 } }],
        ['message_stop', { type: 'message_stop' }],
      ]),
    )
    const openai = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(
        JSON.stringify({
          id: 'chatcmpl-1',
          object: 'chat.completion',
          created: 1,
          model: 'gpt-test',
          choices: [{ index: 0, message: { role: 'assistant', content: 'from openai' }, finish_reason: 'stop', logprobs: null }],
          usage: { prompt_tokens: 6, completion_tokens: 2, total_tokens: 8 },
        }),
      )
    })
    const bedrock = await upstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream' })
      res.write(eventMessage('messageStart', { role: 'assistant' }))
      res.write(eventMessage('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'from bedrock' } }))
      res.write(eventMessage('contentBlockStop', { contentBlockIndex: 0 }))
      res.write(eventMessage('messageStop', { stopReason: 'end_turn' }))
      res.end(eventMessage('metadata', { usage: { inputTokens: 7, outputTokens: 4, totalTokens: 11 }, metrics: { latencyMs: 1 } }))
    })
    ups.push(anthropic, openai, bedrock)
    gateway = new ModelGateway({
      config: config({
        anthropic: { url: anthropic.url, apiKey: keys.anthropic },
        openai: { url: openai.url, apiKey: keys.openai },
        bedrock: { url: bedrock.url, region: 'us-west-2', credentials: keys.aws },
      }),
    })
    // The SDKs speak origin-form to a base URL: the shim turns that into the absolute URI the proxy hands over.
    shim = http.createServer((req, res) => {
      req.url = `http://codebox-gateway${req.url ?? '/'}`
      void gateway.handler(req, res, { sandboxId: 'sdk', sessionId: 'sdk-session', tag: 'sdk-runtime' })
    })
    await new Promise<void>((r) => shim.listen(0, '127.0.0.1', r))
    base = `http://127.0.0.1:${(shim.address() as AddressInfo).port}`
  })

  after(() => {
    shim?.closeAllConnections()
    shim?.close()
    gateway?.close()
    for (const u of ups) u.close()
  })

  test('@anthropic-ai/sdk streams a message through the gateway', async () => {
    const client = new Anthropic({ baseURL: `${base}/anthropic`, apiKey: 'codebox-gateway', maxRetries: 0 })
    const stream = client.messages.stream({ model: 'claude-test', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] })
    const message = await stream.finalMessage()
    const block = message.content[0]
    assert.equal(block?.type === 'text' ? block.text : block?.type, 'from anthropic')
    assert.equal(ups[0]!.seen.at(-1)!.headers['x-api-key'], keys.anthropic)
  })

  test('openai chat.completions goes through the gateway', async () => {
    const client = new OpenAI({ baseURL: `${base}/openai/v1`, apiKey: 'codebox-gateway', maxRetries: 0 })
    const r = await client.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] })
    assert.equal(r.choices[0]?.message.content, 'from openai')
    assert.equal(ups[1]!.seen.at(-1)!.headers.authorization, `Bearer ${keys.openai}`)
    assert.equal(ups[1]!.seen.at(-1)!.url, '/v1/chat/completions')
  })

  test('@aws-sdk/client-bedrock-runtime ConverseStream (HTTP/1.1) goes through the gateway, re-signed', async () => {
    const client = new BedrockRuntimeClient({
      endpoint: `${base}/bedrock`,
      region: 'us-east-1',
      credentials: { accessKeyId: 'codebox-gateway', secretAccessKey: 'codebox-gateway-placeholder-not-a-secret' },
      requestHandler: new NodeHttpHandler(),
      maxAttempts: 1,
    })
    try {
      const out = await client.send(
        new ConverseStreamCommand({ modelId: 'us.anthropic.claude-test:0', messages: [{ role: 'user', content: [{ text: 'hi' }] }] }),
      )
      let textOut = ''
      let tokens: number | undefined
      for await (const e of out.stream ?? []) {
        if (e.contentBlockDelta?.delta?.text) textOut += e.contentBlockDelta.delta.text
        if (e.metadata) tokens = e.metadata.usage?.totalTokens
      }
      assert.equal(textOut, 'from bedrock')
      assert.equal(tokens, 11)
      const seen = ups[2]!.seen.at(-1)!
      assert.match(String(seen.headers.authorization), new RegExp(`Credential=${keys.aws.accessKeyId}/\\d{8}/us-west-2/bedrock/`))
      assert.equal(seen.url, '/model/us.anthropic.claude-test%3A0/converse-stream')
    } finally {
      client.destroy()
    }
    const usage = gateway.usage('sdk-session')!
    assert.equal(usage.tag, 'sdk-runtime')
    assert.deepEqual([usage.providers.bedrock?.inputTokens, usage.providers.bedrock?.outputTokens], [7, 4])
    assert.deepEqual([usage.providers.anthropic?.inputTokens, usage.providers.anthropic?.outputTokens], [5, 3])
    assert.deepEqual([usage.providers.openai?.inputTokens, usage.providers.openai?.outputTokens], [6, 2])
  })
})

describe('the gateway flag across a restart', () => {
  test('the session record keeps it, and adoptPrevious hands it to the engine', async () => {
    const store = Store.open(':memory:')
    try {
      const base = { tenant: 't', interpreterId: builtInInterpreterId, name: '', status: 'READY' as const, timeoutSeconds: 900, limits: { ...defaultLimits } }
      const now = new Date().toISOString()
      await store.sessions.insert({ ...base, sessionId: 'g1', createdAt: now, lastUpdatedAt: now, sandboxId: 'sb-g1', gateway: { tag: 'rt-9' } })
      await store.sessions.insert({ ...base, sessionId: 'g2', createdAt: now, lastUpdatedAt: now, sandboxId: 'sb-g2' })
      const active = await store.sessions.listAllActive()
      assert.deepEqual(
        active.map((r) => [r.sessionId, r.gateway]),
        [
          ['g1', { tag: 'rt-9' }],
          ['g2', undefined],
        ],
      )
      const adopted: AdoptRecord[][] = []
      const engine = { adopt: async (records: AdoptRecord[]) => (adopted.push(records), { adopted: [], failed: [], removed: 0 }) } as unknown as SessionManager
      const metrics = new Metrics({
        liveSessions: () => 0,
        startingSessions: () => 0,
        warmSandboxes: () => 0,
        egressRequests: () => ({ allowed: 0, denied: 0 }),
      })
      const service = new SessionService({
        engine,
        store,
        metrics,
        quotas: { maxSessions: 1, startsPerMinute: 1, invokesPerSecond: 1, agentTurnsPerMinute: 1 },
      })
      await service.adoptPrevious()
      assert.deepEqual(
        adopted[0]?.map((r) => [r.sessionId, r.gateway]),
        [
          ['g1', { tag: 'rt-9' }],
          ['g2', undefined],
        ],
      )
    } finally {
      store.close()
    }
  })
})
