/**
 * Writes a sandbox image as an OCI image layout (image-spec v1.1: `oci-layout`, `index.json`,
 * `blobs/sha256/`), for a registry or a cluster to pull (`skopeo copy oci:<dir> docker://...`):
 * one tar layer per directory given (the image root, then the executor's runtime tree), an image
 * config and a manifest. Deterministic: the same trees give the same digests (tarTree: sorted
 * entries, one mtime; the config's `created` is that mtime). Streamed: a layer goes from the tree
 * through its digest (and gzip) to its blob file without being held in memory, so the 1.5 GB image
 * costs a few chunks of memory. The layout is built in a temporary directory beside `outDir` and
 * renamed into place when complete.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { Readable, Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGzip } from 'node:zlib'
import { CodeboxError, validationError } from '@codebox/core'
import { tarTree } from './tar.ts'

export const OCI_MEDIA_TYPES = {
  index: 'application/vnd.oci.image.index.v1+json',
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const

export interface OciLayerSource {
  /** The directory whose contents become the layer. */
  root: string
  /** Paths (relative, '/'-separated) to leave out. */
  exclude?: (relPath: string) => boolean
  /** What the image config's history says made this layer. */
  createdBy: string
}

export interface OciImageConfig {
  /** `uid:gid` the image runs as. */
  user: string
  env: Record<string, string>
  entrypoint: string[]
  workingDir: string
  labels?: Record<string, string>
}

export interface OciExportOptions {
  layers: OciLayerSource[]
  config: OciImageConfig
  /** A directory that does not exist yet. */
  outDir: string
  /** The index's `org.opencontainers.image.ref.name` (the tag `oci:<dir>:<ref>` names); default `latest`. */
  refName?: string
  /** gzip each layer (smaller, slower); default false. */
  gzip?: boolean
  /** mtime of every file and the config's `created`, unix seconds; default 0. */
  mtime?: number
  signal?: AbortSignal
}

export interface OciDescriptor {
  mediaType: string
  digest: string
  size: number
}

export interface OciExportResult {
  manifest: OciDescriptor
  config: OciDescriptor
  layers: (OciDescriptor & { diffId: string })[]
}

const goArch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' }

/** Hashes what passes through, unchanged. */
class Digest extends Transform {
  readonly hash = createHash('sha256')
  bytes = 0
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk)
    this.bytes += chunk.length
    done(null, chunk)
  }
}

async function writeBlob(blobs: string, data: Buffer, mediaType: string): Promise<OciDescriptor> {
  const hex = createHash('sha256').update(data).digest('hex')
  await writeFile(path.join(blobs, hex), data)
  return { mediaType, digest: `sha256:${hex}`, size: data.length }
}

async function writeLayer(blobs: string, source: OciLayerSource, options: OciExportOptions): Promise<OciDescriptor & { diffId: string }> {
  const temp = path.join(blobs, `.layer-${randomBytes(6).toString('hex')}`)
  const diff = new Digest()
  const stored = new Digest()
  const tar = Readable.from(tarTree(source.root, { mtime: options.mtime ?? 0, exclude: source.exclude, signal: options.signal }), { objectMode: false })
  const stages = options.gzip ? [diff, createGzip({ level: 6 }), stored] : [diff, stored]
  await pipeline([tar, ...stages, createWriteStream(temp)], { signal: options.signal })
  const hex = stored.hash.digest('hex')
  await rename(temp, path.join(blobs, hex))
  return {
    mediaType: options.gzip ? OCI_MEDIA_TYPES.layerGzip : OCI_MEDIA_TYPES.layer,
    digest: `sha256:${hex}`,
    size: stored.bytes,
    diffId: `sha256:${diff.hash.digest('hex')}`,
  }
}

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value))

/** Writes the layout; ValidationError when `outDir` exists or a layer's root is not a directory. */
export async function exportOciLayout(options: OciExportOptions): Promise<OciExportResult> {
  const outDir = path.resolve(options.outDir)
  if (await stat(outDir).catch(() => undefined)) throw validationError('outDir', `${outDir} exists already; give a new directory`)
  if (options.layers.length === 0) throw validationError('layers', 'at least one layer is needed')
  for (const layer of options.layers) {
    if (!(await stat(layer.root).catch(() => undefined))?.isDirectory()) throw validationError('layers', `${layer.root} is not a directory`)
  }
  const refName = options.refName ?? 'latest'
  if (!/^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,127}$/.test(refName))
    throw validationError('refName', `must be letters, digits and . _ : @ / + - (at most 128), got ${JSON.stringify(refName)}`)
  const architecture = goArch[process.arch]
  if (architecture === undefined) throw new CodeboxError('Unavailable', `no OCI architecture name for ${process.arch}`)
  const created = new Date((options.mtime ?? 0) * 1000).toISOString().replace('.000Z', 'Z')
  const work = `${outDir}.partial-${randomBytes(6).toString('hex')}`
  const blobs = path.join(work, 'blobs', 'sha256')
  await mkdir(blobs, { recursive: true })
  try {
    const layers: OciExportResult['layers'] = []
    for (const source of options.layers) layers.push(await writeLayer(blobs, source, options))
    const c = options.config
    const config = await writeBlob(
      blobs,
      json({
        created,
        architecture,
        os: 'linux',
        config: {
          User: c.user,
          Env: Object.entries(c.env).map(([k, v]) => `${k}=${v}`),
          Entrypoint: c.entrypoint,
          WorkingDir: c.workingDir,
          ...(c.labels !== undefined ? { Labels: c.labels } : {}),
        },
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
        history: options.layers.map((l) => ({ created, created_by: l.createdBy })),
      }),
      OCI_MEDIA_TYPES.config,
    )
    const manifest = await writeBlob(
      blobs,
      json({
        schemaVersion: 2,
        mediaType: OCI_MEDIA_TYPES.manifest,
        config,
        layers: layers.map(({ mediaType, digest, size }) => ({ mediaType, digest, size })),
        annotations: { 'org.opencontainers.image.created': created },
      }),
      OCI_MEDIA_TYPES.manifest,
    )
    await writeFile(path.join(work, 'oci-layout'), json({ imageLayoutVersion: '1.0.0' }))
    await writeFile(
      path.join(work, 'index.json'),
      json({
        schemaVersion: 2,
        mediaType: OCI_MEDIA_TYPES.index,
        manifests: [{ ...manifest, platform: { architecture, os: 'linux' }, annotations: { 'org.opencontainers.image.ref.name': refName } }],
      }),
    )
    await rename(work, outDir)
    return { manifest, config, layers }
  } catch (e) {
    await rm(work, { recursive: true, force: true })
    throw e
  }
}
