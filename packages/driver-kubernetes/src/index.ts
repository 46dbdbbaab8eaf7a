/** codebox on Kubernetes: the kubernetes driver, manifest builders, the executor token, and the names and labels they share. */
export * from './names.ts'
export { egressToken, egressTokenKey, executorToken, executorTokenKey, newTokenNonce, type TokenSubject } from './token.ts'
export {
  sessionPod,
  warmPod,
  egressPolicyAnnotation,
  EXECUTOR_PORT,
  EXECUTOR_COMMAND,
  CODE_RECEIVER_COMMAND,
  MAX_CODE_BYTES,
  MAX_CODE_ENTRIES,
  MAX_CODE_VOLUME_BYTES,
  codeVolumeBytes,
  SANDBOX_UID,
  DEADLINE_GRACE_SECONDS,
  DEFAULT_WARM_MAX_AGE_MS,
  defaultSandboxRequests,
  type SandboxPodOptions,
  type SessionPodOptions,
  type CodeVolumeOptions,
  type WarmPodOptions,
  type SandboxRequests,
} from './manifests/sandbox-pod.ts'
export { claimPatch, type ClaimOptions, type ClaimPatch } from './manifests/claim.ts'
export { sandboxNetworkPolicies, type EgressProxySelector, type NetworkPolicyOptions } from './manifests/network-policies.ts'
export { apiRbac } from './manifests/rbac.ts'
export { apiDeployment, apiService, apiDisruptionBudget, serviceHostNames, API_PORT, type ApiOptions } from './manifests/api.ts'
export { installManifests, codeboxNamespace, sandboxLimitRange, sandboxMaxima, type InstallOptions, type SandboxMaxima } from './manifests/install.ts'
export { egressProxyManifests, EGRESS_PROXY_PORT, type EgressProxyInstallOptions } from './manifests/egress.ts'
export { bytesQuantity, cpuQuantity } from './manifests/quantity.ts'
export { toYamlDocuments } from './yaml.ts'
export { installOptionsFromValues } from './chart-values.ts'
export {
  startClusterEgressProxy,
  defaultKubeConfig,
  parseBasicCredentials,
  type ClusterEgressProxy,
  type ClusterEgressProxyOptions,
  type EgressProfile,
} from './egress/proxy.ts'
export { egressPodEntry, type EgressPodEntry } from './egress/pods.ts'
export { checkApiUrl, gatewayRelay, type GatewayRelayOptions } from './egress/gateway-relay.ts'
export { KubernetesDriver, MAX_POOL_CONFIGS, poolKeyOf, type KubernetesDriverOptions, type KubernetesPoolOptions } from './driver/driver.ts'
export { apiCode, apiMessage } from './driver/api-errors.ts'
export { LeaderElector, sweepReason, type LeaderEvent, type LeaderOptions } from './driver/leader.ts'
export { authFrame, connectExecutor, type Dial } from './driver/channel.ts'
export { scanCode, sendCode, CODE_CONTAINER, type CodeBundle, type SendCodeOptions, type SendCodeResult } from './driver/code-upload.ts'
export { kubernetesSettingsFromEnv, loadKubeConfig, type KubernetesEnvSettings } from './driver/config.ts'
export { kubernetesDriverRegistration, registerKubernetesDriver, type KubernetesRegistrationOptions } from './driver/register.ts'
export { SANDBOX_SELECTOR } from './driver/pod-watch.ts'
