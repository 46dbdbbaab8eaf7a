/**
 * `codebox kubernetes egress-proxy`: runs the cluster's egress proxy of one network profile (the
 * built-in proxy's Deployments run this; docs/kubernetes.md, "Network"). Its settings come from
 * the environment the manifests give it; a bad one is an error naming the variable. It logs one
 * JSON line per refusal and denial on stdout, and stops on SIGTERM or SIGINT.
 */
import { validationError } from '@codebox/core'
import { checkApiUrl, checkDnsLabel, defaultKubeConfig, startClusterEgressProxy, type EgressProfile } from '@codebox/driver-kubernetes'
import { parseTrustedList } from '@codebox/sandbox'
import { readSealingKey, sealingKeyFromEnv } from '@codebox/server'
import { helpText, parseArgs, type FlagSpec } from '../args.ts'
import type { CommandContext } from '../context.ts'

const spec: FlagSpec = {
  help: { short: 'h', type: 'boolean', description: 'show this help' },
}

export const usage = helpText('codebox kubernetes egress-proxy', spec, [
  'Runs the egress proxy of one network profile for the sandbox pods of a namespace. Settings:',
  '  CODEBOX_K8S_NAMESPACE      the sandbox pods\u2019 namespace (required)',
  '  CODEBOX_SEALING_KEY        base64 of the API\u2019s 32-byte sealing key (or CODEBOX_SEALING_KEY_FILE)',
  '  CODEBOX_EGRESS_PROFILE     public or vpc (required)',
  '  CODEBOX_EGRESS_LISTEN      host:port to listen on (default 0.0.0.0:3128)',
  '  CODEBOX_EGRESS_TRUSTED     vpc only: private IPs or CIDRs (:port) allow-lists may reach',
  '  CODEBOX_EGRESS_API_URL     the API the model gateway is relayed to, e.g. http://codebox-api:8080 (unset: refused)',
  'The API server is reached with the pod\u2019s ServiceAccount, or KUBECONFIG outside a cluster.',
  '',
  'CODEBOX_K8S_NAMESPACE=codebox CODEBOX_EGRESS_PROFILE=vpc CODEBOX_SEALING_KEY_FILE=/etc/codebox/key \\',
  '  codebox kubernetes egress-proxy',
])

/** host:port, IPv6 in brackets. */
function parseListen(value: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(value)
  const port = m ? Number(m[2]) : NaN
  if (!m || port > 65535) throw validationError('CODEBOX_EGRESS_LISTEN', `must be host:port (e.g. 0.0.0.0:3128), got ${JSON.stringify(value)}`)
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
}

export async function run(argv: string[], ctx: CommandContext): Promise<number> {
  const { flags, positionals } = parseArgs(argv, spec)
  if (flags.help || positionals[0] !== 'egress-proxy' || positionals.length > 1) {
    process.stdout.write(usage)
    return flags.help ? 0 : 64
  }
  const { env } = ctx
  const namespace = env.CODEBOX_K8S_NAMESPACE
  if (!namespace) throw validationError('CODEBOX_K8S_NAMESPACE', 'is required: the namespace of the sandbox pods')
  checkDnsLabel('CODEBOX_K8S_NAMESPACE', namespace)
  const profile = env.CODEBOX_EGRESS_PROFILE
  if (profile !== 'public' && profile !== 'vpc') throw validationError('CODEBOX_EGRESS_PROFILE', `must be public or vpc, got ${JSON.stringify(profile ?? '')}`)
  const source = sealingKeyFromEnv(env)
  if (!source) throw validationError('CODEBOX_SEALING_KEY', 'or CODEBOX_SEALING_KEY_FILE is required: the API replicas\u2019 sealing key')
  const sealingKey = readSealingKey(source)
  const trusted = parseTrustedList(env.CODEBOX_EGRESS_TRUSTED ?? '')
  if (profile === 'public' && trusted.length > 0)
    throw validationError('CODEBOX_EGRESS_TRUSTED', 'applies to the vpc profile only: the public profile reaches public addresses and nothing private')
  const { host, port } = parseListen(env.CODEBOX_EGRESS_LISTEN ?? '0.0.0.0:3128')
  const apiUrl = env.CODEBOX_EGRESS_API_URL ? checkApiUrl(env.CODEBOX_EGRESS_API_URL, 'CODEBOX_EGRESS_API_URL').origin : undefined
  const kubeConfig = defaultKubeConfig()

  const log = (event: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...event })}\n`)
  const proxy = await startClusterEgressProxy({
    kubeConfig,
    namespace,
    profile: profile satisfies EgressProfile,
    sealingKey,
    trusted,
    ...(apiUrl ? { apiUrl } : {}),
    host,
    port,
    onRefusal: (r) => log({ event: 'egress.refused', ...r }),
    onDecision: (d) => {
      if (!d.allowed) log({ event: 'egress.denied', pod: d.client, host: d.host, port: d.port, reason: d.reason })
    },
    onWatchError: (e) => log({ event: 'egress.watch-error', message: (e as Error).message ?? String(e) }),
  })
  log({
    event: 'egress.listening',
    profile,
    namespace,
    address: `${proxy.address.address}:${proxy.address.port}`,
    pods: proxy.podCount,
    gateway: apiUrl ?? null,
  })
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve)
    process.once('SIGINT', resolve)
  })
  await proxy.close()
  log({ event: 'egress.stopped', profile })
  return 0
}
