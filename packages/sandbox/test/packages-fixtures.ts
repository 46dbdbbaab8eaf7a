/**
 * Helpers for the pip and npm tests: tiny packages made inside a sandbox (a pure-Python wheel,
 * an `npm pack` style tarball) and loopback servers for a PEP 503 index and an npm registry.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type net from 'node:net'
import { after, before } from 'node:test'
import { EgressService, SessionManager, parseTrustedList, type Session } from '@codebox/sandbox'
import { bwrapDriver } from './fixtures.ts'

/** Python that writes a wheel: argv name, version, VALUE, output path. */
export const MAKE_WHEEL = String.raw`
import base64, hashlib, sys, zipfile
name, version, value, out = sys.argv[1:5]
info = "%s-%s.dist-info" % (name, version)
files = {
    "%s/__init__.py" % name: "VALUE = %r\n" % value,
    info + "/METADATA": "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version),
    info + "/WHEEL": "Wheel-Version: 1.0\nGenerator: codebox-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(out, "w") as z:
    for path, text in files.items():
        data = text.encode()
        z.writestr(path, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
    record.append(info + "/RECORD,,")
    z.writestr(info + "/RECORD", "\n".join(record) + "\n")
`

/** Runs a shell command in the session, asserting exit 0; returns stdout. */
export async function shOk(session: Session, command: string, timeoutMs = 60_000): Promise<string> {
  const r = await session.commands.run(command, { timeoutMs })
  const { exitCode, stdout, stderr } = r.structuredContent
  assert.equal(exitCode, 0, `\`${command}\` exited ${exitCode}: ${stderr}\n${stdout}`)
  return stdout
}

/** Makes `/workspace/<file>` (a pure-Python wheel whose module has `VALUE`); returns the file name. */
export async function makeWheel(session: Session, name: string, value: string, version = '1.0'): Promise<string> {
  const file = `${name}-${version}-py3-none-any.whl`
  await session.files.write('.make_wheel.py', MAKE_WHEEL)
  await shOk(session, `python3 .make_wheel.py ${name} ${version} ${value} ${file} && rm .make_wheel.py`)
  return file
}

/** Makes `/workspace/<name>-<version>.tgz` as `npm pack` would (package/package.json, package/index.js). */
export async function makeNpmTarball(session: Session, name: string, value: number, version = '1.0.0'): Promise<string> {
  const file = `${name}-${version}.tgz`
  const manifest = JSON.stringify({ name, version, main: 'index.js', bin: { [name]: 'cli.js' } })
  await session.files.write('.pack/package/package.json', manifest)
  await session.files.write('.pack/package/index.js', `module.exports = { value: ${value} }\n`)
  await session.files.write('.pack/package/cli.js', `#!/usr/bin/env node\nconsole.log('${name} cli', ${value})\n`)
  await shOk(session, `chmod +x .pack/package/cli.js && tar -czf ${file} -C .pack package && rm -r .pack`)
  return file
}

/** PEP 503's normalized project name. */
const normalize = (name: string): string => name.replace(/[-_.]+/g, '-').toLowerCase()

export interface PackageServer {
  server: Server
  port: number
  /** Paths requested so far. */
  requests: string[]
}

/** What a package server serves: wheels by file name, npm tarballs by file name with their name and version. */
export interface PackageFiles {
  wheels?: Record<string, Buffer>
  tarballs?: Record<string, { name: string; version: string; data: Buffer }>
}

/**
 * A loopback server for a PEP 503 simple index (`/simple/<name>/` links to `/files/<file>`) and an
 * npm registry (`/<name>` is the packument, `/tarballs/<file>` the tarball); `host` is the name
 * the sandbox uses, so the links point where the sandbox's proxy can reach.
 */
export async function packageServer(files: PackageFiles, host: string): Promise<PackageServer> {
  const requests: string[] = []
  let base = ''
  const server = createServer((req, res) => {
    const url = decodeURIComponent(req.url ?? '')
    requests.push(url)
    const simple = /^\/simple\/([^/]+)\/?$/.exec(url)
    if (simple) {
      const links = Object.entries(files.wheels ?? {})
        .filter(([file]) => normalize(file.split('-')[0]!) === normalize(simple[1]!))
        .map(([file, data]) => `<a href="${base}/files/${file}#sha256=${createHash('sha256').update(data).digest('hex')}">${file}</a>`)
      res.writeHead(links.length ? 200 : 404, { 'content-type': 'text/html' }).end(`<!DOCTYPE html><html><body>${links.join('\n')}</body></html>`)
      return
    }
    const wheel = /^\/files\/(.+)$/.exec(url)
    if (wheel && files.wheels?.[wheel[1]!]) return void res.end(files.wheels[wheel[1]!])
    const tarball = /^\/tarballs\/(.+)$/.exec(url)
    if (tarball && files.tarballs?.[tarball[1]!]) return void res.end(files.tarballs[tarball[1]!]!.data)
    const packument = Object.entries(files.tarballs ?? {}).filter(([, t]) => `/${t.name}` === url)
    if (packument.length) {
      const versions = Object.fromEntries(
        packument.map(([file, t]) => [
          t.version,
          { name: t.name, version: t.version, dist: { tarball: `${base}/tarballs/${file}`, shasum: createHash('sha1').update(t.data).digest('hex') } },
        ]),
      )
      const name = packument[0]![1].name
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name, 'dist-tags': { latest: packument.at(-1)![1].version }, versions }))
      return
    }
    res.writeHead(404).end('not found')
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  base = `http://${host}:${port}`
  return { server, port, requests }
}

/** Runs `make` in a fresh sandbox without network and returns what it made (so the host needs no Python or npm). */
async function madeInSandbox<T>(make: (session: Session) => Promise<T>): Promise<T> {
  const m = new SessionManager({ driver: await bwrapDriver(), poolSize: 0 })
  try {
    return await make(await m.start())
  } finally {
    await m.close()
  }
}

/** A package server and a session whose egress allow-list names it, shared by the tests of a `describe`. */
export interface SharedPackageServer {
  /** The host name the session reaches the server by (it resolves to 127.0.0.1). */
  host: string
  server: PackageServer
  session: Session
}

/**
 * For a `describe` block on the bwrap driver: before its first test, `make` makes the packages in
 * a sandbox of its own, a loopback package server serves them as `host`, and a session starts with
 * that server on its egress allow-list; after its last test, both are closed. `server` and
 * `session` are set once the suite's `before` hook has run.
 */
export function sharedPackageServer(host: string, make: (maker: Session) => Promise<PackageFiles>): SharedPackageServer {
  const shared = { host } as SharedPackageServer
  let manager: SessionManager | undefined
  before(async () => {
    shared.server = await packageServer(await madeInSandbox(make), host)
    const egress = new EgressService({
      trusted: parseTrustedList(`127.0.0.1:${shared.server.port}`),
      resolve: async (name) => (name === host ? ['127.0.0.1'] : Promise.reject(Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' }))),
    })
    manager = new SessionManager({ driver: await bwrapDriver(), poolSize: 0, egress })
    shared.session = await manager.start({ egress: { mode: 'allowlist', allow: [`${host}:${shared.server.port}`] } })
  })
  after(async () => {
    await manager?.close()
    shared.server?.server.close()
  })
  return shared
}

/** Runs `command` (an install) in a session without network: it must fail within 20 s, saying so; returns its stderr. */
export async function failsWithoutNetwork(session: Session, command: string): Promise<string> {
  const started = Date.now()
  const r = await session.commands.run(command, { timeoutMs: 120_000 })
  const seconds = (Date.now() - started) / 1000
  assert.notEqual(r.structuredContent.exitCode, 0)
  assert.ok(seconds < 20, `\`${command}\` took ${seconds} s to fail`)
  assert.match(r.structuredContent.stderr, /this session has no network/)
  return r.structuredContent.stderr
}
