"""Watching a workspace directory for changes (op `files.watch`).

Linux inotify, called through ctypes (Python's standard library has no binding): the directory,
and with `recursive` every directory below it, is opened the way files.py opens directories (from
the workspace, one component at a time, never following a symlink) and watched through
/proc/self/fd/<fd>, so the watch is on the very directory opened, whatever a path would resolve to
by then. Where inotify is unavailable (no inotify_init1, or /proc/self/fd cannot be used), the
directory is polled instead: a listing every POLL_S compared with the one before.

Events are named by their path relative to the watched directory and typed as fsnotify does:
create (also a name moved in), write, remove, rename (a name moved away), chmod. A file written
through the files API (a temporary file renamed into place) is one `write` of its name.
"""

import ctypes
import errno
import os
import select
import stat
import struct
import time

from files import MAX_DEPTH, FileError, _open_dir, components, open_subdir

IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_UNMOUNT = 0x2000
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x1000000
IN_EXCL_UNLINK = 0x4000000
IN_ISDIR = 0x40000000
MASK = IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK
_EVENT = struct.Struct("iIII")

# Directories one recursive watch may cover (inotify watches, or polled directories).
MAX_WATCHED_DIRS = 4096
# Entries a polled watch compares each round.
MAX_POLLED_ENTRIES = 20000
# Most events in one frame to the host.
MAX_EVENTS_PER_FRAME = 256
POLL_S = 0.5
TEMP_PREFIX = b".codebox-write-"

_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.inotify_init1.argtypes = [ctypes.c_int]
        _libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    return _libc


class Watcher:
    """One watch of a directory (`path`, `recursive`) until run() is told to stop."""

    def __init__(self, workspace, msg):
        self.workspace = workspace
        self.parts, self.shown = components(workspace, dict(msg, path=msg.get("path") or ""), allow_root=True)
        self.recursive = bool(msg.get("recursive"))
        self.ifd = None
        self.dirs = {}  # inotify wd -> path relative to the watched directory (b"" for itself)
        self.moved_temp = {}  # cookie -> whether it makes a new file, for temporary files of the files API moved away
        root = _open_dir(workspace, self.parts)  # NotFound, or ValidationError for a symlink
        try:
            self.mode = "inotify"
            try:
                self.ifd = self._init()
                self._add(root, b"", 0)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EMFILE):
                    raise FileError("LimitExceeded", "cannot watch %r: the sandbox has no inotify watches left (%s)" % (self.shown or "/", os.strerror(e.errno)))
                # No inotify here, or /proc/self/fd unusable: poll.
                self.close()
                self.mode = "poll"
                self.dirs = {}
                self.snapshot = self._scan()
        except BaseException:
            self.close()
            raise
        finally:
            os.close(root)

    def _init(self):
        lib = _lib()
        fd = lib.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        return fd

    def _add(self, dfd, rel, depth, found=None):
        """Watches the directory open as `dfd` (and, recursively, those below it). With `found`,
        every entry already there is appended to it (a new directory's contents may predate its watch)."""
        if len(self.dirs) >= MAX_WATCHED_DIRS:
            raise FileError("LimitExceeded", "%r has more than %d directories to watch; watch a smaller tree" % (self.shown or "/", MAX_WATCHED_DIRS))
        wd = _lib().inotify_add_watch(self.ifd, b"/proc/self/fd/%d" % dfd, MASK)
        if wd < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")
        self.dirs[wd] = rel
        if not self.recursive or depth >= MAX_DEPTH:
            return
        for name in os.listdir(dfd):
            name = os.fsencode(name)
            if found is not None and not name.startswith(TEMP_PREFIX):
                found.append(rel + name)
            try:
                sub = open_subdir(name, dfd)
            except OSError:
                continue  # not a directory (or a symlink to one: not followed)
            try:
                self._add(sub, rel + name + b"/", depth + 1, found)
            finally:
                os.close(sub)

    def _add_new(self, rel):
        """A directory that appeared under a recursive watch: opened from the workspace again,
        confined, and watched. Returns what was in it already (made before its watch was in place:
        `mkdir -p a/b; touch a/b/f` can be done before the watcher sees `a`), to report as created."""
        parts = self.parts + [p for p in rel.split(b"/") if p]
        found = []
        try:
            fd = _open_dir(self.workspace, parts)
        except FileError:
            return found  # gone again, or not a directory any more
        try:
            self._add(fd, rel.rstrip(b"/") + b"/", rel.count(b"/") + 1, found)
        except (OSError, FileError):
            pass  # past the limits: the events of that directory are not seen
        finally:
            os.close(fd)
        return found

    def close(self):
        if self.ifd is not None:
            os.close(self.ifd)
            self.ifd = None

    def run(self, emit, cancelled):
        """Sends events (`emit({"ev": "watch", "events": [...]})`) until `cancelled` is set, or the
        watched directory is removed or moved away; returns why it ended."""
        if self.mode == "poll":
            return self._poll(emit, cancelled)
        while not cancelled.is_set():
            ready, _, _ = select.select([self.ifd], [], [], 0.25)
            if not ready:
                continue
            try:
                data = os.read(self.ifd, 64 * 1024)
            except BlockingIOError:
                continue
            events, ended, overflow = self._parse(data)
            for i in range(0, len(events), MAX_EVENTS_PER_FRAME):
                emit({"ev": "watch", "events": events[i:i + MAX_EVENTS_PER_FRAME]})
            if overflow:
                emit({"ev": "watch", "events": [], "overflow": True})
            if ended:
                return ended
        return "stopped"

    def _parse(self, data):
        events, ended, overflow = [], None, False
        off = 0
        while off + _EVENT.size <= len(data):
            wd, mask, cookie, length = _EVENT.unpack_from(data, off)
            name = data[off + _EVENT.size:off + _EVENT.size + length].rstrip(b"\0")
            off += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                overflow = True
                continue
            rel = self.dirs.get(wd)
            if rel is None:
                continue
            if mask & IN_IGNORED:
                self.dirs.pop(wd, None)
                if rel == b"":
                    ended = ended or "removed"
                continue
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT):
                if rel == b"":  # the watched directory itself; those below are reported by their parents
                    ended = "removed" if mask & (IN_DELETE_SELF | IN_UNMOUNT) else "moved"
                continue
            path = rel + name
            if name.startswith(TEMP_PREFIX):
                if mask & IN_MOVED_FROM:
                    self.moved_temp[cookie] = name[len(TEMP_PREFIX):len(TEMP_PREFIX) + 1] == b"n"
                continue
            if mask & IN_MOVED_TO and cookie in self.moved_temp:
                if self.moved_temp.pop(cookie):
                    events.append({"name": path.decode("utf-8", "replace"), "type": "create"})
                kind = "write"
            elif mask & (IN_CREATE | IN_MOVED_TO):
                if mask & IN_ISDIR and self.recursive:
                    events.append({"name": path.decode("utf-8", "replace"), "type": "create"})
                    # Its contents may predate its watch: reported as created too (a later event may repeat one).
                    events.extend({"name": p.decode("utf-8", "replace"), "type": "create"} for p in self._add_new(path))
                    continue
                kind = "create"
            elif mask & IN_MODIFY:
                kind = "write"
            elif mask & IN_DELETE:
                kind = "remove"
            elif mask & IN_MOVED_FROM:
                kind = "rename"
            elif mask & IN_ATTRIB:
                kind = "chmod"
            else:
                continue
            events.append({"name": path.decode("utf-8", "replace"), "type": kind})
        if len(self.moved_temp) > 1024:
            self.moved_temp.clear()
        return events, ended, overflow

    def _scan(self):
        """{relative path: (type bits, inode, size, mtime, mode)} of the tree (confined walk)."""
        out = {}
        try:
            root = _open_dir(self.workspace, self.parts)
        except FileError:
            return None  # the directory is gone

        def walk(dfd, prefix, depth):
            for name in os.listdir(dfd):
                if len(out) >= MAX_POLLED_ENTRIES:
                    return
                name = os.fsencode(name)
                if name.startswith(TEMP_PREFIX):
                    continue
                try:
                    st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                out[prefix + name] = (stat.S_IFMT(st.st_mode), st.st_ino, st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode))
                if self.recursive and stat.S_ISDIR(st.st_mode) and depth < MAX_DEPTH:
                    try:
                        sub = open_subdir(name, dfd)
                    except OSError:
                        continue
                    try:
                        walk(sub, prefix + name + b"/", depth + 1)
                    finally:
                        os.close(sub)

        try:
            walk(root, b"", 1)
        finally:
            os.close(root)
        return out

    def _poll(self, emit, cancelled):
        while not cancelled.wait(POLL_S):
            now = self._scan()
            if now is None:
                return "removed"
            before, events = self.snapshot, []
            for path in sorted(before.keys() - now.keys()):
                events.append({"name": path.decode("utf-8", "replace"), "type": "remove"})
            for path in sorted(now):
                old, new = before.get(path), now[path]
                if old is None or old[:2] != new[:2]:
                    events.append({"name": path.decode("utf-8", "replace"), "type": "create"})
                elif old[2:4] != new[2:4] and not stat.S_ISDIR(new[0]):
                    events.append({"name": path.decode("utf-8", "replace"), "type": "write"})
                elif old[4] != new[4]:
                    events.append({"name": path.decode("utf-8", "replace"), "type": "chmod"})
            self.snapshot = now
            for i in range(0, len(events), MAX_EVENTS_PER_FRAME):
                emit({"ev": "watch", "events": events[i:i + MAX_EVENTS_PER_FRAME]})
        return "stopped"
