/**
 * Where the A2A door keeps its tasks: the SDK's in-memory store, bounded. A task is only the A2A
 * view of one agent turn (the turn itself is in the conversation memory), so old tasks may go:
 * once `maxTasks` were saved into the current generation, a new one starts and the one before it
 * is dropped. A task of the previous generation is still found (and moves to the current one when
 * it is saved again); listings show the current generation.
 */
import type { ListTasksRequest, ListTasksResponse, Task } from '@a2a-js/sdk'
import { InMemoryTaskStore, type ServerCallContext, type TaskStore } from '@a2a-js/sdk/server'

/** Tasks kept per generation by default: a server keeps between this many and twice as many. */
export const defaultMaxTasks = 10_000

export class BoundedTaskStore implements TaskStore {
  readonly #maxTasks: number
  #current = new InMemoryTaskStore()
  #previous: InMemoryTaskStore | undefined
  #saved = new Set<string>()

  constructor(options: { maxTasks?: number } = {}) {
    this.#maxTasks = options.maxTasks ?? defaultMaxTasks
  }

  async save(task: Task, context: ServerCallContext): Promise<void> {
    const key = `${context.tenant ?? ''}\u0000${context.user?.userName ?? ''}\u0000${task.id}`
    if (!this.#saved.has(key) && this.#saved.size >= this.#maxTasks) {
      this.#previous = this.#current
      this.#current = new InMemoryTaskStore()
      this.#saved = new Set()
    }
    this.#saved.add(key)
    await this.#current.save(task, context)
  }

  async load(taskId: string, context: ServerCallContext): Promise<Task | undefined> {
    return (await this.#current.load(taskId, context)) ?? (await this.#previous?.load(taskId, context))
  }

  async list(params: ListTasksRequest, context: ServerCallContext): Promise<ListTasksResponse> {
    return this.#current.list(params, context)
  }
}
