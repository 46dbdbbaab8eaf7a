/**
 * `codebox image build`: builds the sandbox image from Debian packages, with progress; cached.
 * `codebox image export --oci <dir>`: writes the built image, with the executor's runtime tree as
 * a second layer, as an OCI image layout for a registry and the kubernetes driver's pods.
 * `codebox image export --api --oci <dir>`: the codebox server's own image (api-image.ts).
 */
import { existsSync } from 'node:fs'
import path from 'node:path'
import { CodeboxError, validationError } from '@codebox/core'
import { EXECUTOR_COMMAND, SANDBOX_UID } from '@codebox/driver-kubernetes'
import {
  defaultRecipe,
  ensureImage,
  exportOciLayout,
  findImage,
  installRuntime,
  loadEngineConfig,
  type EngineConfig,
  type ImageInfo,
  type OciExportResult,
} from '@codebox/sandbox'
import { API_APP_DIR, API_ENTRYPOINT, checkoutRoot, stageApiApp, stagingDir } from '../api-image.ts'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import type { CommandContext } from '../context.ts'

const spec: FlagSpec = {
  oci: { type: 'string', description: 'export: the OCI image layout directory to write (must not exist)' },
  tag: { type: 'string', description: "export: the layout's ref name (default: the image's hash)" },
  gzip: { type: 'boolean', description: 'export: gzip the layers (smaller, slower)' },
  api: { type: 'boolean', description: "export: the codebox server's image (the sandbox image's root, then the app) instead of the sandbox's" },
  json: { type: 'boolean', description: 'print the result as JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText('codebox image build [--json] | codebox image export --oci <dir> [--api] [--tag <ref>] [--gzip] [--json]', spec, [
  'codebox image build',
  'codebox image export --oci ./codebox-sandbox-oci',
  'codebox image export --api --oci ./codebox-api-oci --tag 0.1.0',
])

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const config = loadEngineConfig(ctx.env)
  const { flags, positionals } = parseArgs(argv, spec)
  if (flags.help || (positionals[0] !== 'build' && positionals[0] !== 'export')) {
    process.stdout.write(usage)
    return flags.help ? 0 : 64
  }
  if (positionals[0] === 'export') return exportImage(config, flags)
  const started = performance.now()
  const info = await ensureImage({
    stateDir: config.stateDir,
    recipe: defaultRecipe({ mirror: config.debianMirror }),
    onProgress: (line) => process.stderr.write(`  ${line}\n`),
  })
  if (flags.json) process.stdout.write(`${JSON.stringify({ ...info, recipe: undefined })}\n`)
  else {
    const size = `${(info.sizeBytes / 1024 ** 3).toFixed(2)} GiB`
    const time = info.cached ? `cached; built in ${info.buildSeconds} s on ${info.builtAt}` : `built in ${((performance.now() - started) / 1000).toFixed(1)} s`
    process.stdout.write(`image ${info.hash}: ${size}, ${time}\n  ${info.path}\n`)
  }
  return 0
}

async function exportImage(config: EngineConfig, flags: Record<string, string | boolean | undefined>): Promise<number> {
  if (typeof flags.oci !== 'string' || flags.oci === '') throw validationError('--oci', 'give the directory to write the OCI image layout to')
  const info = await findImage(config.stateDir, defaultRecipe({ mirror: config.debianMirror }))
  if (info === undefined) throw new CodeboxError('Unavailable', `no sandbox image is built under ${config.stateDir}: run codebox image build first`)
  if (flags.api === true) return exportApiImage(info, flags)
  const runtime = await installRuntime(path.join(config.stateDir, 'runtime'))
  const started = performance.now()
  const result = await exportOciLayout({
    outDir: flags.oci,
    layers: [
      // manifest.json at the image's root is the cache's record (host paths), not part of the filesystem.
      { root: info.path, exclude: (rel) => rel === 'manifest.json', createdBy: `codebox image build (recipe ${info.hash})` },
      { root: runtime, createdBy: `codebox executor runtime (${path.basename(runtime)})` },
    ],
    config: {
      user: `${SANDBOX_UID}:${SANDBOX_UID}`,
      env: { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/workspace', LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8' },
      entrypoint: [...EXECUTOR_COMMAND],
      workingDir: '/workspace',
      labels: { 'org.opencontainers.image.title': 'codebox sandbox', 'dev.codebox.image.recipe': info.hash },
    },
    refName: typeof flags.tag === 'string' ? flags.tag : info.hash,
    gzip: flags.gzip === true,
  })
  printExport(flags, result, started, `image ${info.hash}`, flags.oci)
  return 0
}

/** The codebox server's image: the sandbox image's root (the same first layer), then the app. */
async function exportApiImage(info: ImageInfo, flags: Record<string, string | boolean | undefined>): Promise<number> {
  const out = flags.oci as string
  // Before the install, which takes a while: the layout's own check comes only after it.
  if (existsSync(out)) throw validationError('outDir', `${out} exists already; give a new directory`)
  const started = performance.now()
  const stage = await stagingDir(out)
  try {
    await stageApiApp(stage.dir, (line) => process.stderr.write(`  ${line}\n`))
    process.stderr.write('  writing the layers\n')
    const result = await exportOciLayout({
      outDir: out,
      layers: [
        { root: info.path, exclude: (rel) => rel === 'manifest.json', createdBy: `codebox image build (recipe ${info.hash})` },
        { root: stage.dir, createdBy: `codebox server (${path.basename(checkoutRoot)}, npm ci --omit=dev)` },
      ],
      config: {
        user: `${SANDBOX_UID}:${SANDBOX_UID}`,
        env: {
          PATH: '/usr/local/bin:/usr/bin:/bin',
          HOME: '/tmp',
          LANG: 'C.UTF-8',
          LC_ALL: 'C.UTF-8',
          NODE_ENV: 'production',
          CODEBOX_STATE_DIR: '/var/lib/codebox',
        },
        entrypoint: [...API_ENTRYPOINT],
        workingDir: API_APP_DIR,
        labels: { 'org.opencontainers.image.title': 'codebox server', 'dev.codebox.image.recipe': info.hash },
      },
      refName: typeof flags.tag === 'string' ? flags.tag : `api-${info.hash}`,
      gzip: flags.gzip === true,
    })
    printExport(flags, result, started, 'the codebox server', out)
    return 0
  } finally {
    await stage.done()
  }
}

function printExport(flags: Record<string, string | boolean | undefined>, result: OciExportResult, started: number, what: string, out: string): void {
  if (flags.json) process.stdout.write(`${JSON.stringify(result)}\n`)
  else {
    const bytes = result.layers.reduce((n, l) => n + l.size, 0)
    process.stdout.write(
      `${what} written as an OCI image layout in ${((performance.now() - started) / 1000).toFixed(1)} s: ${(bytes / 1024 ** 2).toFixed(1)} MiB in ${result.layers.length} layers\n` +
        `  ${path.resolve(out)}\n  manifest ${result.manifest.digest}\n`,
    )
  }
}
