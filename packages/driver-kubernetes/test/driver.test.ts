/**
 * The kubernetes driver against the fake API server through the real client: the driver contract
 * suite, then what is the driver's own: check() and the RuntimeClass, an idempotent create, a pod
 * that never gets Ready or crashes (Unavailable, the pod deleted, its log tail in the message), a
 * pod deleted from outside (its session ends), a second replica attaching to the same pod, a
 * refused token, list(), the network profiles, and port access (openPort through a tunnel).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { setTimeout as delay } from 'node:timers/promises'
import { CodeboxError, defaultLimits, type SandboxSpec } from '@codebox/core'
import { SessionManager, type Session } from '@codebox/sandbox'
import type { Duplex } from 'node:stream'
import { defineDriverTests, ExecutorClient, freePort, within } from '@codebox/sandbox/testing'
import {
  componentLabels,
  connectExecutor,
  EGRESS_POLICY_ANNOTATION,
  GATEWAY_ANNOTATION,
  egressToken,
  egressTokenKey,
  executorToken,
  executorTokenKey,
  NETWORK_LABEL,
  NONCE_ANNOTATION,
  SESSION_LABEL,
} from '../src/index.ts'
import { findResource } from '@codebox/sandbox/testing/kubernetes'
import { connectTunnel } from '../src/driver/tunnel.ts'
import { hostReason, podMode, startKube, testId, type KubeFixture } from './kube-fixtures.ts'

const podsType = findResource('', 'v1', 'pods')!

let contractKube: KubeFixture | undefined
defineDriverTests(
  `kubernetes (fake API server, ${podMode === 'sandbox' ? 'sandbox pods of the image' : 'executors on the host'})`,
  async () => {
    contractKube = await startKube()
    return contractKube.driver()
  },
  {
    skips:
      podMode === 'sandbox'
        ? { oom: 'the fake kubelet’s sandbox pods have no cgroups: a pod’s memory limit is not applied (it is the kubelet’s and the runtime’s on a cluster)' }
        : {
            oom: `the fake kubelet runs the executor as a host process (${hostReason}): a pod’s memory limit is not applied`,
            pids: `the fake kubelet runs the executor as a host process (${hostReason}): no pids limit binds root`,
            image: `the fake kubelet runs the executor on the host (${hostReason}), not in the sandbox image: there is no /home/user`,
          },
  },
)
after(async () => {
  await contractKube?.close()
})

const spec = (id = testId()): SandboxSpec => ({ id, limits: { ...defaultLimits }, network: { mode: 'none' } })
const isCode = (code: string, message?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof CodeboxError, `expected a CodeboxError, got ${String(e)}`)
  assert.equal(e.code, code, e.message)
  if (message) assert.match(e.message, message)
  return true
}

/** Runs Python on a session and returns its stdout; a failed cell throws. */
async function py(session: Session, code: string): Promise<string> {
  const r = await session.runCode({ code, language: 'python' })
  if (r.isError) throw new Error(`cell failed: ${r.structuredContent.stderr}`)
  return r.structuredContent.stdout
}

/** Polls until `ok()` (every 20 ms, at most `ms`). */
async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await ok())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await delay(20)
  }
}

describe('kubernetes driver', () => {
  let kube: KubeFixture
  before(async () => {
    kube = await startKube({ runtimeClasses: ['gvisor'] })
  })
  after(async () => {
    await kube?.close()
  })
  const pods = (): string[] => kube.fake.store.list(podsType, kube.namespace).map((p) => p.metadata.name)

  it('check() passes with the RuntimeClass present; a missing one is Unavailable naming CODEBOX_K8S_RUNTIME_CLASS; none is not checked', async () => {
    await kube.driver().check()
    await assert.rejects(
      kube.driver({ runtimeClassName: 'kata' }).check(),
      isCode('Unavailable', /RuntimeClass "kata" does not exist.*CODEBOX_K8S_RUNTIME_CLASS/),
    )
    await kube.driver({ runtimeClassName: null }).check()
  })

  it('check() names the namespace when the API refuses it', async () => {
    const other = await startKube({ users: { 'tok-a': { name: 'team-a', namespaces: ['team-a'] } } })
    try {
      const kc = other.kubeConfig()
      kc.users[0] = { ...kc.users[0]!, token: 'tok-a' }
      const driver = other.driver({ kubeConfig: kc, runtimeClassName: null })
      await assert.rejects(
        driver.check(),
        isCode('Unavailable', /cannot list pods in namespace codebox at https:\/\/127\.0\.0\.1:\d+: HTTP 403: pods is forbidden/),
      )
    } finally {
      await other.close()
    }
  })

  it('creates the pod cbx-<id> from the builder: labels, nonce annotation, a token only this pod’s annotation yields', async () => {
    const driver = kube.driver()
    const s = spec()
    const sandbox = await driver.create(s)
    try {
      const client = new ExecutorClient(sandbox)
      await within(client.ready, 30_000, 'ready')
      const pod = kube.fake.store.get(podsType, kube.namespace, `cbx-${s.id}`)
      assert.equal(pod.metadata.labels?.[SESSION_LABEL], s.id)
      assert.equal(pod.metadata.labels?.[NETWORK_LABEL], 'sandbox')
      const nonce = pod.metadata.annotations?.[NONCE_ANNOTATION] ?? ''
      const env = (pod.spec as { containers: { env: { name: string; value: string }[] }[] }).containers[0]!.env
      const token = env.find((e) => e.name === 'CODEBOX_EXECUTOR_TOKEN')?.value
      assert.equal(token, executorToken(executorTokenKey(kube.sealingKey), { namespace: kube.namespace, podName: `cbx-${s.id}`, nonce }))
      assert.equal((pod.spec as { runtimeClassName?: string }).runtimeClassName, 'gvisor')
    } finally {
      await sandbox.destroy()
    }
    assert.ok(!pods().includes(`cbx-${s.id}`), 'destroy() waited for the pod to go')
  })

  it('create is idempotent: a retried create of the same id uses the pod that is there, and sees its state', async () => {
    const driver = kube.driver()
    const s = spec()
    const first = await driver.create(s)
    const second = await driver.create(s)
    try {
      const a = new ExecutorClient(first)
      const b = new ExecutorClient(second)
      await Promise.all([a.ready, b.ready])
      assert.equal(pods().filter((n) => n === `cbx-${s.id}`).length, 1)
      assert.equal(a.hello?.pid, b.hello?.pid, 'both connections reach the one executor')
    } finally {
      await first.destroy()
      await second.destroy()
    }
  })

  it('a pod that never gets Ready: create fails with Unavailable (its state and log tail) and the pod is deleted', async () => {
    const driver = kube.driver({ startTimeoutMs: 1500 })
    const s = spec(testId('never-ready'))
    const started = Date.now()
    await assert.rejects(
      driver.create(s),
      isCode('Unavailable', /cbx-never-ready-[0-9a-f]+ was not ready within 2 s \(Running.*its log ends: waiting forever/s),
    )
    assert.ok(Date.now() - started < 10_000)
    await until('the pod to be deleted', () => !pods().includes(`cbx-${s.id}`))
  })

  it('a pod whose container exits at start: Unavailable with its exit and log tail, at once, and the pod is deleted', async () => {
    const driver = kube.driver({ startTimeoutMs: 20_000 })
    const s = spec(testId('crash'))
    const started = Date.now()
    await assert.rejects(driver.create(s), isCode('Unavailable', /ended before it was ready: Failed.*exit code 3.*its log ends: executor: cannot start: boom/s))
    assert.ok(Date.now() - started < 10_000, 'the failure was seen from the watch, not at the timeout')
    await until('the pod to be deleted', () => !pods().includes(`cbx-${s.id}`))
  })

  it('a start cancelled by its signal deletes the pod', async () => {
    const driver = kube.driver()
    const s = spec(testId('never-ready'))
    const controller = new AbortController()
    setTimeout(() => controller.abort(new CodeboxError('Canceled', 'the client went away')), 300)
    await assert.rejects(driver.create(s, { signal: controller.signal }), isCode('Canceled'))
    await until('the pod to be deleted', () => !pods().includes(`cbx-${s.id}`))
  })

  it('a pod deleted from outside: its exited resolves and the session’s next call fails with SessionTerminated', async () => {
    await using manager = new SessionManager({ driver: kube.driver(), poolSize: 0 })
    const session = await manager.start({ preload: [] })
    assert.equal(await py(session, 'print(6 * 7)'), '42\n')
    kube.fake.store.delete(podsType, kube.namespace, `cbx-${session.sandboxId}`, { gracePeriodSeconds: 0 })
    await until('the session to end', () => session.status === 'terminated')
    assert.equal(session.endReason, 'sandbox-exited')
    await assert.rejects(session.runCode({ code: 'print(1)' }), isCode('SessionTerminated'))
  })

  it('after an API server restart (every watch closed) the shared watch resumes: a later start and an outside deletion are still seen', async () => {
    // No reads while a start waits: its pod's readiness can only come from the watch.
    const driver = kube.driver({ readyPollMs: 600_000 })
    await using manager = new SessionManager({ driver, poolSize: 0 })
    const first = await manager.start({ preload: [] })
    kube.fake.closeWatches()
    const second = await manager.start({ preload: [] })
    assert.equal(await py(second, 'print("after the restart")'), 'after the restart\n')
    const watches = () => kube.fake.requests.filter((r) => r.query.includes('watch=true') && r.status === 0).length
    await until('the watch to be open again', () => watches() > 0)
    kube.fake.store.delete(podsType, kube.namespace, `cbx-${first.sandboxId}`, { gracePeriodSeconds: 0 })
    await until('the first session to end', () => first.status === 'terminated')
    assert.equal(second.status, 'ready')
  })

  it('a second replica attaches to the same pod: it runs Python in it and sees the first one’s state; stopping it there ends it here', async () => {
    const replicaA = new SessionManager({ driver: kube.driver(), poolSize: 0 })
    const replicaB = new SessionManager({ driver: kube.driver(), poolSize: 0 })
    try {
      const a = await replicaA.start({ preload: [] })
      await py(a, 'shared = "set on replica A"')
      const outcome = await replicaB.adopt([{ sessionId: a.id, sandboxId: a.sandboxId, limits: a.limits, createdAt: a.createdAt }])
      assert.deepEqual(outcome.failed, [])
      const b = outcome.adopted[0]!
      assert.equal(await py(b, 'print(shared)'), 'set on replica A\n')
      await py(b, 'shared = "and B"')
      assert.equal(await py(a, 'print(shared)'), 'and B\n')
      await b.stop()
      await until('replica A’s session to end with the pod', () => a.status === 'terminated')
      assert.equal(a.endReason, 'sandbox-exited')
    } finally {
      await replicaA.close()
      await replicaB.close()
    }
  })

  it('attach to a pod that is gone or finished is SessionTerminated; a finished one is removed', async () => {
    const driver = kube.driver()
    await assert.rejects(driver.attach('no-such-sandbox'), isCode('SessionTerminated', /its pod codebox\/cbx-no-such-sandbox is gone/))
    const s = spec()
    const sandbox = await driver.create(s)
    const client = new ExecutorClient(sandbox)
    await client.ready
    sandbox.release!()
    // The executor of a pod handed to no session waits; kill its process as a crash would.
    const pod = kube.fake.store.get(podsType, kube.namespace, `cbx-${s.id}`)
    const status = pod.status as Record<string, unknown>
    kube.fake.store.replace(
      podsType,
      kube.namespace,
      `cbx-${s.id}`,
      { ...pod, status: { ...status, phase: 'Failed', reason: 'Evicted', message: 'The node was low on resource: memory.' } },
      'status',
    )
    await assert.rejects(driver.attach(s.id), isCode('SessionTerminated', /has ended: Failed; Evicted; The node was low on resource: memory\./))
    await until('the finished pod to be removed', () => !pods().includes(`cbx-${s.id}`))
  })

  it('the executor refuses a wrong token (the connection closes without a word); a replica with another sealing key cannot attach', async () => {
    const driver = kube.driver()
    const s = spec()
    const sandbox = await driver.create(s)
    try {
      await new ExecutorClient(sandbox).ready
      const pod = kube.fake.store.get(podsType, kube.namespace, `cbx-${s.id}`)
      const podIP = (pod.status as { podIP: string }).podIP
      const connect = (token: string) =>
        connectExecutor({ dial: (x) => kube.fake.dial(x), host: podIP, port: 7070, token, what: 'the test pod', timeoutMs: 5000 })
      await assert.rejects(connect('not-the-token'), isCode('Unavailable', /closed the connection without answering: it refused the token/))
      const good = await connect(
        executorToken(executorTokenKey(kube.sealingKey), {
          namespace: kube.namespace,
          podName: `cbx-${s.id}`,
          nonce: pod.metadata.annotations![NONCE_ANNOTATION]!,
        }),
      )
      good.destroy()
      const stranger = kube.driver({ sealingKey: Buffer.alloc(32, 9) })
      await assert.rejects(stranger.attach(s.id), isCode('Unavailable', /refused the token/))
      assert.ok(pods().includes(`cbx-${s.id}`), 'a refused attach leaves a running pod to the replicas that can reach it')
    } finally {
      await sandbox.destroy()
    }
  })

  it('port access: an HTTP server a session runs on 127.0.0.1:8080 answers through openPort (tunnels), from either replica; a wrong token, a port nobody listens on and an ended session are refused', async () => {
    // Sandbox pods have a loopback of their own; executors on the host share the host's.
    const port = podMode === 'sandbox' ? 8080 : await freePort()
    const replicaA = new SessionManager({ driver: kube.driver(), poolSize: 0 })
    const replicaB = new SessionManager({ driver: kube.driver(), poolSize: 0 })
    try {
      const a = await replicaA.start({ preload: [] })
      const server = [
        'import http.server',
        'class H(http.server.BaseHTTPRequestHandler):',
        '    def do_GET(self):',
        '        body = ("hello from the pod at " + self.path).encode()',
        '        self.send_response(200)',
        '        self.send_header("Content-Length", str(len(body)))',
        '        self.end_headers()',
        '        self.wfile.write(body)',
        `srv = http.server.ThreadingHTTPServer(("127.0.0.1", ${port}), H)`,
        'print("listening", flush=True)',
        'srv.serve_forever()',
      ].join('\n')
      await a.files.write('server.py', server)
      const taskId = (await a.tasks.start('exec python3 -u server.py')).structuredContent.taskId!
      await until('the server to listen', async () => (await a.tasks.read(taskId)).stdout === 'listening\n', 30_000)
      const get = async (stream: Duplex, path: string): Promise<string> => {
        const chunks: Buffer[] = []
        stream.on('data', (c: Buffer) => chunks.push(c))
        const closed = new Promise((resolve) => stream.once('close', resolve))
        stream.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
        await within(closed, 10_000, `GET ${path} did not end`)
        return Buffer.concat(chunks).toString()
      }
      const answers = await Promise.all(['/one', '/two', '/three'].map(async (p) => get(await a.openPort(port), p)))
      for (const [i, p] of ['/one', '/two', '/three'].entries()) {
        assert.match(answers[i]!, /^HTTP\/1\.0 200 OK\r\n/)
        assert.ok(answers[i]!.endsWith(`\r\n\r\nhello from the pod at ${p}`), answers[i])
      }
      await assert.rejects(a.openPort(port + 1), (e: unknown) => {
        assert.ok(e instanceof CodeboxError && e.code === 'Unavailable', String(e))
        assert.match(e.message, new RegExp(`nothing listens on port ${port + 1} in the sandbox`))
        assert.equal(e.details.reason, 'refused')
        return true
      })
      await assert.rejects(a.openPort(port, { signal: AbortSignal.abort() }), { name: 'AbortError' })
      // Another replica reaches the same server through a tunnel of its own.
      const outcome = await replicaB.adopt([{ sessionId: a.id, sandboxId: a.sandboxId, limits: a.limits, createdAt: a.createdAt }])
      const b = outcome.adopted[0]!
      assert.ok(b, JSON.stringify(outcome.failed))
      assert.ok((await get(await b.openPort(port), '/from-b')).endsWith('hello from the pod at /from-b'))
      // A tunnel with the wrong token gets no byte of the port.
      const podIP = (kube.fake.store.get(podsType, kube.namespace, `cbx-${a.sandboxId}`).status as { podIP: string }).podIP
      const tunnel = (token: string) =>
        connectTunnel({ dial: (x) => kube.fake.dial(x), host: podIP, port: 7070, token, what: 'the test pod', timeoutMs: 5000 }, port)
      await assert.rejects(tunnel('not-the-token'), (e: unknown) => {
        assert.ok(e instanceof CodeboxError && e.code === 'Unavailable', String(e))
        assert.match(e.message, new RegExp(`port ${port} in the sandbox cannot be reached: .*refused the token`))
        assert.equal(e.details.reason, 'unreachable')
        return true
      })
      const sandbox = await kube.driver().attach(a.sandboxId)
      sandbox.release!()
      await assert.rejects(sandbox.connectPort!(0), isCode('ValidationError', /port: must be a whole number from 1 to 65535, got 0/))
      await b.stop()
      await until('replica A’s session to end with the pod', () => a.status === 'terminated')
      await assert.rejects(a.openPort(port), isCode('SessionTerminated'))
    } finally {
      await replicaA.close()
      await replicaB.close()
    }
  })

  it('attach to a pod whose nonce annotation is malformed is Unavailable, and the pod is deleted', async () => {
    const driver = kube.driver()
    const s = spec()
    const sandbox = await driver.create(s)
    await new ExecutorClient(sandbox).ready
    sandbox.release!()
    const pod = kube.fake.store.get(podsType, kube.namespace, `cbx-${s.id}`)
    kube.fake.store.replace(podsType, kube.namespace, `cbx-${s.id}`, { ...pod, metadata: { ...pod.metadata, annotations: { [NONCE_ANNOTATION]: 'short' } } })
    await assert.rejects(driver.attach(s.id), isCode('Unavailable', /malformed codebox\.dev\/token-nonce annotation/))
    await until('the pod to be deleted', () => !pods().includes(`cbx-${s.id}`))
  })

  it('list() names the session pods old enough not to be another replica’s start in progress', async () => {
    const s = spec()
    const creator = kube.driver()
    const sandbox = await creator.create(s)
    try {
      assert.ok(!(await kube.driver().list()).includes(s.id), 'a pod younger than the start timeout is left out')
      assert.ok((await kube.driver({ startTimeoutMs: 5000, listGraceMs: 0 }).list()).includes(s.id))
    } finally {
      await sandbox.destroy()
    }
    assert.ok(!(await kube.driver({ listGraceMs: 0 }).list()).includes(s.id))
  })

  it("network: none is the sandbox profile; PUBLIC and an allow-list go through their profile's proxy by IP, naming the pod and its policy; the model gateway goes through the proxy too, reaching nothing else", async () => {
    const driver = kube.driver({
      egressProxies: { public: 'egress-public.codebox.svc:3128', vpc: 'egress-vpc.codebox.svc:3128' },
      resolveHost: async (h) => ({ 'egress-public.codebox.svc': '10.96.0.42', 'egress-vpc.codebox.svc': '10.96.0.43' })[h] ?? '',
    })
    const cases = [
      { policy: { mode: 'public' as const, allow: [] }, profile: 'public', ip: '10.96.0.42' },
      { policy: { mode: 'allowlist' as const, allow: ['example.com', '10.0.0.0/8:5432'] }, profile: 'vpc', ip: '10.96.0.43' },
    ]
    for (const c of cases) {
      const s: SandboxSpec = { ...spec(), network: { mode: 'egress', policy: c.policy } }
      const sandbox = await driver.create(s)
      try {
        const name = `cbx-${s.id}`
        const pod = kube.fake.store.get(podsType, kube.namespace, name)
        assert.equal(pod.metadata.labels?.[NETWORK_LABEL], c.profile)
        assert.deepEqual(JSON.parse(pod.metadata.annotations?.[EGRESS_POLICY_ANNOTATION] ?? 'null'), c.policy, 'the proxy reads the pod’s own policy')
        // The proxy recomputes the credentials from the pod's nonce and the shared sealing key.
        const token = egressToken(egressTokenKey(kube.sealingKey), {
          namespace: kube.namespace,
          podName: name,
          nonce: pod.metadata.annotations![NONCE_ANNOTATION]!,
        })
        const env = (pod.spec as { containers: { env: { name: string; value: string }[] }[] }).containers[0]!.env
        assert.equal(env.find((e) => e.name === 'HTTPS_PROXY')?.value, `http://${name}:${token}@${c.ip}:3128`)
        assert.equal(sandbox.egressCounters, undefined)
      } finally {
        await sandbox.destroy()
      }
    }
    // The gateway: alone through the vpc proxy with policy none, or with PUBLIC through the public one; its identity in the annotation.
    const gatewayCases = [
      { policy: { mode: 'none' as const, allow: [] }, profile: 'vpc', gateway: { tag: 'rt-1' } },
      { policy: { mode: 'public' as const, allow: [] }, profile: 'public', gateway: {} },
    ]
    for (const c of gatewayCases) {
      const s: SandboxSpec = { ...spec(), network: { mode: 'egress', policy: c.policy, sessionId: 'sess1', gateway: c.gateway } }
      const sandbox = await driver.create(s)
      try {
        const pod = kube.fake.store.get(podsType, kube.namespace, `cbx-${s.id}`)
        assert.equal(pod.metadata.labels?.[NETWORK_LABEL], c.profile)
        assert.deepEqual(JSON.parse(pod.metadata.annotations?.[EGRESS_POLICY_ANNOTATION] ?? 'null'), c.policy)
        assert.deepEqual(JSON.parse(pod.metadata.annotations?.[GATEWAY_ANNOTATION] ?? 'null'), { sessionId: 'sess1', ...c.gateway })
        const env = (pod.spec as { containers: { env: { name: string; value: string }[] }[] }).containers[0]!.env
        const value = (name: string): string | undefined => env.find((e) => e.name === name)?.value
        assert.equal(value('ANTHROPIC_BASE_URL'), 'http://127.0.0.1:3129/anthropic', "the executor's gateway port, as on one host")
        assert.equal(value('CODEBOX_GATEWAY_PORT'), '3129')
        assert.equal(value('CODEBOX_GATEWAY_PROXY'), value('HTTP_PROXY'), 'the port tunnels to the pod’s own proxy, with its own credentials')
        assert.match(value('NO_PROXY') ?? '', /(^|,)127\.0\.0\.1(,|$)/, 'clients go to the port directly')
        assert.equal(value('ANTHROPIC_API_KEY'), 'codebox-gateway', 'a placeholder, no secret')
      } finally {
        await sandbox.destroy()
      }
    }
    const before = pods().length
    await assert.rejects(
      kube
        .driver({ egressProxies: { public: '10.96.0.42:3128' } })
        .create({ ...spec(), network: { mode: 'egress', policy: { mode: 'none', allow: [] }, gateway: {} } }),
      isCode('Unavailable', /the model gateway needs the vpc egress proxy: CODEBOX_K8S_EGRESS_PROXY_VPC/),
    )
    await assert.rejects(
      kube.driver().create({ ...spec(), network: { mode: 'egress', policy: { mode: 'public', allow: [] } } }),
      isCode('Unavailable', /CODEBOX_K8S_EGRESS_PROXY_PUBLIC/),
    )
    await assert.rejects(
      kube
        .driver({ egressProxies: { public: '10.96.0.42:3128' } })
        .create({ ...spec(), network: { mode: 'egress', policy: { mode: 'allowlist', allow: ['example.com'] } } }),
      isCode('Unavailable', /VPC \(an allow-list\) needs the vpc egress proxy: CODEBOX_K8S_EGRESS_PROXY_VPC/),
    )
    assert.equal(pods().length, before, 'a refused network creates no pod')
  })

  it('with `leader`, a checked driver takes part in the election and, leading, sweeps a finished pod nobody serves', async () => {
    const driver = kube.driver({ leader: { leaseName: 'driver-leader', identity: 'replica-1', renewMs: 100, sweepMs: 100, finishedGraceMs: 0 } })
    const name = `cbx-${testId('crash')}`
    kube.fake.store.create(podsType, kube.namespace, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: kube.namespace, labels: componentLabels('sandbox') } as never,
      spec: { containers: [{ name: 'executor', image: 'x' }] },
    } as never)
    await until(
      'the orphan pod to fail',
      () => (kube.fake.store.find(podsType, kube.namespace, name)?.status as { phase?: string } | undefined)?.phase === 'Failed',
    )
    assert.equal(driver.leading, false)
    await driver.check()
    await until('the driver to lead', () => driver.leading)
    await until('the leader to sweep the failed pod', () => !pods().includes(name))
    await driver.close()
    assert.equal(
      (kube.fake.store.get(findResource('coordination.k8s.io', 'v1', 'leases')!, kube.namespace, 'driver-leader').spec as { holderIdentity: string })
        .holderIdentity,
      '',
    )
  })
})
