/**
 * The cluster's egress proxy against the fake API server, with sandbox pods made by the builders
 * and their status set as a kubelet would (no kubelet process: Running and the pod IP are written
 * through the API). Through real TCP on loopback: a pod's credentials and an allowed host tunnel
 * to a loopback server (trusted explicitly, as the vpc profile's operator would trust an internal
 * service); missing, wrong, unknown and finished credentials are 407; policy denials are 403
 * naming why; Proxy-Authorization never reaches the upstream; a deleted pod's token stops
 * working; a token sent from another address is 403; the gateway is refused by a proxy without an API to relay it to.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import net from 'node:net'
import { after, before, describe, test } from 'node:test'
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node'
import { defaultLimits, type EgressPolicy } from '@codebox/core'
import { parseTrustedList } from '@codebox/sandbox'
import { startFakeKubernetes, type FakeKubernetes } from '@codebox/sandbox/testing/kubernetes'
import {
  EGRESS_POLICY_ANNOTATION,
  egressToken,
  egressTokenKey,
  executorToken,
  executorTokenKey,
  newTokenNonce,
  parseBasicCredentials,
  sessionPod,
  startClusterEgressProxy,
  type ClusterEgressProxy,
  type ClusterEgressProxyOptions,
  type EgressProfile,
} from '../src/index.ts'

const namespace = 'codebox'
const sealingKey = Buffer.alloc(32, 9)
const key = egressTokenKey(sealingKey)

/** The vpc profile's proxy on a free loopback port, letting the test's own loopback servers (`trusted`) through. */
const vpcProxy = (kubeConfig: KubeConfig, trusted: string, options: Partial<ClusterEgressProxyOptions> = {}): Promise<ClusterEgressProxy> =>
  startClusterEgressProxy({ kubeConfig, namespace, profile: 'vpc', sealingKey, host: '127.0.0.1', port: 0, trusted: parseTrustedList(trusted), ...options })

interface Answer {
  status: number
  head: string
  body: string
}

/** Sends `request` to the proxy and reads until it closes; `onOpen` for a tunnel (after a 200). */
function send(port: number, request: string, options: { localAddress?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const c = net.connect({ host: '127.0.0.1', port, ...options }, () => c.write(request))
    c.setTimeout(5000, () => c.destroy(new Error('no answer within 5 s')))
    c.on('data', (d: Buffer) => chunks.push(d))
    c.on('error', reject)
    c.on('close', () => {
      const [head = '', body = ''] = Buffer.concat(chunks)
        .toString('latin1')
        .split(/\r\n\r\n(.*)/s)
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body })
    })
  })
}

/** A CONNECT through the proxy; on 200, writes `payload` and resolves with the echo. */
function tunnel(port: number, target: string, auth: string | undefined, payload = 'ping'): Promise<{ status: number; head: string; body: string }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    let established = false
    const c = net.connect({ host: '127.0.0.1', port }, () =>
      c.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}\r\n`),
    )
    c.setTimeout(5000, () => c.destroy(new Error('no CONNECT answer')))
    c.on('error', reject)
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) return
      const head = buf.subarray(0, end).toString('latin1')
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0)
      if (status !== 200) return
      if (!established) {
        established = true
        c.write(payload)
      }
      const rest = buf.subarray(end + 4).toString()
      if (rest.length >= payload.length) {
        c.destroy()
        resolve({ status, head, body: rest })
      }
    })
    c.on('close', () => {
      if (established) return
      const [head = '', body = ''] = buf.toString('latin1').split(/\r\n\r\n(.*)/s)
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body })
    })
  })
}

const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 25))
  }
  assert.fail(`timed out waiting for ${what}`)
}

const listen = (server: net.Server): Promise<number> =>
  new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)))

describe('the cluster egress proxy', () => {
  let fake: FakeKubernetes
  let core: CoreV1Api
  let kc: KubeConfig
  let web: Server
  let echo: net.Server
  let webPort = 0
  let echoPort = 0
  let proxy: ClusterEgressProxy
  let proxyPort = 0
  const upstreamHeaders: IncomingHttpHeaders[] = []
  const refusals: { status: number; reason: string }[] = []
  const decisions: { host: string; allowed: boolean; client?: string }[] = []

  /** A vpc session pod with `policy`, as the driver would create it, then Running at `podIP`. */
  async function runningPod(
    sessionId: string,
    policy: EgressPolicy,
    podIP = '127.0.0.1',
    profile: EgressProfile = 'vpc',
  ): Promise<{ name: string; auth: string; url: string }> {
    const name = `cbx-${sessionId}`
    const nonce = newTokenNonce()
    const token = egressToken(key, { namespace, podName: name, nonce })
    const body = sessionPod({
      sessionId,
      namespace,
      image: 'codebox/sandbox:test',
      limits: { ...defaultLimits },
      network: profile,
      poolKey: 'test',
      nonce,
      token: executorToken(executorTokenKey(sealingKey), { namespace, podName: name, nonce }),
      egressProxyUrl: `http://127.0.0.1:${proxyPort}`,
      egressToken: token,
      egressPolicy: policy,
    })
    // The pod's proxy URL carries its credentials, as curl and pip read them.
    const url = new URL(body.spec!.containers[0]!.env!.find((e) => e.name === 'HTTPS_PROXY')!.value!)
    assert.equal(url.username, name)
    assert.equal(url.password, token)
    await core.createNamespacedPod({ namespace, body: body as V1Pod })
    await setStatus(name, { phase: 'Running', podIP, podIPs: [{ ip: podIP }] })
    return { name, auth: basic(url.username, url.password), url: url.href }
  }

  async function setStatus(name: string, status: V1Pod['status']): Promise<void> {
    const pod = await core.readNamespacedPod({ namespace, name })
    await core.replaceNamespacedPodStatus({ namespace, name, body: { ...pod, status } })
  }

  before(async () => {
    fake = await startFakeKubernetes({ kubelet: false, tls: false })
    kc = new KubeConfig()
    kc.loadFromString(JSON.stringify(fake.kubeconfig(fake.adminToken, namespace)))
    core = kc.makeApiClient(CoreV1Api)
    web = createServer((req, res) => {
      upstreamHeaders.push(req.headers)
      res.end(`hello from ${req.url}`)
    })
    webPort = await listen(web)
    echo = net.createServer((s) => s.pipe(s))
    echoPort = await listen(echo)
    proxy = await vpcProxy(kc, `127.0.0.1:${webPort},127.0.0.1:${echoPort}`, {
      resolve: async (host) => ({ 'app.test': ['127.0.0.1'], 'inside.test': ['10.0.0.7'] })[host] ?? [],
      onRefusal: (r) => refusals.push(r),
      onDecision: (d) => decisions.push(d),
      watchLagMs: 300,
    })
    proxyPort = proxy.address.port
  })

  after(async () => {
    await proxy?.close()
    web?.close()
    echo?.close()
    await fake?.close()
  })

  test('a running pod with its token and an allowed destination: CONNECT tunnels, plain HTTP is forwarded without Proxy-Authorization', async () => {
    const pod = await runningPod('ok1', { mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`, `app.test:${webPort}`] })
    await until('the proxy to see the pod', async () => (await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status === 200)
    const t = await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth, 'through the tunnel')
    assert.equal(t.status, 200)
    assert.equal(t.body, 'through the tunnel')
    const before = upstreamHeaders.length
    const r = await send(proxyPort, `GET http://app.test:${webPort}/page HTTP/1.1\r\nHost: app.test\r\nProxy-Authorization: ${pod.auth}\r\nX-Kept: yes\r\n\r\n`)
    assert.equal(r.status, 200)
    assert.equal(r.body, 'hello from /page')
    const seen = upstreamHeaders.slice(before)
    assert.equal(seen.length, 1)
    assert.equal(seen[0]!['x-kept'], 'yes')
    assert.equal(seen[0]!['proxy-authorization'], undefined, 'the credentials never go upstream')
    assert.ok(decisions.some((d) => d.allowed && d.client === pod.name && d.host === 'app.test'))
  })

  test("a pod's first request, sent as soon as it runs, waits for the watch instead of being refused", async () => {
    for (const id of ['fast1', 'fast2', 'fast3']) {
      const pod = await runningPod(id, { mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`] })
      const t = await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth, 'first')
      assert.equal(t.status, 200, `${id}: ${t.body}`)
      assert.equal(t.body, 'first')
    }
  })

  test('missing, malformed, wrong, unknown-pod and finished-pod credentials are 407 with a Basic challenge', async () => {
    const pod = await runningPod('auth1', { mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`] })
    await until('the pod', async () => (await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status === 200)
    const other = egressToken(key, { namespace, podName: pod.name, nonce: newTokenNonce() })
    const cases: [string | undefined, RegExp][] = [
      [undefined, /send the proxy credentials .* as Proxy-Authorization: Basic/],
      ['Bearer abc', /Proxy-Authorization must be Basic/],
      [basic(pod.name, other), /do not name a running sandbox pod of the vpc profile in namespace codebox/],
      [basic(pod.name, ''), /do not name a running sandbox pod/],
      [basic('cbx-nobody', other), /do not name a running sandbox pod/],
    ]
    for (const [auth, reason] of cases) {
      const t = await tunnel(proxyPort, `127.0.0.1:${echoPort}`, auth)
      assert.equal(t.status, 407, String(auth))
      assert.match(t.head, /\r\nProxy-Authenticate: Basic realm="codebox egress"/)
      assert.match(t.body, reason)
      const r = await send(proxyPort, `GET http://127.0.0.1:${echoPort}/ HTTP/1.1\r\n${auth ? `Proxy-Authorization: ${auth}\r\n` : ''}\r\n`)
      assert.equal(r.status, 407, `plain HTTP with ${String(auth)}`)
      assert.match(r.head, /proxy-authenticate: Basic/i)
    }
    await setStatus(pod.name, { phase: 'Succeeded', podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }] })
    await until('the pod to be seen finished', async () => (await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status === 407)
    assert.ok(refusals.some((r) => r.status === 407))
  })

  test('policy denials are 403 naming why', async () => {
    const pod = await runningPod('deny1', { mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`, 'inside.test'] })
    await until('the pod', async () => (await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status === 200)
    const notListed = await tunnel(proxyPort, `127.0.0.1:${webPort}`, pod.auth)
    assert.equal(notListed.status, 403)
    assert.equal(notListed.body, `codebox egress: 127.0.0.1:${webPort} is not on this interpreter's allow-list\n`)
    const name = await tunnel(proxyPort, 'example.com:443', pod.auth)
    assert.equal(name.status, 403)
    assert.equal(name.body, "codebox egress: example.com:443 is not on this interpreter's allow-list\n")
    const privateAnswer = await tunnel(proxyPort, 'inside.test:443', pod.auth)
    assert.equal(privateAnswer.status, 403)
    assert.equal(privateAnswer.body, 'codebox egress: inside.test resolves to 10.0.0.7, a private address\n')
    const gateway = await send(proxyPort, `GET http://codebox-gateway/v1/models HTTP/1.1\r\nProxy-Authorization: ${pod.auth}\r\n\r\n`)
    assert.equal(gateway.status, 403)
    assert.equal(
      gateway.body,
      'codebox egress: the model gateway (codebox-gateway) is not served by this egress proxy: it has no API to relay it to (CODEBOX_EGRESS_API_URL)\n',
    )
  })

  test('a pod without a valid policy annotation, or of the other profile, is refused', async () => {
    const pod = await runningPod('bad1', { mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`] })
    await until('the pod', async () => (await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status === 200)
    const current = await core.readNamespacedPod({ namespace, name: pod.name })
    current.metadata!.annotations![EGRESS_POLICY_ANNOTATION] = '{"mode":"allowlist","allow":["http://x"]}'
    await core.replaceNamespacedPod({ namespace, name: pod.name, body: current })
    await until('the new annotation', async () => (await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status === 403)
    const t = await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)
    assert.match(t.body, /pod cbx-bad1: the pod's codebox\.dev\/egress-policy annotation is not a valid egress policy \(.*is a URL/)
    // A public-profile pod is not in this (vpc) proxy's watch at all.
    const pub = await runningPod('pub1', { mode: 'public', allow: [] }, '127.0.0.1', 'public')
    await new Promise((r) => setTimeout(r, 200))
    assert.equal((await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pub.auth)).status, 407)
  })

  test("a deleted pod's token stops working, and a new pod of the same name gets a new one", async () => {
    const pod = await runningPod('del1', { mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`] })
    await until('the pod', async () => (await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status === 200)
    await core.deleteNamespacedPod({ namespace, name: pod.name })
    await until('the deletion', async () => (await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status === 407)
    const again = await runningPod('del1', { mode: 'allowlist', allow: [`127.0.0.1:${webPort}`] })
    await until('the new pod', async () => (await tunnel(proxyPort, `127.0.0.1:${webPort}`, again.auth, 'GET / HTTP/1.0\r\n\r\n')).status === 200)
    assert.equal((await tunnel(proxyPort, `127.0.0.1:${echoPort}`, again.auth)).status, 403, "the new pod's policy applies")
    assert.equal((await tunnel(proxyPort, `127.0.0.1:${webPort}`, pod.auth)).status, 407, "the old pod's token does not")
  })

  test('a token sent from another address than its pod is 403', async () => {
    const pod = await runningPod('peer1', { mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`] }, '10.244.0.9')
    await until('the pod', async () => (await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status === 403)
    const t = await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)
    assert.equal(t.body, `codebox egress: the credentials of pod ${pod.name} were sent from 127.0.0.1, which is not the pod's address\n`)
    const r = await send(proxyPort, `GET http://127.0.0.1:${echoPort}/ HTTP/1.1\r\nProxy-Authorization: ${pod.auth}\r\n\r\n`)
    assert.equal(r.status, 403)
    // From the pod's address it works: set it to loopback.
    await setStatus(pod.name, { phase: 'Running', podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }] })
    await until('the new address', async () => (await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status === 200)
  })

  test("clients take the credentials from the pod's proxy URL: Python's urllib and Node's fetch (NODE_USE_ENV_PROXY)", async () => {
    const pod = await runningPod('cli1', { mode: 'allowlist', allow: [`app.test:${webPort}`] })
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HTTP_PROXY: pod.url, HTTPS_PROXY: pod.url, http_proxy: pod.url, NODE_USE_ENV_PROXY: '1' }
    const run = (file: string, args: string[]): Promise<string> =>
      new Promise((resolve, reject) =>
        execFile(file, args, { env, timeout: 30_000 }, (e, stdout, stderr) => (e ? reject(new Error(`${file}: ${stderr || e.message}`)) : resolve(stdout))),
      )
    await until('the pod', async () => (await tunnel(proxyPort, `app.test:${webPort}`, pod.auth, 'GET / HTTP/1.0\r\n\r\n')).status === 200)
    const before = upstreamHeaders.length
    // urllib sends an absolute-URI GET with Proxy-Authorization (no DNS on the client side).
    assert.equal(
      await run('python3', ['-c', `import urllib.request; print(urllib.request.urlopen('http://app.test:${webPort}/py').read().decode())`]),
      'hello from /py\n',
    )
    // Node's fetch tunnels plain HTTP too (CONNECT app.test:<port>), with the same header.
    assert.equal(
      await run(process.execPath, ['-e', `fetch('http://app.test:${webPort}/node').then((r) => r.text()).then((t) => console.log(t))`]),
      'hello from /node\n',
    )
    assert.ok(upstreamHeaders.slice(before).every((h) => h['proxy-authorization'] === undefined))
  })

  test("a changed policy annotation applies from the next request (a claim's new allow-list)", async () => {
    const pod = await runningPod('chg1', { mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`] })
    await until('the pod', async () => (await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status === 200)
    assert.equal((await tunnel(proxyPort, `127.0.0.1:${webPort}`, pod.auth)).status, 403)
    const current = await core.readNamespacedPod({ namespace, name: pod.name })
    current.metadata!.annotations![EGRESS_POLICY_ANNOTATION] = JSON.stringify({ mode: 'allowlist', allow: [`127.0.0.1:${webPort}`] })
    await core.replaceNamespacedPod({ namespace, name: pod.name, body: current })
    await until('the new policy', async () => (await tunnel(proxyPort, `127.0.0.1:${webPort}`, pod.auth, 'GET / HTTP/1.0\r\n\r\n')).status === 200)
    assert.equal((await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status, 403)
  })

  test('connections per pod are bounded: past the cap, 503 naming the pod', async () => {
    const pod = await runningPod('cap1', { mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`] })
    const small = await vpcProxy(kc, `127.0.0.1:${echoPort}`, { maxConnectionsPerPod: 2 })
    const held: net.Socket[] = []
    try {
      const port = small.address.port
      await until('the pod', async () => (await tunnel(port, `127.0.0.1:${echoPort}`, pod.auth)).status === 200)
      await new Promise((r) => setTimeout(r, 100)) // the probe's connection closes
      for (let i = 0; i < 2; i++) {
        const c = net.connect({ host: '127.0.0.1', port })
        held.push(c)
        await new Promise<void>((resolve) => {
          c.once('data', () => resolve())
          c.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nProxy-Authorization: ${pod.auth}\r\n\r\n`)
        })
      }
      const third = await tunnel(port, `127.0.0.1:${echoPort}`, pod.auth)
      assert.equal(third.status, 503)
      assert.equal(third.body, `codebox egress: pod ${pod.name} already has 2 connections open through the proxy\n`)
      for (const c of held) c.destroy()
      await until('the count to drop', async () => (await tunnel(port, `127.0.0.1:${echoPort}`, pod.auth)).status === 200)
    } finally {
      for (const c of held) c.destroy()
      await small.close()
    }
  })

  test('when the API server ends the watch (as a restart does), the proxy watches again and sees new pods', async () => {
    fake.closeWatches()
    const pod = await runningPod('rewatch1', { mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`] })
    await until('the pod after the watch ended', async () => (await tunnel(proxyPort, `127.0.0.1:${echoPort}`, pod.auth)).status === 200)
  })

  test('credentials parse as RFC 7617 Basic only', () => {
    assert.deepEqual(parseBasicCredentials(basic('cbx-a', 'x:y')), { user: 'cbx-a', password: 'x:y' })
    assert.deepEqual(parseBasicCredentials(`basic ${Buffer.from('a:b').toString('base64')}`), { user: 'a', password: 'b' })
    for (const bad of ['Bearer x', 'Basic', 'Basic !!!', `Basic ${Buffer.from('nocolon').toString('base64')}`, `Basic ${Buffer.from(':p').toString('base64')}`])
      assert.equal(parseBasicCredentials(bad), undefined, bad)
  })
})

test('the proxy refuses to start without a usable pod list, naming the namespace', async () => {
  const fake = await startFakeKubernetes({ kubelet: false, tls: false, users: { 'tok-a': { name: 'team-a', namespaces: ['team-a'] } } })
  try {
    const kc = new KubeConfig()
    kc.loadFromString(JSON.stringify(fake.kubeconfig('tok-a', namespace)))
    await assert.rejects(startClusterEgressProxy({ kubeConfig: kc, namespace, profile: 'vpc', sealingKey, host: '127.0.0.1', port: 0 }), (e: Error) =>
      /cannot list the sandbox pods of namespace codebox/.test(e.message),
    )
    await assert.rejects(
      startClusterEgressProxy({ kubeConfig: kc, namespace, profile: 'public', sealingKey, trusted: parseTrustedList('10.0.0.0/8'), port: 0 }),
      /applies to the vpc profile only/,
    )
  } finally {
    await fake.close()
  }
})

test('when the API server goes away, the proxy reports the watch failing, retries with a growing delay, and serves from what it saw', async () => {
  const fake = await startFakeKubernetes({ kubelet: false, tls: false })
  const kc = new KubeConfig()
  kc.loadFromString(JSON.stringify(fake.kubeconfig(fake.adminToken, namespace)))
  const core = kc.makeApiClient(CoreV1Api)
  const echo = net.createServer((s) => s.pipe(s))
  const echoPort = await listen(echo)
  const failures: number[] = []
  const proxy = await vpcProxy(kc, `127.0.0.1:${echoPort}`, { onWatchError: () => failures.push(Date.now()) })
  try {
    const name = 'cbx-gone1'
    const nonce = newTokenNonce()
    const token = egressToken(key, { namespace, podName: name, nonce })
    const body = sessionPod({
      sessionId: 'gone1',
      namespace,
      image: 'codebox/sandbox:test',
      limits: { ...defaultLimits },
      network: 'vpc',
      poolKey: 'test',
      nonce,
      token: executorToken(executorTokenKey(sealingKey), { namespace, podName: name, nonce }),
      egressProxyUrl: `http://127.0.0.1:${proxy.address.port}`,
      egressToken: token,
      egressPolicy: { mode: 'allowlist', allow: [`127.0.0.1:${echoPort}`] },
    })
    await core.createNamespacedPod({ namespace, body: body as V1Pod })
    const pod = await core.readNamespacedPod({ namespace, name })
    await core.replaceNamespacedPodStatus({ namespace, name, body: { ...pod, status: { phase: 'Running', podIP: '127.0.0.1' } } })
    const auth = basic(name, token)
    await until('the pod', async () => (await tunnel(proxy.address.port, `127.0.0.1:${echoPort}`, auth)).status === 200)
    await fake.close()
    await until('two failed watches', async () => failures.length >= 2)
    assert.ok(failures[1]! - failures[0]! >= 900, `retried after ${failures[1]! - failures[0]!} ms, not at once`)
    assert.equal((await tunnel(proxy.address.port, `127.0.0.1:${echoPort}`, auth)).status, 200, 'the pods it saw are still served')
  } finally {
    await proxy.close()
    echo.close()
    await fake.close().catch(() => {})
  }
})
