/**
 * The manifest builders: their output for fixed inputs equals the golden YAML files, every golden
 * document validates against the pinned Kubernetes schemas, a broken manifest does not, and the
 * restrictions of SECURITY.md hold on every sandbox pod variant whatever the golden files say.
 */
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { test } from 'node:test'
import type { Pod } from 'kubernetes-types/core/v1.js'
import { parseAllDocuments } from 'yaml'
import { CodeboxError } from '@codebox/core'
import {
  claimPatch,
  codeboxNamespace,
  installManifests,
  NETWORK_LABEL,
  sandboxNetworkPolicies,
  sessionPod,
  toYamlDocuments,
  warmPod,
  bytesQuantity,
  cpuQuantity,
} from '../src/index.ts'
import { expectGolden, goldenDir } from './golden.ts'
import { installOptions, namespace, podOptions, publicEgress } from './inputs.ts'
import { validateManifest } from './schema.ts'

const sessionId = '0k3m9x2q7w1v5b8n4c6z0a2s4d'
const proxyIp = 'http://10.96.12.34:3128'

const goldens: Record<string, () => object[]> = {
  'session-pod.yaml': () => [sessionPod({ ...podOptions(`cbx-${sessionId}`), sessionId })],
  'session-pod-public.yaml': () => [
    sessionPod({
      ...podOptions(`cbx-${sessionId}`, { network: 'public', egressProxyUrl: proxyIp, runtimeClassName: 'kata', gvisor: false }),
      ...publicEgress(`cbx-${sessionId}`),
      sessionId,
      ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: 'codebox-api-6d9f7-abcde', uid: '4f1c2a3b-0000-4000-8000-000000000001' }],
      nodeSelector: { 'codebox.dev/sandbox-node': 'true' },
    }),
  ],
  'warm-pod.yaml': () => [warmPod({ ...podOptions('cbx-warm-p4x7k2'), podId: 'p4x7k2' })],
  'session-pod-code.yaml': () => [sessionPod({ ...podOptions(`cbx-${sessionId}`), sessionId, code: { bytes: 5 * 1024 ** 2, entries: 120 } })],
  'namespace.yaml': () => [codeboxNamespace(namespace)],
  'rbac.yaml': () => installManifests(installOptions).rbac,
  'network-policies.yaml': () => installManifests(installOptions).networkPolicies,
  'limits.yaml': () => installManifests(installOptions).limits,
  'api.yaml': () => installManifests(installOptions).api,
  'egress.yaml': () => installManifests(installOptions).egress,
}

for (const [name, build] of Object.entries(goldens)) {
  test(`golden ${name}: the builders' output, exactly`, async () => {
    await expectGolden(name, toYamlDocuments(build()))
  })
}

test('every golden document validates against the Kubernetes 1.36 schemas', async () => {
  const files = (await readdir(goldenDir)).filter((f) => f.endsWith('.yaml')).sort()
  assert.deepEqual(files, Object.keys(goldens).sort(), 'a golden file without a builder, or the other way round')
  const seen: string[] = []
  for (const file of files) {
    for (const doc of parseAllDocuments(await readFile(path.join(goldenDir, file), 'utf8'))) {
      assert.equal(doc.errors.length, 0, `${file}: ${doc.errors.join('; ')}`)
      seen.push(validateManifest(doc.toJS()))
    }
  }
  assert.ok(seen.includes('Deployment/codebox-api') && seen.includes('NetworkPolicy/codebox-sandbox-default-deny'), seen.join(', '))
})

test('a broken manifest fails validation: unknown fields, wrong types, bad quantities', () => {
  const pod = (): Pod => sessionPod({ ...podOptions(`cbx-${sessionId}`), sessionId })
  assert.equal(validateManifest(pod()), `Pod/cbx-${sessionId}`)
  const broken: [string, (p: Record<string, any>) => void, RegExp][] = [
    ['unknown container field', (p) => (p.spec.containers[0].securityContex = {}), /unknown field in V1Container/],
    ['unknown pod spec field', (p) => (p.spec.hostNetwrok = false), /spec\.hostNetwrok: unknown field/],
    ['unknown top-level field', (p) => (p.specs = {}), /unknown field in V1Pod/],
    ['a string for an integer', (p) => (p.spec.activeDeadlineSeconds = '28860'), /activeDeadlineSeconds/],
    ['a number for a string', (p) => (p.spec.containers[0].image = 42), /image must be string/],
    ['not a quantity', (p) => (p.spec.containers[0].resources.limits.memory = 'two gigs'), /quantity/],
    ['a missing required field', (p) => delete p.spec.containers[0].name, /must have required property name/],
    ['a value outside the enum', (p) => (p.spec.restartPolicy = 'Sometimes'), /restartPolicy/],
  ]
  for (const [what, breakIt, message] of broken) {
    const p = pod() as Record<string, any>
    breakIt(p)
    assert.throws(() => validateManifest(p), message, what)
  }
})

const variants = (): [string, Pod][] => [
  ['session', sessionPod({ ...podOptions(`cbx-${sessionId}`), sessionId })],
  ['session public', sessionPod({ ...podOptions(`cbx-${sessionId}`, { network: 'public', egressProxyUrl: proxyIp }), sessionId })],
  ['warm vpc', warmPod({ ...podOptions('cbx-warm-a1'), podId: 'a1', network: 'vpc', egressProxyUrl: proxyIp })],
  ['no runtime class', sessionPod({ ...podOptions(`cbx-${sessionId}`, { runtimeClassName: null }), sessionId })],
  ['session with code', sessionPod({ ...podOptions(`cbx-${sessionId}`), sessionId, code: { bytes: 1000, entries: 3 } })],
]

test('every sandbox pod variant keeps the restrictions of SECURITY.md', () => {
  for (const [what, pod] of variants()) {
    const spec = pod.spec!
    const c = spec.containers[0]!
    const code = what === 'session with code'
    assert.equal(spec.containers.length, 1, what)
    assert.equal(spec.initContainers?.length ?? 0, code ? 1 : 0, what)
    for (const init of spec.initContainers ?? []) {
      assert.deepEqual(init.securityContext, c.securityContext, what)
      assert.equal(init.image, c.image, what)
      assert.deepEqual(init.volumeMounts, [{ name: 'code', mountPath: '/app' }], what)
      assert.ok(init.resources?.limits?.memory && init.resources.limits['ephemeral-storage'], what)
    }
    assert.equal(spec.automountServiceAccountToken, false, what)
    assert.equal(spec.enableServiceLinks, false, what)
    assert.deepEqual([spec.hostNetwork, spec.hostPID, spec.hostIPC], [false, false, false], what)
    assert.equal(spec.securityContext?.runAsUser, 1000, what)
    assert.equal(spec.securityContext?.runAsNonRoot, true, what)
    assert.equal(spec.securityContext?.seccompProfile?.type, 'RuntimeDefault', what)
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false, what)
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true, what)
    assert.deepEqual(c.securityContext?.capabilities, { drop: ['ALL'] }, what)
    assert.equal(spec.restartPolicy, 'Never', what)
    assert.ok((spec.activeDeadlineSeconds ?? 0) > 8 * 3600, what)
    assert.deepEqual(
      spec.volumes?.map((v) => [v.name, v.emptyDir?.sizeLimit]),
      [['workspace', '1Gi'], ['tmp', '256Mi'], ['shm', '64Mi'], ...(code ? [['code', '2Mi']] : [])],
      what,
    )
    // The code volume is mounted read-only where the session runs.
    assert.deepEqual(
      c.volumeMounts?.filter((m) => m.name === 'code'),
      code ? [{ name: 'code', mountPath: '/app', readOnly: true }] : [],
      what,
    )
    assert.deepEqual(c.resources?.limits, { memory: '2Gi', cpu: '1000m', 'ephemeral-storage': code ? '1346Mi' : '1344Mi' }, what)
    assert.equal(spec.runtimeClassName, what === 'no runtime class' ? undefined : 'gvisor', what)
    // A clean environment: nothing from the API's, no secret but the pod's own token.
    const names = c.env!.map((e) => e.name)
    assert.ok(!names.some((n) => /DB|SEALING|AWS|ANTHROPIC|OPENAI|NODE_OPTIONS|KUBERNETES/.test(n)), `${what}: ${names.join(',')}`)
    assert.ok(
      c.env!.every((e) => e.valueFrom === undefined && typeof e.value === 'string'),
      what,
    )
    assert.equal(names.includes('HTTP_PROXY'), pod.metadata!.labels![NETWORK_LABEL] !== 'sandbox', what)
    validateManifest(pod)
  }
})

test('a session pod takes its resources, disks and deadline from the session limits', () => {
  const pod = sessionPod({
    ...podOptions(`cbx-${sessionId}`, {
      limits: {
        ...podOptions('x').limits,
        memoryBytes: 512 * 1024 ** 2,
        cpuCores: 0.25,
        workspaceBytes: 3 * 1024 ** 3,
        tmpBytes: 32 * 1024 ** 2,
        maxLifetimeMs: 600_000,
      },
    }),
    sessionId,
  })
  const c = pod.spec!.containers[0]!
  assert.deepEqual(c.resources, {
    limits: { memory: '512Mi', cpu: '250m', 'ephemeral-storage': `${3 * 1024 + 32 + 64}Mi` },
    requests: { memory: '256Mi', cpu: '100m', 'ephemeral-storage': '64Mi' },
  })
  assert.equal(pod.spec!.activeDeadlineSeconds, 660)
  assert.deepEqual(
    pod.spec!.volumes!.map((v) => v.emptyDir?.sizeLimit),
    ['3Gi', '32Mi', '32Mi'],
  )
  const env = Object.fromEntries(c.env!.map((e) => [e.name, e.value]))
  assert.equal(env.CODEBOX_RLIMITS, `nofile=1024,nproc=512,core=0,fsize=${3 * 1024 ** 3}`)
  assert.equal(env.OMP_NUM_THREADS, '1')
})

test('bad pod inputs are ValidationErrors naming the field', () => {
  const bad: [string, () => unknown][] = [
    ['sessionId', () => sessionPod({ ...podOptions('x'), sessionId: 'Not_A_Label' })],
    ['podId', () => warmPod({ ...podOptions('x'), podId: 'x'.repeat(60) })],
    ['namespace', () => sessionPod({ ...podOptions('x', { namespace: 'Codebox' }), sessionId })],
    ['egressProxyUrl', () => sessionPod({ ...podOptions('x', { network: 'public' }), sessionId })],
    ['egressProxyUrl', () => sessionPod({ ...podOptions('x', { network: 'vpc', egressProxyUrl: 'http://proxy.codebox.svc:3128' }), sessionId })],
    ['egressProxyUrl', () => sessionPod({ ...podOptions('x', { egressProxyUrl: proxyIp }), sessionId })],
    ['network', () => sessionPod({ ...podOptions('x', { network: 'host' as never }), sessionId })],
    ['runtimeClassName', () => sessionPod({ ...podOptions('x', { runtimeClassName: 'g visor' }), sessionId })],
    ['poolKey', () => sessionPod({ ...podOptions('x', { poolKey: '-bad-' }), sessionId })],
    ['executorPort', () => sessionPod({ ...podOptions('x', { executorPort: 70000 }), sessionId })],
    ['warmMaxAgeMs', () => warmPod({ ...podOptions('x'), podId: 'a', warmMaxAgeMs: 10 })],
    ['code.bytes', () => sessionPod({ ...podOptions('x'), sessionId, code: { bytes: 2 * 1024 ** 3, entries: 1 } })],
    ['code.entries', () => sessionPod({ ...podOptions('x'), sessionId, code: { bytes: 1, entries: 0 } })],
    ['egressToken', () => sessionPod({ ...podOptions('x', { egressToken: publicEgress('x').egressToken }), sessionId })],
    [
      'egressPolicy',
      () => sessionPod({ ...podOptions('x', { network: 'public', egressProxyUrl: proxyIp, egressToken: publicEgress('x').egressToken }), sessionId }),
    ],
    [
      'egressToken',
      () => sessionPod({ ...podOptions('x', { network: 'public', egressProxyUrl: proxyIp, ...publicEgress('x'), egressToken: 'short' }), sessionId }),
    ],
    ['egressPolicy.mode', () => sessionPod({ ...podOptions('x', { network: 'vpc', egressProxyUrl: proxyIp, ...publicEgress('x') }), sessionId })],
    [
      'egressPolicy.allow[0]',
      () =>
        sessionPod({
          ...podOptions('x', { network: 'vpc', egressProxyUrl: proxyIp, ...publicEgress('x'), egressPolicy: { mode: 'allowlist', allow: ['http://x'] } }),
          sessionId,
        }),
    ],
  ]
  for (const [field, build] of bad) {
    assert.throws(build, (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError' && e.details.field === field, field)
  }
})

test('a pod with egress credentials: its proxy URL carries its name and token, its annotation its policy; a claim can set another policy', () => {
  const name = `cbx-${sessionId}`
  const pod = sessionPod({ ...podOptions(name, { network: 'public', egressProxyUrl: proxyIp }), ...publicEgress(name), sessionId })
  const env = Object.fromEntries(pod.spec!.containers[0]!.env!.map((e) => [e.name, e.value]))
  const url = new URL(env.HTTP_PROXY!)
  assert.equal(url.username, name)
  assert.equal(url.password, publicEgress(name).egressToken)
  assert.equal(`${url.protocol}//${url.host}`, proxyIp)
  assert.equal(env.HTTPS_PROXY, env.HTTP_PROXY)
  assert.equal(pod.metadata!.annotations!['codebox.dev/egress-policy'], '{"mode":"public","allow":[]}')
  // Without the new fields, the URL and annotations are as before (an external proxy).
  const plain = sessionPod({ ...podOptions(name, { network: 'public', egressProxyUrl: proxyIp }), sessionId })
  assert.equal(plain.spec!.containers[0]!.env!.find((e) => e.name === 'HTTP_PROXY')!.value, proxyIp)
  assert.deepEqual(Object.keys(plain.metadata!.annotations!), ['codebox.dev/token-nonce'])
  const patch = claimPatch({
    sessionId,
    maxLifetimeMs: 600_000,
    resourceVersion: '42',
    startTime: new Date(0),
    activeDeadlineSeconds: 5000,
    now: new Date(1000),
    egress: { network: 'vpc', policy: { mode: 'allowlist', allow: ['pypi.org:443'] } },
  })
  assert.deepEqual(patch.metadata.annotations, { 'codebox.dev/egress-policy': '{"mode":"allowlist","allow":["pypi.org:443"]}' })
})

test('network policies: default deny for every sandbox pod, and egress only for public and vpc, only to their proxy', () => {
  const policies = sandboxNetworkPolicies({ namespace, egress: installOptions.egress })
  const deny = policies.find((p) => p.metadata!.name === 'codebox-sandbox-default-deny')!
  assert.deepEqual(deny.spec, {
    podSelector: { matchLabels: { 'app.kubernetes.io/name': 'codebox', 'app.kubernetes.io/component': 'sandbox' } },
    policyTypes: ['Ingress', 'Egress'],
  })
  const egress = policies.filter((p) => p.spec!.egress !== undefined)
  assert.deepEqual(egress.map((p) => p.spec!.podSelector.matchLabels![NETWORK_LABEL]).sort(), ['public', 'vpc'])
  for (const p of egress) {
    assert.equal(p.spec!.egress!.length, 1)
    for (const to of p.spec!.egress![0]!.to!)
      assert.ok(to.podSelector?.matchLabels && Object.keys(to.podSelector.matchLabels).length > 0, 'a peer that selects pods, never an ipBlock or everything')
    assert.ok(!JSON.stringify(p).includes('"port":53'), 'no DNS')
  }
  const ingress = policies.filter((p) => p.spec!.ingress !== undefined)
  assert.equal(ingress.length, 1)
  assert.deepEqual(ingress[0]!.spec!.ingress, [
    {
      from: [{ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'codebox', 'app.kubernetes.io/component': 'api' } } }],
      ports: [{ protocol: 'TCP', port: 7070 }],
    },
  ])
  assert.throws(
    () => sandboxNetworkPolicies({ namespace, egress: { ...installOptions.egress, vpc: { podLabels: {}, port: 1 } } }),
    (e: unknown) => e instanceof CodeboxError && e.details.field === 'egress.vpc.podLabels',
  )
})

test('claimPatch lowers a warm pod deadline to the session deadline, guarded by resourceVersion', () => {
  const warm = warmPod({ ...podOptions('cbx-warm-a1'), podId: 'a1' })
  const deadline = warm.spec!.activeDeadlineSeconds!
  assert.equal(deadline, 8 * 3600 + 60 + 3600)
  const startTime = new Date('2026-01-01T00:00:00Z')
  const patch = claimPatch({
    sessionId,
    maxLifetimeMs: 8 * 3600_000,
    resourceVersion: '812',
    startTime,
    activeDeadlineSeconds: deadline,
    now: new Date('2026-01-01T00:10:00.5Z'),
  })
  assert.deepEqual(patch, {
    metadata: { resourceVersion: '812', labels: { 'codebox.dev/pool-state': 'claimed', 'codebox.dev/session': sessionId } },
    spec: { activeDeadlineSeconds: 601 + 8 * 3600 + 60 },
  })
  const tooOld = {
    sessionId,
    maxLifetimeMs: 8 * 3600_000,
    resourceVersion: '9',
    startTime,
    activeDeadlineSeconds: deadline,
    now: new Date('2026-01-01T01:00:01Z'),
  }
  assert.throws(
    () => claimPatch(tooOld),
    (e: unknown) => e instanceof CodeboxError && e.code === 'Unavailable',
  )
  assert.throws(
    () => claimPatch({ ...tooOld, now: startTime, resourceVersion: '' }),
    (e: unknown) => e instanceof CodeboxError && e.details.field === 'resourceVersion',
  )
})

test('quantities: binary suffixes when exact, millicores rounded up', () => {
  assert.deepEqual([2 * 1024 ** 3, 256 * 1024 ** 2, 3072, 1000, 0].map(bytesQuantity), ['2Gi', '256Mi', '3Ki', '1000', '0'])
  assert.deepEqual([1, 0.05, 2.5, 0.0001].map(cpuQuantity), ['1000m', '50m', '2500m', '1m'])
  assert.throws(() => bytesQuantity(1.5), RangeError)
  assert.throws(() => cpuQuantity(0), RangeError)
})
