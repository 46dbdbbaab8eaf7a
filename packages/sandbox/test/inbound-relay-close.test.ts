/**
 * The inbound relay lets go of a finished connection: its sockets are closed and no longer watched,
 * so the relay's thread sleeps again. (A pair dropped but still watched woke its selector for ever:
 * an executor at a full core for the rest of the session, seen in a hosted agent's sandbox.)
 * Run on the host's Python against the executor's own inbound_relay.py.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { test } from 'node:test'
import { promisify } from 'node:util'
import { executorDir } from '../src/drivers/shared.ts'

const SCRIPT = String.raw`
import os, socket, sys, threading, time
sys.path.insert(0, sys.argv[1])
import inbound_relay

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.bind(("127.0.0.1", 0))
server.listen(8)
port = server.getsockname()[1]
def echo():
    while True:
        c, _ = server.accept()
        data = c.recv(100)
        c.sendall(data)
        c.close()
threading.Thread(target=echo, daemon=True).start()

relay = inbound_relay.make_relay(sys.argv[2])
name = relay.open(port)
for i in range(3):
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(os.path.join(sys.argv[2], name))
    assert c.recv(1) == b"\x00", "status"
    c.sendall(b"ping")
    got = b""
    while True:
        chunk = c.recv(100)
        if not chunk:
            break
        got += chunk
    assert got == b"ping", got
    c.close()
deadline = time.monotonic() + 5
while time.monotonic() < deadline and (relay.pairs or len(relay.sel.get_map()) > 2):
    time.sleep(0.05)
watched = len(relay.sel.get_map())
# The relay's thread is idle now: its CPU time stays put over half a second.
tid = relay.thread.native_id
def cpu():
    with open("/proc/self/task/%d/stat" % tid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])
before = cpu()
time.sleep(0.5)
print(len(relay.pairs), watched, cpu() - before)
`

test('the inbound relay closes and stops watching a finished connection, and then sleeps', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cbx-inbound-close-'))
  try {
    const { stdout } = await promisify(execFile)('/usr/bin/python3', ['-c', SCRIPT, executorDir, dir], { timeout: 30_000 })
    const [pairs, watched, ticks] = stdout.trim().split(' ').map(Number)
    assert.equal(pairs, 0, 'no pair is left')
    assert.equal(watched, 2, 'only the wake-up socket and the port listener are watched')
    assert.ok(ticks! <= 5, `the relay's thread used ${ticks} clock ticks in half a second of nothing to do`)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
