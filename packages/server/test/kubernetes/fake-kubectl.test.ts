// kubectl as an independent client of the fake Kubernetes API server: discovery, `get -l` with
// server-side tables, `apply -f` (create, then a strategic merge patch), `delete` (which waits
// for the graceful deletion to finish), and RBAC's 403 in kubectl's words. Skipped, with the
// reason, where no kubectl is installed (Debian's kubernetes-client provides one).
import assert from 'node:assert/strict'
import { execFile, spawnSync } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { findResource } from '@codebox/sandbox/testing/kubernetes'
import { fakeKubernetes } from './fake-fixtures.ts'

const kubectlMissing =
  spawnSync('kubectl', ['version', '--client'], { stdio: 'ignore', timeout: 30_000 }).status === 0
    ? undefined
    : 'kubectl is not installed (apt-get install kubernetes-client)'

describe('fake Kubernetes API: kubectl', { skip: kubectlMissing }, () => {
  const k = fakeKubernetes({ users: { 'tok-admin': { name: 'admin', namespaces: '*' }, 'tok-a': { name: 'team-a', namespaces: ['team-a'] } } })
  let work = ''
  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), 'kfake-kubectl-'))
    await writeFile(path.join(work, 'ca.pem'), k.fake.caCertificate!)
  })
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true })
  })

  /** Runs kubectl with --server/--token/--certificate-authority; never reads the user's kubeconfig or cache. */
  async function kubectl(token: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const flags = [
      `--server=${k.fake.url}`,
      `--token=${token}`,
      `--certificate-authority=${path.join(work, 'ca.pem')}`,
      `--cache-dir=${path.join(work, 'cache')}`,
    ]
    const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: work, KUBECONFIG: path.join(work, 'no-kubeconfig') }
    try {
      const { stdout, stderr } = await promisify(execFile)('kubectl', [...flags, ...args], { env, timeout: 60_000 })
      return { code: 0, stdout, stderr }
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string }
      return { code: typeof err.code === 'number' ? err.code : -1, stdout: err.stdout ?? '', stderr: err.stderr ?? String(e) }
    }
  }

  it('applies a manifest, lists it by label, re-applies a change as a patch, and deletes it', async () => {
    const manifest = (labels: string) =>
      `apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: team-a\n  labels: {${labels}}\nspec:\n  containers:\n  - name: main\n    image: nginx:1.27\n`
    const file = path.join(work, 'web.yaml')
    await writeFile(file, manifest('app: web'))
    // --validate=false: the fake serves no OpenAPI document for kubectl's client-side validation.
    const created = await kubectl('tok-admin', ['apply', '--validate=false', '-f', file])
    assert.equal(created.code, 0, created.stderr)
    assert.equal(created.stdout.trim(), 'pod/web created')
    await writeFile(path.join(work, 'svc.yaml'), 'apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: team-a\nspec:\n  ports:\n  - port: 80\n')
    assert.equal((await kubectl('tok-admin', ['apply', '--validate=false', '-f', path.join(work, 'svc.yaml')])).stdout.trim(), 'service/web created')

    const listed = await kubectl('tok-a', ['get', 'pods', '-n', 'team-a', '-l', 'app=web'])
    assert.equal(listed.code, 0, listed.stderr)
    assert.match(listed.stdout, /^NAME\s+READY\s+STATUS\s+RESTARTS\s+AGE\nweb\s+/)
    const none = await kubectl('tok-a', ['get', 'pods', '-n', 'team-a', '-l', 'app notin (web)'])
    assert.match(none.stderr, /No resources found in team-a namespace/)

    await writeFile(file, manifest('app: web, tier: front'))
    const configured = await kubectl('tok-admin', ['apply', '--validate=false', '-f', file])
    assert.equal(configured.stdout.trim(), 'pod/web configured', configured.stderr)
    const patchRequest = k.fake.requests.find((r) => r.method === 'PATCH' && r.path === '/api/v1/namespaces/team-a/pods/web')
    assert.ok(patchRequest, 'the second apply sent a patch')
    const names = await kubectl('tok-a', ['get', 'pods', '-n', 'team-a', '-l', 'tier=front', '-o', 'jsonpath={.items[*].metadata.name}'])
    assert.equal(names.stdout, 'web')

    const deleted = await kubectl('tok-a', ['delete', 'pod', 'web', '-n', 'team-a'])
    assert.equal(deleted.code, 0, deleted.stderr)
    assert.equal(deleted.stdout.trim(), 'pod "web" deleted')
    assert.equal(k.fake.store.list(findResource('', 'v1', 'services')!, 'team-a').length, 1, 'the service was not touched')
    const after = await kubectl('tok-a', ['get', 'pod', 'web', '-n', 'team-a'])
    assert.notEqual(after.code, 0)
    assert.match(after.stderr, /Error from server \(NotFound\): pods "web" not found/, JSON.stringify(k.fake.requests.slice(-3)))
  })

  it("shows RBAC's refusal for another namespace as kubectl users know it", async () => {
    const denied = await kubectl('tok-a', ['get', 'pods', '-n', 'kube-system'])
    assert.notEqual(denied.code, 0)
    assert.match(
      denied.stderr,
      /Error from server \(Forbidden\): pods is forbidden: User "team-a" cannot list resource "pods" in API group "" in the namespace "kube-system"/,
    )
    const unknown = await kubectl('not-a-token', ['get', 'pods', '-n', 'team-a'])
    assert.notEqual(unknown.code, 0)
    assert.match(unknown.stderr, /Unauthorized|must be logged in/)
  })
})
