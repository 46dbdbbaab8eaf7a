"""codebox inbound relay: the egress relay's mirror image. On the host's request (op `port.open`)
it listens on a unix socket `port-<port>.sock` in the executor's ports directory (bwrap: the
channel directory, which only the host reaches from outside, through the launcher's mount
namespace; gVisor: a host-backed mount at /run/codebox/ports, a directory of the sandbox's own)
and pipes every connection to 127.0.0.1:<port> inside the sandbox, where the session's own
server (a hosted agent) listens.

Each connection starts with one status byte from the relay, before any byte of the port:
STATUS_OK once the inner connect succeeded, STATUS_REFUSED when nothing listens on the port and
STATUS_BUSY when the relay holds its most connections; after the last two the relay closes at
once, so the host tells the caller fast and clearly. One thread and one selector serve every port;
ports, connections and buffers (one chunk per direction) are bounded.

In listen mode (a Kubernetes pod, listen.py) there is no ports directory: a connection the
executor accepted and authenticated as a tunnel is handed over here (`adopt`) and piped the same
way, status byte first, within the same bound on connections.
"""

import errno
import os
import selectors
import socket
import sys
import threading
import time

from egress_relay import MAX_PAIRS, Relay, _Pair, _pair_budget

MAX_PORTS = 8
STATUS_OK = b"\x00"
STATUS_REFUSED = b"\x01"
STATUS_BUSY = b"\x02"
INNER_HOST = "127.0.0.1"


class PortLimit(Exception):
    """More ports than MAX_PORTS were asked for."""


class _Port:
    """One port's listener and the inode of the socket it bound (to tell when it was removed)."""

    def __init__(self, port, sock, inode):
        self.port = port
        self.sock = sock
        self.inode = inode


class _InPair(_Pair):
    """A host connection and its TCP twin inside; until the inner connect completes, only the
    inner socket is watched (for writability) and nothing is read from the host."""

    def __init__(self, client, upstream, connecting):
        super().__init__(client, upstream)
        self.connecting = connecting

    def events(self, s):
        if self.connecting:
            return selectors.EVENT_WRITE if s is self.socks[1] else 0
        return super().events(s)


_WAKE = object()


class InboundRelay(Relay):
    """Listeners for the ports the host opened, and tunnels handed over, served by one daemon
    thread started on the first. `directory` is None in listen mode (tunnels only)."""

    def __init__(self, directory, max_pairs=MAX_PAIRS, on_activity=None):
        # Relay's own __init__ binds the egress listener: this relay has its listeners per port.
        self.directory = directory
        self.max_pairs = max_pairs
        self.on_activity = on_activity or (lambda: None)
        self.pairs = set()
        # Relay's TCP-upstream connects under way: never any here (this relay tracks its own
        # connects, _InPair.connecting), but Relay._close and _step read it.
        self.connecting = set()
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Lock()
        self.ports = {}
        self.added = []
        self.retired = []
        self.adopted = []
        self.thread = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, _WAKE)

    def socket_name(self, port):
        return "port-%d.sock" % port

    def open(self, port):
        """Listens for `port` unless it already does (and its socket is still in place); returns
        the socket's name in the directory. PortLimit past MAX_PORTS."""
        path = os.path.join(self.directory, self.socket_name(port))
        with self.lock:
            known = self.ports.get(port)
            if known is not None:
                try:
                    if os.lstat(path).st_ino == known.inode:
                        return self.socket_name(port)
                except FileNotFoundError:
                    pass
                except PermissionError:
                    # A host-backed socket under gVisor (see _bound_inode): nothing in the sandbox
                    # can remove or replace it, so it is still the one this relay listens on.
                    return self.socket_name(port)
                # Code in the sandbox removed or replaced it (it runs as this uid): listen again.
                self.retired.append(known)
                del self.ports[port]
            elif len(self.ports) >= MAX_PORTS:
                raise PortLimit("at most %d ports can be opened in a sandbox" % MAX_PORTS)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
                _private(path)
                sock.listen(64)
                sock.setblocking(False)
                inode = _bound_inode(path)
            except OSError:
                sock.close()
                raise
            entry = _Port(port, sock, inode)
            self.ports[port] = entry
            self.added.append(entry)
            self._start()
        self._wake()
        return self.socket_name(port)

    def adopt(self, client, port):
        """Pipes `client` (a connected socket, now the relay's) to 127.0.0.1:`port`, status byte
        first, as a connection to a port socket is. RuntimeError (and `client` closed) when the
        relay's thread cannot start (the session is at its pids limit)."""
        with self.lock:
            try:
                self._start()
            except RuntimeError:
                client.close()
                raise
            self.adopted.append((client, port))
        self._wake()

    def _start(self):
        """Starts the serving thread unless it runs (under self.lock)."""
        if self.thread is None:
            thread = threading.Thread(target=self.serve_forever, name="inbound-relay", daemon=True)
            thread.start()
            self.thread = thread

    def _wake(self):
        try:
            self._wake_w.send(b"x")
        except OSError:  # full: the thread is awake already
            pass

    def serve_forever(self):
        while True:
            for key, mask in self.sel.select():
                data = key.data
                if isinstance(data, _Pair) and data not in self.pairs:
                    continue  # closed by an earlier event of this round
                try:
                    if data is _WAKE:
                        self._take_listeners()
                    elif isinstance(data, _Port):
                        self._accept_port(data)
                    else:
                        self._step(data, key.fileobj, mask)
                except Exception as e:  # a bug here must not end the relay for the whole session
                    print("codebox: inbound relay: %s: %s" % (type(e).__name__, e), file=sys.stderr)
                    if isinstance(data, _Pair):
                        self._close(data)

    def _take_listeners(self):
        try:
            while self._wake_r.recv(64):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        with self.lock:
            added, self.added = self.added, []
            retired, self.retired = self.retired, []
            adopted, self.adopted = self.adopted, []
        for entry in retired:
            try:
                self.sel.unregister(entry.sock)
            except (KeyError, ValueError):
                pass
            entry.sock.close()
        for entry in added:
            self.sel.register(entry.sock, selectors.EVENT_READ, entry)
        for client, port in adopted:
            try:
                self._pipe(client, port)
            except Exception as e:  # one tunnel's trouble must not drop the others handed over with it
                print("codebox: inbound relay: %s: %s" % (type(e).__name__, e), file=sys.stderr)
                client.close()

    def _accept_port(self, entry):
        try:
            client, _ = entry.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # out of fds: back off instead of spinning
            time.sleep(0.05)
            return
        self._pipe(client, entry.port)

    def _pipe(self, client, port):
        """Connects to 127.0.0.1:`port` for `client`, or refuses it with its status byte."""
        self.on_activity()
        client.setblocking(False)
        if len(self.pairs) >= self.max_pairs:
            return _refuse(client, STATUS_BUSY)
        try:
            upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError:  # out of fds
            return _refuse(client, STATUS_BUSY)
        upstream.setblocking(False)
        err = upstream.connect_ex((INNER_HOST, port))
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            upstream.close()
            return _refuse(client, STATUS_REFUSED)
        pair = _InPair(client, upstream, connecting=err != 0)
        self.pairs.add(pair)
        if not pair.connecting:
            pair.pending[client] = STATUS_OK
        for s in pair.socks:
            self._watch(s, pair)

    def _step(self, pair, s, mask):
        if not pair.connecting:
            return super()._step(pair, s, mask)
        if s is not pair.socks[1] or not mask & selectors.EVENT_WRITE:
            return
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            client, upstream = pair.socks
            self.pairs.discard(pair)
            for t in pair.socks:
                try:
                    self.sel.unregister(t)
                except (KeyError, ValueError):
                    pass
            upstream.close()
            return _refuse(client, STATUS_REFUSED)
        pair.connecting = False
        pair.pending[pair.socks[0]] = STATUS_OK
        for t in pair.socks:
            self._watch(t, pair)


def _private(path):
    """Makes the socket the uid's alone. Under gVisor the ports directory is a host-backed mount
    (runsc --host-uds=create) whose sockets refuse chmod (EPERM); that directory is mode 0700 of
    this uid already, so nothing else reaches them."""
    try:
        os.chmod(path, 0o600)
    except PermissionError:
        pass


def _bound_inode(path):
    """The inode of the socket just bound, or None under gVisor, where a host-backed socket
    refuses lstat (EPERM) as it refuses unlink, rename and being overwritten: it cannot be
    swapped, so there is nothing to compare."""
    try:
        return os.lstat(path).st_ino
    except PermissionError:
        return None


def _refuse(client, status):
    """Tells the host why in one byte (a fresh socket has room for it) and closes."""
    try:
        client.send(status)
    except OSError:
        pass
    client.close()


def make_relay(directory, on_activity=None):
    """The relay for the executor's ports directory (None: tunnels only, listen mode); it listens
    on nothing until a port is opened."""
    return InboundRelay(directory, max_pairs=_pair_budget(), on_activity=on_activity)
