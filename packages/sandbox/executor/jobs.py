"""Output capture with a byte cap, deadlines and cancellation, and killing a process tree.

Used by the executor for kernel cells and shell commands alike.
"""

import codecs
import os
import select
import signal
import time

CHUNK = 64 * 1024


class Capture:
    """Reads a call's stdout/stderr pipes, streams them as events, keeps at most `limit` bytes."""

    def __init__(self, req, limit):
        self.req = req
        self.limit = limit
        self.seen = 0
        self.truncated = False
        self.decoders = {"stdout": codecs.getincrementaldecoder("utf-8")("replace"),
                         "stderr": codecs.getincrementaldecoder("utf-8")("replace")}

    def feed(self, stream, chunk):
        room = self.limit - self.seen
        if room <= 0:
            self.truncated = True
            return
        if len(chunk) > room:
            chunk = chunk[:room]
            self.truncated = True
        self.seen += len(chunk)
        text = self.decoders[stream].decode(chunk)
        if text:
            self.req.event({"ev": stream, "text": text})

    def pump(self, fds, deadline, cancelled, control_fd=None, on_control=None, proc=None):
        """Runs until the control channel says done, the pipes close, the deadline or a cancel.

        Returns 'done', 'closed', 'timeout', 'cancelled' or 'eof' (the control channel closed:
        the process died).
        """
        open_fds = set(fds)
        watch = list(open_fds) + ([control_fd] if control_fd is not None else [])
        while True:
            if cancelled.is_set():
                return "cancelled"
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            if proc is not None and not open_fds:
                return "closed"
            if proc is not None and proc.poll() is not None:
                # The command exited; take what its pipes still hold, but do not wait for
                # background children that keep them open.
                self._drain_for(fds, open_fds, 0.05)
                return "closed"
            ready, _, _ = select.select(watch, [], [], min(left, 0.1))
            for fd in ready:
                try:
                    chunk = os.read(fd, CHUNK)
                except ConnectionError:
                    if fd != control_fd:
                        raise
                    # The kernel's end went away unread (ECONNRESET): as good as closed.
                    return "eof"
                if fd == control_fd:
                    if not chunk:
                        return "eof"
                    if on_control(chunk):
                        return "done"
                    continue
                if not chunk:
                    open_fds.discard(fd)
                    watch.remove(fd)
                    continue
                self.feed(fds[fd], chunk)

    def _drain_for(self, fds, open_fds, seconds):
        end = time.monotonic() + seconds
        while open_fds:
            left = end - time.monotonic()
            if left <= 0:
                return
            ready, _, _ = select.select(list(open_fds), [], [], left)
            if not ready:
                return
            for fd in ready:
                chunk = os.read(fd, CHUNK)
                if not chunk:
                    open_fds.discard(fd)
                else:
                    self.feed(fds[fd], chunk)

    def drain(self, fds):
        """Takes what is already in the pipes without waiting for more."""
        for fd, stream in fds.items():
            while True:
                try:
                    ready, _, _ = select.select([fd], [], [], 0)
                    if not ready:
                        break
                    chunk = os.read(fd, CHUNK)
                except (OSError, ValueError):
                    break
                if not chunk:
                    break
                self.feed(stream, chunk)
        self.drain_closed()

    def drain_closed(self):
        for stream, dec in self.decoders.items():
            text = dec.decode(b"", final=True)
            if text:
                self.req.event({"ev": stream, "text": text})


def _processes():
    procs = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        # pid, ppid, pgid, sid, and the start time that tells a process from a later one given its pid
        procs.append((int(name), int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])))
    return procs


def _tree(root, procs):
    """`root`, every process of its process group and session, and all their descendants."""
    members = {p for p, _, pgid, sid, _ in procs if p == root or pgid == root or sid == root}
    grew = True
    while grew:
        grew = False
        for p, ppid, _, _, _ in procs:
            if ppid in members and p not in members:
                members.add(p)
                grew = True
    return members


def session_groups(sid):
    """The process groups of session `sid` now."""
    return {pgid for _, _, pgid, s, _ in _processes() if s == sid}


def tree_snapshot(root):
    """What `interrupt_tree` leaves alone: the processes of `root`'s tree now, as (pid, start time)."""
    procs = _processes()
    members = _tree(root, procs)
    return {(p, start) for p, _, _, _, start in procs if p in members}


def interrupt_tree(root, spared):
    """Sends SIGINT to `root` and then to every process of its tree not in `spared` (a
    tree_snapshot), as Ctrl-C in a terminal reaches the foreground job: the kernel and what the
    cell started, but not a server an earlier cell left running in the background."""
    try:
        os.kill(root, signal.SIGINT)
    except ProcessLookupError:
        return
    me = os.getpid()
    procs = _processes()
    members = _tree(root, procs)
    for p, _, _, _, start in procs:
        if p in (root, me) or (p, start) in spared or p not in members:
            continue
        try:
            os.kill(p, signal.SIGINT)
        except ProcessLookupError:
            pass


def kill_tree(root):
    """SIGKILLs `root`, its process group and session, and every descendant, until none is left.

    SIGKILL also ends stopped and traced processes. A process that left both the session and
    the parent chain (a double-forked daemon) lives until the sandbox ends.
    """
    me = os.getpid()
    for _ in range(50):
        victims = _tree(root, _processes())
        victims.discard(me)
        alive = []
        for p in victims:
            try:
                os.kill(p, signal.SIGKILL)
                alive.append(p)
            except ProcessLookupError:
                pass
        # Zombies (already dead, not yet reaped) cannot be killed again; stop when only they remain.
        if not alive or all(_is_zombie(p) for p in alive):
            return
        time.sleep(0.005)


def _is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
        return stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3] in (b"Z", b"X")
    except OSError:
        return True
