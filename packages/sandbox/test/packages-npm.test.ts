/**
 * npm in real bwrap sandboxes: a tarball in the workspace installs offline into
 * /workspace/node_modules and the running Node kernel requires and imports it; a global install
 * goes to the workspace's prefix and its command is on PATH; a session with egress installs from
 * an npm registry on loopback through the proxy; without network npm fails within seconds and
 * says why. Everything stays on loopback.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { bwrapUnavailable, sharedBwrapSession } from './fixtures.ts'
import { failsWithoutNetwork, makeNpmTarball, sharedPackageServer, shOk } from './packages-fixtures.ts'

const unavailable = await bwrapUnavailable()

describe('npm in a sandbox without network (bwrap)', { skip: unavailable ?? false }, () => {
  const shared = sharedBwrapSession()

  test('npm and npx run', async () => {
    assert.match(await shOk(shared.session, 'npm --version'), /^\d+\.\d+\.\d+\n$/)
    assert.match(await shOk(shared.session, 'npx --version'), /^\d+\.\d+\.\d+\n$/)
  })

  test('a tarball in the workspace installs offline and the running Node kernel requires and imports it', async () => {
    const before = await shared.session.runCode({ code: 'console.log(typeof require)', language: 'javascript' })
    assert.equal(before.structuredContent.stdout, 'function\n')
    const file = await makeNpmTarball(shared.session, 'codebox-tiny', 42)
    await shOk(shared.session, `npm install ./${file}`)
    const r = await shared.session.runCode({
      code: "const tiny = require('codebox-tiny')\nconst imported = await import('codebox-tiny')\nconsole.log(tiny.value, imported.default.value)",
      language: 'javascript',
    })
    assert.equal(r.isError, false, r.structuredContent.stderr)
    assert.equal(r.structuredContent.stdout, '42 42\n')
  })

  test('a global install goes to the workspace prefix and its command is on PATH', async () => {
    const file = await makeNpmTarball(shared.session, 'codebox-global', 7)
    await shOk(shared.session, `npm install -g ./${file}`)
    assert.equal(await shOk(shared.session, 'command -v codebox-global && codebox-global'), '/workspace/.npm-global/bin/codebox-global\ncodebox-global cli 7\n')
  })

  test('a package from the registry fails within seconds, saying the session has no network', async () => {
    await failsWithoutNetwork(shared.session, 'npm install codebox-not-installed-anywhere')
  })
})

describe('npm through the egress proxy (bwrap)', { skip: unavailable ?? false }, () => {
  const shared = sharedPackageServer('registry.codebox.test', async (maker) => {
    const file = await makeNpmTarball(maker, 'codebox-registered', 9)
    return { tarballs: { [file]: { name: 'codebox-registered', version: '1.0.0', data: await maker.files.read(file) } } }
  })

  test('npm installs from a registry on loopback, and the Node kernel requires it', async () => {
    const { host, server: registry, session } = shared
    await shOk(session, `npm install --registry http://${host}:${registry.port}/ codebox-registered`)
    assert.ok(registry.requests.includes('/tarballs/codebox-registered-1.0.0.tgz'), `the tarball came from the registry: ${registry.requests.join(', ')}`)
    const r = await session.runCode({ code: "console.log(require('codebox-registered').value)", language: 'javascript' })
    assert.equal(r.structuredContent.stdout, '9\n', r.structuredContent.stderr)
  })
})
