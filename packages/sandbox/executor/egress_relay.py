"""codebox egress relay: listens on 127.0.0.1:3128 inside the sandbox and pipes every TCP
connection to the host's egress proxy through the unix socket the driver binds in
(CODEBOX_EGRESS_SOCKET). The proxy on the host decides what may be reached; this relay only
carries bytes. One thread, one selector, a bounded number of connections and buffers.

A sandbox that uses the model gateway (CODEBOX_GATEWAY_PORT) gets a second listener,
127.0.0.1:3129, for clients that ignore proxy variables (the AWS SDK for JavaScript): each of its
connections starts with `CONNECT codebox-gateway:80` to the same proxy, whose answer head is
consumed here; then the connection is the gateway's (HTTP/1.1 or HTTP/2 cleartext). A refusal
(anything but 200) is passed to the client as it came, and the connection ends.

A Kubernetes pod has no proxy socket: its clients reach the cluster's egress proxy over TCP
(HTTP_PROXY). There the gateway port's connections go to that proxy over TCP instead
(CODEBOX_GATEWAY_PROXY, `http://<podName>:<egressToken>@<IP>:<port>`, the pod's own proxy URL,
which the executor takes from its environment at start), and the preamble carries the URL's
credentials as `Proxy-Authorization: Basic`, as any client of the proxy sends them. Such a
connection is made without blocking the relay's one thread, and given CONNECT_TIMEOUT seconds: a
proxy address that does not answer (a blackholed IP) closes the client's connection then, not
after the kernel's minutes of retries.
"""

import base64
import errno
import ipaddress
import resource
import selectors
import socket
import sys
import threading
import time
import urllib.parse

HOST = "127.0.0.1"
PORT = 3128
GATEWAY_PORT = 3129
GATEWAY_PREAMBLE = b"CONNECT codebox-gateway:80 HTTP/1.1\r\nHost: codebox-gateway:80\r\n\r\n"
MAX_PAIRS = 64
CHUNK = 64 * 1024
MAX_ANSWER_HEAD = 8 * 1024
CONNECT_TIMEOUT = 10.0


def gateway_preamble(authorization=None):
    """The CONNECT head each gateway connection starts with; `authorization` a Proxy-Authorization value."""
    if authorization is None:
        return GATEWAY_PREAMBLE
    return GATEWAY_PREAMBLE[:-2] + b"Proxy-Authorization: " + authorization + b"\r\n\r\n"


def parse_proxy_url(text, name="CODEBOX_GATEWAY_PROXY"):
    """`http://[user:password@]<IP>:<port>` (an IPv6 address in brackets; no name: a pod has no
    DNS) as ((family, (host, port)), the Proxy-Authorization value or None). ValueError naming
    `name` for anything else (credentials left out: the message goes to the pod's log)."""
    shown = text[:200] if "@" not in text else "<credentials>@" + text.rsplit("@", 1)[1][:200]
    bad = ValueError("%s: %r must be http://[user:password@]<IP>:<port> (a numeric address, [IPv6] in brackets)" % (name, shown))
    if len(text) > 2048 or any(c.isspace() or ord(c) < 0x20 or ord(c) > 0x7E for c in text):
        raise bad
    try:
        url = urllib.parse.urlsplit(text)
        port = url.port
        host = url.hostname
    except ValueError:
        raise bad from None
    if url.scheme != "http" or url.path not in ("", "/") or url.query or url.fragment or port is None or port == 0 or not host:
        raise bad
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise bad from None
    if url.password is not None and url.username is None:
        raise bad
    authorization = None
    if url.username is not None:
        userinfo = "%s:%s" % (urllib.parse.unquote(url.username), urllib.parse.unquote(url.password or ""))
        authorization = b"Basic " + base64.b64encode(userinfo.encode("utf-8"))
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return (family, (str(address), port)), authorization


class _Pair:
    """A sandbox client and its upstream twin; bytes read from one wait in `pending` of the other."""

    def __init__(self, client, upstream):
        self.socks = (client, upstream)
        self.pending = {client: b"", upstream: b""}
        self.reading = {client: True, upstream: True}
        # A TCP upstream's connect under way: when it must have completed (time.monotonic()).
        self.connect_deadline = None

    def peer(self, s):
        return self.socks[1] if s is self.socks[0] else self.socks[0]

    def events(self, s):
        if self.connect_deadline is not None and s is self.socks[1]:
            return selectors.EVENT_WRITE  # writable once connected (or failed)
        ev = 0
        if self.reading[s] and not self.pending[self.peer(s)]:
            ev |= selectors.EVENT_READ
        if self.pending[s]:
            ev |= selectors.EVENT_WRITE
        return ev

    def finished(self):
        return not any(self.reading.values()) and not any(self.pending.values())

    def received(self, s, data):
        """Bytes read from `s`, as they go to its peer."""
        return data


class _PreamblePair(_Pair):
    """A gateway connection: the CONNECT preamble goes up first, and the proxy's answer head is
    kept from the client when it is a 200 (the client speaks to the gateway, not to a proxy)."""

    def __init__(self, client, upstream, preamble):
        super().__init__(client, upstream)
        self.pending[upstream] = preamble
        self.head = b""
        self.answered = False

    def received(self, s, data):
        if self.answered or s is not self.socks[1]:
            return data
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_ANSWER_HEAD:
                raise OSError("the proxy's answer head is too long")
            return b""
        self.answered = True
        head, rest = self.head[: end + 4], self.head[end + 4 :]
        self.head = b""
        status = head.split(b"\r\n", 1)[0].split(b" ")
        return rest if len(status) > 1 and status[1] == b"200" else head + rest


class Relay:
    """Listens on host:port and pipes each connection to `upstream`: a unix socket's path, or
    (family, (host, port)) of a TCP proxy; with `preamble`, sent up first (_PreamblePair)."""

    def __init__(self, upstream, host=HOST, port=PORT, max_pairs=MAX_PAIRS, preamble=None, connect_timeout=CONNECT_TIMEOUT):
        self.upstream = upstream
        self.max_pairs = max_pairs
        self.preamble = preamble
        self.connect_timeout = connect_timeout
        self.pairs = set()
        self.connecting = set()
        self.last_timeout_report = None
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, None)

    def serve_forever(self):
        while True:
            timeout = None
            if self.connecting:
                timeout = max(0.0, min(p.connect_deadline for p in self.connecting) - time.monotonic())
            for key, mask in self.sel.select(timeout):
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
            self._expire()

    def _expire(self):
        """Closes the pairs whose upstream has not connected by its deadline (the client too)."""
        now = time.monotonic()
        late = [p for p in self.connecting if p.connect_deadline <= now]
        for pair in late:
            self._close(pair)
        # One line at most every minute: a proxy that does not answer would otherwise fill the log.
        if late and (self.last_timeout_report is None or now - self.last_timeout_report >= 60):
            self.last_timeout_report = now
            print(
                "codebox: egress relay: the proxy at %s did not accept a connection within %g s; the client's connection was closed"
                % (self.upstream[1][0], self.connect_timeout),
                file=sys.stderr,
            )

    def _accept(self):
        try:
            client, _ = self.listener.accept()
        except OSError:  # out of fds, or the client went away: back off instead of spinning
            time.sleep(0.05)
            return
        if len(self.pairs) >= self.max_pairs:
            client.close()
            return
        tcp = not isinstance(self.upstream, str)
        try:
            upstream = socket.socket(self.upstream[0] if tcp else socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError:  # out of fds
            client.close()
            return
        try:
            upstream.setblocking(False)
            if tcp:
                # Under way: the socket turns writable once connected or failed (SO_ERROR says
                # which, in _step); until then nothing is sent, and the deadline closes the pair.
                err = upstream.connect_ex(self.upstream[1])
                if err not in (0, errno.EINPROGRESS):
                    raise OSError(err, "connect")
            else:
                upstream.connect(self.upstream)
        except OSError:  # the proxy is gone or its backlog is full
            client.close()
            upstream.close()
            return
        client.setblocking(False)
        pair = _Pair(client, upstream) if self.preamble is None else _PreamblePair(client, upstream, self.preamble)
        if tcp:
            pair.connect_deadline = time.monotonic() + self.connect_timeout
            self.connecting.add(pair)
        self.pairs.add(pair)
        for s in pair.socks:
            self._watch(s, pair)

    def _step(self, pair, s, mask):
        if pair.connect_deadline is not None and s is pair.socks[1]:
            if not mask & selectors.EVENT_WRITE:
                return
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                return self._close(pair)  # refused or unreachable
            pair.connect_deadline = None
            self.connecting.discard(pair)
            if not pair.pending[s]:
                mask &= ~selectors.EVENT_WRITE
                if not pair.reading[pair.peer(s)]:
                    try:
                        s.shutdown(socket.SHUT_WR)  # the client half-closed while it connected
                    except OSError:
                        return self._close(pair)
        try:
            if mask & selectors.EVENT_WRITE:
                n = s.send(pair.pending[s])
                pair.pending[s] = pair.pending[s][n:]
                if not pair.pending[s] and not pair.reading[pair.peer(s)]:
                    s.shutdown(socket.SHUT_WR)
            if mask & selectors.EVENT_READ and pair.reading[s]:
                data = s.recv(CHUNK)
                if data:
                    pair.pending[pair.peer(s)] = pair.received(s, data)
                else:
                    pair.reading[s] = False
                    # (An upstream still connecting is shut once connected, above.)
                    if not pair.pending[pair.peer(s)] and pair.connect_deadline is None:
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
        # Its sockets first: a pair dropped from `pairs` but still watched would wake the loop for ever.
        for s in pair.socks:
            try:
                self.sel.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()
        self.connecting.discard(pair)


def _pair_budget():
    """Connections the relay may hold: two fds each, leaving the executor room under RLIMIT_NOFILE."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_PAIRS
    return max(1, min(MAX_PAIRS, (soft - 48) // 2))


def start_relay(socket_path=None, gateway=False, gateway_proxy=None):
    """Binds 127.0.0.1:3128 to `socket_path` (if given) and with `gateway` 127.0.0.1:3129 now, and
    serves each from a daemon thread; reports failure on stderr. The gateway port goes to
    `gateway_proxy` (parse_proxy_url's answer) when given, else to `socket_path`. The listeners
    share the connection budget."""
    budget = _pair_budget()
    listeners = []
    if socket_path:
        listeners.append((PORT, socket_path, None))
    if gateway and (gateway_proxy or socket_path):
        upstream, authorization = gateway_proxy if gateway_proxy else (socket_path, None)
        listeners.append((GATEWAY_PORT, upstream, gateway_preamble(authorization)))
    relays = []
    share = max(1, budget // max(1, len(listeners)))
    for i, (port, upstream, preamble) in enumerate(listeners):
        # An even share each; the last listener takes what the others left.
        pairs = max(1, budget - share * i) if i == len(listeners) - 1 else share
        try:
            relay = Relay(upstream, port=port, max_pairs=pairs, preamble=preamble)
        except OSError as e:
            print("codebox: egress relay cannot listen on %s:%d: %s" % (HOST, port, e), file=sys.stderr)
            continue
        threading.Thread(target=relay.serve_forever, name="egress-relay-%d" % port, daemon=True).start()
        relays.append(relay)
    return relays
