/** `--network MODE` and `--allow LIST`, as `interpreters create` and `runtimes deploy` take them. */
import { networkModes, validationError, type InterpreterNetworkConfig } from '@codebox/core'

/** The network the flags name: `--network` in any case (`defaultMode` when absent) and `--allow`'s comma-separated entries. */
export function networkFlags(flags: Record<string, unknown>, defaultMode: InterpreterNetworkConfig['mode']): InterpreterNetworkConfig {
  const mode = networkModes.find((m) => m === String(flags.network ?? defaultMode).toUpperCase())
  if (!mode) throw validationError('--network', `must be SANDBOX, PUBLIC or VPC, got ${String(flags.network)}`)
  const allow =
    typeof flags.allow === 'string'
      ? flags.allow
          .split(',')
          .map((e) => e.trim())
          .filter(Boolean)
      : undefined
  return { mode, ...(allow ? { allow } : {}) }
}
