/**
 * pip in real bwrap sandboxes: `pip install pandas` (AWS's install_packages) finds it installed;
 * a wheel in the workspace installs offline into ~/.local and the running kernel imports it at
 * once; a session with egress installs from a PEP 503 index on loopback through the proxy; a
 * session without network fails within seconds and says why. Everything stays on loopback.
 */
import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { FakeDriver, SessionManager } from '@codebox/sandbox'
import { bwrapUnavailable, sharedBwrapSession } from './fixtures.ts'
import { failsWithoutNetwork, makeWheel, sharedPackageServer, shOk } from './packages-fixtures.ts'

const unavailable = await bwrapUnavailable()

describe('the Python kernel and the user site (fake driver)', () => {
  test('a package put into ~/.local after the kernel started imports in the next cell', async () => {
    const m = new SessionManager({ driver: new FakeDriver(), poolSize: 0 })
    try {
      const session = await m.start()
      const missing = await session.runCode({ code: 'import codebox_late', language: 'python' })
      assert.equal(missing.isError, true)
      assert.match(missing.structuredContent.stderr, /ModuleNotFoundError: No module named 'codebox_late'/)
      const site = (await shOk(session, 'python3 -c "import site; print(site.getusersitepackages())"')).trim()
      await shOk(session, `mkdir -p ${site}/codebox_late && echo 'VALUE = 7' > ${site}/codebox_late/__init__.py`)
      const r = await session.runCode({
        code: 'import codebox_late, sys\nprint(codebox_late.VALUE, sys.path.index(codebox_late.__path__[0].rsplit("/", 1)[0]) >= 0)',
        language: 'python',
      })
      assert.equal(r.structuredContent.stdout, '7 True\n', r.structuredContent.stderr)
    } finally {
      await m.close()
    }
  })
})

describe('pip in a sandbox without network (bwrap)', { skip: unavailable ?? false }, () => {
  const shared = sharedBwrapSession()

  test('`pip install pandas` (what install_packages sends) succeeds: already satisfied', async () => {
    const out = await shOk(shared.session, 'pip install pandas')
    assert.match(out, /Requirement already satisfied: pandas/)
  })

  test('a wheel in the workspace installs offline and the running kernel imports it at once', async () => {
    // the kernel is running before ~/.local exists
    const first = await shared.session.runCode({ code: 'import os; print(os.path.exists(os.path.expanduser("~/.local")))', language: 'python' })
    assert.equal(first.structuredContent.stdout, 'False\n')
    const wheel = await makeWheel(shared.session, 'codebox_tiny', 'from-a-wheel')
    const out = await shOk(shared.session, `pip install ./${wheel}`)
    assert.match(out, /Successfully installed codebox[-_]tiny-1\.0/)
    const r = await shared.session.runCode({ code: 'import codebox_tiny\nprint(codebox_tiny.VALUE, codebox_tiny.__file__)', language: 'python' })
    assert.equal(r.isError, false, r.structuredContent.stderr)
    assert.equal(r.structuredContent.stdout, 'from-a-wheel /workspace/.local/lib/python3.11/site-packages/codebox_tiny/__init__.py\n')
    // installed now: pip says so without looking for an index
    assert.match(await shOk(shared.session, 'pip install codebox_tiny'), /Requirement already satisfied: codebox[-_]tiny/)
  })

  test('pip uninstalls what it installed into the workspace; --target installs where it is told', async () => {
    const wheel = await makeWheel(shared.session, 'codebox_gone', 'x')
    await shOk(shared.session, `pip install ./${wheel}`)
    assert.match(await shOk(shared.session, 'pip uninstall -y codebox_gone'), /Successfully uninstalled codebox[-_]gone-1\.0/)
    assert.equal(await shOk(shared.session, `pip install -q --target /tmp/target ./${wheel} && ls /tmp/target`), 'codebox_gone\ncodebox_gone-1.0.dist-info\n')
  })

  test('a package that is not installed fails within seconds, saying the session has no network', async () => {
    assert.match(await failsWithoutNetwork(shared.session, 'pip install codebox-not-installed-anywhere'), /PUBLIC or VPC/)
  })
})

describe('pip through the egress proxy (bwrap)', { skip: unavailable ?? false }, () => {
  // the wheel is made in a sandbox too, so the host needs no Python of its own
  const shared = sharedPackageServer('pypi.codebox.test', async (maker) => {
    const file = await makeWheel(maker, 'codebox_indexed', 'from-the-index', '2.0')
    return { wheels: { [file]: await maker.files.read(file) } }
  })

  test('pip installs from a PEP 503 index on loopback, and the kernel imports it', async () => {
    const { host, server: index, session } = shared
    await session.runCode({ code: 'pass', language: 'python' })
    const out = await shOk(session, `pip install --index-url http://${host}:${index.port}/simple --trusted-host ${host} codebox-indexed`)
    assert.match(out, /Successfully installed codebox[-_]indexed-2\.0/)
    assert.ok(
      index.requests.some((p) => p.startsWith('/files/codebox_indexed-2.0')),
      `the wheel came from the index: ${index.requests.join(', ')}`,
    )
    const r = await session.runCode({ code: 'import codebox_indexed; print(codebox_indexed.VALUE)', language: 'python' })
    assert.equal(r.structuredContent.stdout, 'from-the-index\n', r.structuredContent.stderr)
  })
})
