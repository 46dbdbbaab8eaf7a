/**
 * Whether KSM can merge the pages that several preloaded sessions imported: k running sessions
 * each opt their Python kernel in from a cell with prctl(PR_SET_MEMORY_MERGE) (no capability
 * needed), ksmd runs a few full scans, and the sessions' PSS is read before and after. ksmd is a
 * host-wide setting: it is turned on only when it was off, and then unmerged and turned off again.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { defaultPreload } from '@codebox/core'
import { SessionManager, type BwrapDriver, type Session } from '@codebox/sandbox'
import { memoryOf, sandboxPids } from './host.ts'
import { mib, sleep } from './stats.ts'

export interface KsmResult {
  lines: string[]
}

const KSM = '/sys/kernel/mm/ksm'
const read = (name: string): string => readFileSync(`${KSM}/${name}`, 'utf8').trim()
const write = (name: string, value: string): void => writeFileSync(`${KSM}/${name}`, value)

const OPT_IN = 'import ctypes as _c\n_r = _c.CDLL(None, use_errno=True).prctl(67, 1, 0, 0, 0)\nprint(_r, _c.get_errno())'

export async function measureKsm(driver: BwrapDriver, k: number, o: { firstCell: string; role: (cmd: string) => string }): Promise<KsmResult> {
  if (!existsSync(`${KSM}/run`)) return { lines: ['**KSM**: this kernel has no /sys/kernel/mm/ksm (built without CONFIG_KSM).'] }
  const saved = { run: read('run'), pages_to_scan: read('pages_to_scan'), sleep_millisecs: read('sleep_millisecs') }
  if (saved.run !== '0') return { lines: [`**KSM**: ksmd is already in use on this host (run=${saved.run}); not measured, so as not to disturb it.`] }
  const manager = new SessionManager({ driver, poolSize: 0, preload: defaultPreload })
  const sessions: Session[] = []
  const pss = (): number => sessions.reduce((a, s) => a + memoryOf(sandboxPids(driver.cgroups, s.sandboxId), o.role).pssBytes, 0) / sessions.length
  const kernelRss = (): number =>
    sessions.reduce((a, s) => a + memoryOf(sandboxPids(driver.cgroups, s.sandboxId), o.role).parts.find((p) => p.label === 'kernel')!.rssBytes, 0) /
    sessions.length
  try {
    for (let i = 0; i < k; i++) {
      const s = await manager.start()
      sessions.push(s)
      await s.runCode({ code: o.firstCell, timeoutMs: 60_000 })
    }
    await sleep(1000)
    const before = pss()
    const optIn = await Promise.all(sessions.map((s) => s.runCode({ code: OPT_IN })))
    const answers = optIn.map((r) => r.structuredContent.stdout.trim())
    if (!answers.every((a) => a === '0 0')) {
      return { lines: [`**KSM**: prctl(PR_SET_MEMORY_MERGE) inside a sandbox answered ${JSON.stringify(answers)} (result, errno); not measured further.`] }
    }
    const sharing0 = Number(read('pages_sharing'))
    write('pages_to_scan', '20000')
    write('sleep_millisecs', '20')
    write('run', '1')
    const started = performance.now()
    const scans0 = Number(read('full_scans'))
    while (Number(read('full_scans')) < scans0 + 3) {
      if (performance.now() - started > 300_000) break
      await sleep(500)
    }
    const seconds = (performance.now() - started) / 1000
    const sharing = Number(read('pages_sharing')) - sharing0
    const shared = Number(read('pages_shared'))
    const after = pss()
    return {
      lines: [
        `**KSM** (${k} running preloaded sessions, each kernel opted in from a cell with \`prctl(PR_SET_MEMORY_MERGE, 1)\`, which the sandbox allows: answered ${answers[0]}): ` +
          `after ${Number(read('full_scans')) - scans0} full scans in ${seconds.toFixed(0)} s, ${sharing} pages (${mib(sharing * 4096)}) map ${shared} shared ones. ` +
          `PSS per session ${mib(before)} → ${mib(pss())} (${mib(before - after)} saved each); kernel RSS ${mib(kernelRss())} (RSS still counts a merged page in every process).`,
      ],
    }
  } finally {
    if (read('run') !== saved.run) {
      write('run', '2') // unmerge everything it merged, then stop
      write('run', saved.run)
    }
    write('pages_to_scan', saved.pages_to_scan)
    write('sleep_millisecs', saved.sleep_millisecs)
    await manager.close()
  }
}
