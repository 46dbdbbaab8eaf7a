/** Kubernetes resource quantities from codebox's numbers (bytes, cores), in the exact binary-suffix form a reader expects. */

const units: readonly [string, number][] = [
  ['Gi', 1024 ** 3],
  ['Mi', 1024 ** 2],
  ['Ki', 1024],
]

/** Bytes as a quantity: `2Gi`, `256Mi`, or the plain number when no binary suffix divides it. */
export function bytesQuantity(bytes: number): string {
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw new RangeError(`a byte count must be a non-negative integer, got ${bytes}`)
  for (const [suffix, size] of units) if (bytes > 0 && bytes % size === 0) return `${bytes / size}${suffix}`
  return String(bytes)
}

/** Cores as a quantity in millicores (`1000m`, `50m`); rounded up to a whole millicore. */
export function cpuQuantity(cores: number): string {
  if (!Number.isFinite(cores) || cores <= 0) throw new RangeError(`cores must be a positive number, got ${cores}`)
  return `${Math.ceil(Math.round(cores * 1e6) / 1e3)}m`
}
