/**
 * `codebox image build`: builds the sandbox image from Debian packages, with progress; cached.
 * `codebox image export --oci <dir>`: writes the built image, with the executor's runtime tree as
 * a second layer, as an OCI image layout for a registry and the kubernetes driver's pods.
 */
import path from 'node:path'
import { CodeboxError, validationError } from '@codebox/core'
import { EXECUTOR_COMMAND, SANDBOX_UID } from '@codebox/driver-kubernetes'
import { defaultRecipe, ensureImage, exportOciLayout, findImage, installRuntime, loadEngineConfig, type EngineConfig } from '@codebox/sandbox'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import type { CommandContext } from '../context.ts'

const spec: FlagSpec = {
  oci: { type: 'string', description: 'export: the OCI image layout directory to write (must not exist)' },
  tag: { type: 'string', description: "export: the layout's ref name (default: the image's hash)" },
  gzip: { type: 'boolean', description: 'export: gzip the layers (smaller, slower)' },
  json: { type: 'boolean', description: 'print the result as JSON' },
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText('codebox image build [--json] | codebox image export --oci <dir> [--tag <ref>] [--gzip] [--json]', spec, [
  'codebox image build',
  'codebox image export --oci ./codebox-sandbox-oci',
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
  if (flags.json) process.stdout.write(`${JSON.stringify(result)}\n`)
  else {
    const bytes = result.layers.reduce((n, l) => n + l.size, 0)
    process.stdout.write(
      `image ${info.hash} written as an OCI image layout in ${((performance.now() - started) / 1000).toFixed(1)} s: ${(bytes / 1024 ** 2).toFixed(1)} MiB in ${result.layers.length} layers\n` +
        `  ${path.resolve(flags.oci)}\n  manifest ${result.manifest.digest}\n`,
    )
  }
  return 0
}
