"""File operations inside the sandbox, confined to the workspace without following symlinks.

Every path is walked one component at a time with O_NOFOLLOW from a directory fd of the
workspace, so neither `..`, an absolute path, nor a symlink (planted before or swapped during
the call) leads outside it. Writes go to a temporary file that is renamed into place, so a
failed or cancelled write leaves nothing half-written.
"""

import base64
import errno
import os
import stat

MAX_PATH = 4096
MAX_NAME = 255
CHUNK = 256 * 1024
# How deep a listing (or a recursive watch) goes.
MAX_DEPTH = 64


class FileError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _raw_path(msg):
    if msg.get("pathBase64") is not None:
        try:
            return base64.b64decode(msg["pathBase64"], validate=True)
        except ValueError:
            raise FileError("ValidationError", "pathBase64 is not valid base64")
    path = msg.get("path")
    if not isinstance(path, str):
        raise FileError("ValidationError", "path must be a string")
    return path.encode("utf-8", "surrogateescape")


def components(workspace, msg, allow_root=False):
    raw = _raw_path(msg)
    shown = raw.decode("utf-8", "replace")
    if b"\0" in raw:
        raise FileError("ValidationError", "path contains a NUL byte")
    if len(raw) > MAX_PATH:
        raise FileError("ValidationError", "path is longer than %d bytes" % MAX_PATH)
    ws = workspace.encode().rstrip(b"/") + b"/"
    if raw.startswith(b"/"):
        if raw.rstrip(b"/") + b"/" == ws:
            raw = b""
        elif raw.startswith(ws):
            raw = raw[len(ws):]
        else:
            raise FileError("ValidationError", "%r is outside the workspace %s; use a relative path" % (shown, workspace))
    parts = [p for p in raw.split(b"/") if p not in (b"", b".")]
    for p in parts:
        if p == b"..":
            raise FileError("ValidationError", "%r contains '..'; paths must stay inside the workspace" % shown)
        if len(p) > MAX_NAME:
            raise FileError("ValidationError", "a name in %r is longer than %d bytes" % (shown[:80] + "...", MAX_NAME))
    if not parts and not allow_root:
        raise FileError("ValidationError", "path is empty; name a file inside the workspace")
    return parts, shown


def open_subdir(name, dir_fd):
    """Opens directory `name` under `dir_fd` without following a symlink. O_NOFOLLOW alone is not
    enough everywhere: gVisor (2022) follows a symlink to a directory when O_DIRECTORY is set. So
    the opened directory must also be the very inode `name` is now (a directory has no other
    links): if the open followed a link, `name` is that link, or whatever was swapped in since,
    never the directory the link led to. Raises OSError(ELOOP) for a symlink."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        opened = os.fstat(fd)
        there = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if not stat.S_ISDIR(there.st_mode) or (there.st_dev, there.st_ino) != (opened.st_dev, opened.st_ino):
            raise OSError(errno.ELOOP, "a symbolic link", name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_subdir(name, dir_fd, shown):
    """Makes directory `name` (or takes the one something else made meanwhile) and opens it."""
    try:
        os.mkdir(name, 0o755, dir_fd=dir_fd)
    except FileExistsError:
        pass
    try:
        return open_subdir(name, dir_fd)
    except OSError:
        raise FileError("ValidationError", "%r is not a directory (symlinks are not followed)" % _show(shown))


def _open_dir(workspace, parts, create=False):
    """Opens the directory that holds the last component; never follows a symlink."""
    fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i, part in enumerate(parts):
            try:
                nfd = open_subdir(part, fd)
            except FileNotFoundError:
                if not create:
                    raise FileError("NotFound", "directory %r does not exist" % _show(parts[: i + 1]))
                nfd = _make_subdir(part, fd, parts[: i + 1])
            except OSError:
                raise FileError("ValidationError", "%r is not a directory (symlinks are not followed)" % _show(parts[: i + 1]))
            os.close(fd)
            fd = nfd
        return fd
    except BaseException:
        os.close(fd)
        raise


def _show(parts):
    return b"/".join(parts).decode("utf-8", "replace")


def write_file(workspace, msg, inbound, cancelled):
    parts, shown = components(workspace, msg)
    declared = msg.get("size")
    limit = msg.get("maxBytes", 100_000_000)
    if isinstance(declared, int) and declared > limit:
        raise FileError("LimitExceeded", "%r is %d bytes, over the %d-byte file limit" % (shown, declared, limit))
    dfd = _open_dir(workspace, parts[:-1], create=True)
    # The temporary name says whether the file is new (n) or replaced (r): a watch (watch.py) then
    # reports a new file as created and written, a replaced one as written, as a plain write would.
    try:
        os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        kind = b"r"
    except FileNotFoundError:
        kind = b"n"
    tmp = b".codebox-write-" + kind + os.urandom(16).hex().encode()
    written = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dfd)
        try:
            while True:
                chunk = inbound.get()
                if chunk is None:
                    break
                written += len(chunk)
                if written > limit:
                    raise FileError("LimitExceeded", "%r is over the %d-byte file limit" % (shown, limit))
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
        except OSError as e:
            # EFBIG: the file reached the file size cap (RLIMIT_FSIZE, the workspace size).
            why = {errno.ENOSPC: "the workspace is full", errno.EFBIG: "the file reached the workspace size limit"}.get(e.errno)
            raise FileError("LimitExceeded" if why else "SandboxFailure", "writing %r failed: %s" % (shown, why or e.strerror))
        finally:
            os.close(fd)
        if cancelled.is_set():
            raise FileError("Conflict", "the write of %r was cancelled" % shown)
        if isinstance(declared, int) and written != declared:
            raise FileError("ValidationError", "%r: received %d bytes, expected %d" % (shown, written, declared))
        try:
            st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                raise FileError("Conflict", "%r is a directory" % shown)
        except FileNotFoundError:
            pass
        try:
            os.rename(tmp, parts[-1], src_dir_fd=dfd, dst_dir_fd=dfd)
        except FileNotFoundError:
            # The sandbox's own code moved the directory (or the file being written) meanwhile
            # (gVisor then loses the name under a held directory fd): a conflict, not a failure.
            raise FileError("Conflict", "%r: its directory changed while it was written; write it again" % shown)
        tmp = None
        return written
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
        os.close(dfd)


def open_for_read(workspace, msg):
    parts, shown = components(workspace, msg)
    dfd = _open_dir(workspace, parts[:-1])
    try:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
        except FileNotFoundError:
            raise FileError("NotFound", "%r does not exist" % shown)
        except OSError as e:
            if e.errno == 40:  # ELOOP: the last component is a symlink
                raise FileError("ValidationError", "%r is a symbolic link; symlinks are not followed" % shown)
            raise FileError("ValidationError", "%r cannot be opened: %s" % (shown, e.strerror))
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise FileError("ValidationError", "%r is %s" % (shown, kind))
    limit = msg.get("maxBytes")
    if isinstance(limit, int) and st.st_size > limit:
        os.close(fd)
        raise FileError("LimitExceeded", "%r is %d bytes, over the %d-byte read limit" % (shown, st.st_size, limit))
    os.set_blocking(fd, True)
    return BoundedReader(os.fdopen(fd, "rb", buffering=0), st.st_size, limit, shown), st.st_size, mime_of(parts[-1])


class BoundedReader:
    """Reads a file as it was when its size was checked: never more than that size (which is
    within the limit), so a file that grows while it is read cannot push the answer past the
    limit or past the size already announced. Growth past the limit, or a file that shrank, is
    an error at the end rather than a silently different file."""

    def __init__(self, f, size, limit, shown):
        self._f = f
        self._left = size
        self._size = size
        self._limit = limit
        self._shown = shown

    def read(self, n):
        if self._left <= 0:
            self._check_end()
            return b""
        chunk = self._f.read(min(n, self._left))
        if not chunk:
            raise FileError("Conflict", "%r shrank while it was read (%d of %d bytes were sent)" % (self._shown, self._size - self._left, self._size))
        self._left -= len(chunk)
        return chunk

    def _check_end(self):
        now = os.fstat(self._f.fileno()).st_size
        if isinstance(self._limit, int) and now > self._limit:
            raise FileError("LimitExceeded", "%r grew past the %d-byte read limit while it was read (it is %d bytes now); only its first %d bytes were sent" % (self._shown, self._limit, now, self._size))

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def mime_of(name):
    import mimetypes  # imported on first use: it costs start-up time and memory

    guess, _ = mimetypes.guess_type(name.decode("utf-8", "replace"), strict=False)
    return guess or "application/octet-stream"


def _entry(rel, name, st, dfd=None, details=False):
    from datetime import datetime, timezone
    mode = st.st_mode
    kind = ("symlink" if stat.S_ISLNK(mode) else "directory" if stat.S_ISDIR(mode)
            else "file" if stat.S_ISREG(mode) else "other")
    entry = {
        "path": rel.decode("utf-8", "replace"), "name": name.decode("utf-8", "replace"), "type": kind,
        "size": st.st_size if kind == "file" else 0,
        "mimeType": mime_of(name) if kind == "file" else ("inode/directory" if kind == "directory" else "application/octet-stream"),
        "modifiedAt": datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat().replace("+00:00", "Z"),
    }
    try:
        rel.decode("utf-8")
    except UnicodeDecodeError:
        entry["pathBase64"] = base64.b64encode(rel).decode()
    if details:
        entry.update(mode=stat.S_IMODE(mode), permissions=stat.filemode(mode), owner=_user(st.st_uid), group=_group(st.st_gid))
        if kind == "symlink" and dfd is not None:
            # The link's text, as it is: never followed, so it may name anything, in the sandbox or not.
            try:
                entry["symlinkTarget"] = os.readlink(name, dir_fd=dfd).decode("utf-8", "replace")
            except OSError:
                pass
    return entry


def _user(uid):
    import pwd
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid):
    import grp
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def list_files(workspace, msg):
    """A directory's entries: `depth` levels down (1: its own entries; `recursive`: 64), at most
    `maxEntries`; `details` adds mode, permissions, owner, group and symlink targets. Symlinks are
    listed, never followed."""
    parts, shown = components(workspace, dict(msg, path=msg.get("path") or ""), allow_root=True)
    depth = msg.get("depth")
    if depth is None:
        depth = MAX_DEPTH if msg.get("recursive") else 1
    if not isinstance(depth, int) or isinstance(depth, bool) or not 1 <= depth <= MAX_DEPTH:
        raise FileError("ValidationError", "depth: must be a whole number from 1 to %d, got %r" % (MAX_DEPTH, depth))
    details = bool(msg.get("details"))
    max_entries = int(msg.get("maxEntries", 10000))
    fd = _open_dir(workspace, parts)
    out = []

    def walk(dfd, prefix, level):
        for name in sorted(os.listdir(dfd)):
            if len(out) >= max_entries:
                return
            name_b = os.fsencode(name)
            if name_b.startswith(b".codebox-write-"):
                continue
            try:
                st = os.stat(name_b, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            rel = prefix + name_b
            out.append(_entry(rel, name_b, st, dfd, details))
            if stat.S_ISDIR(st.st_mode) and level < depth:
                try:
                    sub = open_subdir(name_b, dfd)
                except OSError:
                    continue  # swapped for something else meanwhile
                try:
                    walk(sub, rel + b"/", level + 1)
                finally:
                    os.close(sub)

    try:
        walk(fd, b"/".join(parts) + b"/" if parts else b"", 1)
    finally:
        os.close(fd)
    return out


def stat_path(workspace, msg):
    """One entry, with details, of a path (the workspace itself for an empty one); a symlink is
    described, not followed."""
    parts, shown = components(workspace, msg, allow_root=True)
    if not parts:
        st = os.stat(workspace)
        return _entry(b"", os.fsencode(os.path.basename(workspace.rstrip("/"))), st, None, True)
    dfd = _open_dir(workspace, parts[:-1])
    try:
        try:
            st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            raise FileError("NotFound", "%r does not exist" % shown)
        return _entry(b"/".join(parts), parts[-1], st, dfd, True)
    finally:
        os.close(dfd)


def make_dir(workspace, msg):
    """Makes a directory, and its parents unless `parents` is false. (created, entry): created is
    false when the directory was there already; Conflict when something else is."""
    parts, shown = components(workspace, msg)
    dfd = _open_dir(workspace, parts[:-1], create=msg.get("parents", True) is not False)
    try:
        created = True
        try:
            os.mkdir(parts[-1], 0o755, dir_fd=dfd)
        except FileExistsError:
            created = False
        except OSError as e:
            why = {errno.ENOSPC: "the workspace is full", errno.EDQUOT: "the workspace is full"}.get(e.errno)
            raise FileError("LimitExceeded" if why else "SandboxFailure", "making %r failed: %s" % (shown, why or e.strerror))
        st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise FileError("Conflict", "%r exists and is not a directory (symlinks are not followed)" % shown)
        return created, _entry(b"/".join(parts), parts[-1], st, dfd, True)
    finally:
        os.close(dfd)


def move_path(workspace, msg):
    """Renames `path` to `to` (`toBase64`), both in the workspace; the destination's parents are
    made; a file there is replaced, as rename(2) does; a symlink is moved, not followed."""
    parts, shown = components(workspace, msg)
    dest_msg = {"pathBase64": msg["toBase64"]} if msg.get("toBase64") is not None else {"path": msg.get("to")}
    try:
        dest, dest_shown = components(workspace, dest_msg)
    except FileError as e:
        raise FileError(e.code, "to: %s" % e)
    src_fd = _open_dir(workspace, parts[:-1])
    try:
        try:
            os.stat(parts[-1], dir_fd=src_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise FileError("NotFound", "%r does not exist" % shown)
        if dest[:len(parts)] == parts and len(dest) > len(parts):
            raise FileError("ValidationError", "to: %r is inside %r; a directory cannot move into itself" % (dest_shown, shown))
        dst_fd = _open_dir(workspace, dest[:-1], create=True)
        try:
            try:
                os.rename(parts[-1], dest[-1], src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            except OSError as e:
                if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise FileError("Conflict", "%r is a directory that is not empty" % dest_shown)
                if e.errno in (errno.EISDIR, errno.ENOTDIR):
                    raise FileError("Conflict", "cannot move %r onto %r: one is a directory, the other not" % (shown, dest_shown))
                raise FileError("SandboxFailure", "moving %r to %r failed: %s" % (shown, dest_shown, e.strerror))
            st = os.stat(dest[-1], dir_fd=dst_fd, follow_symlinks=False)
            return _entry(b"/".join(dest), dest[-1], st, dst_fd, True)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


def remove_path(workspace, msg):
    import shutil
    parts, shown = components(workspace, msg)
    dfd = _open_dir(workspace, parts[:-1])
    try:
        try:
            st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            raise FileError("NotFound", "%r does not exist" % shown)
        if stat.S_ISDIR(st.st_mode):
            if msg.get("recursive"):
                shutil.rmtree(parts[-1], dir_fd=dfd)
            else:
                try:
                    os.rmdir(parts[-1], dir_fd=dfd)
                except OSError:
                    raise FileError("Conflict", "%r is a directory that is not empty; pass recursive to remove it" % shown)
        else:
            os.unlink(parts[-1], dir_fd=dfd)
    finally:
        os.close(dfd)
