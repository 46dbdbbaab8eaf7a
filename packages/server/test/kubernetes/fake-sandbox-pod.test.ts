// A real sandbox pod on the fake API server: the manifest from the kubernetes driver's builder
// (sessionPod, with the executor token derived as a replica derives it), created through
// @kubernetes/client-node, run by the kubelet simulator as the codebox executor in a local bwrap
// sandbox of the built image (sandboxPodRunner), reached through the dialer seam, authenticated,
// running Python through ExecutorClient as the pod's uid with the pod's rlimits, and deleted:
// its processes and workspace gone. Skipped, saying why, where bwrap sandboxes cannot run.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import type net from 'node:net'
import { after, before, describe, it } from 'node:test'
import { setTimeout as sleep } from 'node:timers/promises'
import type { V1Pod } from '@kubernetes/client-node'
import { defaultLimits, type Sandbox } from '@codebox/core'
import { sandboxPodRunner, sandboxPodSupport, startFakeKubernetes, type FakeKubernetes, type SandboxPodRunner } from '@codebox/sandbox/testing/kubernetes'
import { EXECUTOR_PORT, executorToken, executorTokenKey, newTokenNonce, SANDBOX_UID, sandboxPodName, sessionPod } from '@codebox/driver-kubernetes'
// The host end of the executor protocol, which @codebox/sandbox does not export.
import { ExecutorClient, type ExecutorMessage } from '../../../sandbox/src/executor-client.ts'
import { encodeJson } from '../../../sandbox/src/protocol.ts'
import { clientsFor, type Clients } from './fake-fixtures.ts'

const support = await sandboxPodSupport()
const skip = 'unavailable' in support ? support.unavailable : false
const namespace = 'codebox'

/** Every host process whose command line names `marker`, and their descendants. */
async function processesNaming(marker: string): Promise<number[]> {
  const parents = new Map<number, number>()
  const found: number[] = []
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const pid = Number(name)
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
    if (stat) parents.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]))
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    if (cmdline.includes(marker)) found.push(pid)
  }
  for (let grew = true; grew;) {
    grew = false
    for (const [pid, ppid] of parents) if (found.includes(ppid) && !found.includes(pid)) (found.push(pid), (grew = true))
  }
  return found
}

async function until<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await probe()
    if (v !== undefined) return v
    if (Date.now() > deadline) assert.fail(`${what} (waited ${ms} ms)`)
    await sleep(50)
  }
}

/** An ExecutorClient over a connection dialed to the pod, once it authenticated and the executor said ready. */
async function attach(fake: FakeKubernetes, podIP: string, token: string): Promise<{ client: ExecutorClient; socket: net.Socket }> {
  const socket = fake.dial({ host: podIP, port: EXECUTOR_PORT })
  await once(socket, 'connect')
  socket.write(encodeJson(0, { op: 'auth', token }))
  const closed = new Promise<never>(() => {})
  const sandbox: Sandbox = {
    id: 'pod',
    input: socket,
    output: socket,
    diagnostics: () => '',
    exited: closed,
    counters: () => Promise.resolve({ oomKills: 0, pidsLimitHits: 0 }),
    memoryUsage: () => Promise.resolve(0),
    destroy: () => Promise.resolve(void socket.destroy()),
  }
  const client = new ExecutorClient(sandbox)
  await client.ready
  return { client, socket }
}

async function python(client: ExecutorClient, code: string): Promise<string> {
  let stdout = ''
  let stderr = ''
  const it = client.request('exec', { language: 'python', code, timeoutMs: 60_000, outputBytes: 1 << 20, clearContext: false })
  for (;;) {
    const r = await it.next()
    if (r.done) {
      assert.equal(r.value.exitCode, 0, `the cell failed: ${stderr}`)
      return stdout
    }
    const m: ExecutorMessage = r.value
    if (m.kind === 'event' && m.event.ev === 'stdout') stdout += String(m.event.text)
    if (m.kind === 'event' && m.event.ev === 'stderr') stderr += String(m.event.text)
  }
}

describe('a sandbox pod on the fake API server', { skip }, () => {
  let fake: FakeKubernetes
  let runner: SandboxPodRunner
  let admin: Clients
  before(async () => {
    runner = await sandboxPodRunner({ imagePath: (support as { imagePath: string }).imagePath })
    fake = await startFakeKubernetes({ kubelet: { run: runner.run } })
    admin = clientsFor(fake, fake.adminToken, namespace)
  })
  after(async () => {
    await fake?.close()
    await runner?.close()
  })

  it('runs the executor from the real manifest: authenticated, Python as the pod’s uid with its limits; deleted, nothing left', async () => {
    const sessionId = `s${randomBytes(6).toString('hex')}`
    const name = sandboxPodName(sessionId)
    const nonce = newTokenNonce()
    const token = executorToken(executorTokenKey(randomBytes(32)), { namespace, podName: name, nonce })
    // The manifest as the driver makes it: its runtime class (gvisor) is stored and ignored by the
    // fake, and the executor's gVisor settings (CODEBOX_KERNEL_AUTH=passcred) work under bwrap too.
    const body = sessionPod({
      namespace,
      image: 'codebox/sandbox:test',
      limits: defaultLimits,
      network: 'sandbox',
      poolKey: 'default',
      nonce,
      token,
      sessionId,
      runtimeClassName: null,
    })
    await admin.core.createNamespacedPod({ namespace, body: body as V1Pod })
    const pod = await until('the pod did not become Ready', 60_000, async () => {
      const p = await admin.core.readNamespacedPod({ namespace, name })
      if (p.status?.phase === 'Failed') assert.fail(`the pod failed: ${await admin.core.readNamespacedPodLog({ namespace, name }).catch(() => '')}`)
      return p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? p : undefined
    })
    const podIP = pod.status!.podIP!
    const socketDir = fake.kubelet!.socketDirOf(podIP)!
    const procs = await processesNaming(socketDir)
    assert.ok(procs.length > 0, 'no process runs the pod')

    // A wrong token gets nothing back.
    const wrong = fake.dial({ host: podIP, port: EXECUTOR_PORT })
    const got: Buffer[] = []
    wrong.on('data', (c: Buffer) => got.push(c))
    wrong.on('error', () => {})
    wrong.write(encodeJson(0, { op: 'auth', token: token.slice(1) }))
    await new Promise((r) => wrong.once('close', r))
    assert.equal(Buffer.concat(got).length, 0)

    const { client, socket } = await attach(fake, podIP, token)
    assert.equal(client.hello?.session, false)
    const facts = JSON.parse(
      await python(
        client,
        [
          'import json, os, resource, socket',
          'open("/workspace/hello.txt", "w").write("hi")',
          'print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(),',
          '  "nofile": resource.getrlimit(resource.RLIMIT_NOFILE), "nproc": resource.getrlimit(resource.RLIMIT_NPROC),',
          '  "fsize": resource.getrlimit(resource.RLIMIT_FSIZE), "core": resource.getrlimit(resource.RLIMIT_CORE),',
          '  "secrets": [k for k in os.environ if k in ("CODEBOX_EXECUTOR_TOKEN", "CODEBOX_LISTEN", "CODEBOX_RLIMITS", "FAKE_POD_SOCKET_DIR")],',
          '  "root_writable": os.access("/usr", os.W_OK), "hostname": socket.gethostname(),',
          '  "interfaces": sorted(n for _, n in socket.if_nameindex())}))',
        ].join('\n'),
      ),
    ) as Record<string, unknown>
    assert.deepEqual(facts, {
      uid: SANDBOX_UID,
      gid: SANDBOX_UID,
      cwd: '/workspace',
      nofile: [defaultLimits.openFiles, defaultLimits.openFiles],
      nproc: [defaultLimits.pids, defaultLimits.pids],
      fsize: [defaultLimits.workspaceBytes, defaultLimits.workspaceBytes],
      core: [0, 0],
      secrets: [],
      root_writable: false,
      hostname: name,
      interfaces: ['lo'],
    })
    // The runner's wrapper: sh -c <script> sandbox-pod <pod directory> 1 setpriv ... bwrap ... executor.py
    const argvs = await Promise.all(procs.map(async (p) => (await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).split('\0')))
    const podDir = argvs.find((a) => a[3] === 'sandbox-pod')?.[4]
    assert.ok(podDir, 'no wrapper process of the pod')
    // The pod's `workspace` emptyDir, mounted at /workspace.
    const workspace = `${podDir}/workspace`
    assert.ok(
      argvs.some((a) => a[0] === '/usr/bin/python3' && a.includes('/opt/codebox/executor/executor.py')),
      'no executor process in the pod',
    )
    assert.equal(await readFile(`${workspace}/hello.txt`, 'utf8'), 'hi')
    socket.destroy()

    await admin.core.deleteNamespacedPod({ namespace, name })
    await until('the pod was not removed', 30_000, async () =>
      (await admin.core.listNamespacedPod({ namespace })).items.some((p) => p.metadata?.name === name) ? undefined : true,
    )
    await until('the pod’s processes did not end', 10_000, async () => (procs.every((p) => !existsSync(`/proc/${p}`)) ? true : undefined))
    await until('the pod’s directories were not removed', 10_000, async () => (existsSync(podDir) ? undefined : true))
  })
})
