/** The fixed inputs of the golden manifests. */
import { defaultLimits, defaultMaxLimits } from '@codebox/core'
import { sandboxMaxima, type InstallOptions, type SandboxPodOptions } from '../src/index.ts'
import { executorToken, executorTokenKey } from '../src/token.ts'

export const namespace = 'codebox'
export const nonce = 'bm9uY2Utb2YtdGhlLWdvbGRlbi1wb2QtZm9yLXRlc3Q'
export const tokenKey = executorTokenKey(Buffer.alloc(32, 7))

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
    egressProxies: { public: 'codebox-egress.codebox.svc:3128', vpc: 'codebox-egress-vpc.codebox.svc:3128' },
    allowedHosts: ['codebox.example.com'],
  },
  egress: {
    public: { podLabels: { 'app.kubernetes.io/name': 'codebox', 'app.kubernetes.io/component': 'egress-proxy' }, port: 3128 },
    vpc: { podLabels: { 'app.kubernetes.io/name': 'vpc-egress' }, namespaceLabels: { 'kubernetes.io/metadata.name': 'network' }, port: 8080 },
  },
  sandboxMaxima: sandboxMaxima(defaultMaxLimits),
}
