/**
 * Bounded file reads: a file that grows after the executor checked its size is never read past
 * that size (files.py), the host stops at the size announced whatever the executor sends
 * (session-files.ts), and a real read while a background task keeps appending stays bounded.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { CodeboxError } from '@codebox/core'
import { FakeDriver, SessionManager, type Session } from '@codebox/sandbox'

const executorDir = path.join(import.meta.dirname, '../executor')
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'codebox-files-bounded-'))
after(() => fs.rmSync(tmp, { recursive: true, force: true }))

/** Runs Python with the executor's modules importable; resolves with its stdout. */
async function python(code: string): Promise<string> {
  const { stdout } = await promisify(execFile)('/usr/bin/python3', ['-c', code], {
    env: { PYTHONPATH: executorDir, PYTHONDONTWRITEBYTECODE: '1' },
    timeout: 30_000,
  })
  return stdout
}

describe('files.py reads a file as large as it was when checked', () => {
  it('a file that grows past the limit while read: only the checked size is returned, then LimitExceeded', async () => {
    const out = await python(`
import os, sys
from files import FileError, open_for_read
ws = ${JSON.stringify(tmp)}
def read_all(extra):
    with open(os.path.join(ws, "grow.bin"), "wb") as f: f.write(b"a" * 1000)
    r, size, _ = open_for_read(ws, {"path": "grow.bin", "maxBytes": 5000})
    got = r.read(100)
    with open(os.path.join(ws, "grow.bin"), "ab") as f: f.write(b"b" * extra)
    try:
        while True:
            c = r.read(256 * 1024)
            if not c: break
            got += c
        return size, len(got), "ok"
    except FileError as e:
        return size, len(got), e.code
    finally:
        r.close()
print(read_all(10000))
print(read_all(100))
`)
    // Past the limit: the 1000 bytes checked, then an error; within it: the size it had when opened.
    assert.deepEqual(out.trim().split('\n'), ["(1000, 1000, 'LimitExceeded')", "(1000, 1000, 'ok')"])
  })

  it('a file that shrinks while read is an error, not a short answer', async () => {
    const out = await python(`
import os
from files import FileError, open_for_read
ws = ${JSON.stringify(tmp)}
with open(os.path.join(ws, "shrink.bin"), "wb") as f: f.write(b"a" * 1000)
r, size, _ = open_for_read(ws, {"path": "shrink.bin", "maxBytes": 5000})
os.truncate(os.path.join(ws, "shrink.bin"), 10)
try:
    while r.read(4096): pass
    print("ok")
except FileError as e:
    print(e.code)
`)
    assert.equal(out.trim(), 'Conflict')
  })
})

/** A stand-in executor that says ready, then answers every files.read with `size` announced and `sent` bytes sent. */
function lyingExecutor(size: unknown, sent: number): string {
  const script = path.join(tmp, `lying-${String(size)}-${sent}.py`)
  fs.writeFileSync(
    script,
    `
import json, os, struct, sys
inp, out = os.fdopen(os.dup(0), "rb", buffering=0), os.dup(1)
def send(rid, kind, payload=b""):
    data = struct.pack(">IIB", 5 + len(payload), rid, kind) + payload
    while data: data = data[os.write(out, data):]
def read_exact(n):
    buf = b""
    while len(buf) < n:
        c = inp.read(n - len(buf))
        if not c: sys.exit(0)
        buf += c
    return buf
send(0, 0x4A, json.dumps({"ev": "ready", "protocol": 1, "pid": os.getpid(), "runtimes": ["python"]}).encode())
while True:
    length, rid, kind = struct.unpack(">IIB", read_exact(9))
    msg = json.loads(read_exact(length - 5)) if kind == 0x4A else None
    if not msg or msg.get("op") != "files.read": continue
    send(rid, 0x4A, json.dumps({"ev": "file", "size": ${JSON.stringify(size)}, "mimeType": "text/plain"}).encode())
    left = ${sent}
    while left > 0:
        n = min(left, 65536); left -= n
        try: send(rid, 0x42, b"x" * n)
        except BrokenPipeError: sys.exit(0)
    send(rid, 0x45)
    send(rid, 0x4A, json.dumps({"ev": "done", "size": ${JSON.stringify(size)}}).encode())
`,
  )
  return script
}

async function withLyingSession<T>(size: unknown, sent: number, fn: (s: Session) => Promise<T>): Promise<T> {
  const manager = new SessionManager({ driver: new FakeDriver({ executorScript: lyingExecutor(size, sent) }), poolSize: 0, hostBudget: false })
  try {
    return await fn(await manager.start({ limits: { fileBytes: 1_000_000 } }))
  } finally {
    await manager.close()
  }
}

const codeOf = (code: string) => (e: unknown) => (assert.ok(e instanceof CodeboxError, String(e)), assert.equal(e.code, code, e.message), true)

describe('the host counts what it receives', { timeout: 60_000 }, () => {
  it('an executor that announces 10 bytes and sends 4 MB: the read stops past 10 with LimitExceeded', async () => {
    await withLyingSession(10, 4_000_000, async (s) => {
      const { size, stream } = await s.files.readStream('f.txt')
      assert.equal(size, 10)
      let received = 0
      await assert.rejects(async () => {
        for await (const c of stream) received += c.length
      }, codeOf('LimitExceeded'))
      assert.equal(received, 0, 'the first chunk is already past the announced size and is not passed on')
    })
  })

  it('an executor that announces more than the file limit, or a size that is not a number, is refused', async () => {
    await withLyingSession(2_000_000, 0, (s) => assert.rejects(s.files.read('f.txt'), codeOf('LimitExceeded')))
    await withLyingSession('"12"', 0, (s) => assert.rejects(s.files.read('f.txt'), codeOf('SandboxFailure')))
  })
})

describe('a real read while a background task keeps appending', { timeout: 120_000 }, () => {
  it('never returns more than the size announced nor more than the file limit', async () => {
    const limit = 4 * 1024 * 1024
    const manager = new SessionManager({ driver: new FakeDriver(), poolSize: 0, hostBudget: false })
    try {
      const s = await manager.start({ limits: { fileBytes: limit } })
      await s.files.write('grow.bin', Buffer.alloc(1024 * 1024, 97))
      // Appends 64 KiB at a time, up to 64 MiB, so the file keeps growing during every read below.
      await s.tasks.start(`python3 -c "
import os
with open('grow.bin', 'ab', buffering=0) as f:
    for _ in range(1024): f.write(b'b' * 65536)
"`)
      let refused = 0
      for (let i = 0; i < 20; i++) {
        try {
          const { size, stream } = await s.files.readStream('grow.bin')
          let received = 0
          for await (const c of stream) received += c.length
          assert.equal(received, size, 'the bytes returned are the size announced')
          assert.ok(received <= limit, `${received} bytes is within the ${limit}-byte limit`)
        } catch (e) {
          codeOf('LimitExceeded')(e)
          refused++
        }
      }
      assert.ok(refused > 0, 'the file outgrew the limit during the reads')
    } finally {
      await manager.close()
    }
  })
})
