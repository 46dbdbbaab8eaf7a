/**
 * Checks an interpreter's network settings, for the native and the AgentCore API alike: VPC mode
 * needs an allow-list of valid entries, and only VPC mode takes one.
 */
import { validationError } from '@codebox/core'
import { parseEgressEntry } from '@codebox/sandbox'

export interface NetworkSettings {
  mode: 'SANDBOX' | 'PUBLIC' | 'VPC'
  allow?: string[]
}

/** Throws a ValidationError on `field` (or one of its entries); `howToAllow` tells how to give a list. */
export function checkNetwork(network: NetworkSettings, field: string, howToAllow: string): void {
  if (network.mode !== 'VPC') {
    if (network.allow?.length) throw validationError(field, `an egress allow-list applies only to VPC mode, not ${network.mode}`)
    return
  }
  if (!network.allow?.length) throw validationError(field, `VPC mode needs an egress allow-list: ${howToAllow}`)
  network.allow.forEach((entry, i) => {
    try {
      parseEgressEntry(entry)
    } catch (e) {
      throw validationError(field, `allow-list entry ${i + 1} (${JSON.stringify(entry)}): ${(e as Error).message}`)
    }
  })
}
