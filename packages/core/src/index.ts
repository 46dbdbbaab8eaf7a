/** @codebox/core: wire schemas and types, the error registry, limits and the SandboxDriver interface. */
export * from './errors.ts'
export * from './results.ts'
export * from './limits.ts'
export * from './preload.ts'
export * from './wire.ts'
export * from './agent.ts'
export * from './driver.ts'
export * from './runtimes.ts'
