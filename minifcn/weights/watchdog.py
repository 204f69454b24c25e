"""End a urllib request at a set time, wherever it is blocked.

A socket timeout bounds each wait for data, not the request: a server that sends its
headers or its body a byte every few seconds keeps one read of the HTTP library busy for as
long as it likes, and checking a clock between reads never gets the chance. A
:class:`Watchdog` hands out an opener whose connections report their sockets to it; when
its time is up, a timer thread shuts them down, which wakes the blocked read: it sees the
connection end, and the caller finds its deadline passed.

Not covered: a TLS handshake dripped a byte at a time (the socket is reported once the
handshake is done); each of its reads is still bounded by the socket timeout, and a
handshake is a few kilobytes.
"""
from __future__ import annotations

import http.client
import socket
import threading
import urllib.request


class Watchdog:
    """Shut the connections of :meth:`opener` down ``seconds`` after entering the context.

    Examples
    --------
    >>> with Watchdog(30.0) as watchdog:                          # doctest: +SKIP
    ...     with watchdog.opener().open(url, timeout=60) as resp:
    ...         data = resp.read()
    """

    def __init__(self, seconds):
        self.lock, self.sockets, self.fired = threading.Lock(), [], False
        self.timer = threading.Timer(max(0.0, seconds), self._fire)
        self.timer.daemon = True

    def __enter__(self):
        self.timer.start()
        return self

    def __exit__(self, *exc_info):
        self.timer.cancel()

    def _fire(self):
        with self.lock:
            self.fired = True
            sockets = list(self.sockets)
        for sock in sockets:
            _shut(sock)

    def watch(self, sock):
        with self.lock:
            self.sockets.append(sock)
            fired = self.fired
        if fired:  # the time ran out while this connection was being made
            _shut(sock)

    def opener(self):
        """A urllib opener whose HTTP and HTTPS connections report their sockets here."""
        watchdog = self

        def watched(base):
            class Watched(base):
                def connect(self):
                    super().connect()
                    watchdog.watch(self.sock)  # after TLS: the socket that is read
            return Watched

        class HTTP(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(watched(http.client.HTTPConnection), req)

        class HTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req):  # the default context: certificates are checked
                return self.do_open(watched(http.client.HTTPSConnection), req)

        # A fresh opener reads the proxy settings of the environment as it is now.
        return urllib.request.build_opener(HTTP, HTTPS)


def _shut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        pass
