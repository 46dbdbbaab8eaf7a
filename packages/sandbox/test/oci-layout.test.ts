/**
 * The sandbox image as an OCI image layout, on a small fake root (never the real image): the
 * layout's JSON carries the image-spec's required fields, every blob's digest and size match its
 * descriptor, the diff_ids are the uncompressed layers' digests, GNU tar reads each layer back to
 * the same tree (long and non-UTF-8 names, links, modes, a FIFO), and the same tree gives the same
 * digests whatever its files' mtimes.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { chmod, link, mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { after, before, test } from 'node:test'
import { gunzipSync } from 'node:zlib'
import { CodeboxError } from '@codebox/core'
import { exportOciLayout, OCI_MEDIA_TYPES, type OciExportOptions } from '../src/index.ts'

let dir: string
let imageRoot: string
let runtimeRoot: string
const nonUtf8 = Buffer.from([0x66, 0xff, 0x2e, 0x74, 0x78, 0x74])
const longName = `a/b/c/${'x'.repeat(120)}.py`
const big = randomBytes(1024 * 1024 + 7)

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'codebox-oci-'))
  imageRoot = path.join(dir, 'image')
  runtimeRoot = path.join(dir, 'runtime')
  await mkdir(path.join(imageRoot, 'bin'), { recursive: true })
  await mkdir(path.join(imageRoot, 'etc'))
  await mkdir(path.join(imageRoot, 'a/b/c'), { recursive: true })
  await mkdir(path.join(imageRoot, 'tmp'), { mode: 0o1777 })
  await chmod(path.join(imageRoot, 'tmp'), 0o1777)
  await writeFile(path.join(imageRoot, 'etc/hostname'), 'sandbox\n')
  await writeFile(path.join(imageRoot, 'bin/tool'), '#!/bin/sh\necho tool\n', { mode: 0o755 })
  await chmod(path.join(imageRoot, 'bin/tool'), 0o4755)
  await link(path.join(imageRoot, 'bin/tool'), path.join(imageRoot, 'bin/tool2'))
  await symlink('tool', path.join(imageRoot, 'bin/sh'))
  await writeFile(path.join(imageRoot, longName), 'long\n')
  await writeFile(Buffer.concat([Buffer.from(`${imageRoot}/etc/`), nonUtf8]), 'bytes\n')
  await writeFile(path.join(imageRoot, 'etc/empty'), '')
  await writeFile(path.join(imageRoot, 'big.bin'), big)
  execFileSync('mkfifo', [path.join(imageRoot, 'etc/fifo')])
  // The image cache's own record, which is no part of the filesystem.
  await writeFile(path.join(imageRoot, 'manifest.json'), '{"path":"/var/lib/codebox/images/x"}')
  await mkdir(path.join(runtimeRoot, 'opt/codebox/executor'), { recursive: true })
  await writeFile(path.join(runtimeRoot, 'opt/codebox/executor/executor.py'), 'print("executor")\n')
})

after(async () => {
  await rm(dir, { recursive: true, force: true })
})

const options = (outDir: string, extra: Partial<OciExportOptions> = {}): OciExportOptions => ({
  outDir,
  layers: [
    { root: imageRoot, exclude: (rel) => rel === 'manifest.json', createdBy: 'codebox image build (test tree)' },
    { root: runtimeRoot, createdBy: 'codebox executor runtime (test tree)' },
  ],
  config: {
    user: '1000:1000',
    env: { PATH: '/usr/bin:/bin', HOME: '/workspace' },
    entrypoint: ['/usr/bin/python3', '/opt/codebox/executor/executor.py'],
    workingDir: '/workspace',
  },
  refName: '0.1.0',
  ...extra,
})

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`
const digestShape = /^sha256:[a-f0-9]{64}$/

interface Descriptor {
  mediaType: string
  digest: string
  size: number
}

/** The image-spec's required fields of a descriptor, and that it names an existing blob of that size and digest. */
async function checkDescriptor(layout: string, d: Descriptor, mediaType: string): Promise<Buffer> {
  assert.equal(d.mediaType, mediaType)
  assert.match(d.digest, digestShape)
  assert.ok(Number.isSafeInteger(d.size) && d.size > 0)
  const blob = await readFile(path.join(layout, 'blobs/sha256', d.digest.slice(7)))
  assert.equal(blob.length, d.size, `size of ${d.digest}`)
  assert.equal(sha256(blob), d.digest, 'the blob is its digest')
  return blob
}

/** Reads a layout back, checking the OCI image-spec (v1.1) required fields of every document; returns the layers as tar bytes. */
async function readLayout(layout: string, gzip = false): Promise<{ manifestDigest: string; tars: Buffer[]; config: any }> {
  assert.deepEqual(JSON.parse(await readFile(path.join(layout, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' })
  const index = JSON.parse(await readFile(path.join(layout, 'index.json'), 'utf8'))
  assert.equal(index.schemaVersion, 2)
  assert.equal(index.mediaType, OCI_MEDIA_TYPES.index)
  assert.equal(index.manifests.length, 1)
  const entry = index.manifests[0]
  assert.deepEqual(entry.platform, { architecture: 'amd64', os: 'linux' })
  assert.equal(entry.annotations['org.opencontainers.image.ref.name'], '0.1.0')
  const manifest = JSON.parse((await checkDescriptor(layout, entry, OCI_MEDIA_TYPES.manifest)).toString())
  assert.equal(manifest.schemaVersion, 2)
  assert.equal(manifest.mediaType, OCI_MEDIA_TYPES.manifest)
  const config = JSON.parse((await checkDescriptor(layout, manifest.config, OCI_MEDIA_TYPES.config)).toString())
  assert.equal(config.architecture, 'amd64')
  assert.equal(config.os, 'linux')
  assert.equal(config.rootfs.type, 'layers')
  assert.equal(config.created, '1970-01-01T00:00:00Z')
  assert.equal(config.config.User, '1000:1000')
  assert.equal(manifest.layers.length, 2)
  const tars: Buffer[] = []
  for (const [i, layer] of manifest.layers.entries()) {
    const blob = await checkDescriptor(layout, layer, gzip ? OCI_MEDIA_TYPES.layerGzip : OCI_MEDIA_TYPES.layer)
    const tar = gzip ? gunzipSync(blob) : blob
    assert.equal(config.rootfs.diff_ids[i], sha256(tar), 'diff_id is the digest of the uncompressed layer')
    tars.push(tar)
  }
  const blobs = (await readdir(path.join(layout, 'blobs/sha256'))).sort()
  assert.deepEqual(
    blobs,
    [entry.digest, manifest.config.digest, ...manifest.layers.map((l: Descriptor) => l.digest)].map((d: string) => d.slice(7)).sort(),
    'no other blob, no temporary file',
  )
  return { manifestDigest: entry.digest, tars, config }
}

test('a layout with the required fields, digests that match, and layers GNU tar reads back to the same tree', async () => {
  const out = path.join(dir, 'layout')
  const result = await exportOciLayout(options(out))
  const { manifestDigest, tars, config } = await readLayout(out)
  assert.equal(manifestDigest, result.manifest.digest)
  assert.deepEqual(
    config.history.map((h: { created_by: string }) => h.created_by),
    ['codebox image build (test tree)', 'codebox executor runtime (test tree)'],
  )
  const layerFile = path.join(dir, 'layer0.tar')
  await writeFile(layerFile, tars[0]!)
  const listing = execFileSync('tar', ['--numeric-owner', '--full-time', '-tvf', layerFile], { encoding: 'latin1' }).trim().split('\n')
  const names = listing.map((l) => l.replace(/^\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+/, ''))
  assert.deepEqual(names, [
    'a/',
    'a/b/',
    'a/b/c/',
    `${longName}`,
    'big.bin',
    'bin/',
    'bin/sh -> tool',
    'bin/tool',
    'bin/tool2 link to bin/tool',
    'etc/',
    'etc/empty',
    'etc/fifo',
    // bytes order: 0x66 0xff sorts after "fifo" and before "hostname"; GNU tar escapes the byte
    'etc/f\\377.txt',
    'etc/hostname',
    'tmp/',
  ])
  for (const line of listing) assert.match(line, / 1970-01-01 00:00:00 /, line)
  assert.match(
    listing.find((l) => l.endsWith('bin/tool'))!,
    /^-rwsr-xr-x 0\/0 /,
  )
  assert.match(
    listing.find((l) => l.endsWith('etc/fifo'))!,
    /^p/,
  )
  assert.match(
    listing.find((l) => l.endsWith('tmp/'))!,
    /^drwxrwxrwt/,
  )
  const extracted = path.join(dir, 'extracted')
  await mkdir(extracted)
  execFileSync('tar', ['-xf', layerFile, '-C', extracted])
  assert.ok((await readFile(path.join(extracted, 'big.bin'))).equals(big))
  assert.equal(await readFile(path.join(extracted, longName), 'utf8'), 'long\n')
  assert.equal(await readFile(Buffer.concat([Buffer.from(`${extracted}/etc/`), nonUtf8]), 'utf8'), 'bytes\n')
  await writeFile(layerFile, tars[1]!)
  assert.deepEqual(execFileSync('tar', ['-tf', layerFile], { encoding: 'utf8' }).trim().split('\n'), [
    'opt/',
    'opt/codebox/',
    'opt/codebox/executor/',
    'opt/codebox/executor/executor.py',
  ])
})

test('deterministic: the same trees give the same digests whatever the mtimes; other content does not', async () => {
  const first = await exportOciLayout(options(path.join(dir, 'd1')))
  await utimes(path.join(imageRoot, 'etc/hostname'), new Date(), new Date('2020-02-02'))
  const second = await exportOciLayout(options(path.join(dir, 'd2')))
  assert.equal(second.manifest.digest, first.manifest.digest)
  await writeFile(path.join(imageRoot, 'etc/hostname'), 'sandbox2\n')
  try {
    const third = await exportOciLayout(options(path.join(dir, 'd3')))
    assert.notEqual(third.layers[0]!.digest, first.layers[0]!.digest)
    assert.equal(third.layers[1]!.digest, first.layers[1]!.digest, 'the runtime layer did not change')
  } finally {
    await writeFile(path.join(imageRoot, 'etc/hostname'), 'sandbox\n')
  }
})

test('gzip layers: tar+gzip media type, diff_ids of the uncompressed tar, deterministic too', async () => {
  const a = await exportOciLayout(options(path.join(dir, 'g1'), { gzip: true }))
  await readLayout(path.join(dir, 'g1'), true)
  const b = await exportOciLayout(options(path.join(dir, 'g2'), { gzip: true }))
  assert.equal(a.manifest.digest, b.manifest.digest)
})

test('bad requests are refused and a failed export leaves nothing behind', async () => {
  const isField = (field: string) => (e: unknown) => e instanceof CodeboxError && e.code === 'ValidationError' && e.details.field === field
  await assert.rejects(exportOciLayout(options(path.join(dir, 'layout'))), isField('outDir'))
  await assert.rejects(exportOciLayout(options(path.join(dir, 'x1'), { refName: 'bad tag' })), isField('refName'))
  await assert.rejects(exportOciLayout({ ...options(path.join(dir, 'x2')), layers: [{ root: path.join(dir, 'nope'), createdBy: '' }] }), isField('layers'))
  const controller = new AbortController()
  controller.abort()
  await assert.rejects(exportOciLayout(options(path.join(dir, 'x3'), { signal: controller.signal })))
  assert.deepEqual(
    (await readdir(dir)).filter((n) => n.startsWith('x')),
    [],
    'no layout, no partial directory',
  )
})
