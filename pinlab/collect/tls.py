"""One TLS handshake with pyOpenSSL that captures the chain exactly as the server sent it.

The socket is non-blocking and every wait goes through ``poll`` against one deadline that
covers connect and handshake: pyOpenSSL raises ``WantReadError``/``WantWriteError`` on a
socket that would block, so the loop below is deliberate, not an accident of timeouts. A
server that trickles bytes forever is cut off at the deadline, not per read.

Nothing is judged here: certificate verification is off (``VERIFY_NONE``) so that expired,
self-signed and misnamed chains are captured; :mod:`pinlab.verify` judges later.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import time
from dataclasses import dataclass

from OpenSSL import SSL, crypto

from pinlab.collect.alerts import alert_from_reason
from pinlab.errors import PinlabError
from pinlab.store.records import Status

__all__ = ["Handshake", "HandshakeError", "classify_ssl_error", "handshake"]


@dataclass(frozen=True, slots=True)
class Handshake:
    """What one successful handshake showed."""

    chain: tuple[bytes, ...]
    """The presented chain, DER, in the order the server sent it."""
    tls_version: str
    cipher: str
    peer_ip: str
    connect_seconds: float
    handshake_seconds: float


class HandshakeError(PinlabError):
    """A handshake that did not complete, classified into a store :class:`Status`.

    Raised inside the collector and turned into a status row there; ``pinlab pins HOST``
    shows it as the reason no chain could be read.
    """

    def __init__(self, status: Status, message: str, *, peer_ip: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.peer_ip = peer_ip


def client_context() -> SSL.Context:
    """A client context that accepts any chain (collection, not validation)."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    context.set_verify(SSL.VERIFY_NONE, lambda *_: True)
    context.set_min_proto_version(SSL.TLS1_VERSION)
    # Old servers still matter for history; keep what OpenSSL's default level drops.
    context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
    return context


_DEFAULT_CONTEXT: SSL.Context | None = None


def handshake(
    address: str,
    port: int,
    *,
    sni: str | None,
    timeout: float = 10.0,
    context: SSL.Context | None = None,
) -> Handshake:
    """Connect to ``address:port`` (an IP or a name), send ``sni``, return the chain.

    Raises :class:`HandshakeError` for every failure of the network or the peer, and
    ``ValueError`` for a server name that cannot be encoded (a caller's mistake).
    """
    global _DEFAULT_CONTEXT
    if context is None:
        if _DEFAULT_CONTEXT is None:
            _DEFAULT_CONTEXT = client_context()
        context = _DEFAULT_CONTEXT
    server_name = _server_name(sni)
    deadline = time.monotonic() + timeout
    started = time.perf_counter()
    sock = _connect(address, port, deadline)
    peer_ip = sock.getpeername()[0]
    connected = time.perf_counter()
    try:
        connection = SSL.Connection(context, sock)
        if server_name:
            connection.set_tlsext_host_name(server_name)
        connection.set_connect_state()
        _drive(connection, sock, deadline, peer_ip)
        finished = time.perf_counter()
        chain = connection.get_peer_cert_chain()
        if not chain:
            raise HandshakeError(
                Status.NO_CERTIFICATE, "server sent no certificate", peer_ip=peer_ip
            )
        ders = tuple(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert) for cert in chain)
        version = connection.get_protocol_version_name()
        cipher = connection.get_cipher_name() or ""
        _close_quietly(connection)
    finally:
        sock.close()
    return Handshake(ders, version, cipher, peer_ip, connected - started, finished - connected)


def _server_name(sni: str | None) -> bytes | None:
    """The SNI as bytes, checked before any connection is made."""
    if not sni:
        return None
    try:
        return sni.encode("idna")
    except UnicodeError as error:
        raise ValueError(f"server name {sni!r} cannot be sent as SNI: {error}") from None


def _connect(address: str, port: int, deadline: float) -> socket.socket:
    try:
        infos = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise HandshakeError(Status.DNS_ERROR, f"cannot resolve {address}: {error}") from None
    last: HandshakeError | None = None
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        ip = str(sockaddr[0])
        try:
            code = sock.connect_ex(sockaddr)
            if code in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                _wait(sock, select.POLLOUT, deadline, ip, "connect")
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                return sock
            last = _connect_error(code, ip, port)
        except HandshakeError as error:
            last = error
        sock.close()
        if last.status == Status.TIMEOUT:
            break
    assert last is not None
    raise last


def _connect_error(code: int, ip: str, port: int) -> HandshakeError:
    text = f"connect to {ip} port {port}: {errno.errorcode.get(code, code)}"
    if code == errno.ECONNREFUSED:
        return HandshakeError(Status.REFUSED, text, peer_ip=ip)
    if code in (errno.ETIMEDOUT,):
        return HandshakeError(Status.TIMEOUT, text, peer_ip=ip)
    if code == errno.ECONNRESET:
        return HandshakeError(Status.RESET, text, peer_ip=ip)
    return HandshakeError(Status.UNREACHABLE, text, peer_ip=ip)


def _wait(sock: socket.socket, event: int, deadline: float, ip: str, phase: str) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise HandshakeError(Status.TIMEOUT, f"timed out during {phase}", peer_ip=ip)
    poller = select.poll()
    poller.register(sock, event)
    if not poller.poll(remaining * 1000):
        raise HandshakeError(Status.TIMEOUT, f"timed out during {phase}", peer_ip=ip)


def _drive(connection: SSL.Connection, sock: socket.socket, deadline: float, ip: str) -> None:
    while True:
        try:
            connection.do_handshake()
            return
        except SSL.WantReadError:
            _wait(sock, select.POLLIN, deadline, ip, "handshake")
        except SSL.WantWriteError:
            _wait(sock, select.POLLOUT, deadline, ip, "handshake")
        except SSL.ZeroReturnError:
            raise HandshakeError(Status.RESET, "server closed the connection", peer_ip=ip) from None
        except SSL.SysCallError as error:
            code = error.args[0] if error.args else None
            if code in (errno.ECONNRESET, errno.EPIPE):
                raise HandshakeError(Status.RESET, "connection reset by peer", peer_ip=ip) from None
            raise HandshakeError(
                Status.RESET, f"connection closed during handshake ({error})", peer_ip=ip
            ) from None
        except SSL.Error as error:
            raise classify_ssl_error(error, ip) from None


def classify_ssl_error(error: SSL.Error, ip: str | None) -> HandshakeError:
    """``tls_alert`` with the alert's RFC name when the peer sent one, else ``protocol_error``
    with OpenSSL's reasons (:mod:`pinlab.collect.alerts`)."""
    reasons = [str(item[2]) for item in error.args[0] if len(item) == 3] if error.args else []
    for reason in reasons:
        alert = alert_from_reason(reason)
        if alert is not None:
            return HandshakeError(Status.TLS_ALERT, alert[1], peer_ip=ip)
    text = "; ".join(reasons) or str(error) or "TLS error"
    return HandshakeError(Status.PROTOCOL_ERROR, text, peer_ip=ip)


def _close_quietly(connection: SSL.Connection) -> None:
    with contextlib.suppress(SSL.Error):
        connection.shutdown()
