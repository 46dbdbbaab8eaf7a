/**
 * SigV4 on the AgentCore API: access keys from the store (as `codebox keys create --aws` makes
 * them) work with the real AWS SDK; unsigned, wrongly signed, stale, tampered and foreign-tenant
 * requests get AccessDeniedException / ResourceNotFoundException and change nothing.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'
import { Sha256 } from '@aws-crypto/sha256-js'
import {
  BedrockAgentCoreClient,
  GetCodeInterpreterSessionCommand,
  ListCodeInterpreterSessionsCommand,
  StartCodeInterpreterSessionCommand,
} from '@aws-sdk/client-bedrock-agentcore'
import { SignatureV4 } from '@smithy/signature-v4'
import type { CodeboxError } from '@codebox/core'
import WebSocket from 'ws'
import { canonicalRequest, verifyPresignedSigV4, verifySigV4 } from '../src/agentcore/sigv4.ts'
import { testServer, type TestServer } from './fixtures.ts'

const builtIn = 'aws.codeinterpreter.v1'
const region = 'eu-central-1'

const client = (server: TestServer, credentials: { accessKeyId: string; secretAccessKey: string }, extra: object = {}) =>
  new BedrockAgentCoreClient({ endpoint: server.url, region, credentials, maxAttempts: 1, ...extra })

/** A request signed by the AWS SDK's own signer, sent with fetch, so a test can tamper with it. */
async function signedFetch(
  server: TestServer,
  credentials: { accessKeyId: string; secretAccessKey: string },
  options: { method: string; path: string; query?: Record<string, string>; body?: string; headers?: Record<string, string>; signingDate?: Date },
): Promise<Response> {
  const url = new URL(server.url)
  const signer = new SignatureV4({ credentials, region, service: 'bedrock-agentcore', sha256: Sha256 })
  const signed = await signer.sign(
    {
      method: options.method,
      protocol: 'http:',
      hostname: url.hostname,
      port: Number(url.port),
      path: options.path,
      query: options.query ?? {},
      headers: { host: url.host, 'content-type': 'application/json', ...options.headers },
      body: options.body,
    },
    { signingDate: options.signingDate ?? new Date() },
  )
  const qs = new URLSearchParams(options.query ?? {}).toString()
  return fetch(`${server.url}${options.path}${qs ? `?${qs}` : ''}`, {
    method: options.method,
    headers: Object.fromEntries(Object.entries(signed.headers).filter(([k]) => k !== 'host')),
    body: options.body,
  })
}

async function awsError(res: Response): Promise<{ status: number; type: string | null; message: string }> {
  const body = (await res.json()) as { message: string }
  return { status: res.status, type: res.headers.get('x-amzn-errortype'), message: body.message }
}

describe('SigV4 access keys', () => {
  test('a key from the store signs requests; its tenant owns the sessions', async (t) => {
    const server = await testServer(t)
    const acme = await server.store.awsKeys.create({ tenant: 'acme' })
    const other = await server.store.awsKeys.create({ tenant: 'other' })
    assert.match(acme.accessKeyId, /^CBXA[A-Z2-7]{16}$/)
    const a = client(server, acme)
    const { sessionId } = await a.send(new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn }))
    const got = await a.send(new GetCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId }))
    assert.equal(got.status, 'READY')
    assert.equal((await server.store.sessions.get(sessionId!, 'acme'))?.keyId, acme.accessKeyId)
    // Another tenant's key: the session does not exist for it.
    const b = client(server, other)
    await assert.rejects(b.send(new GetCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn, sessionId })), { name: 'ResourceNotFoundException' })
    assert.deepEqual((await b.send(new ListCodeInterpreterSessionsCommand({ codeInterpreterIdentifier: builtIn }))).items, [])
  })

  test('wrong secret, unknown key, revoked key, stale date, unsigned, tampered body: AccessDeniedException naming the check', async (t) => {
    const server = await testServer(t)
    const key = await server.store.awsKeys.create({ tenant: 'acme' })
    const denied = async (p: Promise<unknown>, message: RegExp) => {
      const e = (await p.then(
        () => assert.fail('expected AccessDeniedException'),
        (e: unknown) => e,
      )) as { name: string; message: string; $metadata: { httpStatusCode: number } }
      assert.equal(e.name, 'AccessDeniedException', e.message)
      assert.equal(e.$metadata.httpStatusCode, 403)
      assert.match(e.message, message)
    }
    const start = new StartCodeInterpreterSessionCommand({ codeInterpreterIdentifier: builtIn })
    await denied(client(server, { ...key, secretAccessKey: `${key.secretAccessKey.slice(0, -1)}x` }).send(start), /signature we calculated does not match/)
    await denied(client(server, { accessKeyId: 'CBXAAAAAAAAAAAAAAAAA', secretAccessKey: key.secretAccessKey }).send(start), /unknown or revoked/)
    await denied(client(server, key, { systemClockOffset: -20 * 60_000 }).send(start), /Signature expired/)

    const unsigned = await fetch(`${server.url}/code-interpreters/${builtIn}/sessions/start`, {
      method: 'PUT',
      body: '{}',
      headers: { 'content-type': 'application/json' },
    })
    assert.deepEqual({ ...(await awsError(unsigned)), message: '' }, { status: 403, type: 'AccessDeniedException', message: '' })

    // The body is not the one the x-amz-content-sha256 header (and the signature) covers.
    const body = JSON.stringify({ name: 'signed' })
    const declared = createHash('sha256')
      .update(JSON.stringify({ name: 'other' }))
      .digest('hex')
    const tampered = await signedFetch(server, key, {
      method: 'PUT',
      path: `/code-interpreters/${builtIn}/sessions/start`,
      body,
      headers: { 'x-amz-content-sha256': declared },
    })
    const te = await awsError(tampered)
    assert.equal(te.status, 403)
    assert.match(te.message, /x-amz-content-sha256 header does not match/)
    // Signed correctly by the SDK's signer, the same request goes through; then the body alone is swapped.
    const ok = await signedFetch(server, key, { method: 'PUT', path: `/code-interpreters/${builtIn}/sessions/start`, body })
    assert.equal(ok.status, 200, await ok.clone().text())
    const url = new URL(server.url)
    const signer = new SignatureV4({ credentials: key, region, service: 'bedrock-agentcore', sha256: Sha256 })
    const signed = await signer.sign({
      method: 'PUT',
      protocol: 'http:',
      hostname: url.hostname,
      port: Number(url.port),
      path: `/code-interpreters/${builtIn}/sessions/start`,
      query: {},
      headers: { host: url.host, 'content-type': 'application/json' },
      body,
    })
    const swapped = await fetch(`${server.url}/code-interpreters/${builtIn}/sessions/start`, {
      method: 'PUT',
      headers: Object.fromEntries(Object.entries(signed.headers).filter(([k]) => k !== 'host')),
      body: JSON.stringify({ name: 'swapped' }),
    })
    // The signer also sends x-amz-content-sha256, so the swap is caught by the payload hash check.
    const se = await awsError(swapped)
    assert.equal(se.type, 'AccessDeniedException')
    assert.match(se.message, /x-amz-content-sha256 header does not match|signature we calculated does not match/)

    await server.store.awsKeys.revoke(key.accessKeyId)
    await denied(client(server, key).send(start), /unknown or revoked/)
    // Only the one correctly signed start made a session.
    assert.equal(await server.store.sessions.countActive('acme'), 1)
  })

  test('the native API key is not a SigV4 key, and SigV4 does not open the native API', async (t) => {
    const server = await testServer(t)
    const aws = await server.store.awsKeys.create({ tenant: 'acme' })
    const native = await server.store.keys.create({ tenant: 'acme' })
    const viaBearer = await fetch(`${server.url}/code-interpreters/${builtIn}/sessions/list`, {
      method: 'POST',
      headers: { authorization: `Bearer ${native.secret}`, 'content-type': 'application/json' },
      body: '{}',
    })
    assert.equal((await awsError(viaBearer)).status, 403)
    const nativeWithAws = await fetch(`${server.url}/v1/sessions`, { headers: { authorization: `AWS4-HMAC-SHA256 Credential=${aws.accessKeyId}/x` } })
    assert.equal(nativeWithAws.status, 401)
  })
})

describe('the SigV4 canonical request', () => {
  test('matches the AWS SDK signer on paths and queries that need encoding', async () => {
    const credentials = { accessKeyId: 'CBXAAAAAAAAAAAAAAAAA', secretAccessKey: 'secret' }
    const signer = new SignatureV4({ credentials, region, service: 'bedrock-agentcore', sha256: Sha256 })
    const cases: { path: string; query: Record<string, string> }[] = [
      { path: '/code-interpreters/a.b-c_d/sessions/get', query: { sessionId: 'abc123' } },
      { path: '/code-interpreters/arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3Aaws%3Acode-interpreter%2Fx/sessions/get', query: { sessionId: 'Z' } },
      { path: '/code-interpreters', query: { maxResults: '5', nextToken: 'a b+c/=', type: 'CUSTOM' } },
    ]
    for (const c of cases) {
      const date = new Date()
      const signed = await signer.sign(
        { method: 'GET', protocol: 'http:', hostname: 'h', path: c.path, query: c.query, headers: { host: 'h' } },
        { signingDate: date },
      )
      const qs = Object.entries(c.query)
        .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
        .join('&')
      const req = { method: 'GET', url: `${c.path}?${qs}`, headers: signed.headers, bodySha256: createHash('sha256').digest('hex') }
      await assert.doesNotReject(
        verifySigV4(req, async () => credentials.secretAccessKey, date),
        c.path,
      )
      assert.ok(canonicalRequest(req, ['host', 'x-amz-date']).startsWith('GET\n'))
    }
  })
})

describe('presigned URLs (SigV4 in the query), as AgentCore takes for its WebSocket', () => {
  const credentials = { accessKeyId: 'CBXAAAAAAAAAAAAAAAAA', secretAccessKey: 'secret' }
  const presign = async (query: Record<string, string>, options: { signingDate?: Date; expiresIn?: number; headers?: Record<string, string> } = {}) => {
    const signer = new SignatureV4({ credentials, region, service: 'bedrock-agentcore', sha256: Sha256 })
    const signed = await signer.presign(
      {
        method: 'GET',
        protocol: 'https:',
        hostname: 'h',
        path: '/runtimes/arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fx/ws',
        query,
        headers: { host: 'h', ...options.headers },
      },
      { signingDate: options.signingDate ?? new Date(), expiresIn: options.expiresIn ?? 300 },
    )
    const qs = Object.entries(signed.query ?? {})
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`)
      .join('&')
    return { method: 'GET', url: `${signed.path}?${qs}`, headers: { host: 'h' }, bodySha256: createHash('sha256').digest('hex') }
  }
  const secretFor = async (id: string) => (id === credentials.accessKeyId ? credentials.secretAccessKey : undefined)

  test('the AWS SDK signer’s presigned URL is accepted, with the session id in the query, and with UNSIGNED-PAYLOAD as boto3 signs', async () => {
    const req = await presign({ 'X-Amzn-Bedrock-AgentCore-Runtime-Session-Id': 'a'.repeat(40), qualifier: 'DEFAULT' })
    assert.deepEqual(await verifyPresignedSigV4(req, secretFor), { accessKeyId: credentials.accessKeyId, region, service: 'bedrock-agentcore' })
    const unsigned = await presign({}, { headers: { 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' } })
    assert.match(unsigned.url, /X-Amz-Content-Sha256=UNSIGNED-PAYLOAD/i)
    await assert.doesNotReject(verifyPresignedSigV4(unsigned, secretFor))
  })

  test('a changed query, an expired URL, an unknown key or a signature left out: AccessDenied naming the check', async () => {
    const denied = (p: Promise<unknown>, message: RegExp) =>
      assert.rejects(p, (e: CodeboxError) => e.details.aws === 'AccessDeniedException' && message.test(e.message))
    const req = await presign({ 'X-Amzn-Bedrock-AgentCore-Runtime-Session-Id': 'a'.repeat(40) })
    await denied(verifyPresignedSigV4({ ...req, url: req.url.replace('a'.repeat(40), 'b'.repeat(40)) }, secretFor), /signature we calculated does not match/)
    const old = await presign({}, { signingDate: new Date(Date.now() - 10 * 60_000), expiresIn: 300 })
    await denied(verifyPresignedSigV4(old, secretFor), /presigned URL expired/)
    await denied(
      verifyPresignedSigV4(req, async () => undefined),
      /unknown or revoked/,
    )
    await denied(
      verifyPresignedSigV4({ ...req, url: req.url.replace(/X-Amz-Signature=[0-9a-f]+/, 'X-Amz-Signature=') }, secretFor),
      /X-Amz-Signature is not 64 hex digits/,
    )
    await denied(verifyPresignedSigV4({ ...req, url: req.url.replace(/X-Amz-Expires=\d+/, 'X-Amz-Expires=9999999') }, secretFor), /X-Amz-Expires must be/)
  })

  test('on a server with keys, a presigned WebSocket upgrade passes authentication; a tampered one is refused with 403', async (t) => {
    const server = await testServer(t)
    const key = await server.store.awsKeys.create({ tenant: 'acme' })
    const url = new URL(server.url)
    const arn = 'arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/nothing-here'
    const signer = new SignatureV4({ credentials: key, region, service: 'bedrock-agentcore', sha256: Sha256 })
    const signed = await signer.presign(
      {
        method: 'GET',
        protocol: 'http:',
        hostname: url.hostname,
        port: Number(url.port),
        path: `/runtimes/${encodeURIComponent(arn)}/ws`,
        query: {},
        headers: { host: url.host },
      },
      { expiresIn: 300 },
    )
    const qs = new URLSearchParams(signed.query as Record<string, string>).toString()
    const upgradeStatus = (u: string) =>
      new Promise<number>((resolve, reject) => {
        const socket = new WebSocket(u)
        socket.once('unexpected-response', (_req, res) => {
          resolve(res.statusCode ?? 0)
          socket.terminate()
        })
        socket.once('open', () => reject(new Error('opened')))
        socket.once('error', () => {})
      })
    const base = `ws://${url.host}/runtimes/${encodeURIComponent(arn)}/ws`
    assert.equal(await upgradeStatus(`${base}?${qs}`), 404, 'authenticated: the runtime is what is missing')
    assert.equal(await upgradeStatus(`${base}?${qs.replace(/X-Amz-Signature=./, 'X-Amz-Signature=0')}`), 403)
    assert.equal(await upgradeStatus(base), 403, 'unsigned')
  })
})
