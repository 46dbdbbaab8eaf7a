/**
 * The Helm chart without a `helm` binary: each template rendered (test/helm-render.ts) with the
 * chart's values, parsed, equals the builders' output for the same values
 * (installOptionsFromValues), and validates against the pinned Kubernetes schemas. `helm install`
 * itself is not run here (docs/kubernetes.md).
 */
import assert from 'node:assert/strict'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parse, parseAllDocuments } from 'yaml'
import { defaultMaxLimits } from '@codebox/core'
import { installManifests, installOptionsFromValues, sandboxMaxima } from '../src/index.ts'
import { renderTemplate } from './helm-render.ts'
import { validateManifest } from './schema.ts'

const chartDir = fileURLToPath(new URL('../../../deploy/helm/codebox/', import.meta.url))
const templateFiles = {
  'rbac.yaml': 'rbac',
  'network-policies.yaml': 'networkPolicies',
  'limits.yaml': 'limits',
  'api.yaml': 'api',
  'egress.yaml': 'egress',
} as const

async function defaultValues(): Promise<Record<string, any>> {
  return parse(await readFile(path.join(chartDir, 'values.yaml'), 'utf8')) as Record<string, any>
}

async function renderChart(values: unknown, namespace: string): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {}
  for (const file of Object.keys(templateFiles)) {
    const text = renderTemplate(await readFile(path.join(chartDir, 'templates', file), 'utf8'), {
      Values: values,
      Release: { Namespace: namespace, Name: 'codebox' },
    })
    out[file] = parseAllDocuments(text).map((d) => {
      assert.equal(d.errors.length, 0, `${file}: ${d.errors.join('; ')}\n${text}`)
      return d.toJS() as unknown
    })
  }
  return out
}

async function assertChartMatchesBuilders(values: unknown, namespace: string): Promise<void> {
  const rendered = await renderChart(values, namespace)
  const built = installManifests(installOptionsFromValues(values, namespace))
  for (const [file, group] of Object.entries(templateFiles)) {
    // Through JSON: the builders' objects and the parsed YAML compared as data.
    assert.deepEqual(rendered[file], JSON.parse(JSON.stringify(built[group])), `templates/${file} differs from the builders (values in ${namespace})`)
    for (const doc of rendered[file]!) validateManifest(doc)
  }
}

test('the chart has exactly the templates the test covers, and a valid Chart.yaml', async () => {
  assert.deepEqual((await readdir(path.join(chartDir, 'templates'))).sort(), Object.keys(templateFiles).sort())
  const chart = parse(await readFile(path.join(chartDir, 'Chart.yaml'), 'utf8')) as Record<string, unknown>
  assert.equal(chart.apiVersion, 'v2')
  assert.equal(chart.name, 'codebox')
  assert.match(String(chart.version), /^\d+\.\d+\.\d+$/)
})

test('rendered with its default values, the chart equals the builders and validates', async () => {
  await assertChartMatchesBuilders(await defaultValues(), 'codebox')
})

test('rendered with other values (namespace, proxies in another namespace, no runtime class, allowed hosts), it still equals the builders', async () => {
  const values = await defaultValues()
  values.replicas = 5
  values.image = { repository: 'ghcr.io/acme/codebox', tag: 'v2', pullPolicy: 'Always' }
  values.api.allowedHosts = ['codebox.acme.dev', 'api.acme.dev']
  values.sandbox = { ...values.sandbox, runtimeClassName: '', poolSize: 0, image: 'ghcr.io/acme/sandbox@sha256:' + 'ab'.repeat(32) }
  values.networkProfiles.vpc = {
    external: {
      address: 'egress.net.svc.cluster.local:8080',
      podLabels: { app: 'egress' },
      namespaceLabels: { 'kubernetes.io/metadata.name': 'net' },
      port: 8080,
    },
  }
  values.egressProxy = {
    ...values.egressProxy,
    replicas: 3,
    port: 8888,
    vpcTrusted: '10.20.0.0/16,10.30.1.5:5432',
    deniedCidrs: { ipv4: ['10.244.0.0/16', '10.96.0.0/12'], ipv6: ['fd00:10::/64'] },
  }
  await assertChartMatchesBuilders(values, 'sandboxes')
  const egress = (await renderChart(values, 'sandboxes'))['egress.yaml'] as any[]
  assert.deepEqual(
    egress.map((d) => `${d.kind}/${d.metadata.name}`),
    [
      'ServiceAccount/codebox-egress',
      'Role/codebox-egress',
      'RoleBinding/codebox-egress',
      'Deployment/codebox-egress-public',
      'Service/codebox-egress-public',
      'NetworkPolicy/codebox-egress-public',
    ],
    'only the public profile runs the built-in proxy when vpc has an external one',
  )
  assert.deepEqual(egress[5].spec.egress[2].to[0].ipBlock, { cidr: '0.0.0.0/0', except: ['10.244.0.0/16', '10.96.0.0/12'] })
  // Both external: no proxy Deployment at all; vpc built-in: its trusted list in its environment.
  const both = await defaultValues()
  both.networkProfiles.public = { external: { address: 'egress.example:3128', podLabels: { app: 'e' }, port: 3128 } }
  both.networkProfiles.vpc = { external: { address: 'egress.example:3128', podLabels: { app: 'e' }, port: 3128 } }
  await assertChartMatchesBuilders(both, 'codebox')
  const vpcOnly = await defaultValues()
  vpcOnly.networkProfiles.public = both.networkProfiles.public
  vpcOnly.egressProxy.vpcTrusted = '10.20.0.0/16'
  await assertChartMatchesBuilders(vpcOnly, 'codebox')
  const api = (await renderChart(values, 'sandboxes'))['api.yaml']![0] as any
  const env = Object.fromEntries(api.spec.template.spec.containers[0].env.map((e: any) => [e.name, e.value]))
  assert.equal(
    env.CODEBOX_ALLOWED_HOSTS,
    'codebox-api,codebox-api.sandboxes,codebox-api.sandboxes.svc,codebox-api.sandboxes.svc.cluster.local,codebox.acme.dev,api.acme.dev',
  )
  assert.equal(env.CODEBOX_K8S_RUNTIME_CLASS, '')
})

test("values.yaml's sandbox maxima are the engine's maximum session limits", async () => {
  assert.deepEqual((await defaultValues()).sandbox.maxLimits, sandboxMaxima(defaultMaxLimits))
})

test('a value of the wrong shape is a ValidationError naming its path in values.yaml', async () => {
  const values = await defaultValues()
  values.egressProxy.port = '3128'
  assert.throws(() => installOptionsFromValues(values, 'codebox'), /egressProxy\.port: must be a whole number/)
  const external = await defaultValues()
  external.networkProfiles.public = { external: { address: 'egress.example:3128', podLabels: { app: 'e' }, port: '3128' } }
  assert.throws(() => installOptionsFromValues(external, 'codebox'), /networkProfiles\.public\.external\.port: must be a whole number/)
  const trusted = await defaultValues()
  trusted.egressProxy.vpcTrusted = 'db.internal'
  assert.throws(() => installManifests(installOptionsFromValues(trusted, 'codebox')), /egressProxy\.vpcTrusted/)
})

test('the renderer is strict: a missing value, an unknown function or an unclosed if is an error, not a guess', () => {
  const ctx = { Values: { a: { b: 'x' }, big: 1000000, m: {} }, Release: { Namespace: 'ns', Name: 'r' } }
  assert.equal(renderTemplate('k: {{ .Values.a.b | quote }}\n{{- if .Values.m }}\nno{{- else }}\nyes{{ end }}', ctx), 'k: "x"\nyes')
  assert.equal(renderTemplate('a:{{- toYaml .Values.a | nindent 2 }}', ctx), 'a:\n  b: x')
  assert.throws(() => renderTemplate('{{ .Values.nope }}', ctx), /missing/)
  assert.throws(() => renderTemplate('{{ .Values.a | upper }}', ctx), /not a function/)
  assert.throws(() => renderTemplate('{{ if .Values.a }}x', ctx), /without its end/)
  assert.throws(() => renderTemplate('{{ .Values.big }}', ctx), /float64/)
  assert.throws(() => renderTemplate('{{ range .Values.a }}{{ end }}', ctx), /beyond this renderer/)
})
