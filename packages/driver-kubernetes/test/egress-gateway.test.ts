/**
 * The cluster egress proxy's model gateway, against the fake API server (pods made by the
 * builders, their status set through the API) and a stand-in for the codebox API that verifies the
 * relay signature as the real route does: a pod whose annotation allows the gateway has its
 * `http://codebox-gateway/...` requests (plain HTTP, and HTTP/1.1 or HTTP/2 inside a CONNECT to port 80) relayed to
 * `/internal/gateway/...` signed for its identity, without its proxy credentials or forged relay
 * headers, and the answer streams back event by event; a pod without the annotation gets the
 * single-host refusal and the API hears nothing.
 */
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import http2 from 'node:http2'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node'
import { defaultLimits, type EgressPolicy } from '@codebox/core'
import { gatewayRelayKey, verifyGatewayRelay, type GatewayIdentity } from '@codebox/sandbox'
import { startFakeKubernetes, type FakeKubernetes } from '@codebox/sandbox/testing/kubernetes'
import {
  egressToken,
  egressTokenKey,
  executorToken,
  executorTokenKey,
  GATEWAY_ANNOTATION,
  newTokenNonce,
  sessionPod,
  startClusterEgressProxy,
  type ClusterEgressProxy,
} from '../src/index.ts'

const namespace = 'codebox'
const sealingKey = Buffer.alloc(32, 11)

interface Seen {
  method: string
  url: string
  headers: IncomingMessage['headers']
  body: string
  identity: GatewayIdentity | undefined
  refusal?: string
}

describe('the model gateway through the cluster egress proxy', () => {
  let fake: FakeKubernetes
  let core: CoreV1Api
  let api: Server
  let proxy: ClusterEgressProxy
  const seen: Seen[] = []
  /** Resolves the stand-in API's pending second event. */
  let release: (() => void) | undefined

  const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

  async function runningPod(
    sessionId: string,
    policy: EgressPolicy,
    gateway?: { sessionId?: string; tag?: string },
    annotations: Record<string, string> = {},
  ): Promise<{ name: string; auth: string }> {
    const name = `cbx-${sessionId}`
    const nonce = newTokenNonce()
    const token = egressToken(egressTokenKey(sealingKey), { namespace, podName: name, nonce })
    const body = sessionPod({
      sessionId,
      namespace,
      image: 'codebox/sandbox:test',
      limits: { ...defaultLimits },
      network: 'vpc',
      poolKey: 'test',
      nonce,
      token: executorToken(executorTokenKey(sealingKey), { namespace, podName: name, nonce }),
      egressProxyUrl: `http://127.0.0.1:${proxy.address.port}`,
      egressToken: token,
      egressPolicy: policy,
      ...(gateway ? { gateway } : {}),
    })
    Object.assign(body.metadata!.annotations!, annotations)
    await core.createNamespacedPod({ namespace, body: body as V1Pod })
    const pod = await core.readNamespacedPod({ namespace, name })
    await core.replaceNamespacedPodStatus({
      namespace,
      name,
      body: { ...pod, status: { phase: 'Running', podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }] } },
    })
    return { name, auth: basic(name, token) }
  }

  /** Writes `request` to the proxy; `onData` sees the answer so far; resolves with all of it when the proxy closes. */
  function exchange(request: string, onData?: (soFar: string) => void): Promise<string> {
    return new Promise((resolve, reject) => {
      let text = ''
      const c = net.connect(proxy.address.port, '127.0.0.1', () => c.write(request))
      c.setTimeout(10_000, () => c.destroy(new Error(`no complete answer within 10 s: ${text}`)))
      c.on('data', (d: Buffer) => {
        text += d.toString('latin1')
        onData?.(text)
      })
      c.on('error', reject)
      c.on('close', () => resolve(text))
    })
  }

  before(async () => {
    fake = await startFakeKubernetes({ kubelet: false, tls: false })
    const kc = new KubeConfig()
    kc.loadFromString(JSON.stringify(fake.kubeconfig(fake.adminToken, namespace)))
    core = kc.makeApiClient(CoreV1Api)
    const key = gatewayRelayKey(sealingKey)
    api = createServer((req: IncomingMessage, res: ServerResponse) => {
      const chunks: Buffer[] = []
      req.on('data', (d: Buffer) => chunks.push(d))
      req.on('end', () => {
        const verdict = verifyGatewayRelay(key, { method: req.method ?? '', path: req.url ?? '', headers: req.headers })
        seen.push({
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks).toString(),
          identity: verdict.ok ? verdict.identity : undefined,
          ...(verdict.ok ? {} : { refusal: verdict.reason }),
        })
        if (!verdict.ok) return void res.writeHead(403).end(verdict.reason)
        // A streamed answer: the second event only once the client has shown it got the first.
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write('event: one\ndata: {}\n\n')
        release = () => res.end('event: two\ndata: {}\n\n')
      })
    })
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r))
    const apiPort = (api.address() as net.AddressInfo).port
    proxy = await startClusterEgressProxy({
      kubeConfig: kc,
      namespace,
      profile: 'vpc',
      sealingKey,
      host: '127.0.0.1',
      port: 0,
      apiUrl: `http://127.0.0.1:${apiPort}`,
      watchLagMs: 2000,
    })
  })

  after(async () => {
    await proxy?.close()
    api?.closeAllConnections()
    api?.close()
    await fake?.close()
  })

  test('a pod with the gateway: its request is relayed signed for its identity, and the answer streams back', async () => {
    const pod = await runningPod('gw1', { mode: 'none', allow: [] }, { sessionId: 'sessA', tag: 'rt-1' })
    const body = '{"model":"m","stream":true}'
    const answer = await exchange(
      `POST http://codebox-gateway/anthropic/v1/messages?beta=1 HTTP/1.1\r\nHost: codebox-gateway\r\nProxy-Authorization: ${pod.auth}\r\n` +
        `x-api-key: the-sandbox-s-own\r\nx-codebox-gateway-identity: forged\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      (soFar) => {
        // Streamed: the first event is here before the API writes the second.
        if (soFar.includes('event: one') && release) {
          const r = release
          release = undefined
          r()
        }
      },
    )
    assert.match(answer, /^HTTP\/1\.1 200 /)
    assert.match(answer, /content-type: text\/event-stream/i)
    assert.match(answer, /event: one[\s\S]*event: two/)
    const s = seen.at(-1)!
    assert.equal(s.refusal, undefined)
    assert.equal(s.method, 'POST')
    assert.equal(s.url, '/internal/gateway/anthropic/v1/messages?beta=1')
    assert.deepEqual(s.identity, { sandboxId: 'gw1', sessionId: 'sessA', tag: 'rt-1' })
    assert.equal(s.body, body)
    assert.equal(s.headers['proxy-authorization'], undefined, 'the proxy credentials never go on')
    assert.equal(s.headers['x-api-key'], 'the-sandbox-s-own', "passed on: the API's gateway drops it and adds the operator's")
  })

  test('inside a CONNECT to codebox-gateway:80 (Node fetch through its proxy), requests are relayed as the same pod', async () => {
    const pod = await runningPod('gw2', { mode: 'none', allow: [] }, { sessionId: 'sessB' })
    const viaTunnel = await new Promise<string>((resolve, reject) => {
      let text = ''
      const c = net.connect(proxy.address.port, '127.0.0.1', () =>
        c.write(`CONNECT codebox-gateway:80 HTTP/1.1\r\nHost: codebox-gateway:80\r\nProxy-Authorization: ${pod.auth}\r\n\r\n`),
      )
      c.setTimeout(10_000, () => c.destroy(new Error(`no answer: ${text}`)))
      c.on('data', (d: Buffer) => {
        const first = text === ''
        text += d.toString('latin1')
        if (first && text.startsWith('HTTP/1.1 200')) c.write('GET /openai/v1/models HTTP/1.1\r\nHost: codebox-gateway\r\nConnection: close\r\n\r\n')
        if (text.includes('event: one') && release) {
          const r = release
          release = undefined
          r()
        }
      })
      c.on('error', reject)
      c.on('close', () => resolve(text))
    })
    assert.match(viaTunnel, /^HTTP\/1\.1 200 Connection Established\r\n\r\nHTTP\/1\.1 200 /)
    assert.match(viaTunnel, /event: one[\s\S]*event: two/)
    const s = seen.at(-1)!
    assert.equal(s.url, '/internal/gateway/openai/v1/models')
    assert.deepEqual(s.identity, { sandboxId: 'gw2', sessionId: 'sessB' })
  })

  test('HTTP/2 with prior knowledge inside the tunnel (the AWS SDK for JavaScript) is relayed as the pod too, its answer streamed', async () => {
    const pod = await runningPod('gw3', { mode: 'none', allow: [] }, { sessionId: 'sessC', tag: 'rt-3' })
    const socket = net.connect(proxy.address.port, '127.0.0.1')
    socket.write(`CONNECT codebox-gateway:80 HTTP/1.1\r\nHost: codebox-gateway:80\r\nProxy-Authorization: ${pod.auth}\r\n\r\n`)
    await new Promise<void>((resolve, reject) => {
      let head = ''
      const onData = (d: Buffer): void => {
        head += d.toString('latin1')
        if (!head.includes('\r\n\r\n')) return
        socket.off('data', onData)
        if (head.startsWith('HTTP/1.1 200')) resolve()
        else reject(new Error(head))
      }
      socket.on('data', onData)
      socket.on('error', reject)
    })
    const session = http2.connect('http://codebox-gateway', { createConnection: () => socket })
    try {
      const stream = session.request({ ':method': 'POST', ':path': '/bedrock/model/m/converse-stream', 'content-type': 'application/json' })
      let text = ''
      let status = 0
      stream.on('response', (h) => (status = Number(h[':status'])))
      stream.setEncoding('utf8')
      stream.on('data', (d: string) => {
        text += d
        if (text.includes('event: one') && release) {
          const r = release
          release = undefined
          r()
        }
      })
      stream.end('{}')
      await new Promise<void>((resolve, reject) => {
        stream.on('end', resolve)
        stream.on('error', reject)
      })
      assert.equal(status, 200)
      assert.match(text, /event: one[\s\S]*event: two/)
      const s = seen.at(-1)!
      assert.equal(s.url, '/internal/gateway/bedrock/model/m/converse-stream')
      assert.deepEqual(s.identity, { sandboxId: 'gw3', sessionId: 'sessC', tag: 'rt-3' })
      assert.equal(s.body, '{}')
    } finally {
      session.destroy()
    }
  })

  test('a pod without the gateway gets the single-host refusal, and the API hears nothing; so does one whose annotation is not an identity', async () => {
    const plain = await runningPod('nogw1', { mode: 'allowlist', allow: ['example.com'] })
    const before = seen.length
    const answer = await exchange(`GET http://codebox-gateway/anthropic/v1/models HTTP/1.1\r\nProxy-Authorization: ${plain.auth}\r\n\r\n`)
    assert.match(answer, /^HTTP\/1\.1 403 /)
    assert.match(answer, /codebox egress: the model gateway \(codebox-gateway\) is not enabled for this session\n$/)
    const tunnel = await exchange(`CONNECT codebox-gateway:80 HTTP/1.1\r\nProxy-Authorization: ${plain.auth}\r\n\r\n`)
    assert.match(tunnel, /^HTTP\/1\.1 403 /)
    for (const [i, annotation] of ['{"sessionId":"a b"}', '{"tag":""}', '["x"]', 'not json'].entries()) {
      const odd = await runningPod(`nogw${i + 2}`, { mode: 'allowlist', allow: ['example.com'] }, undefined, { [GATEWAY_ANNOTATION]: annotation })
      const refused = await exchange(`GET http://codebox-gateway/x HTTP/1.1\r\nProxy-Authorization: ${odd.auth}\r\n\r\n`)
      assert.match(refused, /^HTTP\/1\.1 403 [\s\S]*not enabled for this session/, annotation)
    }
    assert.equal(seen.length, before)
  })
})
