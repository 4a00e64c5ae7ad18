"""Misbehaving TCP servers on 127.0.0.1, each a thread per connection, for collector tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

Behaviour = Callable[[socket.socket, threading.Event], None]


def silent(conn: socket.socket, stop: threading.Event) -> None:
    """Accept, then never say a word."""
    stop.wait()


def garbage(conn: socket.socket, stop: threading.Event) -> None:
    """Answer the ClientHello with bytes that are not TLS."""
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + bytes(range(256)) * 4)
    stop.wait(0.5)


def close_mid_handshake(conn: socket.socket, stop: threading.Event) -> None:
    """Read the ClientHello, send half a ServerHello record header, hang up."""
    conn.recv(65536)
    conn.sendall(b"\x16\x03\x03\x00\x7a\x02\x00")
    time.sleep(0.05)


def trickle(conn: socket.socket, stop: threading.Event) -> None:
    """A TLS-looking record, one byte a second."""
    conn.recv(65536)
    for byte in b"\x16\x03\x03\x10\x00" + b"\x02" * 100:
        if stop.wait(1.0):
            return
        conn.sendall(bytes([byte]))


class HostileServer:
    """``with HostileServer(silent) as port:`` a listener that runs ``behaviour`` per client."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        return self.port

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self.behaviour(conn, self.stop)
        except OSError:
            pass
        finally:
            conn.close()
