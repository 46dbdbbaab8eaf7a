/**
 * The warm pool: started sandboxes kept ready per configuration (the limits a sandbox is built
 * with and the modules its Python kernel preloads), so that a session start is a hand-over, not a
 * boot. The manager's default configuration is always pooled; another one is pooled from the
 * first session that asks for it, up to `maxConfigs`, the one asked for least recently dropped first.
 */
import type { SessionLimits } from '@codebox/core'

/** What a pooled sandbox is made for. */
export interface PoolConfig {
  limits: SessionLimits
  preload: readonly string[]
}

export interface WarmPoolOptions<W> {
  /** Warm sandboxes kept per configuration; 0 disables the pool. */
  size: number
  /** Most configurations pooled at once, the default one included. */
  maxConfigs: number
  /** Starts a sandbox for `config`, ready to hand over; undefined when it could not. */
  boot: (config: PoolConfig) => Promise<W | undefined>
  /** Destroys a sandbox that will serve no session. */
  discard: (w: W | undefined) => Promise<void>
  /** Whether a warm sandbox can still be handed over (its executor did not go away). */
  usable: (w: W) => boolean
}

interface Slot<W> {
  config: PoolConfig
  entries: Promise<W | undefined>[]
  /** When a session last asked for this configuration (a counter, for least-recently-used). */
  usedAt: number
}

/** The limits a sandbox is built with; the others apply per call or per session. */
const sandboxLimitKeys = ['memoryBytes', 'cpuCores', 'pids', 'workspaceBytes', 'tmpBytes', 'openFiles'] as const

/** Configurations that build the same sandbox share a key. */
export const poolKey = (c: PoolConfig): string => JSON.stringify([sandboxLimitKeys.map((k) => c.limits[k]), c.preload])

export class WarmPool<W> {
  private readonly options: WarmPoolOptions<W>
  private readonly slots = new Map<string, Slot<W>>()
  private readonly ready = new WeakSet<Promise<W | undefined>>()
  private readonly defaultKey: string
  private uses = 0
  private closed = false

  constructor(defaultConfig: PoolConfig, options: WarmPoolOptions<W>) {
    this.options = options
    this.defaultKey = poolKey(defaultConfig)
    if (options.size > 0) this.slots.set(this.defaultKey, { config: defaultConfig, entries: [], usedAt: 0 })
    this.fill()
  }

  /**
   * A warm sandbox for `config` (waiting for one still starting), or undefined when the pool has
   * none; `config` is pooled from now on.
   */
  async take(config: PoolConfig): Promise<W | undefined> {
    if (this.closed || this.options.size === 0) return undefined
    const key = poolKey(config)
    let slot = this.slots.get(key)
    if (!slot) {
      slot = { config, entries: [], usedAt: ++this.uses }
      this.slots.set(key, slot)
      this.evict()
    }
    slot.usedAt = ++this.uses
    while (slot.entries.length) {
      const w = await slot.entries.shift()
      if (w && this.options.usable(w)) return w
      await this.options.discard(w)
    }
    return undefined
  }

  /** Starts sandboxes until every pooled configuration has `size` of them. */
  fill(): void {
    for (const slot of this.slots.values()) {
      while (!this.closed && slot.entries.length < this.options.size) {
        const warm = this.options.boot(slot.config).catch(() => undefined)
        void warm.then((w) => w && this.ready.add(warm))
        slot.entries.push(warm)
      }
    }
  }

  /** Warm sandboxes ready now, over all configurations. */
  get readyCount(): number {
    let n = 0
    for (const slot of this.slots.values()) n += slot.entries.filter((w) => this.ready.has(w)).length
    return n
  }

  /** Configurations pooled now. */
  get configs(): PoolConfig[] {
    return [...this.slots.values()].map((s) => s.config)
  }

  /** Destroys every warm sandbox; nothing is started afterwards. */
  async close(): Promise<void> {
    this.closed = true
    const entries = [...this.slots.values()].flatMap((s) => s.entries.splice(0))
    await Promise.all(entries.map(async (w) => this.options.discard(await w)))
  }

  /** Drops the least recently used configurations (never the default one) beyond maxConfigs. */
  private evict(): void {
    while (this.slots.size > Math.max(1, this.options.maxConfigs)) {
      let oldest: [string, Slot<W>] | undefined
      for (const entry of this.slots) {
        if (entry[0] !== this.defaultKey && (!oldest || entry[1].usedAt < oldest[1].usedAt)) oldest = entry
      }
      if (!oldest) return
      this.slots.delete(oldest[0])
      for (const w of oldest[1].entries.splice(0)) void w.then((x) => this.options.discard(x))
    }
  }
}
