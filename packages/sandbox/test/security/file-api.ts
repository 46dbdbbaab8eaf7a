/**
 * Attack catalogue, group "File API" (SECURITY.md): hostile paths and planted or swapped symlinks
 * sent through session.files.* (done by the executor inside the sandbox). Nothing may be read
 * or written outside /workspace, and names and bytes must round-trip exactly.
 *
 * The image's /etc/passwd holds `sandbox:x:1000`, so any read that returns it escaped the
 * workspace; /tmp/target (outside the workspace, writable) shows whether a write followed a link.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { CodeboxError, type ErrorCode } from '@codebox/core'
import type { Session, SessionManager } from '@codebox/sandbox'
import { withSession } from '../fixtures.ts'
import { pyCommand, sh } from './probe.ts'

const PASSWD = 'sandbox:x:1000'

const rejectsWith = (code: ErrorCode, message?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof CodeboxError, `not a CodeboxError: ${String(e)}`)
  assert.equal(e.code, code, e.message)
  if (message) assert.match(e.message, message)
  return true
}

/** Output of a shell command in the session (the probe guard runs first). */
async function run(s: Session, script: string): Promise<string> {
  const r = await sh(s, script)
  assert.equal(r.exitCode, 0, r.stderr)
  return r.stdout
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const b64 = (b: Buffer): string => b.toString('base64')

/** The group's tests on one driver; its test files (`file-api.test.ts` for bwrap, `file-api-gvisor.test.ts`) call this. */
export function defineFileApiSuite(driverName: string, unavailable: string | undefined, makeManager: () => Promise<SessionManager>): void {
  describe(`file API (${driverName})`, { skip: unavailable ?? false }, () => {
    let m: SessionManager
    before(async () => {
      m = await makeManager()
    })
    after(async () => {
      await m?.close()
    })

    test('.. traversal and absolute paths outside /workspace are ValidationErrors', async () => {
      await withSession(m, async (s) => {
        for (const p of ['../../etc/passwd', '..', 'a/../../etc/passwd', 'a/b/../../../tmp/x', '/workspace/../etc/passwd']) {
          await assert.rejects(s.files.read(p), rejectsWith('ValidationError'), `read ${p}`)
          await assert.rejects(s.files.write(p, 'pwned'), rejectsWith('ValidationError'), `write ${p}`)
          await assert.rejects(s.files.remove(p), rejectsWith('ValidationError'), `remove ${p}`)
        }
        await assert.rejects(s.files.list('../..'), rejectsWith('ValidationError'))
        for (const p of ['/etc/passwd', '/tmp/x', '/', '/workspacefoo/x', '/proc/self/environ']) {
          await assert.rejects(s.files.read(p), rejectsWith('ValidationError', /outside the workspace/), `read ${p}`)
          await assert.rejects(s.files.write(p, 'pwned'), rejectsWith('ValidationError'), `write ${p}`)
        }
        await assert.rejects(s.files.list('/etc'), rejectsWith('ValidationError'))
        // The workspace's own absolute paths are fine.
        await s.files.write('/workspace/ok.txt', 'ok')
        assert.equal((await s.files.read('ok.txt')).toString(), 'ok')
        // Nothing was written outside the workspace (/tmp holds only the matplotlib cache the executor seeds).
        assert.equal(await run(s, "(cd /tmp && ls -A | grep -vx '.config') | wc -l"), '0\n')
      })
    })

    test('absolute and relative symlinks, and symlinked directories, are not followed', async () => {
      await withSession(m, async (s) => {
        await run(
          s,
          `printf original > /tmp/target
ln -s /etc/shadow shadow; ln -s /etc/passwd passwd; ln -s ../../etc rel; ln -s / root; ln -s /tmp tmp
mkdir d; ln -s ../../../etc/passwd d/up`,
        )
        for (const p of ['shadow', 'passwd', 'rel/passwd', 'root/etc/passwd', 'd/up', 'tmp/target']) {
          await assert.rejects(s.files.read(p), rejectsWith('ValidationError', /symbolic link|not a directory/), `read ${p}`)
        }
        for (const p of ['rel', 'root', 'root/etc', 'tmp']) {
          await assert.rejects(s.files.list(p), rejectsWith('ValidationError'), `list ${p}`)
        }
        for (const p of ['root/tmp/x', 'tmp/x', 'tmp/target', 'rel/x']) {
          await assert.rejects(s.files.write(p, 'pwned'), rejectsWith('ValidationError'), `write ${p}`)
        }
        await assert.rejects(s.files.remove('tmp/target'), rejectsWith('ValidationError'))
        assert.equal(await run(s, 'cat /tmp/target; cd /tmp && ls'), 'originaltarget\n')
        // A recursive listing shows links as links and does not walk into them.
        const entries = await s.files.list('', { recursive: true })
        const byPath = Object.fromEntries(entries.map((e) => [e.path, e.type]))
        assert.deepEqual(byPath, { d: 'directory', 'd/up': 'symlink', passwd: 'symlink', rel: 'symlink', root: 'symlink', shadow: 'symlink', tmp: 'symlink' })
      })
    })

    test('writes through a symlink replace the link; the target is unchanged', async () => {
      await withSession(m, async (s) => {
        await run(s, 'printf original > /tmp/target; ln -s /tmp/target link')
        assert.deepEqual(await s.files.write('link', 'new'), { size: 3 })
        assert.equal((await s.files.read('link')).toString(), 'new')
        assert.equal((await s.files.list()).find((e) => e.name === 'link')?.type, 'file')
        assert.equal(await run(s, 'cat /tmp/target'), 'original')
        // Removing a link removes the link, not its target.
        await run(s, 'ln -s /tmp/target link2')
        await s.files.remove('link2')
        assert.equal(await run(s, 'cat /tmp/target; ls -A'), 'originallink\n')
      })
    })

    test('a symlink swapped in during the calls never leads outside the workspace', async () => {
      await withSession(m, async (s) => {
        await run(s, 'printf original > /tmp/target; mkdir /tmp/dir; printf outside > /tmp/dir/f')
        // Exchange (renameat2 RENAME_EXCHANGE, atomically, where the kernel has it) regular files with links out of the
        // workspace, and a directory with a link to /tmp/dir, as fast as the CPU allows.
        await s.tasks.start(
          pyCommand(`
def pair(name, content, target):
    with open(name, 'w') as f:
        f.write(content)
    os.symlink(target, name + '.alt')
    return buf(name.encode()), buf((name + '.alt').encode())
os.mkdir('dir')
pairs = [pair('race', 'regular', '/etc/passwd'), pair('wrace', 'regular', '/tmp/target'), pair('dir/f', 'inside', '/etc/passwd')]
os.rename('dir/f.alt', 'f.alt')
os.symlink('/tmp/dir', 'dir.alt')
pairs = pairs[:2] + [(buf(b'dir'), buf(b'dir.alt'))]
names = [('race', 'race.alt'), ('wrace', 'wrace.alt'), ('dir', 'dir.alt')]
# gVisor (2022) has no RENAME_EXCHANGE: there, three renames swap the pair (the name is briefly
# missing), through a spare name of the pair's own; a swap that fails halfway is undone, so that
# one failed rename never loses a file of the race.
exchange = sc(316, -100, pairs[0][0], -100, pairs[0][1], 2)[0] == 0
open('ready', 'w').close()
while True:
    for (a, b), (na, nb) in zip(pairs, names):
        if exchange:
            sc(316, -100, a, -100, b, 2)
            continue
        spare = na + '.swap'
        if os.path.lexists(spare):  # the last rename of an earlier swap failed: finish it first
            try:
                os.rename(spare, nb)
            except OSError:
                pass
            continue
        try:
            os.rename(na, spare)
        except OSError:
            continue
        try:
            os.rename(nb, na)
        except OSError:
            os.rename(spare, na)
            continue
        try:
            os.rename(spare, nb)
        except OSError:
            pass`),
        )
        const ready = await sh(s, 'for i in $(seq 100); do [ -e ready ] && exit 0; sleep 0.05; done; exit 1')
        assert.equal(ready.exitCode, 0, 'the flipper did not start')
        const seen = new Map<string, number>()
        const note = (k: string): void => void seen.set(k, (seen.get(k) ?? 0) + 1)
        const raced = (): boolean => ['race: regular', 'race: ValidationError', 'dir/f: inside', 'dir/f: ValidationError'].every((k) => (seen.get(k) ?? 0) > 0)
        // At least 200 rounds, and on (up to 1000) until the reads met both the files and the links: a loaded machine may
        // let the flipper run only now and then.
        for (let i = 0; i < 1000 && (i < 200 || !raced()); i++) {
          for (const p of ['race', 'dir/f']) {
            try {
              const got = (await s.files.read(p)).toString()
              assert.ok(got === 'regular' || got === 'inside' || got.startsWith('written'), `read ${p} returned ${JSON.stringify(got.slice(0, 100))}`)
              note(`${p}: ${got.startsWith('written') ? 'written' : got}`)
            } catch (e) {
              assert.ok(e instanceof CodeboxError && ['ValidationError', 'NotFound'].includes(e.code), String(e))
              note(`${p}: ${e.code}`)
            }
          }
          try {
            await s.files.write(i % 2 ? 'wrace' : 'dir/w', `written ${i}`)
            note('write: ok')
          } catch (e) {
            assert.ok(e instanceof CodeboxError && ['ValidationError', 'NotFound', 'Conflict'].includes(e.code), String(e))
            note(`write: ${e.code}`)
          }
        }
        await s.tasks.stop('task-1')
        assert.equal(await run(s, 'cat /tmp/target; echo; cat /tmp/dir/f; echo; cd /tmp/dir && ls'), 'original\noutside\nf\n')
        // The race really happened: reads met both the file and the link.
        const summary = JSON.stringify([...seen])
        assert.ok((seen.get('race: regular') ?? 0) > 0 && (seen.get('race: ValidationError') ?? 0) > 0, summary)
        assert.ok((seen.get('dir/f: inside') ?? 0) > 0 && (seen.get('dir/f: ValidationError') ?? 0) > 0, summary)
      })
    })

    test('stat, makeDir, move and watch never follow a planted symlink out of the workspace', async () => {
      await withSession(m, async (s) => {
        await run(
          s,
          'printf original > /tmp/target; mkdir /tmp/dir; ln -s /etc/passwd passwd; ln -s ../../etc rel; ln -s / root; ln -s /tmp tmp; ln -s /tmp/dir dlink; echo x > f',
        )
        // stat describes the link itself: a symlink with its target as text, never what it points to.
        const passwd = await s.files.stat('passwd')
        assert.deepEqual([passwd.type, passwd.symlinkTarget, passwd.size], ['symlink', '/etc/passwd', 0])
        for (const p of ['rel/passwd', 'root/etc/passwd', 'tmp/target', 'dlink/x']) {
          await assert.rejects(s.files.stat(p), rejectsWith('ValidationError'), `stat ${p}`)
          await assert.rejects(s.files.makeDir(p), rejectsWith('ValidationError'), `makeDir ${p}`)
          await assert.rejects(s.files.move('f', p), rejectsWith('ValidationError'), `move to ${p}`)
          await assert.rejects(s.files.move(p, 'moved'), rejectsWith('ValidationError'), `move from ${p}`)
        }
        for (const p of ['/etc', '/tmp', '..', 'rel', 'root', 'tmp', 'dlink']) {
          await assert.rejects(s.files.watch(p), rejectsWith('ValidationError'), `watch ${p}`)
          await assert.rejects(s.files.stat(`${p}/passwd`), rejectsWith('ValidationError'), `stat ${p}/passwd`)
        }
        // Moving a link moves the link; making a directory where a link is refuses.
        await s.files.move('dlink', 'dlink2')
        assert.equal((await s.files.stat('dlink2')).type, 'symlink')
        await assert.rejects(s.files.makeDir('dlink2'), rejectsWith('Conflict'))
        // A recursive watch does not walk into a link to a directory, and reports nothing from outside.
        const watch = await s.files.watch('', { recursive: true })
        await run(s, 'echo changed > /tmp/dir/outside; echo changed > /tmp/target')
        await s.files.write('marker', 'x')
        const seen: string[] = []
        for await (const e of watch.events) {
          seen.push(e.name)
          if (e.name === 'marker') break
        }
        assert.ok(!seen.some((n) => n.includes('outside') || n.includes('target')), JSON.stringify(seen))
        assert.equal(await run(s, 'cd /tmp/dir && ls; cd /tmp && ls'), 'outside\ndir\ntarget\n')
      })
    })

    test('a directory swapped for a symlink during makeDir, move and stat never leads outside', async (t) => {
      await withSession(m, async (s) => {
        await run(s, 'mkdir /tmp/dir; printf outside > /tmp/dir/f; mkdir dir; printf inside > dir/f; ln -s /tmp/dir dir.alt')
        await s.tasks.start(
          pyCommand(`
a, b = buf(b'dir'), buf(b'dir.alt')
exchange = sc(316, -100, a, -100, b, 2)[0] == 0
open('ready', 'w').write('exchange' if exchange else 'renames')
while True:
    if exchange:
        sc(316, -100, a, -100, b, 2)
        continue
    try:
        os.rename('dir', 'swap.tmp'); os.rename('dir.alt', 'dir'); os.rename('swap.tmp', 'dir.alt')
    except OSError:
        pass`),
        )
        const ready = await sh(s, 'for i in $(seq 100); do [ -s ready ] && exit 0; sleep 0.05; done; exit 1')
        assert.equal(ready.exitCode, 0, 'the flipper did not start')
        const atomicSwap = (await s.files.read('ready')).toString() === 'exchange'
        const seen = new Map<string, number>()
        const note = (k: string): void => void seen.set(k, (seen.get(k) ?? 0) + 1)
        const allowed = ['ValidationError', 'NotFound', 'Conflict']
        for (let i = 0; i < 150; i++) {
          try {
            const st = await s.files.stat('dir/f')
            assert.equal(st.size, 'inside'.length, 'stat described the file outside')
            note('stat: ok')
          } catch (e) {
            assert.ok(e instanceof CodeboxError && allowed.includes(e.code), String(e))
            note(`stat: ${e.code}`)
          }
          try {
            await s.files.makeDir(`dir/made${i}`)
            note('makeDir: ok')
          } catch (e) {
            assert.ok(e instanceof CodeboxError && allowed.includes(e.code), String(e))
            note(`makeDir: ${e.code}`)
          }
          try {
            await s.files.write(`m${i}`, 'moved')
            await s.files.move(`m${i}`, `dir/m${i}`)
            note('move: ok')
          } catch (e) {
            assert.ok(e instanceof CodeboxError && allowed.includes(e.code), String(e))
            note(`move: ${e.code}`)
          }
        }
        await s.tasks.stop('task-1')
        assert.equal(await run(s, 'cd /tmp/dir && ls'), 'f\n', JSON.stringify([...seen]))
        const summary = JSON.stringify([...seen])
        // The race happened: some operations met the directory, some the link (which they refused).
        // Without RENAME_EXCHANGE (gVisor 2022) the swap takes three renames and the operations above
        // may never meet the link: then only the safety checks above hold, and this says so.
        const count = (outcome: string): number => ['stat', 'makeDir', 'move'].reduce((n, op) => n + (seen.get(`${op}: ${outcome}`) ?? 0), 0)
        if (atomicSwap) assert.ok(count('ok') > 0 && count('ValidationError') > 0, `the race did not happen: ${summary}`)
        else t.diagnostic(`no RENAME_EXCHANGE in this kernel: the swap is three renames, and the race may not be met (${summary})`)
      })
    })

    test('NUL bytes and overlong paths or names are ValidationErrors', async () => {
      await withSession(m, async (s) => {
        for (const p of ['a\0b', 'ok.txt\0/../../etc/passwd', '\0']) {
          await assert.rejects(s.files.read(p), rejectsWith('ValidationError', /NUL/), JSON.stringify(p))
          await assert.rejects(s.files.write(p, 'x'), rejectsWith('ValidationError', /NUL/), JSON.stringify(p))
        }
        await assert.rejects(s.files.write({ pathBase64: b64(Buffer.from('a\0b')) }, 'x'), rejectsWith('ValidationError', /NUL/))
        const longPath = `${Array.from({ length: 50 }, () => 'd'.repeat(99)).join('/')}x`
        assert.equal(longPath.length, 5000)
        await assert.rejects(s.files.write(longPath, 'x'), rejectsWith('ValidationError', /longer than/))
        await assert.rejects(s.files.read(longPath), rejectsWith('ValidationError', /longer than/))
        await assert.rejects(s.files.write('n'.repeat(300), 'x'), rejectsWith('ValidationError', /longer than 255/))
        await assert.rejects(s.files.write(`dir/${'n'.repeat(256)}/f`, 'x'), rejectsWith('ValidationError', /longer than 255/))
        // The limits are exact: 255 bytes is a valid name.
        await s.files.write('n'.repeat(255), 'x')
        assert.deepEqual(
          (await s.files.list()).map((e) => e.name),
          ['n'.repeat(255)],
        )
      })
    })

    test('non-UTF-8 names round-trip through pathBase64', async () => {
      await withSession(m, async (s) => {
        await run(s, `printf 'made by shell' > "$(printf 'a\\377b')"`)
        const entry = (await s.files.list()).find((e) => e.pathBase64 !== undefined)
        assert.ok(entry, 'no entry has pathBase64')
        assert.equal(entry.pathBase64, b64(Buffer.from([0x61, 0xff, 0x62])))
        assert.equal((await s.files.read({ pathBase64: entry.pathBase64 })).toString(), 'made by shell')
        const name = Buffer.from([0x63, 0xfe, 0x64, 0x80])
        assert.deepEqual(await s.files.write({ pathBase64: b64(name) }, 'made by the API'), { size: 15 })
        const names = await run(s, `python3 -c "import os; print(sorted(os.listdir(b'.')))"`)
        assert.equal(names, "[b'a\\xffb', b'c\\xfed\\x80']\n")
        assert.equal((await s.files.read({ pathBase64: b64(name) })).toString(), 'made by the API')
        await assert.rejects(s.files.read({ pathBase64: 'not base64!' }), rejectsWith('ValidationError'))
      })
    })

    test('binary content round-trips byte for byte (all 256 values, 5 MB random)', async () => {
      await withSession(m, async (s) => {
        const all = Buffer.from(Array.from({ length: 512 }, (_, i) => i % 256))
        const big = randomBytes(5 * 1000 * 1000)
        await s.files.write('all.bin', all)
        await s.files.write('big.bin', big)
        assert.deepEqual(await s.files.read('all.bin'), all)
        const back = await s.files.read('big.bin')
        assert.equal(back.length, big.length)
        assert.equal(sha256(back), sha256(big))
        // And on disk in the sandbox, too.
        assert.equal(await run(s, 'sha256sum all.bin big.bin | cut -d" " -f1'), `${sha256(all)}\n${sha256(big)}\n`)
      })
    })
  })
}
