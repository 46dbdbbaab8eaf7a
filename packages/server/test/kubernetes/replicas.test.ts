/**
 * Issue 16's "done when", end to end: two codebox replicas, each `codebox serve` in a process of
 * its own with the kubernetes driver, share one PostgreSQL store behind one port (a balancer that
 * sends each connection to the next replica, no stickiness). Sessions' sandboxes are pods of the
 * fake API server, whose kubelet runs the executor in a bwrap sandbox on a loopback pod network,
 * so the replicas reach pods with a plain TCP connect, as on a cluster. Any replica answers for
 * any session; one replica killed (SIGKILL) in the middle of a call loses no session; a replica
 * that starts later serves the sessions others started and ends none of them. A hosted agent
 * (the Runtime) runs in a pod too: its bundle received by the pod's init container, reached
 * through the executor's port tunnel from either replica, its model through the cluster's vpc
 * egress proxy and the replicas' signed gateway route, with the operator's key on the host only.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import {
  findResource,
  sandboxPodRunner,
  sandboxPodSupport,
  startFakeKubernetes,
  type FakeKubernetes,
  type SandboxPodRunner,
} from '@codebox/sandbox/testing/kubernetes'
import { KubeConfig } from '@kubernetes/client-node'
import { GATEWAY_ANNOTATION, startClusterEgressProxy, type ClusterEgressProxy } from '@codebox/driver-kubernetes'
import { freePort } from '@codebox/sandbox/testing'
import type { RunningServer } from '@codebox/server'
import { deployAgent, pythonAgent } from '../hosted-fixtures.ts'
import { postgresSkip, startPostgres, type PostgresServer } from '../postgres-fixtures.ts'
import { startBalancer, type Balancer } from './balancer.ts'

const repo = fileURLToPath(new URL('../../../../', import.meta.url))
const bin = path.join(repo, 'packages/cli/bin/codebox')
const namespace = 'codebox'
const podsOf = (fake: FakeKubernetes) => fake.store.list(findResource('', 'v1', 'pods')!, namespace)
const support = await sandboxPodSupport()
const operatorKey = 'sk-ant-OPERATOR-REPLICAS-7'

/** A hosted agent that counts its invocations (so its memory shows), and asks its model through the gateway when told. */
const agentPy = pythonAgent(String.raw`    def do_POST(self):
        global count
        payload = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
        if payload.get("prompt") == "model":
            import urllib.request
            req = urllib.request.Request(os.environ["ANTHROPIC_BASE_URL"] + "/v1/messages", data=b'{"model": "m", "max_tokens": 1, "messages": []}',
                                         headers={"content-type": "application/json", "x-api-key": os.environ["ANTHROPIC_API_KEY"], "anthropic-version": "2023-06-01"})
            self.reply(200, "application/json", urllib.request.urlopen(req, timeout=20).read())
            return
        count += 1
        self.reply(200, "application/json", json.dumps({"count": count, "pid": os.getpid(), "cwd": os.getcwd()}).encode())`)
const skip = postgresSkip || ('unavailable' in support ? support.unavailable : false)

const pick = (o: Record<string, unknown>, ...keys: string[]): Record<string, unknown> => Object.fromEntries(keys.map((k) => [k, o[k]]))

interface Replica {
  name: string
  port: number
  url: string
  child: ChildProcess
  output: () => string
}

describe('two replicas on PostgreSQL with the kubernetes driver, behind one port', { skip }, () => {
  let work = ''
  let pg: PostgresServer
  let fake: FakeKubernetes
  let pods: SandboxPodRunner
  let env: Record<string, string> = {}
  const replicas: Replica[] = []
  let balancer: Balancer
  let proxy: ClusterEgressProxy
  let provider: http.Server

  async function startReplica(name: string): Promise<Replica> {
    const port = await freePort()
    const child = spawn(bin, ['serve'], {
      env: {
        ...env,
        CODEBOX_PORT: String(port),
        CODEBOX_STATE_DIR: path.join(work, `state-${name}`),
        CODEBOX_REPLICA_ID: name,
        CODEBOX_K8S_POD_NAME: `api-${name}`,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    const keep = (b: Buffer): void => void (out = (out + b.toString()).slice(-20_000))
    child.stdout!.on('data', keep)
    child.stderr!.on('data', keep)
    const replica = { name, port, url: `http://127.0.0.1:${port}`, child, output: () => out }
    replicas.push(replica)
    const deadline = Date.now() + 90_000
    for (;;) {
      if (child.exitCode !== null) assert.fail(`replica ${name} exited ${child.exitCode}: ${out}`)
      const r = await fetch(`${replica.url}/ping`).catch(() => undefined)
      if (r?.ok) return replica
      if (Date.now() > deadline) assert.fail(`replica ${name} did not answer /ping in 90 s: ${out}`)
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
  }

  /** One request on a connection of its own, so the balancer picks the next replica for each. */
  async function call(base: string, method: string, url: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await fetch(`${base}${url}`, {
      method,
      headers: { connection: 'close', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    const text = await res.text()
    return { status: res.status, json: text ? (JSON.parse(text) as Record<string, unknown>) : {} }
  }

  async function python(base: string, sessionId: string, code: string): Promise<string> {
    const r = await call(base, 'POST', `/v1/sessions/${sessionId}/invoke`, { name: 'executeCode', arguments: { code } })
    assert.equal(r.status, 200, JSON.stringify(r.json))
    const out = r.json.structuredContent as { stdout: string; stderr: string }
    assert.equal(r.json.isError, false, out.stderr)
    return out.stdout
  }

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'cbx-replicas-'))
    pg = await startPostgres()
    pods = await sandboxPodRunner({ imagePath: (support as { imagePath: string }).imagePath, egress: true })
    fake = await startFakeKubernetes({ kubelet: { podNetwork: 'loopback', run: (pod) => pods.run(pod) } })
    const kubeconfig = path.join(work, 'kubeconfig')
    await writeFile(kubeconfig, JSON.stringify(fake.kubeconfig(fake.adminToken, namespace)), { mode: 0o600 })
    // A scripted model provider on loopback: it answers with the key it was sent.
    provider = http.createServer((req, res) => {
      req.resume()
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ key: req.headers['x-api-key'] })))
    })
    await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve))
    const sealingKey = randomBytes(32)
    const proxyPort = await freePort()
    env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      CODEBOX_NODE: process.execPath,
      CODEBOX_LOG_LEVEL: 'warn',
      CODEBOX_HOST: '127.0.0.1',
      CODEBOX_DB: await pg.database('replicas'),
      CODEBOX_SEALING_KEY: sealingKey.toString('base64'),
      CODEBOX_K8S_EGRESS_PROXY_VPC: `127.0.0.1:${proxyPort}`,
      ANTHROPIC_API_KEY: operatorKey,
      CODEBOX_GATEWAY_ANTHROPIC_URL: `http://127.0.0.1:${(provider.address() as AddressInfo).port}`,
      CODEBOX_DRIVER: 'kubernetes',
      CODEBOX_K8S_KUBECONFIG: kubeconfig,
      CODEBOX_K8S_NAMESPACE: namespace,
      CODEBOX_K8S_SANDBOX_IMAGE: 'registry.example.com/codebox/sandbox:test',
      CODEBOX_K8S_RUNTIME_CLASS: '',
      CODEBOX_POOL_SIZE: '0',
    }
    await startReplica('a')
    await startReplica('b')
    balancer = await startBalancer(replicas.slice(0, 2))
    // The cluster's vpc egress proxy, relaying the pods' gateway requests to the replicas behind the balancer.
    const kc = new KubeConfig()
    kc.loadFromString(JSON.stringify(fake.kubeconfig(fake.adminToken, namespace)))
    proxy = await startClusterEgressProxy({
      kubeConfig: kc,
      namespace,
      profile: 'vpc',
      sealingKey,
      host: '127.0.0.1',
      port: proxyPort,
      apiUrl: balancer.url,
      resolve: async () => [],
    })
  })

  after(async () => {
    await proxy?.close()
    provider?.closeAllConnections()
    provider?.close()
    await balancer?.close()
    for (const r of replicas) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL')
    await fake?.close()
    await pods?.close()
    await pg?.stop()
    await rm(work, { recursive: true, force: true })
  })

  it('a hosted agent in a pod: either replica reaches the same agent, whose model is reached through the gateway relay', async () => {
    const { agentRuntimeId } = await deployAgent({ url: balancer.url } as RunningServer, 'k8s_counter', agentPy)
    const runtimeSession = 'a-runtime-session-on-kubernetes-000000000001'
    const invoke = async (prompt: string): Promise<Record<string, unknown>> => {
      const r = await call(balancer.url, 'POST', `/v1/runtimes/${agentRuntimeId}/invocations?session=${runtimeSession}`, { prompt })
      assert.equal(r.status, 200, JSON.stringify(r.json))
      return r.json
    }
    const first = await invoke('count')
    assert.deepEqual([first.count, first.cwd], [1, '/app'])
    const [pod, ...others] = podsOf(fake)
    assert.equal(others.length, 0, 'one pod for the runtime session')
    assert.deepEqual(
      (pod!.spec as { initContainers?: { name: string }[] }).initContainers?.map((c) => c.name),
      ['code'],
      'its bundle came through the init container',
    )
    assert.ok(pod!.metadata.annotations?.[GATEWAY_ANNOTATION], 'the pod may use the gateway')
    const before = balancer.picks.length
    for (let i = 2; i <= 5; i++) assert.deepEqual(pick(await invoke('count'), 'count', 'pid'), { count: i, pid: first.pid }, 'the same agent, with its memory')
    assert.deepEqual(new Set(balancer.picks.slice(before)), new Set([0, 1]), 'both replicas reached it')
    assert.deepEqual(await invoke('model'), { key: operatorKey }, "the operator's key was added outside the pod")
    assert.deepEqual(await invoke('model'), { key: operatorKey })

    const stopped = await call(balancer.url, 'DELETE', `/v1/runtimes/${agentRuntimeId}/sessions/${runtimeSession}`)
    assert.ok(stopped.status < 300, JSON.stringify(stopped.json))
    const deadline = Date.now() + 30_000
    while (podsOf(fake).length > 0) {
      if (Date.now() > deadline) assert.fail('the pod of the stopped runtime session is still there after 30 s')
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    assert.equal((await invoke('count')).count, 1, 'a stopped runtime session starts afresh, on a new pod')
    await call(balancer.url, 'DELETE', `/v1/runtimes/${agentRuntimeId}/sessions/${runtimeSession}`)
    const gone = Date.now() + 30_000
    while (podsOf(fake).length > 0) {
      if (Date.now() > gone) assert.fail('the second pod of the runtime session is still there after 30 s')
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  })

  it('any replica answers for any session, a killed replica loses none, a new one ends none', async () => {
    const started = await call(balancer.url, 'POST', '/v1/sessions', {})
    assert.equal(started.status, 201, JSON.stringify(started.json))
    const sessionId = started.json.sessionId as string
    assert.equal(podsOf(fake).length, 1, 'the session is one pod (named by its sandbox id)')

    assert.equal(await python(balancer.url, sessionId, 'x = 41\nprint("set")'), 'set\n')
    const before = balancer.picks.length
    for (let i = 0; i < 4; i++) assert.equal(await python(balancer.url, sessionId, 'x += 1\nprint(x)'), `${42 + i}\n`)
    assert.deepEqual(new Set(balancer.picks.slice(before)), new Set([0, 1]), 'both replicas answered, in turn')

    // Replica a dies in the middle of a call it serves; the session lives on through b.
    const [a, b] = replicas as [Replica, Replica]
    const slow = call(a.url, 'POST', `/v1/sessions/${sessionId}/invoke`, {
      name: 'executeCode',
      arguments: { code: 'import time\ntime.sleep(5)\nprint("slept")' },
    })
    await new Promise((resolve) => setTimeout(resolve, 1500))
    a.child.kill('SIGKILL')
    await assert.rejects(slow, 'the call on the killed replica fails')
    for (let i = 0; i < 2; i++) assert.equal(await python(balancer.url, sessionId, 'print(x)'), '45\n', 'the state is kept')
    const info = await call(b.url, 'GET', `/v1/sessions/${sessionId}`)
    assert.equal(info.json.status, 'READY')

    // A replica that starts now serves the session and ends nothing.
    const c = await startReplica('c')
    assert.equal(await python(c.url, sessionId, 'print(x * 2)'), '90\n')
    assert.equal((await call(b.url, 'GET', `/v1/sessions/${sessionId}`)).json.status, 'READY')

    // Stopped on one replica, ended for all; its pod is deleted.
    const stopped = await call(c.url, 'DELETE', `/v1/sessions/${sessionId}`)
    assert.ok(stopped.status < 300, JSON.stringify(stopped.json))
    const after = await call(b.url, 'POST', `/v1/sessions/${sessionId}/invoke`, { name: 'executeCode', arguments: { code: 'print(x)' } })
    assert.equal((after.json as { error?: { code?: string } }).error?.code, 'SessionTerminated', JSON.stringify(after.json))
    const deadline = Date.now() + 30_000
    while (podsOf(fake).length > 0) {
      if (Date.now() > deadline) assert.fail('the pod of the stopped session is still there after 30 s')
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
  })
})
