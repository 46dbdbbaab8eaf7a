/**
 * A throw-away certificate for the fake API server (clients verify TLS against it, as they would
 * against a cluster's CA): a self-signed P-256 certificate for 127.0.0.1 and localhost, valid one
 * day, made with the openssl command line (Node has no certificate generator).
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'

/** A certificate (PEM) and its private key (PEM). */
export interface ServerCertificate {
  cert: string
  key: string
}

/** Makes a certificate with openssl; a missing openssl is an error that says so. */
export async function makeCertificate(): Promise<ServerCertificate> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'kfake-tls-'))
  try {
    const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=fake-kubernetes']
    args.push('-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem'))
    await promisify(execFile)('openssl', args, { timeout: 30_000 }).catch((e: NodeJS.ErrnoException) => {
      throw new Error(
        e.code === 'ENOENT'
          ? 'openssl is not installed; the fake API server needs it for its TLS certificate (or pass tls: false)'
          : `openssl failed: ${e.message}`,
      )
    })
    return { cert: await readFile(path.join(dir, 'cert.pem'), 'utf8'), key: await readFile(path.join(dir, 'key.pem'), 'utf8') }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
