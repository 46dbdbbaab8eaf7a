/**
 * The executor's recursive directory watch (executor/watch.py), run on the host against a temp
 * directory: a directory tree made (and a file written in it) before the watcher has read the
 * event of its top directory is still reported, since its contents are scanned when its watch is
 * placed. Deterministic: everything is made before the watcher's loop runs.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { executorDir } from '../src/drivers/shared.ts'

const script = String.raw`
import json, os, sys, threading
sys.path.insert(0, sys.argv[1])
from watch import Watcher
ws = sys.argv[2]
os.mkdir(os.path.join(ws, "w"))
w = Watcher(ws, {"path": "w", "recursive": True})
# Made before the watcher reads a single event: the watch of "later" is placed only once its event is read.
os.makedirs(os.path.join(ws, "w", "later", "made"))
open(os.path.join(ws, "w", "later", "made", "z.txt"), "w").write("x")
seen = []
stop = threading.Event()
def emit(frame):
    seen.extend(e["name"] + " " + e["type"] for e in frame["events"])
    if any(s.startswith("later/made/z.txt") for s in seen):
        stop.set()
threading.Timer(5, stop.set).start()
w.run(emit, stop)
w.close()
print(json.dumps(seen))
`

test('a recursive watch reports what was made inside a new directory before its watch was placed', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'codebox-watch-'))
  try {
    const r = spawnSync('/usr/bin/python3', ['-c', script, executorDir, dir], { encoding: 'utf8', timeout: 30_000 })
    assert.equal(r.status, 0, r.stderr)
    const seen = JSON.parse(r.stdout) as string[]
    assert.ok(seen.includes('later create'), JSON.stringify(seen))
    assert.ok(seen.includes('later/made create'), JSON.stringify(seen))
    assert.ok(seen.includes('later/made/z.txt create'), JSON.stringify(seen))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
