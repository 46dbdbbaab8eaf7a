/**
 * The model gateway from a kubernetes sandbox pod, end to end: a server whose engine runs the
 * kubernetes driver against the fake API server, its pods run by the kubelet simulator as real
 * bwrap sandboxes of the built image (egress through their HTTP_PROXY, from their own loopback
 * pod IPs), the cluster's vpc egress proxy relaying to the server's internal gateway route, and a
 * scripted Anthropic upstream on loopback. A session started with the gateway (and no other
 * egress) gets a vpc pod with the gateway annotation; a Python cell in it calls the model with a
 * made-up key on the executor's gateway port 127.0.0.1:3129 (urllib, http.client, and Node's fetch
 * and HTTP/2 without proxy variables: its relay tunnels to the proxy with the pod's credentials) and by name
 * through the proxy variables, and the upstream gets the operator's each time; usage is kept for
 * the session and its tag; anything else is still out of reach. Skipped, saying
 * why, where bwrap sandboxes cannot run.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import http from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { KubeConfig } from '@kubernetes/client-node'
import { gatewayRelayKey, SessionManager } from '@codebox/sandbox'
import {
  findResource,
  sandboxPodRunner,
  sandboxPodSupport,
  startFakeKubernetes,
  type FakeKubernetes,
  type SandboxPodRunner,
} from '@codebox/sandbox/testing/kubernetes'
import { GATEWAY_ANNOTATION, KubernetesDriver, NETWORK_LABEL, startClusterEgressProxy, type ClusterEgressProxy } from '@codebox/driver-kubernetes'
import { buildApp, loadServerConfig, Store, type App } from '@codebox/server'
import { builtInInterpreterId } from '../../src/store/index.ts'

const support = await sandboxPodSupport()
const skip = 'unavailable' in support ? support.unavailable : false
const namespace = 'codebox'
const operatorKey = 'sk-ant-OPERATOR-K8S-SECRET-9'

/** A port free a moment ago (the driver is told its proxy's address before the proxy can start: the proxy needs the API's). */
const freePort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo
      s.close(() => resolve(port))
    })
  })

/** Node without proxy variables (as the AWS SDK for JavaScript ignores them): fetch, then HTTP/2 with prior knowledge (that SDK's Bedrock client). */
const nodeClients = `const http2 = require('node:http2')
const text = (j) => JSON.parse(j).content[0].text
const url = process.env.ANTHROPIC_BASE_URL + '/v1/messages'
fetch(url, { method: 'POST', body: '{}', headers: { 'x-api-key': 'made-up' } }).then((r) => r.text()).then((j) => {
  console.log('node fetch', text(j))
  const session = http2.connect(new URL(url).origin)
  const req = session.request({ ':method': 'POST', ':path': new URL(url).pathname, 'x-api-key': 'made-up' })
  let body = ''
  req.on('data', (d) => (body += d))
  req.on('end', () => { console.log('node http2', text(body)); session.close() })
  req.end('{}')
})
`

// The base URL (127.0.0.1:3129, the executor's gateway port: urllib goes there directly, NO_PROXY),
// the name through the proxy variables, http.client straight to the port, and Node with no proxy
// variables at all.
const callModel = `import http.client, json, os, subprocess, urllib.request
body, headers = b'{"model":"m"}', {'x-api-key': 'made-up', 'content-type': 'application/json'}
for base in (os.environ['ANTHROPIC_BASE_URL'], 'http://codebox-gateway/anthropic'):
    req = urllib.request.Request(base + '/v1/messages', data=body, headers=headers)
    print(base, json.loads(urllib.request.urlopen(req, timeout=20).read())['content'][0]['text'])
c = http.client.HTTPConnection('127.0.0.1', 3129, timeout=20)
c.request('POST', '/anthropic/v1/messages', body=body, headers=headers)
print('http.client', json.loads(c.getresponse().read())['content'][0]['text'])
bare = {k: v for k, v in os.environ.items() if 'proxy' not in k.lower()}
node = subprocess.run(['node', '-e', ${JSON.stringify(nodeClients)}], env=bare, capture_output=True, text=True, timeout=30)
print(node.stdout + node.stderr, end='')
print('the proxy URL variable in the sandbox:', 'CODEBOX_GATEWAY_PROXY' in os.environ)
try:
    urllib.request.urlopen('http://example.com/', timeout=20)
except Exception as e:
    print('elsewhere:', getattr(e, 'code', e))
`

describe('the model gateway from a kubernetes sandbox pod', { skip }, () => {
  let work: string
  let runner: SandboxPodRunner
  let fake: FakeKubernetes
  let upstream: http.Server
  let engine: SessionManager
  let app: App
  let proxy: ClusterEgressProxy
  let store: Store
  let url = ''
  const keysSeen: unknown[] = []

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'cbx-gateway-pod-'))
    runner = await sandboxPodRunner({ imagePath: (support as { imagePath: string }).imagePath, egress: true })
    fake = await startFakeKubernetes({ kubelet: { podNetwork: 'loopback', run: (pod) => runner.run(pod) } })
    upstream = http.createServer((req, res) => {
      req.resume()
      req.on('end', () => {
        keysSeen.push(req.headers['x-api-key'])
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ id: 'msg', content: [{ type: 'text', text: 'pong from the model' }], usage: { input_tokens: 11, output_tokens: 2 } }))
      })
    })
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r))
    const sealingKey = randomBytes(32)
    const kubeConfig = (): KubeConfig => {
      const kc = new KubeConfig()
      kc.loadFromString(JSON.stringify(fake.kubeconfig(fake.adminToken, namespace)))
      return kc
    }
    const proxyPort = await freePort()
    const driver = new KubernetesDriver({
      kubeConfig: kubeConfig(),
      namespace,
      image: 'registry.example.com/codebox/sandbox:test',
      runtimeClassName: null,
      sealingKey,
      egressProxies: { vpc: `127.0.0.1:${proxyPort}` },
      startTimeoutMs: 60_000,
    })
    engine = new SessionManager({ driver, poolSize: 0 })
    const config = loadServerConfig({
      CODEBOX_STATE_DIR: work,
      CODEBOX_LOG_LEVEL: 'silent',
      ANTHROPIC_API_KEY: operatorKey,
      CODEBOX_GATEWAY_ANTHROPIC_URL: `http://127.0.0.1:${(upstream.address() as net.AddressInfo).port}`,
    })
    store = Store.open(':memory:')
    app = await buildApp({ config, engine, store, gatewayRelayKey: gatewayRelayKey(sealingKey) })
    await app.app.listen({ host: '127.0.0.1', port: 0 })
    const apiPort = (app.app.server.address() as net.AddressInfo).port
    url = `http://127.0.0.1:${apiPort}`
    proxy = await startClusterEgressProxy({
      kubeConfig: kubeConfig(),
      namespace,
      profile: 'vpc',
      sealingKey,
      host: '127.0.0.1',
      port: proxyPort,
      apiUrl: `http://127.0.0.1:${apiPort}`,
      resolve: async () => [],
    })
  })

  after(async () => {
    await app?.app.close()
    await engine?.close()
    await proxy?.close()
    store?.close()
    upstream?.closeAllConnections()
    upstream?.close()
    await fake?.close()
    await runner?.close()
    if (work) await rm(work, { recursive: true, force: true })
  })

  it("a Python cell reaches its model with the operator's key, and nothing else", async () => {
    const { info } = await app.sessions.start({ tenant: 'default' }, { interpreterId: builtInInterpreterId, gateway: { tag: 'rt-k8s' } })
    const pods = fake.store.list(findResource('', 'v1', 'pods')!, namespace)
    assert.equal(pods.length, 1)
    assert.equal(pods[0]!.metadata.labels?.[NETWORK_LABEL], 'vpc', 'the gateway alone goes through the vpc proxy')
    assert.deepEqual(JSON.parse(pods[0]!.metadata.annotations?.[GATEWAY_ANNOTATION] ?? 'null'), { sessionId: info.sessionId, tag: 'rt-k8s' })
    const res = await fetch(`${url}/v1/sessions/${info.sessionId}/invoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'executeCode', arguments: { code: callModel } }),
    })
    const r = (await res.json()) as { isError: boolean; structuredContent: { stdout: string; stderr: string } }
    assert.equal(res.status, 200, JSON.stringify(r))
    const out = r.structuredContent
    assert.equal(r.isError, false, out.stderr)
    assert.equal(
      out.stdout,
      [
        'http://127.0.0.1:3129/anthropic pong from the model',
        'http://codebox-gateway/anthropic pong from the model',
        'http.client pong from the model',
        'node fetch pong from the model',
        'node http2 pong from the model',
        'the proxy URL variable in the sandbox: False',
        'elsewhere: 403',
        '',
      ].join('\n'),
      'a session with only the gateway reaches nothing else',
    )
    assert.deepEqual(keysSeen, Array(5).fill(operatorKey))
    const usage = app.gateway.usage(info.sessionId)
    assert.equal(usage?.tag, 'rt-k8s')
    assert.equal(usage?.total.inputTokens, 55)
    await app.sessions.stop({ tenant: 'default' }, info.sessionId)
  })
})
