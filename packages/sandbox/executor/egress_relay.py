"""codebox egress relay: listens on 127.0.0.1:3128 inside the sandbox and pipes every TCP
connection to the host's egress proxy through the unix socket the driver binds in
(CODEBOX_EGRESS_SOCKET). The proxy on the host decides what may be reached; this relay only
carries bytes. One thread, one selector, a bounded number of connections and buffers.
"""

import resource
import selectors
import socket
import sys
import threading
import time

HOST = "127.0.0.1"
PORT = 3128
MAX_PAIRS = 64
CHUNK = 64 * 1024


class _Pair:
    """A sandbox client and its unix-socket twin; bytes read from one wait in `pending` of the other."""

    def __init__(self, client, upstream):
        self.socks = (client, upstream)
        self.pending = {client: b"", upstream: b""}
        self.reading = {client: True, upstream: True}

    def peer(self, s):
        return self.socks[1] if s is self.socks[0] else self.socks[0]

    def events(self, s):
        ev = 0
        if self.reading[s] and not self.pending[self.peer(s)]:
            ev |= selectors.EVENT_READ
        if self.pending[s]:
            ev |= selectors.EVENT_WRITE
        return ev

    def finished(self):
        return not any(self.reading.values()) and not any(self.pending.values())


class Relay:
    def __init__(self, socket_path, host=HOST, port=PORT, max_pairs=MAX_PAIRS):
        self.socket_path = socket_path
        self.max_pairs = max_pairs
        self.pairs = set()
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, None)

    def serve_forever(self):
        while True:
            for key, mask in self.sel.select():
                if key.data is not None and key.data not in self.pairs:
                    continue  # closed by an earlier event of this round
                try:
                    if key.data is None:
                        self._accept()
                    else:
                        self._step(key.data, key.fileobj, mask)
                except Exception as e:  # a bug here must not end the relay for the whole session
                    print("codebox: egress relay: %s: %s" % (type(e).__name__, e), file=sys.stderr)
                    if key.data is not None:
                        self._close(key.data)

    def _accept(self):
        try:
            client, _ = self.listener.accept()
        except OSError:  # out of fds, or the client went away: back off instead of spinning
            time.sleep(0.05)
            return
        if len(self.pairs) >= self.max_pairs:
            client.close()
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.setblocking(False)
            upstream.connect(self.socket_path)
        except OSError:  # the proxy is gone or its backlog is full
            client.close()
            upstream.close()
            return
        client.setblocking(False)
        pair = _Pair(client, upstream)
        self.pairs.add(pair)
        for s in pair.socks:
            self._watch(s, pair)

    def _step(self, pair, s, mask):
        try:
            if mask & selectors.EVENT_WRITE:
                n = s.send(pair.pending[s])
                pair.pending[s] = pair.pending[s][n:]
                if not pair.pending[s] and not pair.reading[pair.peer(s)]:
                    s.shutdown(socket.SHUT_WR)
            if mask & selectors.EVENT_READ and pair.reading[s]:
                data = s.recv(CHUNK)
                if data:
                    pair.pending[pair.peer(s)] = data
                else:
                    pair.reading[s] = False
                    if not pair.pending[pair.peer(s)]:
                        pair.peer(s).shutdown(socket.SHUT_WR)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            return self._close(pair)
        if pair.finished():
            return self._close(pair)
        for t in pair.socks:
            self._watch(t, pair)

    def _watch(self, s, pair):
        """Watches `s` for what it can do now; a socket with nothing to do (its peer has not
        drained yet) is not watched at all, so a slow reader pauses its writer."""
        ev = pair.events(s)
        try:
            self.sel.get_key(s)
            watched = True
        except KeyError:
            watched = False
        if ev and watched:
            self.sel.modify(s, ev, pair)
        elif ev:
            self.sel.register(s, ev, pair)
        elif watched:
            self.sel.unregister(s)

    def _close(self, pair):
        if pair not in self.pairs:
            return
        self.pairs.discard(pair)
        for s in pair.socks:
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()


def _pair_budget():
    """Connections the relay may hold: two fds each, leaving the executor room under RLIMIT_NOFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_PAIRS
    return max(1, min(MAX_PAIRS, (soft - 48) // 2))


def start_relay(socket_path):
    """Binds 127.0.0.1:3128 now and serves it from a daemon thread; reports failure on stderr."""
    try:
        relay = Relay(socket_path, max_pairs=_pair_budget())
    except OSError as e:
        print("codebox: egress relay cannot listen on %s:%d: %s" % (HOST, PORT, e), file=sys.stderr)
        return None
    threading.Thread(target=relay.serve_forever, name="egress-relay", daemon=True).start()
    return relay
