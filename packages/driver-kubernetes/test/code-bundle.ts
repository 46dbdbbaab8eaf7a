/**
 * A small code bundle (files of modes 0644 and 0755, a subdirectory, a symbolic link inside) and
 * what a session of a kubernetes driver must see of it at /app: shared by the fake API server's
 * tests (code-mount.test.ts) and the conformance mode against a real cluster.
 */
import assert from 'node:assert/strict'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { SandboxDriver } from '@codebox/core'
import { SessionManager } from '@codebox/sandbox'

/** Makes the bundle in a new directory any uid may read; `remove()` deletes it. */
export function makeBundle(): { hostPath: string; remove: () => void } {
  const root = mkdtempSync(path.join(tmpdir(), 'kcode-bundle-'))
  chmodSync(root, 0o755)
  mkdirSync(path.join(root, 'lib'), { mode: 0o755 })
  writeFileSync(path.join(root, 'agent.py'), 'print("hello from the bundle")\n', { mode: 0o644 })
  writeFileSync(path.join(root, 'run.sh'), '#!/bin/sh\necho "run.sh ran"\n', { mode: 0o755 })
  writeFileSync(path.join(root, 'lib', 'data.txt'), 'data inside\n', { mode: 0o644 })
  symlinkSync('lib/data.txt', path.join(root, 'data-link'))
  return { hostPath: root, remove: () => rmSync(root, { recursive: true, force: true }) }
}

/**
 * Starts a session with the bundle as its code mount on `driver` and checks what it sees: the
 * files at /app with their modes, the link followed, a script run, CODEBOX_CODE_DIR, and every
 * write refused (the volume is read-only where the session runs).
 */
export async function checkCodeSession(driver: SandboxDriver, hostPath: string): Promise<void> {
  await using manager = new SessionManager({ driver, poolSize: 0 })
  const session = await manager.start({ preload: [], code: { hostPath } })
  const run = async (command: string): Promise<string> => {
    const r = await session.commands.run(command)
    return r.structuredContent.stdout
  }
  assert.equal(
    await run('cd /app && stat -c "%n %a %F" agent.py run.sh lib lib/data.txt data-link'),
    ['agent.py 644 regular file', 'run.sh 755 regular file', 'lib 755 directory', 'lib/data.txt 644 regular file', 'data-link 777 symbolic link', ''].join(
      '\n',
    ),
  )
  assert.equal(
    await run('readlink /app/data-link; cat /app/data-link; /app/run.sh; python3 /app/agent.py; echo "$CODEBOX_CODE_DIR"'),
    ['lib/data.txt', 'data inside', 'run.sh ran', 'hello from the bundle', '/app', ''].join('\n'),
  )
  const writes = await run(
    'for t in "touch /app/new" "rm /app/agent.py" "chmod 777 /app/run.sh" "mkdir /app/lib/x" "ln -s / /app/root"; do sh -c "$t" 2>/dev/null && echo "allowed: $t"; done; cat /app/agent.py',
  )
  assert.equal(writes, 'print("hello from the bundle")\n', 'a write to /app succeeded')
}
