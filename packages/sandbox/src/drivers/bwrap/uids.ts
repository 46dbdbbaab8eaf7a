/**
 * Host uids for sandboxes: each sandbox runs as a fresh unprivileged host uid from a range no
 * account uses, so no two sessions (and never root) share an owner of files or processes.
 */
import { randomInt } from 'node:crypto'
import { CodeboxError } from '@codebox/core'

export class UidAllocator {
  private readonly inUse = new Set<number>()
  private readonly first: number
  private readonly count: number

  /** Default range: 2,000,000 to 2,065,535, far above ordinary accounts and subuid ranges. */
  constructor(first = 2_000_000, count = 65_536) {
    this.first = first
    this.count = count
  }

  allocate(): number {
    if (this.inUse.size >= this.count) throw new CodeboxError('LimitExceeded', 'no free sandbox uid; too many sandboxes are running')
    for (;;) {
      const uid = this.first + randomInt(this.count)
      if (!this.inUse.has(uid)) {
        this.inUse.add(uid)
        return uid
      }
    }
  }

  /** Marks a uid a sandbox of an earlier server still runs as (re-adopted, or about to be). */
  reserve(uid: number): void {
    this.inUse.add(uid)
  }

  release(uid: number): void {
    this.inUse.delete(uid)
  }
}
