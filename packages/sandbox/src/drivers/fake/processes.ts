/** The fake driver's executors are plain host processes: how their whole tree is ended. */
import { readdir, readFile } from 'node:fs/promises'

/**
 * Stops the whole tree of `pid` (no more forks), then kills it. Kernels and commands run in
 * sessions of their own, so the executor's process group is not enough. Only while `pid` is still
 * the executor: after that it may belong to someone else.
 */
export async function killTree(pid: number): Promise<void> {
  for (const p of await processTree(pid)) signal(p, 'SIGSTOP')
  for (const p of await processTree(pid)) signal(p, 'SIGKILL')
  signal(-pid, 'SIGKILL')
}

/** `root` and every process descending from it, from /proc. */
async function processTree(root: number): Promise<number[]> {
  const children = new Map<number, number[]>()
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue
    const stat = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '')
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    if (ppid) children.set(ppid, [...(children.get(ppid) ?? []), Number(name)])
  }
  const tree = [root]
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!) ?? []))
  return tree
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name)
  } catch {
    // already gone
  }
}
