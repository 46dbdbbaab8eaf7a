/**
 * The registry of hosted agent runtimes: bundle uploads (streamed into the store in chunks, with
 * their own size limit), deploys (a new runtime or its next immutable version, checked by
 * unpacking the bundle), the DEFAULT endpoint and rollbacks, deletes, per-runtime secrets, and
 * for the runtime sessions: `resolve` (an id, name or ARN and a qualifier to a version) and
 * `bundleDir` (the version's code unpacked on the host, cached under the state dir).
 */
import { createHash, randomBytes } from 'node:crypto'
import { lstat, mkdir, readFile, rename, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import { CodeboxError, runtimeTimeoutBounds, validationError, type DeployRuntimeRequest, type RuntimeLanguage, type SessionLimits } from '@codebox/core'
import type { RuntimeBundleRecord, RuntimeRecord, RuntimeSecretRecord, RuntimeSettings, RuntimeStore, RuntimeVersionRecord } from '../store/index.ts'
import { bundleChunkBytes } from '../store/index.ts'
import { accountOf } from './accounts.ts'
import { checkNetwork } from './network.ts'
import { defaultEntrypoints, unpackBundle, type UnpackLimits } from './runtime-bundles.ts'
import type { Caller } from './sessions.ts'

/** The built-in codebox agent, listed as a runtime; it cannot be deployed, rolled back or deleted. */
export const builtInRuntimeId = 'codebox-agent'

/** The region native API answers put in ARNs (the AWS API uses the region the request was signed for). */
export const nativeRegion = 'us-east-1'

/** How long an uploaded bundle that no version uses is kept. */
const unusedBundleMs = 60 * 60_000

export interface RuntimeServiceOptions {
  store: { runtimes: RuntimeStore }
  /** The server's state dir: versions are unpacked under `<stateDir>/runtimes/`. */
  stateDir: string
  /** `CODEBOX_RUNTIME_MAX_BUNDLE_BYTES`. */
  maxBundleBytes: number
  /** Checks a runtime's sandbox limits (the session service's `checkLimits`). */
  checkLimits: (limits: Partial<SessionLimits>) => unknown
  /** Records an audit entry (the session service's `audit`). */
  audit: (
    caller: Caller,
    entry: { action: string; outcome: 'ok' | 'rejected' | 'failed'; durationMs: number; detail?: string; requestId?: string },
  ) => Promise<void>
  /** Unpack bounds; default 4 × maxBundleBytes and 200000 entries. */
  unpackLimits?: UnpackLimits
  /** How often abandoned bundles are swept; default 10 minutes; 0 turns the timer off. */
  sweepEveryMs?: number
  /** Called before a runtime is deleted (its running sessions end first). */
  beforeDelete?: (tenant: string, runtimeId: string) => Promise<void>
}

/** A runtime and the version a qualifier names. */
export interface ResolvedRuntime {
  runtime: RuntimeRecord
  version: RuntimeVersionRecord
}

export class RuntimeService {
  readonly maxBundleBytes: number
  readonly #store: RuntimeStore
  readonly #options: RuntimeServiceOptions
  readonly #root: string
  readonly #unpackLimits: UnpackLimits
  readonly #unpacking = new Map<string, Promise<string>>()
  readonly #sweeper: NodeJS.Timeout | undefined

  constructor(options: RuntimeServiceOptions) {
    this.#options = options
    this.#store = options.store.runtimes
    this.maxBundleBytes = options.maxBundleBytes
    this.#root = path.join(options.stateDir, 'runtimes')
    this.#unpackLimits = options.unpackLimits ?? { maxUnpackedBytes: 4 * options.maxBundleBytes, maxEntries: 200_000 }
    const every = options.sweepEveryMs ?? 10 * 60_000
    if (every > 0) {
      this.#sweeper = setInterval(() => void this.sweepBundles().catch(() => {}), every)
      this.#sweeper.unref()
    }
  }

  /** Where versions are unpacked: `<stateDir>/runtimes`. */
  get cacheDir(): string {
    return this.#root
  }

  /** Stops the sweeping timer. */
  close(): void {
    clearInterval(this.#sweeper)
  }

  /** Removes bundles uploaded over an hour before `now` that no version uses; returns how many. */
  sweepBundles(now: Date = new Date()): Promise<number> {
    return this.#store.sweepBundles(new Date(now.getTime() - unusedBundleMs))
  }

  /** The ARN of a runtime (or of the built-in agent) for `caller` in `region`. */
  arn(caller: Caller, runtimeId: string, region: string = nativeRegion): string {
    return `arn:aws:bedrock-agentcore:${region}:${accountOf(caller.tenant)}:runtime/${runtimeId}`
  }

  /**
   * Stores a gzipped tar streamed from `body` as a bundle of the caller. Past `maxBundleBytes` it
   * is LimitExceeded and nothing is kept; a body that does not start as gzip is a ValidationError.
   */
  async uploadBundle(caller: Caller, body: AsyncIterable<Uint8Array>): Promise<RuntimeBundleRecord> {
    const bundleId = await this.#store.beginBundle(caller.tenant)
    const hash = createHash('sha256')
    let total = 0
    let seq = 0
    let pending: Buffer[] = []
    let pendingBytes = 0
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return
      const all = Buffer.concat(pending)
      pending = []
      pendingBytes = 0
      for (let at = 0; at < all.length; at += bundleChunkBytes) {
        const part = all.subarray(at, at + bundleChunkBytes)
        if (part.length < bundleChunkBytes && at + part.length === all.length) {
          pending = [part]
          pendingBytes = part.length
          return
        }
        await this.#store.appendBundleChunk(bundleId, seq++, part)
      }
    }
    try {
      for await (const chunk of body) {
        if (total === 0 && chunk.length > 0 && chunk[0] !== 0x1f) throw validationError('body', 'is not gzip: send the bundle as a .tar.gz (application/gzip)')
        total += chunk.length
        if (total > this.maxBundleBytes) {
          throw new CodeboxError('LimitExceeded', `the bundle is over the ${this.maxBundleBytes}-byte limit (CODEBOX_RUNTIME_MAX_BUNDLE_BYTES)`, {
            details: { limit: this.maxBundleBytes },
          })
        }
        hash.update(chunk)
        pending.push(Buffer.from(chunk))
        pendingBytes += chunk.length
        if (pendingBytes >= bundleChunkBytes) await flush()
      }
      if (total === 0) throw validationError('body', 'is empty: send the bundle as a .tar.gz (application/gzip)')
      if (pendingBytes > 0) {
        await this.#store.appendBundleChunk(bundleId, seq++, Buffer.concat(pending))
        pending = []
      }
      return await this.#store.finishBundle(bundleId, caller.tenant, hash.digest('hex'), total)
    } catch (e) {
      await this.#store.discardBundle(bundleId)
      throw e
    }
  }

  /**
   * Deploys an uploaded bundle: version 1 of a new runtime named `request.name`, or the next
   * version of the caller's runtime of that name (settings not given are the previous version's;
   * DEFAULT moves to the new version, ending a rollback's pin, as on AWS). The bundle is unpacked
   * and checked first: a hostile archive or a missing entrypoint is a ValidationError and nothing
   * is stored.
   */
  async deploy(caller: Caller, request: DeployRuntimeRequest, requestId?: string): Promise<ResolvedRuntime> {
    const started = performance.now()
    try {
      const result = await this.#deploy(caller, request)
      await this.#audit(caller, 'deployRuntime', started, 'ok', `${result.runtime.runtimeId} v${result.version.version}`, requestId)
      return result
    } catch (e) {
      await this.#audit(caller, 'deployRuntime', started, outcomeOf(e), `${request.name}: ${(e as { code?: string }).code ?? 'Internal'}`, requestId)
      throw e
    }
  }

  async #deploy(caller: Caller, request: DeployRuntimeRequest): Promise<ResolvedRuntime> {
    const bundle = await this.#store.getBundle(request.bundleId, caller.tenant)
    if (!bundle)
      throw validationError('bundleId', `no uploaded bundle ${request.bundleId}; upload one with POST /v1/runtime-bundles (codebox runtimes deploy does both)`)
    const existing = await this.#store.get(caller.tenant, request.name)
    const previous = existing && (await this.#store.version(existing.runtimeId, existing.latestVersion))?.settings
    const staging = path.join(this.#root, '.staging', randomBytes(12).toString('hex'))
    await this.#prepareRoot()
    await mkdir(path.dirname(staging), { recursive: true, mode: 0o700 })
    await unpackBundle(this.#chunks(bundle.bundleId), staging, this.#unpackLimits, bundle.sha256)
    try {
      const entrypoint = request.entrypoint ?? previous?.entrypoint ?? (await detectEntrypoint(staging))
      await checkEntrypoint(staging, entrypoint, request.entrypoint === undefined ? 'entrypoint (the default)' : 'entrypoint')
      const network = request.network ?? previous?.network ?? { mode: 'SANDBOX' as const }
      checkNetwork(network, 'network', 'give network.allow (codebox runtimes deploy --allow)')
      const limits = request.limits ?? previous?.limits ?? {}
      this.#options.checkLimits(limits)
      const settings: RuntimeSettings = {
        entrypoint,
        language: languageOf(entrypoint),
        protocol: request.protocol ?? previous?.protocol ?? 'HTTP',
        network: { mode: network.mode, ...(network.allow ? { allow: network.allow } : {}) },
        idleTimeoutSeconds: request.idleTimeoutSeconds ?? previous?.idleTimeoutSeconds ?? runtimeTimeoutBounds.idleDefault,
        maxLifetimeSeconds: request.maxLifetimeSeconds ?? previous?.maxLifetimeSeconds ?? runtimeTimeoutBounds.lifetimeDefault,
        limits,
      }
      const deployed = await this.#store.deploy({
        tenant: caller.tenant,
        name: request.name,
        ...(request.description !== undefined ? { description: request.description } : {}),
        bundleId: bundle.bundleId,
        settings,
      })
      // The unpacked tree becomes the version's cache; if that fails, bundleDir unpacks it again.
      const dir = this.#versionDir(deployed.runtime.runtimeId, deployed.version.version)
      await mkdir(path.dirname(dir), { recursive: true, mode: 0o700 })
      await rename(staging, dir).catch(() => rm(staging, { recursive: true, force: true }))
      return deployed
    } catch (e) {
      await rm(staging, { recursive: true, force: true })
      throw e
    }
  }

  /** The caller's runtimes, oldest first (the built-in agent is not among them: see `builtInRuntimeId`). */
  list(caller: Caller): Promise<RuntimeRecord[]> {
    return this.#store.list(caller.tenant)
  }

  /** The caller's runtime named by id, name or ARN; NotFound otherwise (another tenant's too). */
  async get(caller: Caller, idOrNameOrArn: string): Promise<RuntimeRecord> {
    const id = runtimeIdOf(idOrNameOrArn)
    const found = id === undefined ? undefined : await this.#store.get(caller.tenant, id)
    if (!found) {
      throw new CodeboxError('NotFound', `no runtime ${JSON.stringify(idOrNameOrArn.slice(0, 300))}; list them with GET /v1/runtimes (codebox runtimes ls)`, {
        details: { runtimeId: idOrNameOrArn.slice(0, 300) },
      })
    }
    return found
  }

  /** Whether an id, name or ARN names the built-in codebox agent. */
  isBuiltIn(idOrNameOrArn: string): boolean {
    return runtimeIdOf(idOrNameOrArn) === builtInRuntimeId
  }

  /** Every version of a runtime, newest first. */
  async versions(caller: Caller, idOrNameOrArn: string): Promise<{ runtime: RuntimeRecord; versions: RuntimeVersionRecord[] }> {
    const runtime = await this.get(caller, idOrNameOrArn)
    return { runtime, versions: await this.#store.versions(runtime.runtimeId) }
  }

  /**
   * The runtime and the version `qualifier` names: `DEFAULT` (or none) the DEFAULT endpoint's
   * version, a number that version. NotFound for an unknown runtime, version or endpoint name.
   * The built-in agent is NotFound here (it has no bundle): check `isBuiltIn` first.
   */
  async resolve(caller: Caller, idOrNameOrArn: string, qualifier?: string): Promise<ResolvedRuntime> {
    const runtime = await this.get(caller, idOrNameOrArn)
    let number = runtime.defaultVersion
    if (qualifier !== undefined && qualifier !== 'DEFAULT') {
      if (!/^[1-9][0-9]{0,8}$/.test(qualifier)) {
        throw new CodeboxError(
          'NotFound',
          `runtime ${runtime.name} has no endpoint ${JSON.stringify(qualifier.slice(0, 100))}: its endpoint is DEFAULT, or name a version number`,
          {
            details: { runtimeId: runtime.runtimeId, qualifier: qualifier.slice(0, 100) },
          },
        )
      }
      number = Number(qualifier)
    }
    const version = await this.#store.version(runtime.runtimeId, number)
    if (!version) {
      throw new CodeboxError('NotFound', `runtime ${runtime.name} has no version ${number} (its versions are 1-${runtime.latestVersion})`, {
        details: { runtimeId: runtime.runtimeId, version: number },
      })
    }
    return { runtime, version }
  }

  /** Pins DEFAULT to `version` until the next deploy; pinning the latest follows the latest again. */
  async rollback(caller: Caller, idOrNameOrArn: string, version: number, requestId?: string): Promise<RuntimeRecord> {
    this.#refuseBuiltIn(idOrNameOrArn, 'rolled back')
    const started = performance.now()
    try {
      const runtime = await this.get(caller, idOrNameOrArn)
      const pinned = await this.#store.rollback(caller.tenant, runtime.runtimeId, version)
      await this.#audit(caller, 'rollbackRuntime', started, 'ok', `${runtime.runtimeId} v${version}`, requestId)
      return pinned
    } catch (e) {
      await this.#audit(caller, 'rollbackRuntime', started, outcomeOf(e), `${idOrNameOrArn.slice(0, 200)} v${version}`, requestId)
      throw e
    }
  }

  /** Deletes a runtime: its versions, secrets, unshared bundles and unpacked code. */
  async delete(caller: Caller, idOrNameOrArn: string, requestId?: string): Promise<RuntimeRecord> {
    this.#refuseBuiltIn(idOrNameOrArn, 'deleted')
    const started = performance.now()
    try {
      const runtime = await this.get(caller, idOrNameOrArn)
      await this.#options.beforeDelete?.(caller.tenant, runtime.runtimeId)
      const deleted = await this.#store.delete(caller.tenant, runtime.runtimeId)
      await rm(path.join(this.#root, runtime.runtimeId), { recursive: true, force: true })
      await this.#audit(caller, 'deleteRuntime', started, 'ok', runtime.runtimeId, requestId)
      return deleted
    } catch (e) {
      await this.#audit(caller, 'deleteRuntime', started, outcomeOf(e), idOrNameOrArn.slice(0, 200), requestId)
      throw e
    }
  }

  /** Sets a secret of a runtime (sealed in the store; the value is never returned or logged). */
  async putSecret(caller: Caller, idOrNameOrArn: string, name: string, value: string, requestId?: string): Promise<RuntimeSecretRecord> {
    this.#refuseBuiltIn(idOrNameOrArn, 'given secrets')
    const started = performance.now()
    const runtime = await this.get(caller, idOrNameOrArn)
    const record = await this.#store.putSecret(runtime.runtimeId, name, value)
    await this.#audit(caller, 'putRuntimeSecret', started, 'ok', `${runtime.runtimeId} ${name}`, requestId)
    return record
  }

  /** The names of a runtime's secrets and when each was set. */
  async listSecrets(caller: Caller, idOrNameOrArn: string): Promise<RuntimeSecretRecord[]> {
    if (this.isBuiltIn(idOrNameOrArn)) return []
    return this.#store.listSecrets((await this.get(caller, idOrNameOrArn)).runtimeId)
  }

  /** Removes a secret; NotFound if the runtime has none of that name. */
  async deleteSecret(caller: Caller, idOrNameOrArn: string, name: string, requestId?: string): Promise<void> {
    this.#refuseBuiltIn(idOrNameOrArn, 'given secrets')
    const started = performance.now()
    const runtime = await this.get(caller, idOrNameOrArn)
    if (!(await this.#store.deleteSecret(runtime.runtimeId, name))) {
      throw new CodeboxError('NotFound', `runtime ${runtime.name} has no secret ${name}`, { details: { runtimeId: runtime.runtimeId, name } })
    }
    await this.#audit(caller, 'deleteRuntimeSecret', started, 'ok', `${runtime.runtimeId} ${name}`, requestId)
  }

  /** Every secret of a runtime, unsealed: for the host-side gateway only, never for an answer or a log. */
  /** The secrets of the runtime a gateway request's tag names; undefined for no tag or no such runtime. */
  async secretsOf(runtimeId: string | undefined): Promise<Record<string, string> | undefined> {
    if (!runtimeId || this.isBuiltIn(runtimeId)) return undefined
    const values = await this.#store.secretValues(runtimeId).catch(() => undefined)
    return values && Object.keys(values).length ? values : undefined
  }

  secrets(runtimeId: string): Promise<Record<string, string>> {
    return this.#store.secretValues(runtimeId)
  }

  /**
   * The host directory holding `version`'s code, unpacked (`<stateDir>/runtimes/<runtimeId>/<version>`):
   * unpacked again from the store when missing, never half-written (unpacked beside it, then renamed).
   */
  async bundleDir(runtime: Pick<RuntimeRecord, 'runtimeId'>, version: Pick<RuntimeVersionRecord, 'version' | 'bundle'>): Promise<string> {
    const dir = this.#versionDir(runtime.runtimeId, version.version)
    if (await isDirectory(dir)) return dir
    const running = this.#unpacking.get(dir)
    if (running) return running
    const work = this.#unpackVersion(dir, version.bundle).finally(() => this.#unpacking.delete(dir))
    this.#unpacking.set(dir, work)
    return work
  }

  async #unpackVersion(dir: string, bundle: RuntimeBundleRecord): Promise<string> {
    await this.#prepareRoot()
    await mkdir(path.dirname(dir), { recursive: true, mode: 0o700 })
    const temp = `${dir}.tmp-${randomBytes(6).toString('hex')}`
    await unpackBundle(this.#chunks(bundle.bundleId), temp, this.#unpackLimits, bundle.sha256)
    try {
      await rename(temp, dir)
    } catch (e) {
      await rm(temp, { recursive: true, force: true })
      // Another process unpacked it first: theirs is as good.
      if (!(await isDirectory(dir))) throw e
    }
    return dir
  }

  #versionDir(runtimeId: string, version: number): string {
    return path.join(this.#root, runtimeId, String(version))
  }

  async #prepareRoot(): Promise<void> {
    await mkdir(this.#root, { recursive: true, mode: 0o700 })
  }

  async *#chunks(bundleId: string): AsyncGenerator<Uint8Array> {
    for (let seq = 0; ; seq++) {
      const chunk = await this.#store.readBundleChunk(bundleId, seq)
      if (!chunk) return
      yield chunk
    }
  }

  #refuseBuiltIn(idOrNameOrArn: string, what: string): void {
    if (this.isBuiltIn(idOrNameOrArn)) {
      throw new CodeboxError(
        'Conflict',
        `${builtInRuntimeId} is the built-in codebox agent and cannot be ${what}; deploy your own runtime with codebox runtimes deploy`,
        {
          details: { runtimeId: builtInRuntimeId },
        },
      )
    }
  }

  async #audit(caller: Caller, action: string, started: number, outcome: 'ok' | 'rejected' | 'failed', detail: string, requestId?: string): Promise<void> {
    await this.#options.audit(caller, { action, outcome, durationMs: performance.now() - started, detail, ...(requestId ? { requestId } : {}) })
  }
}

/** A runtime id or name from an id, a name or an ARN (`...:runtime/<id>`); undefined when malformed. */
export function runtimeIdOf(idOrNameOrArn: string): string | undefined {
  const id = idOrNameOrArn.startsWith('arn:') ? /:runtime\/([^/]+)$/.exec(idOrNameOrArn)?.[1] : idOrNameOrArn
  return id !== undefined && /^[a-zA-Z][a-zA-Z0-9_-]{0,99}$/.test(id) ? id : undefined
}

/** node for .js/.mjs/.cjs/.ts/.mts/.cts, python for .py; a ValidationError on `entrypoint` otherwise. */
export function languageOf(entrypoint: string): RuntimeLanguage {
  if (/\.(c|m)?(js|ts)$/.test(entrypoint)) return 'node'
  if (entrypoint.endsWith('.py')) return 'python'
  throw validationError('entrypoint', `${JSON.stringify(entrypoint)} is neither JavaScript/TypeScript (.js .mjs .cjs .ts) nor Python (.py)`)
}

/** The first of index.js, main.py, app.py, agent.py, then package.json's `main`, found in `dir`. */
async function detectEntrypoint(dir: string): Promise<string> {
  for (const name of defaultEntrypoints) if (await isFile(path.join(dir, name))) return name
  try {
    const main = (JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as { main?: unknown }).main
    if (typeof main === 'string' && main !== '') return main.replace(/^\.\//, '')
  } catch {
    // No package.json, or not JSON: no default from it.
  }
  throw validationError('entrypoint', `the bundle has none of ${defaultEntrypoints.join(', ')} and no package.json "main": name the file to run`)
}

/** The entrypoint must be a file of the bundle (a link to one inside it is fine). */
async function checkEntrypoint(dir: string, entrypoint: string, field: string): Promise<void> {
  const parts = entrypoint.split('/')
  if (entrypoint.startsWith('/') || parts.some((p) => p === '..' || p === '.' || p === '')) {
    throw validationError(field, `${JSON.stringify(entrypoint)} must be a relative path inside the bundle`)
  }
  if (!(await isFile(path.join(dir, entrypoint)))) throw validationError(field, `${JSON.stringify(entrypoint)} is not a file in the bundle`)
}

async function isFile(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isFile(),
    () => false,
  )
}

async function isDirectory(p: string): Promise<boolean> {
  return lstat(p).then(
    (s) => s.isDirectory(),
    () => false,
  )
}

/** A 4xx is the caller's mistake (rejected), anything else a failure of ours. */
function outcomeOf(e: unknown): 'rejected' | 'failed' {
  const status = (e as { status?: number }).status
  return status !== undefined && status < 500 ? 'rejected' : 'failed'
}
