/**
 * Whether this host's kernel runs i386 syscalls (`int 0x80`), for the tests that assert how the
 * sandbox answers them: with IA-32 emulation seccomp kills the caller (SIGSYS); a kernel built
 * without CONFIG_IA32_EMULATION, or booted with `ia32_emulation=0`, refuses int 0x80 itself
 * (SIGSEGV) before seccomp sees it. Found by running getpid through int 0x80 on the host, which
 * is harmless; never assumed.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

const PROBE = `
#include <stdio.h>
int main(void) {
  long ret = 20; /* __NR_getpid on i386 */
  __asm__ volatile("int $0x80" : "+a"(ret) : : "memory", "r8", "r9", "r10", "r11");
  printf("%ld\\n", ret);
  return 0;
}
`

let cached: boolean | string | undefined

/** true (IA-32 works), false (int 0x80 gets SIGSEGV), or why it cannot be told (a skip reason). */
export function hostIa32Support(): boolean | string {
  if (cached !== undefined) return cached
  const dir = mkdtempSync(path.join(tmpdir(), 'codebox-ia32-'))
  try {
    writeFileSync(path.join(dir, 'probe.c'), PROBE)
    const cc = spawnSync('cc', ['-O0', '-o', path.join(dir, 'probe'), path.join(dir, 'probe.c')], { encoding: 'utf8' })
    if (cc.error || cc.status !== 0) return (cached = `cc cannot build the IA-32 probe: ${cc.error?.message ?? cc.stderr}`)
    const r = spawnSync(path.join(dir, 'probe'), [], { encoding: 'utf8', timeout: 10_000 })
    if (r.status === 0 && /^\d+\n$/.test(r.stdout)) return (cached = true)
    if (r.signal === 'SIGSEGV') return (cached = false)
    return (cached = `the IA-32 probe ended unexpectedly (status ${r.status}, signal ${r.signal}): ${r.stdout}${r.stderr}`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
