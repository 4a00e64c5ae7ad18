"""One TLS handshake on asyncio, pyOpenSSL over memory BIOs: the collector's engine room.

The asyncio twin of :func:`pinlab.collect.tls.handshake`: same result
(:class:`~pinlab.collect.tls.Handshake`, the chain exactly as presented, DER, in order) and
same failures
(:class:`~pinlab.collect.tls.HandshakeError` with the same statuses). OpenSSL never touches the
socket: it writes records into a memory BIO that we flush to the stream, and we feed it
what arrives, so thousands of handshakes share one thread. ``timeout`` covers connect and
handshake together; ``connect_timeout`` and ``handshake_timeout``, when given, bound each
phase too (a black hole that drops SYNs is given up on after the connect budget, not the
whole one). Nothing is judged here: verification is off (``VERIFY_NONE``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from OpenSSL import SSL, crypto

from pinlab.collect.tls import Handshake, HandshakeError, classify_ssl_error, client_context
from pinlab.store.records import Status

__all__ = ["handshake_async"]

_READ = 65536


async def handshake_async(
    ip: str,
    port: int,
    *,
    sni: str | None,
    timeout: float = 10.0,
    context: SSL.Context | None = None,
    connect_timeout: float | None = None,
    handshake_timeout: float | None = None,
) -> Handshake:
    """Connect to ``ip:port``, send ``sni`` (ASCII/IDNA), return the presented chain.

    Raises :class:`HandshakeError` for every failure of the network or the peer.
    """
    context = context or client_context()
    phase = "connect"
    writer: asyncio.StreamWriter | None = None
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(ip, port)
            connected = time.perf_counter()
            phase = "handshake"
            connection = SSL.Connection(context, None)
            if sni:
                connection.set_tlsext_host_name(sni.encode("ascii"))
            connection.set_connect_state()
            async with asyncio.timeout(handshake_timeout):
                await _drive(connection, reader, writer)
            finished = time.perf_counter()
            peer = connection.get_peer_cert_chain()
            version = connection.get_protocol_version_name()
            cipher = connection.get_cipher_name() or ""
            with contextlib.suppress(SSL.Error):
                connection.shutdown()  # one write: our Finished, then close_notify
            with contextlib.suppress(SSL.Error):
                writer.write(connection.bio_read(_READ))
    except TimeoutError:
        raise HandshakeError(Status.TIMEOUT, f"timed out during {phase}", peer_ip=ip) from None
    except ConnectionRefusedError:
        raise HandshakeError(
            Status.REFUSED, f"connect to {ip} port {port}: refused", peer_ip=ip
        ) from None
    except (ConnectionResetError, BrokenPipeError, EOFError, SSL.ZeroReturnError):
        raise HandshakeError(
            Status.RESET, f"connection closed during {phase}", peer_ip=ip
        ) from None
    except SSL.SysCallError as error:
        message = f"connection closed during handshake ({error})"
        raise HandshakeError(Status.RESET, message, peer_ip=ip) from None
    except SSL.Error as error:
        raise classify_ssl_error(error, ip) from None
    except OSError as error:
        message = f"connect to {ip} port {port}: {error}"
        raise HandshakeError(Status.UNREACHABLE, message, peer_ip=ip) from None
    finally:
        if writer is not None:
            writer.close()
    if not peer:
        raise HandshakeError(Status.NO_CERTIFICATE, "server sent no certificate", peer_ip=ip)
    ders = tuple(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert) for cert in peer)
    return Handshake(ders, version, cipher, ip, connected - started, finished - connected)


async def _drive(
    connection: SSL.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Flush what OpenSSL wrote, feed it what arrived, until the handshake completes."""
    while True:
        try:
            connection.do_handshake()
            return  # our Finished is flushed by the caller, with the close_notify
        except SSL.WantReadError:
            pass
        with contextlib.suppress(SSL.WantReadError):
            writer.write(connection.bio_read(_READ))
        data = await reader.read(_READ)
        if not data:
            raise EOFError
        connection.bio_write(data)
