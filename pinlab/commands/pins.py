"""``pinlab pins`` (list a chain's pins) and ``pinlab check`` (check pins against a host)."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from pinlab.certs import Certificate, load_certificate_file, load_certificates
from pinlab.commands._common import parse_time, trust_store, usage_errors
from pinlab.commands._options import valid_seconds, valid_time
from pinlab.commands._output import say, shown
from pinlab.errors import MalformedCertificateError, MalformedKeyError
from pinlab.keys import PublicKeyPin, is_public_key, load_public_key
from pinlab.pins import CheckStatus, PinSet, Semantics
from pinlab.verify import Verification, verify_chain

EXIT_NO_PIN_MATCHED = 3
EXIT_VALIDATION_FAILED = 4
EXIT_CONNECTION_FAILED = 5

SniOption = Annotated[
    str | None, typer.Option("--sni", help="Server name to send (default: the host).")
]
CaFileOption = Annotated[
    Path | None,
    typer.Option("--ca-file", help="PEM trust anchors instead of certifi's Mozilla roots."),
]
AtOption = Annotated[
    str | None,
    typer.Option("--at", help="Validation time, ISO-8601 (default: now).", callback=valid_time),
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout", help="Seconds for connect and handshake together.", callback=valid_seconds
    ),
]
VerboseOption = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="Also print the verifier's own error text."),
]


@dataclass(frozen=True, slots=True)
class ChainRow:
    """One certificate as ``pinlab pins`` shows it."""

    position: int
    role: str
    source: str
    certificate: Certificate

    def as_json(self) -> dict[str, object]:
        c = self.certificate
        return {
            "position": self.position,
            "role": self.role,
            "source": self.source,
            "pin": c.pin,
            "subject": _or(lambda: c.subject, None),
            "issuer": _or(lambda: c.issuer, None),
            "not_after": _or(lambda: c.not_after.isoformat(), None),
            "sha256": c.sha256,
            "key": _or(lambda: c.key_label, None),
            "unparsed": list(c.unparsed_fields),
        }

    def as_text(self) -> str:
        c = self.certificate
        subject = _or(lambda: c.subject, "(subject not parsed)")
        issuer = _or(lambda: c.issuer, "(not parsed)")
        not_after = _or(lambda: c.not_after.date().isoformat(), "(not parsed)")
        unparsed = "".join(f"; {field}" for field in c.unparsed_fields)
        return (
            f"{self.position}  {self.role:<12} {self.source:<11} {c.pin}  {shown(subject)}"
            f"  [issuer: {shown(issuer)}; not after {not_after}{shown(unparsed)}]"
        )


_T = TypeVar("_T")


def _or(get: Callable[[], _T], default: _T) -> _T:
    """A descriptive field, or ``default`` when the certificate's field does not parse:
    the pin needs only the SPKI bytes, so such a certificate is still listed."""
    try:
        return get()
    except MalformedCertificateError:
        return default


def _role(position: int, certificate: Certificate) -> str:
    if position == 0:
        return "leaf"
    is_ca = _or(lambda: certificate.is_ca, False)
    return "root" if certificate.self_issued and is_ca else "intermediate"


def _fetch_chain(target: str, sni: str | None, timeout: float) -> tuple[list[Certificate], str]:
    """The presented chain of ``host[:port]`` and the name it must be valid for."""
    # pyOpenSSL only for a handshake: ``pins FILE`` starts without it.
    from pinlab.collect.endpoint import normalise_hostname, parse_endpoint
    from pinlab.collect.tls import HandshakeError, handshake

    host, port = parse_endpoint(target)
    server_name = normalise_hostname(sni) if sni else host
    send_sni = None if _is_ip(server_name) else server_name
    try:
        result = handshake(host, port, sni=send_sni, timeout=timeout)
    except HandshakeError as error:
        say(f"cannot complete a handshake with {host}:{port}: {error.status}: {shown(error)}")
        raise typer.Exit(EXIT_CONNECTION_FAILED) from None
    try:
        # Lazy records: a pinning client needs the keys and the path, not every field.
        return [Certificate.from_der(der, lazy=True) for der in result.chain], server_name
    except MalformedCertificateError as error:
        # The handshake completed: what failed is the chain, which cannot validate.
        say(f"{host}:{port} presented a certificate that does not parse: {shown(error)}")
        raise typer.Exit(EXIT_VALIDATION_FAILED) from None


def _is_file(target: str) -> bool:
    """Whether ``target`` names a file; a name the OS cannot even look up (too long, a NUL)
    is not one, and is then read as a host name, which says what is wrong with it."""
    try:
        return Path(target).is_file()
    except (OSError, ValueError):
        return False


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def pins_command(
    target: Annotated[
        str,
        typer.Argument(help="host[:port], or a certificate (PEM/DER/PKCS#7) or public key file."),
    ],
    sni: SniOption = None,
    ca_file: CaFileOption = None,
    at: AtOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON for machines.")] = False,
    timeout: TimeoutOption = 10.0,
    verbose: VerboseOption = False,
) -> None:
    """List the pins of every certificate a host serves, or a file holds, or of a public key.

    A PEM ``PUBLIC KEY`` or DER SubjectPublicKeyInfo file gives that key's pin: the pin
    of a backup key that has no certificate yet.

    When the chain validates, the verified path is listed (with roots added from the
    trust store), followed by any presented certificate the path did not use.
    """
    with usage_errors():
        when = parse_time(at)
        is_file = _is_file(target)
        key = _key_file(Path(target)) if is_file else None
        if key is not None:
            _print_key(target, key, as_json)
            return
        if is_file:
            presented, hostname = load_certificate_file(target, lazy=True), None
        elif Path(target).suffix.lower() in {".pem", ".der", ".crt", ".cer", ".p7b", ".p7c"}:
            raise MalformedCertificateError(f"{target}: no such file")
        else:
            presented, hostname = _fetch_chain(target, sni, timeout)
        verification = verify_chain(
            presented, hostname=hostname, at=when, trust_store=trust_store(ca_file)
        )
    rows = _rows(presented, verification.path)
    if as_json:
        typer.echo(json.dumps([row.as_json() for row in rows], indent=2))
        return
    for row in rows:
        say(row.as_text())
    if not verification.ok:
        say(f"no verified path at {when.isoformat()}: {shown(verification.error)}")
        _print_detail(verification, verbose)


def _print_detail(verification: Verification, verbose: bool) -> None:
    """The verifier's own words under the explanation, for ``--verbose``."""
    if verbose and verification.detail:
        say(f"  detail: {shown(verification.detail)}")


def _key_file(path: Path) -> PublicKeyPin | None:
    """The public key a file holds, or None when it should be read as certificates.

    PEM says what it holds; a DER file is a certificate (or PKCS#7) first, then an SPKI.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return None  # load_certificate_file reports it
    if is_public_key(data):
        return load_public_key(data, source=str(path))
    if b"-----BEGIN" in data:
        return None
    try:
        load_certificates(data, source=str(path), lazy=True)
    except MalformedCertificateError:
        try:
            return load_public_key(data, source=str(path))
        except MalformedKeyError:
            raise MalformedKeyError(
                f"{path}: neither a certificate (PEM, DER, PKCS#7) nor a public key "
                "(PEM PUBLIC KEY, DER SubjectPublicKeyInfo)"
            ) from None
    return None


def _print_key(target: str, key: PublicKeyPin, as_json: bool) -> None:
    if as_json:
        row = {"position": 0, "role": "key", "source": "file", "pin": key.pin, "key": key.label}
        typer.echo(json.dumps([row], indent=2))
        return
    # A file name is data: printed as is, never as markup.
    say(
        f"0  key          file        {key.pin}  {key.label} public key ({shown(target)}), "
        "no certificate: pin it as a backup"
    )  # fmt: skip


def _rows(presented: list[Certificate], path: tuple[Certificate, ...]) -> list[ChainRow]:
    sent = {c.sha256 for c in presented}
    if not path:
        return [ChainRow(i, _role(i, c), "presented", c) for i, c in enumerate(presented)]
    rows = [
        ChainRow(i, _role(i, c), "presented" if c.sha256 in sent else "trust-store", c)
        for i, c in enumerate(path)
    ]
    used = {c.sha256 for c in path}
    unused = [c for c in presented if c.sha256 not in used]
    rows += [ChainRow(len(path) + i, "unused", "presented", c) for i, c in enumerate(unused)]
    return rows


def check_command(
    target: Annotated[str, typer.Argument(help="host[:port] to connect to.")],
    pin: Annotated[
        list[str], typer.Option("--pin", help="sha256/<base64> (repeatable).", show_default=False)
    ],
    backup_pin: Annotated[
        list[str] | None, typer.Option("--backup-pin", help="Backup pin (repeatable).")
    ] = None,
    pins_expire: Annotated[
        str | None,
        typer.Option("--pins-expire", help="Pin set expiry, ISO-8601.", callback=valid_time),
    ] = None,
    sni: SniOption = None,
    ca_file: CaFileOption = None,
    at: AtOption = None,
    mode: Annotated[
        Semantics, typer.Option("--mode", help="Chain checked: verified (safe) or presented.")
    ] = Semantics.VERIFIED,
    timeout: TimeoutOption = 10.0,
    verbose: VerboseOption = False,
) -> None:
    """Validate a host's chain, then check pins against it.

    Exit status: 0 valid and pinned (or pin set expired); 3 no pin matched; 4 validation
    failed; 5 no handshake; 2 usage error.
    """
    with usage_errors():
        when = parse_time(at)
        pin_set = PinSet.of(
            pin,
            backup=backup_pin or (),
            expires_at=parse_time(pins_expire) if pins_expire else None,
        )
        store = trust_store(ca_file)
        presented, hostname = _fetch_chain(target, sni, timeout)
    verification = verify_chain(presented, hostname=hostname, at=when, trust_store=store)
    if not verification.ok:
        failure = verification.failure.value if verification.failure else "failed"
        say(f"chain validation failed ({failure}): {shown(verification.error)}")
        _print_detail(verification, verbose)
        for number, certificate in enumerate(presented):
            for field in certificate.unparsed_fields:
                say(f"certificate {number}: {shown(field)}")
        say("pins are only checked on a valid chain; the connection is refused")
        raise typer.Exit(EXIT_VALIDATION_FAILED)
    chain = verification.path if mode is Semantics.VERIFIED else tuple(presented)
    result = pin_set.check(chain, at=when, semantics=mode)
    if pin_set.has_legacy_pins:
        say("warning: sha1/ pins are legacy; re-pin with sha256/")
    if result.status is CheckStatus.EXPIRED:
        say(f"pin set expired at {pin_set.expires_at}: pins are not enforced")
        return
    # A match is one line around the server's subject: shown whole, it cannot add a line.
    say(shown(result.describe()) if result.matched_certificate else result.describe())
    if not result.passed:
        raise typer.Exit(EXIT_NO_PIN_MATCHED)


def register(app: typer.Typer) -> None:
    """Add ``pins`` and ``check`` to the CLI."""
    app.command("pins")(pins_command)
    app.command("check")(check_command)
