"""Pseudo-terminals for background tasks (task.start with `pty`, task.resize).

A task with a terminal runs with the terminal's slave end as its stdin, stdout and stderr, in a
session of its own whose controlling terminal it is (so a shell has job control, Ctrl-C reaches
its foreground job, and a resize reaches it as SIGWINCH). The executor keeps the master end: what
the process writes (stdout and stderr as the terminal shows them, with echoed input) is read
there, and input is written there. See docs/executor-protocol.md, "Processes".

gVisor (runsc of 2022) sets a terminal's size but sends no SIGWINCH, and its master end cannot
tell the foreground process group (TIOCGPGRP: ENOTTY). With CODEBOX_TTY_SIGWINCH=executor (the
gVisor driver sets it) the executor sends SIGWINCH itself after a resize, to every process group
of the task's session (its default action is to do nothing, so a background job is not
disturbed). Its line discipline also makes no signal of Ctrl-C, Ctrl-\\ or Ctrl-Z and no end of
file of Ctrl-D: they reach the program as plain characters (docs/e2b.md, "Terminals (PTYs)").
"""

import errno
import fcntl
import os
import signal
import struct
import termios

from jobs import session_groups

SEND_SIGWINCH = os.environ.pop("CODEBOX_TTY_SIGWINCH", "") == "executor"

# A terminal's columns and rows are each from 1 to this.
MAX_SIZE = 1000
# What TERM a terminal's process gets unless the caller sets one (what E2B's envd gives a PTY).
TERM = "xterm-256color"


class SizeError(ValueError):
    pass


def check_size(size, field="pty"):
    """(cols, rows) of `size` ({cols, rows}, whole numbers from 1 to MAX_SIZE); SizeError naming what is wrong."""
    if not isinstance(size, dict):
        raise SizeError("%s: must be {cols, rows}" % field)
    out = []
    for name in ("cols", "rows"):
        v = size.get(name)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_SIZE:
            raise SizeError("%s.%s: must be a whole number from 1 to %d, got %r" % (field, name, MAX_SIZE, v))
        out.append(v)
    return out[0], out[1]


def set_size(fd, cols, rows):
    """Sets the terminal's window size; the kernel sends SIGWINCH to its foreground process group."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def resize(fd, cols, rows, session):
    """set_size on the master; under SEND_SIGWINCH also SIGWINCH to each process group of the
    task's session (`session`: the task's pid, its session id)."""
    set_size(fd, cols, rows)
    if SEND_SIGWINCH:
        for pgid in session_groups(session):
            try:
                os.killpg(pgid, signal.SIGWINCH)
            except (ProcessLookupError, PermissionError):
                pass


def open_pty(cols, rows):
    """(master, slave) of a new terminal of the given size. Both are close-on-exec (Popen dup2s
    the slave onto the child's 0, 1 and 2); the master is non-blocking, for writes with a deadline."""
    master, slave = os.openpty()
    try:
        set_size(slave, cols, rows)
        os.set_blocking(master, False)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    return master, slave


def take_terminal():
    """Popen's preexec_fn for a task with a terminal: runs in the child after setsid
    (start_new_session) and after its stdin became the slave, and makes that terminal the new
    session's controlling terminal. It makes one ioctl call and nothing else (no import, no
    I/O), so there is nothing in it to wait for a lock another executor thread held at the fork."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def read_master(fd, size):
    """Bytes from the master; b"" once no process holds the slave any more (Linux answers EIO
    then: the end of the output, not an error)."""
    try:
        return os.read(fd, size)
    except OSError as e:
        if e.errno == errno.EIO:
            return b""
        raise
