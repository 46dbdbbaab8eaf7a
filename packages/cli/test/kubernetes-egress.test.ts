/**
 * `codebox kubernetes egress-proxy` as a process: bad settings are errors naming the variable
 * (exit 64), and with a kubeconfig for the fake API server it lists the pods, listens, answers a
 * request without credentials 407, logs the refusal as a JSON line, and stops on SIGTERM.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { startFakeKubernetes } from '@codebox/sandbox/testing/kubernetes'

const bin = fileURLToPath(new URL('../bin/codebox', import.meta.url))
const key = Buffer.alloc(32, 3).toString('base64')
const base = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: tmpdir() }

test('bad settings are errors naming the variable', () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{}, /CODEBOX_K8S_NAMESPACE: is required/],
    [{ CODEBOX_K8S_NAMESPACE: 'Bad_NS' }, /CODEBOX_K8S_NAMESPACE: must be a DNS label/],
    [{ CODEBOX_K8S_NAMESPACE: 'codebox', CODEBOX_EGRESS_PROFILE: 'sandbox' }, /CODEBOX_EGRESS_PROFILE: must be public or vpc, got "sandbox"/],
    [{ CODEBOX_K8S_NAMESPACE: 'codebox', CODEBOX_EGRESS_PROFILE: 'vpc' }, /CODEBOX_SEALING_KEY: or CODEBOX_SEALING_KEY_FILE is required/],
    [{ CODEBOX_K8S_NAMESPACE: 'codebox', CODEBOX_EGRESS_PROFILE: 'vpc', CODEBOX_SEALING_KEY: 'short' }, /CODEBOX_SEALING_KEY/],
    [
      { CODEBOX_K8S_NAMESPACE: 'codebox', CODEBOX_EGRESS_PROFILE: 'vpc', CODEBOX_SEALING_KEY: key, CODEBOX_EGRESS_TRUSTED: 'db.internal' },
      /CODEBOX_EGRESS_TRUSTED/,
    ],
    [
      { CODEBOX_K8S_NAMESPACE: 'codebox', CODEBOX_EGRESS_PROFILE: 'public', CODEBOX_SEALING_KEY: key, CODEBOX_EGRESS_TRUSTED: '10.0.0.0/8' },
      /applies to the vpc profile only/,
    ],
    [
      { CODEBOX_K8S_NAMESPACE: 'codebox', CODEBOX_EGRESS_PROFILE: 'vpc', CODEBOX_SEALING_KEY: key, CODEBOX_EGRESS_LISTEN: '3128' },
      /CODEBOX_EGRESS_LISTEN: must be host:port/,
    ],
    [
      { CODEBOX_K8S_NAMESPACE: 'codebox', CODEBOX_EGRESS_PROFILE: 'vpc', CODEBOX_SEALING_KEY: key, CODEBOX_EGRESS_API_URL: 'http://codebox-api:8080/api' },
      /CODEBOX_EGRESS_API_URL: must be an http:\/\/ or https:\/\/ URL without credentials, path, query or fragment/,
    ],
  ]
  for (const [env, message] of cases) {
    const r = spawnSync(bin, ['kubernetes', 'egress-proxy'], { env: { ...base, ...env }, encoding: 'utf8', timeout: 60_000 })
    assert.equal(r.status, 64, `${JSON.stringify(env)}: ${r.stderr}`)
    assert.match(r.stderr, message)
  }
})

test('it serves against the API server of its kubeconfig, refuses a request without credentials, and stops on SIGTERM', async () => {
  const fake = await startFakeKubernetes({ kubelet: false, tls: false })
  const dir = mkdtempSync(path.join(tmpdir(), 'codebox-egress-cli-'))
  try {
    const kubeconfig = path.join(dir, 'kubeconfig')
    writeFileSync(kubeconfig, JSON.stringify(fake.kubeconfig(fake.adminToken, 'codebox')))
    const child = spawn(bin, ['kubernetes', 'egress-proxy'], {
      env: {
        ...base,
        KUBECONFIG: kubeconfig,
        CODEBOX_K8S_NAMESPACE: 'codebox',
        CODEBOX_EGRESS_PROFILE: 'vpc',
        CODEBOX_SEALING_KEY: key,
        CODEBOX_EGRESS_LISTEN: '127.0.0.1:0',
        CODEBOX_EGRESS_API_URL: 'http://codebox-api:8080',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    for (let i = 0; i < 400 && !out.includes('egress.listening'); i++) await new Promise((r) => setTimeout(r, 25))
    const listening = JSON.parse(out.split('\n')[0]!) as { event: string; profile: string; address: string; pods: number; gateway: string | null }
    assert.equal(listening.event, 'egress.listening')
    assert.equal(listening.profile, 'vpc')
    assert.equal(listening.pods, 0)
    assert.equal(listening.gateway, 'http://codebox-api:8080', 'the model gateway is relayed there')
    const port = Number(listening.address.split(':').at(-1))
    const answer = await new Promise<string>((resolve, reject) => {
      let text = ''
      const c = net.connect({ host: '127.0.0.1', port }, () => c.write('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n'))
      c.on('data', (d: Buffer) => (text += d.toString()))
      c.on('error', reject)
      c.on('close', () => resolve(text))
    })
    assert.match(answer, /^HTTP\/1\.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic/)
    for (let i = 0; i < 100 && !out.includes('egress.refused'); i++) await new Promise((r) => setTimeout(r, 20))
    assert.match(out, /"event":"egress.refused","status":407/)
    child.kill('SIGTERM')
    assert.equal(await exited, 0)
    assert.match(out, /"event":"egress.stopped"/)
  } finally {
    await fake.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
