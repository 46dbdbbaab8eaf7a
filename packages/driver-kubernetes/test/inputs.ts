/** The fixed inputs of the golden manifests. */
import { defaultLimits, defaultMaxLimits } from '@codebox/core'
import { egressProxyLabels, sandboxMaxima, type InstallOptions, type SandboxPodOptions } from '../src/index.ts'
import { egressToken, egressTokenKey, executorToken, executorTokenKey } from '../src/token.ts'

export const namespace = 'codebox'
export const nonce = 'bm9uY2Utb2YtdGhlLWdvbGRlbi1wb2QtZm9yLXRlc3Q'
export const tokenKey = executorTokenKey(Buffer.alloc(32, 7))
export const egressKey = egressTokenKey(Buffer.alloc(32, 7))

/** The egress fields of a `public` pod: its token and policy. */
export function publicEgress(podName: string): Pick<SandboxPodOptions, 'egressToken' | 'egressPolicy'> {
  return { egressToken: egressToken(egressKey, { namespace, podName, nonce }), egressPolicy: { mode: 'public', allow: [] } }
}

export function podOptions(podName: string, overrides: Partial<SandboxPodOptions> = {}): SandboxPodOptions {
  return {
    namespace,
    image: 'registry.example.com/codebox/sandbox:0.1.0',
    limits: { ...defaultLimits },
    network: 'sandbox',
    poolKey: 'codebox.v1-0f3a9c',
    nonce,
    token: executorToken(tokenKey, { namespace, podName, nonce }),
    ...overrides,
  }
}

export const installOptions: InstallOptions = {
  namespace,
  api: {
    image: 'registry.example.com/codebox/server:0.1.0',
    replicas: 3,
    sandboxImage: 'registry.example.com/codebox/sandbox:0.1.0',
    poolSize: 4,
    database: { name: 'codebox-db', key: 'uri' },
    sealingKey: { name: 'codebox-sealing-key', key: 'key' },
    egressProxies: { public: 'codebox-egress-public:3128', vpc: 'egress.network.svc:8080' },
    allowedHosts: ['codebox.example.com'],
  },
  egress: {
    public: { podLabels: egressProxyLabels('public'), port: 3128 },
    vpc: { podLabels: { 'app.kubernetes.io/name': 'vpc-egress' }, namespaceLabels: { 'kubernetes.io/metadata.name': 'network' }, port: 8080 },
  },
  sandboxMaxima: sandboxMaxima(defaultMaxLimits),
  // The built-in proxy for public; vpc goes to the external proxy above.
  egressProxy: {
    profiles: ['public'],
    image: 'registry.example.com/codebox/server:0.1.0',
    sealingKey: { name: 'codebox-sealing-key', key: 'key' },
    deniedCidrs: { ipv4: ['10.244.0.0/16', '10.96.0.0/12'], ipv6: [] },
  },
}
