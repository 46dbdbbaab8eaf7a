// The fake API server's kubelet simulator through @kubernetes/client-node: a pod is scheduled and
// runs (pod IP, Ready, containerStatuses); a pod backed by a real process is reached through the
// dialer seam, reports its exit as Succeeded/Failed, is killed at activeDeadlineSeconds, and is
// stopped by a graceful deletion (SIGTERM, then SIGKILL at the grace period's end).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { once } from 'node:events'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Watch, type KubernetesObject, type V1Pod } from '@kubernetes/client-node'
import { fakeKubernetes, podManifest, until } from './fake-fixtures.ts'

const echoServer = `
const net = require('node:net')
const server = net.createServer((c) => c.on('data', (d) => c.write(process.env.POD_NAME + ':' + d)))
server.listen(process.env.FAKE_POD_SOCKET_DIR + '/8080.sock', () => console.log('listening'))
process.on('SIGTERM', () => { console.log('got SIGTERM'); server.close(); process.exit(0) })
`

/** Shell scripts the tests run as pods, chosen by the pod's "script" label. */
function scripts(markDir: string): Record<string, string> {
  return {
    exit0: 'echo done; exit 0',
    exit3: 'echo failing >&2; exit 3',
    // Ignores SIGTERM (inherited by sleep), records its pid: only the SIGKILL ends it.
    stubborn: `trap '' TERM; echo $$ > ${markDir}/$POD_NAME.pid; sleep 60 & wait; sleep 60`,
    sleeper: `echo $$ > ${markDir}/$POD_NAME.pid; exec sleep 60`,
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

describe('fake Kubernetes API: kubelet simulator', () => {
  let markDir = ''
  before(async () => {
    markDir = await mkdtemp(path.join(tmpdir(), 'kfake-marks-'))
  })
  after(async () => {
    await rm(markDir, { recursive: true, force: true })
  })
  const k = fakeKubernetes({
    kubelet: {
      run: (pod) => {
        const script = pod.pod.metadata.labels?.script
        if (script === 'echo') return { command: process.execPath, args: ['-e', echoServer] }
        const sh = script ? scripts(markDir)[script] : undefined
        return sh ? { command: '/bin/sh', args: ['-c', sh], env: { POD_NAME: pod.name } } : undefined
      },
    },
  })
  const namespace = 'kubelet'
  const read = (name: string) => () => k.admin.core.readNamespacedPod({ namespace, name })

  it('schedules a pod onto the node and runs it: Running, a pod IP, Ready, a running container status', async () => {
    const phases: string[] = []
    const w = await new Watch(k.admin.kc).watch(
      `/api/v1/namespaces/${namespace}/pods`,
      { fieldSelector: 'metadata.name=plain' },
      (_type: string, p: V1Pod) => phases.push(`${p.spec?.nodeName ?? '-'}/${p.status?.phase}`),
      () => {},
    )
    try {
      await k.admin.core.createNamespacedPod({ namespace, body: podManifest('plain') })
      const pod = await until(
        'the pod to be Ready',
        read('plain'),
        (p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
      )
      assert.equal(pod.spec?.nodeName, 'fake-node-1')
      assert.equal(pod.status?.phase, 'Running')
      assert.match(pod.status?.podIP ?? '', /^10\.244\.\d+\.\d+$/)
      assert.ok(pod.status?.containerStatuses?.[0]?.state?.running?.startedAt)
      assert.equal(pod.status?.containerStatuses?.[0]?.ready, true)
      assert.deepEqual(phases.slice(0, 2), ['-/Pending', 'fake-node-1/Pending'])
      assert.ok(phases.includes('fake-node-1/Running'))
    } finally {
      w.abort()
    }
  })

  it('runs a process-backed pod: Ready once its socket listens, reached through dial, its output in the pod log', async () => {
    const { core } = k.admin
    const body = podManifest('echo', { script: 'echo' })
    body.spec!.containers[0]!.ports = [{ containerPort: 8080 }]
    body.spec!.containers[0]!.env = [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }]
    await core.createNamespacedPod({ namespace, body })
    const pod = await until('the echo pod to be Ready', read('echo'), (p) => p.status?.containerStatuses?.[0]?.ready === true)
    const socket = k.fake.dial({ host: pod.status!.podIP!, port: 8080 })
    await once(socket, 'connect')
    socket.write('hello')
    const [reply] = (await once(socket, 'data')) as [Buffer]
    socket.destroy()
    assert.equal(reply.toString(), 'echo:hello')
    const unknown = k.fake.dial({ host: '10.244.255.254', port: 8080 })
    const [err] = (await once(unknown, 'error')) as [NodeJS.ErrnoException]
    assert.equal(err.code, 'EHOSTUNREACH')
    assert.equal(await core.readNamespacedPodLog({ namespace, name: 'echo' }), 'listening\n')

    // A graceful deletion: SIGTERM reaches the process, which exits; then the pod is gone.
    const deleting = await core.deleteNamespacedPod({ namespace, name: 'echo' })
    assert.ok(deleting.metadata?.deletionTimestamp, 'the pod is terminating, not gone')
    assert.equal(deleting.metadata?.deletionGracePeriodSeconds, 30)
    await until(
      'the echo pod to be gone',
      () => core.listNamespacedPod({ namespace, fieldSelector: 'metadata.name=echo' }),
      (l) => l.items.length === 0,
    )
  })

  it('reports a process exit as Succeeded or Failed with its exit code', async () => {
    const { core } = k.admin
    await core.createNamespacedPod({ namespace, body: podManifest('ok', { script: 'exit0' }, { restartPolicy: 'Never' }) })
    await core.createNamespacedPod({ namespace, body: podManifest('bad', { script: 'exit3' }, { restartPolicy: 'Never' }) })
    const ok = await until('ok to succeed', read('ok'), (p) => p.status?.phase === 'Succeeded')
    assert.deepEqual(
      ok.status?.containerStatuses?.[0]?.state?.terminated && { ...ok.status.containerStatuses[0].state.terminated, startedAt: 0, finishedAt: 0 },
      {
        exitCode: 0,
        reason: 'Completed',
        startedAt: 0,
        finishedAt: 0,
        containerID: 'fake://' + ok.metadata?.uid + '/main',
      },
    )
    const bad = await until('bad to fail', read('bad'), (p) => p.status?.phase === 'Failed')
    assert.equal(bad.status?.containerStatuses?.[0]?.state?.terminated?.exitCode, 3)
    assert.equal(bad.status?.containerStatuses?.[0]?.state?.terminated?.reason, 'Error')
    assert.equal(await core.readNamespacedPodLog({ namespace, name: 'bad' }), 'failing\n')
    await core.deleteNamespacedPod({ namespace, name: 'ok' })
    await assert.rejects(core.readNamespacedPod({ namespace, name: 'ok' }), /HTTP-Code: 404/, 'a finished pod is deleted at once')
  })

  it('kills a pod at its activeDeadlineSeconds: Failed, DeadlineExceeded, no process left', async () => {
    const { core } = k.admin
    const began = Date.now()
    await core.createNamespacedPod({ namespace, body: podManifest('late', { script: 'sleeper' }, { activeDeadlineSeconds: 1, restartPolicy: 'Never' }) })
    const pid = Number(
      await until(
        'the pid file',
        () => readFile(path.join(markDir, 'late.pid'), 'utf8').catch(() => ''),
        (s) => s.trim() !== '',
      ),
    )
    const pod = await until('the deadline', read('late'), (p) => p.status?.phase === 'Failed', 15_000)
    assert.ok(Date.now() - began >= 900, JSON.stringify(pod.status))
    assert.equal(pod.status?.reason, 'DeadlineExceeded')
    assert.equal(pod.status?.message, 'Pod was active on the node longer than the specified deadline')
    await until(
      `process ${pid} to be gone`,
      () => alive(pid),
      (a) => !a,
    )
  })

  it('sends SIGKILL when a process ignores SIGTERM for its whole grace period, then removes the pod', async () => {
    const { core } = k.admin
    await core.createNamespacedPod({ namespace, body: podManifest('stubborn', { script: 'stubborn' }) })
    await until('stubborn to run', read('stubborn'), (p) => p.status?.phase === 'Running')
    const pid = Number(
      await until(
        'the pid file',
        () => readFile(path.join(markDir, 'stubborn.pid'), 'utf8').catch(() => ''),
        (s) => s.trim() !== '',
      ),
    )
    const seen: string[] = []
    const w = await new Watch(k.admin.kc).watch(
      `/api/v1/namespaces/${namespace}/pods`,
      { fieldSelector: 'metadata.name=stubborn', resourceVersion: (await read('stubborn')()).metadata?.resourceVersion },
      (type: string, p: KubernetesObject) => seen.push(`${type}${p.metadata?.deletionTimestamp ? ' terminating' : ''}`),
      () => {},
    )
    try {
      const began = Date.now()
      await core.deleteNamespacedPod({ namespace, name: 'stubborn', gracePeriodSeconds: 1 })
      await new Promise((r) => setTimeout(r, 500))
      assert.ok(alive(pid), 'SIGTERM alone did not end it')
      await until(
        'the pod to be removed',
        () => seen,
        (s) => s.includes('DELETED terminating'),
      )
      const took = Date.now() - began
      assert.ok(took >= 900 && took < 8000, `removed after ${took} ms`)
      assert.equal(seen[0], 'MODIFIED terminating')
      await until(
        `process ${pid} to be gone`,
        () => alive(pid),
        (a) => !a,
      )
    } finally {
      w.abort()
    }
  })
})

describe('fake Kubernetes API: kubelet simulator with a loopback pod network', () => {
  const k = fakeKubernetes({ kubelet: { podNetwork: 'loopback', run: () => ({ command: process.execPath, args: ['-e', echoServer] }) } })
  const namespace = 'loopnet'

  it('gives pods loopback IPs that any process reaches with a plain TCP connect, until the pod ends', async () => {
    const { core } = k.admin
    const body = podManifest('net', {})
    body.spec!.containers[0]!.ports = [{ containerPort: 8080 }]
    body.spec!.containers[0]!.env = [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }]
    await core.createNamespacedPod({ namespace, body })
    const pod = await until(
      'the pod to be Ready',
      () => core.readNamespacedPod({ namespace, name: 'net' }),
      (p) => p.status?.containerStatuses?.[0]?.ready === true,
    )
    const ip = pod.status!.podIP!
    assert.match(ip, /^127\.244\.\d+\.\d+$/)
    // Another process, as an API replica would be: net.connect to the pod's IP and port.
    const client = `const s = require('node:net').connect(8080, ${JSON.stringify(ip)}, () => s.write('hi')); s.on('data', (d) => { console.log(String(d)); s.end() })`
    const child = spawn(process.execPath, ['-e', client], { stdio: ['ignore', 'pipe', 'inherit'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    await once(child, 'exit')
    assert.equal(out.trim(), 'net:hi')
    // dial still works as before.
    const socket = k.fake.dial({ host: ip, port: 8080 })
    await once(socket, 'connect')
    socket.destroy()
    await core.deleteNamespacedPod({ namespace, name: 'net', gracePeriodSeconds: 0 })
    await until(
      'the pod to be gone',
      () => core.listNamespacedPod({ namespace, fieldSelector: 'metadata.name=net' }),
      (l) => l.items.length === 0,
    )
    const refused = net.connect(8080, ip)
    const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException]
    assert.equal(err.code, 'ECONNREFUSED', 'nothing listens on the IP of a pod that is gone')
  })
})
