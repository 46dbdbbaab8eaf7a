"""The code receiver: a sandbox pod's init container, which fills /app with a hosted agent's bundle.

A Kubernetes pod cannot bind a directory of the API's host the way bwrap and gVisor do, so a pod of
a session with a code mount gets an emptyDir at /app, written by this program before the executor
starts and mounted read-only in the executor's container (docs/executor-protocol.md, "The code
receiver"). It listens on CODEBOX_LISTEN, authenticates a connection exactly as the executor's
listen mode does (listen.py), answers `ready`, reads one uncompressed tar stream, unpacks it into
CODEBOX_CODE_DIR defensively (regular files, directories, symbolic links that stay inside, hard
links to files unpacked before; no absolute path, no `..`, at most CODEBOX_CODE_MAX_BYTES of file
data and CODEBOX_CODE_MAX_ENTRIES entries; modes 0644 or 0755), answers `done` or `error`, and
exits: 0 when the bundle is in place, 1 with one line on stderr otherwise (the pod then fails, as
an init container that fails does under restartPolicy Never). Nobody sending a bundle within
CODEBOX_CODE_WAIT_S (default 120) seconds is such a failure too.
"""

import json
import os
import posixpath
import socket
import struct
import sys
import tarfile
import time

from listen import StartError, authenticate, close_listener, open_listener, parse_listen, tune

DEFAULT_WAIT_S = 120
# How long the sender may stay silent in the middle of the stream.
IDLE_TIMEOUT_S = 30
# What the stream may hold beyond the files' bytes: per entry (its header, a pax header and its
# records, the padding of its data to 512 bytes), and in all (the end blocks).
HEADER_ALLOWANCE = 8 * 512
STREAM_SLACK = 1024 * 1024
CHUNK = 1024 * 1024
MAX_NAME_BYTES = 4096


class Refused(Exception):
    """What is wrong with the bundle or its stream; the message says it for the driver and the log."""


class _Stream:
    """The socket as a file tarfile reads: at most `limit` bytes in all, each recv within IDLE_TIMEOUT_S."""

    def __init__(self, conn, limit):
        self.conn = conn
        self.left = limit

    def read(self, n=-1):
        if n is None or n < 0:
            n = CHUNK
        out = bytearray()
        while len(out) < n:
            if self.left <= 0:
                raise Refused("the stream is longer than the bundle's declared size allows")
            self.conn.settimeout(IDLE_TIMEOUT_S)
            try:
                chunk = self.conn.recv(min(n - len(out), self.left, CHUNK))
            except socket.timeout:
                raise Refused("the sender was silent for %d s in the middle of the bundle" % IDLE_TIMEOUT_S)
            except OSError as e:
                raise Refused("the connection failed while the bundle arrived: %s" % e)
            if not chunk:
                break
            self.left -= len(chunk)
            out += chunk
        return bytes(out)


def _frame(obj):
    payload = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return struct.pack(">IIB", len(payload) + 5, 0, 0x4A) + payload


def _relative(name, what):
    """The entry's path below the root as `a/b`, '' for the root itself; Refused for anything that is not plainly inside."""
    if "\0" in name or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        raise Refused("%s %r: a name with a NUL byte or over %d bytes" % (what, name[:80], MAX_NAME_BYTES))
    if name.startswith("/"):
        raise Refused("%s %r: an absolute path" % (what, name))
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Refused("%s %r: a path with '..'" % (what, name))
    return "/".join(parts)


class Unpacker:
    """Writes entries below `root` (an existing, empty directory); never follows a link it did not check."""

    def __init__(self, root, max_bytes, max_entries):
        self.root = root
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.kinds = {"": "dir"}
        self.bytes = 0
        self.entries = 0
        self.files = 0

    def _parent(self, rel):
        """Makes the entry's missing parent directories; Refused when one is a file or a link."""
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            kind = self.kinds.get(prefix)
            if kind is None:
                self._count(prefix)
                os.mkdir(os.path.join(self.root, prefix), 0o755)
                os.chmod(os.path.join(self.root, prefix), 0o755)
                self.kinds[prefix] = "dir"
            elif kind != "dir":
                raise Refused("entry %r is beneath %r, which is a %s" % (rel, prefix, kind))

    def _count(self, rel):
        self.entries += 1
        if self.entries > self.max_entries:
            raise Refused("the bundle has more than %d entries (at %r)" % (self.max_entries, rel))

    def add(self, member, reader):
        rel = _relative(member.name, "entry")
        if rel == "":
            if not member.isdir():
                raise Refused("the bundle's root entry is not a directory")
            return
        seen = self.kinds.get(rel)
        if seen is not None and not (seen == "dir" and member.isdir()):
            raise Refused("entry %r appears twice" % rel)
        self._parent(rel)
        target = os.path.join(self.root, rel)
        if member.isdir():
            if seen is None:
                self._count(rel)
                os.mkdir(target, 0o755)
                os.chmod(target, 0o755)
                self.kinds[rel] = "dir"
            return
        self._count(rel)
        if member.isreg():
            self._file(rel, target, member, reader)
        elif member.issym():
            self._symlink(rel, target, member.linkname)
        elif member.islnk():
            source = _relative(member.linkname, "hard link target")
            if self.kinds.get(source) != "file":
                raise Refused("hard link %r must name a file earlier in the bundle, not %r" % (rel, member.linkname))
            os.link(os.path.join(self.root, source), target, follow_symlinks=False)
            self.kinds[rel] = "file"
            self.files += 1
        else:
            raise Refused("entry %r is not a file, directory or link (tar type %r)" % (rel, member.type))

    def _file(self, rel, target, member, reader):
        if member.size < 0 or self.bytes + member.size > self.max_bytes:
            raise Refused("the bundle holds more than %d bytes of files (at %r)" % (self.max_bytes, rel))
        mode = 0o755 if member.mode & 0o111 else 0o644
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        try:
            os.fchmod(fd, mode)
            source = reader.extractfile(member)
            left = member.size
            while left > 0:
                chunk = source.read(min(CHUNK, left))
                if not chunk:
                    raise Refused("the stream ended inside file %r" % rel)
                os.write(fd, chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
        self.bytes += member.size
        self.kinds[rel] = "file"
        self.files += 1

    def _symlink(self, rel, target, link):
        if not link or "\0" in link or link.startswith("/"):
            raise Refused("symbolic link %r points to %r: only relative links inside the bundle are allowed" % (rel, link))
        # In normal form `..` only leads, climbing directories the entry's parent really has (they
        # were made here, never links), so where the name resolves is where the link goes.
        if posixpath.normpath(link) != (link.rstrip("/") or link):
            raise Refused("symbolic link %r points to %r: write the target in normal form (no ./, //, or .. after a name)" % (rel, link))
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), link))
        if resolved == ".." or resolved.startswith("../"):
            raise Refused("symbolic link %r points outside the bundle (%r)" % (rel, link))
        os.symlink(link, target)
        self.kinds[rel] = "symlink"


def receive(conn, root, max_bytes, max_entries):
    """Reads the tar stream from an authenticated connection into `root`: the unpacker (counts)."""
    stream = _Stream(conn, max_bytes + HEADER_ALLOWANCE * (max_entries + 2) + STREAM_SLACK)
    unpacker = Unpacker(root, max_bytes, max_entries)
    try:
        with tarfile.open(fileobj=stream, mode="r|", bufsize=64 * 1024) as archive:
            for member in archive:
                unpacker.add(member, archive)
    except tarfile.TarError as e:
        raise Refused("not a valid tar stream: %s" % e)
    return unpacker


def _int_env(name, default):
    text = os.environ.pop(name, "")
    if text == "":
        if default is None:
            raise StartError("%s is required" % name)
        return default
    if not text.isdigit() or len(text) > 15 or int(text) < 1:
        raise StartError("%s must be a positive whole number, got %r" % (name, text))
    return int(text)


def _options():
    listen = os.environ.pop("CODEBOX_LISTEN", "")
    token = os.environ.pop("CODEBOX_EXECUTOR_TOKEN", "")
    root = os.environ.pop("CODEBOX_CODE_DIR", "") or "/app"
    if not listen:
        raise StartError("CODEBOX_LISTEN is required")
    if not token:
        raise StartError("CODEBOX_EXECUTOR_TOKEN is required")
    family, address = parse_listen(listen)
    max_bytes = _int_env("CODEBOX_CODE_MAX_BYTES", None)
    max_entries = _int_env("CODEBOX_CODE_MAX_ENTRIES", None)
    wait_s = _int_env("CODEBOX_CODE_WAIT_S", DEFAULT_WAIT_S)
    if not os.path.isdir(root) or os.path.islink(root):
        raise StartError("CODEBOX_CODE_DIR: %r is not a directory" % root)
    if os.listdir(root):
        raise StartError("CODEBOX_CODE_DIR: %r is not empty (a receiver runs once, into a fresh volume)" % root)
    return family, address, token.encode("utf-8", "surrogatepass"), root, max_bytes, max_entries, wait_s


def _serve(listener, token, root, max_bytes, max_entries, wait_s):
    """Accepts until one connection authenticates, then receives on it; Refused when anything fails."""
    deadline = time.monotonic() + wait_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Refused("no bundle arrived within %d s" % wait_s)
        listener.settimeout(left)
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        tune(conn)
        if not authenticate(conn, token):
            # A readiness probe or a stray connection: closed without a word, as the executor does.
            conn.close()
            continue
        break
    with conn:
        conn.sendall(_frame({"op": "ready", "receiver": "code"}))
        try:
            done = receive(conn, root, max_bytes, max_entries)
        except (Refused, OSError) as e:
            refused = e if isinstance(e, Refused) else Refused("cannot write the bundle into %s: %s" % (root, e))
            # The log says why before the sender hears it: whoever reads the log then finds it.
            _say(str(refused))
            refused.said = True
            _answer(conn, {"op": "error", "message": str(refused)})
            raise refused
        _say("unpacked %d files (%d bytes) into %s" % (done.files, done.bytes, root))
        _answer(conn, {"op": "done", "files": done.files, "entries": done.entries, "bytes": done.bytes})
        return done


def _say(line):
    sys.stderr.write("codebox code receiver: %s\n" % line)
    sys.stderr.flush()


def _answer(conn, obj):
    try:
        conn.settimeout(IDLE_TIMEOUT_S)
        conn.sendall(_frame(obj))
        conn.shutdown(socket.SHUT_WR)
        # Wait (a little) for the sender's close, so the answer is not lost to a reset.
        left = STREAM_SLACK
        while left > 0:
            chunk = conn.recv(65536)
            if not chunk:
                break
            left -= len(chunk)
    except OSError:
        pass


def main():
    try:
        family, address, token, root, max_bytes, max_entries, wait_s = _options()
        listener, shown = open_listener(family, address)
    except (StartError, OSError) as e:
        _say(str(e))
        return 1
    _say("listening on %s" % shown)
    try:
        _serve(listener, token, root, max_bytes, max_entries, wait_s)
    except Refused as e:
        if not getattr(e, "said", False):
            _say(str(e))
        return 1
    finally:
        close_listener(listener, family, address)
    return 0


if __name__ == "__main__":
    sys.exit(main())
