"""The lab's rounds: renew what is due, reload the TLS server, observe, write the truth.

Round 0 issues a certificate to every host; round i > 0 renews the hosts whose group is
due (``renew_every``, or a CA switch), after restarting the Pebble of any CA that rolls over
at i. Orders run concurrently. Then the TLS server (nginx, one SNI virtual host per lab
host) is reloaded and every host is observed with a real handshake, stamped with the
virtual time of the round (start + i x days).

The **truth** (``truth.csv``) is derived from lego's output files alone, independently of
what was observed: it is the oracle later stages are tested against. The observations are
one function, :func:`observe`, so that the collector can replace it.

Everything runs in one temporary folder that is removed at the end, and every process
started is stopped, on success, on error and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from pinlab.certs import Certificate, load_certificates
from pinlab.lab.acme import Issued, Lego
from pinlab.lab.errors import LabError
from pinlab.lab.pebble import HOST, Pebble, PebbleTLS, make_tls, require_binary
from pinlab.lab.scenario import Host, Scenario
from pinlab.lab.truth import TruthRow, write_truth
from pinlab.nginx import NginxError, NginxFarm, VirtualHost
from pinlab.tls import Handshake, HandshakeError, handshake

__all__ = [
    "LabResult",
    "Observed",
    "observe",
    "run_lab",
]


@dataclass(frozen=True, slots=True)
class Observed:
    """One handshake with a lab host, at the virtual time of its round; failures too."""

    host: str
    port: int
    round: int
    observed_at: datetime
    status: str
    """``ok`` or the :class:`~pinlab.tls.HandshakeError` status."""
    error: str | None
    handshake: Handshake | None
    """The handshake (presented chain, version, cipher, timings); None when it failed."""

    @property
    def chain(self) -> tuple[bytes, ...]:
        """The presented chain, DER, in the order sent (empty when the handshake failed)."""
        return self.handshake.chain if self.handshake is not None else ()

    @property
    def leaf_sha256(self) -> str | None:
        """Hex SHA-256 of the presented leaf, None when nothing was presented."""
        return Certificate.from_der(self.chain[0]).sha256 if self.chain else None


@dataclass(frozen=True, slots=True)
class LabResult:
    """What a lab run produced."""

    truth: tuple[TruthRow, ...]
    observations: tuple[Observed, ...]
    truth_csv: Path
    round_seconds: tuple[float, ...]
    mismatches: tuple[tuple[str, int], ...]
    """(host, round) where the observed leaf is not the one the truth says was served."""


def observe(
    hosts: Sequence[str], port: int, *, round_: int, at: datetime, concurrency: int = 8
) -> list[Observed]:
    """Handshake with every host on ``127.0.0.1:port`` (SNI = host); failures are rows."""

    def one(host: str) -> Observed:
        try:
            result = handshake(HOST, port, sni=host, timeout=10.0)
        except HandshakeError as error:
            return Observed(host, port, round_, at, error.status, error.message, None)
        return Observed(host, port, round_, at, "ok", None, result)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, hosts))


@dataclass
class _CA:
    """A scenario CA while the lab runs: its current Pebble and what it started with."""

    name: str
    pebble: Pebble
    epoch: int
    roots: tuple[Certificate, ...]
    """The default chain's root first, then the alternates (``PEBBLE_ALTERNATE_ROOTS``)."""

    def root_of(self, chain: Sequence[Certificate]) -> Certificate:
        """The root that issued the top of ``chain`` (by name, then signing key id)."""
        top = chain[-1]
        for root in self.roots:
            if root.subject == top.issuer and _key_id(root) == _authority_key_id(top):
                return root
        raise LabError(f"no root of {self.name} issued {top.subject}")


def _key_id(certificate: Certificate) -> bytes | None:
    try:
        extension = certificate.x509.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return extension.value.digest


def _authority_key_id(certificate: Certificate) -> bytes | None:
    try:
        extension = certificate.x509.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return extension.value.key_identifier


@dataclass
class _HostState:
    renewals: int = 0
    issued: Issued | None = None
    ca: str = ""
    epoch: int = 0
    round_issued: int = -1
    row: TruthRow | None = None


def preflight(scenario: Scenario) -> None:
    """Fail before starting anything when a binary the lab drives is missing."""
    require_binary("pebble")
    require_binary("lego")
    require_binary("nginx")
    if scenario.rounds < 1:
        raise LabError("a scenario needs at least one round")


def run_lab(
    scenario: Scenario,
    out: Path,
    *,
    on_round: Callable[[int, float], None] | None = None,
    on_observed: Callable[[Sequence[Observed]], None] | None = None,
    workdir_parent: Path | None = None,
) -> LabResult:
    """Run every round of ``scenario``; write ``truth.csv`` into ``out``; clean up.

    ``on_observed`` receives each round's observations (to store them, see
    :class:`pinlab.lab.record.LabRecorder`); ``on_round`` the round and its seconds.
    Files are made under a temporary folder in ``workdir_parent`` (the system's default
    when None), removed at the end whatever happens.
    """
    preflight(scenario)
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="pinlab-lab-", dir=workdir_parent))
    try:
        with contextlib.ExitStack() as stack:
            return _run(scenario, out, workdir, stack, on_round, on_observed)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _start_ca(scenario: Scenario, name: str, workdir: Path, tls: PebbleTLS, epoch: int) -> _CA:
    spec = scenario.ca(name)
    pebble = Pebble.start(
        workdir / "pebble",
        tls,
        name=f"{name}-{epoch}",
        chain_length=spec.chain_length,
        alternate_roots=spec.alternate_roots,
    )
    try:
        pems = pebble.roots(1 + spec.alternate_roots)
        roots = tuple(load_certificates(pem)[0] for pem in pems)
    except BaseException:
        pebble.stop()
        raise
    return _CA(name, pebble, epoch, roots)


def _run(
    scenario: Scenario,
    out: Path,
    workdir: Path,
    stack: contextlib.ExitStack,
    on_round: Callable[[int, float], None] | None,
    on_observed: Callable[[Sequence[Observed]], None] | None,
) -> LabResult:
    tls = make_tls(workdir)
    used = {g.ca for g in scenario.groups} | {
        g.switch.to for g in scenario.groups if g.switch is not None
    }
    cas: dict[str, _CA] = {}

    def stop_all() -> None:
        for ca in cas.values():
            ca.pebble.stop()

    stack.callback(stop_all)
    for spec in scenario.cas:
        if spec.name in used:
            cas[spec.name] = _start_ca(scenario, spec.name, workdir, tls, 0)
    lego = Lego(workdir, tls.root_pem, domain=scenario.domain)
    hosts = scenario.hosts
    states = {host.name: _HostState() for host in hosts}
    server: NginxFarm | None = None
    truth: list[TruthRow] = []
    observations: list[Observed] = []
    seconds: list[float] = []
    mismatches: list[tuple[str, int]] = []
    for round_ in range(scenario.rounds):
        started = time.perf_counter()
        for spec in scenario.cas:
            if spec.name in cas and round_ in spec.rollover_rounds:
                old = cas[spec.name]
                old.pebble.stop()
                cas[spec.name] = _start_ca(scenario, spec.name, workdir, tls, old.epoch + 1)
        due = [h for h in hosts if h.group.renews_at(round_)]
        with ThreadPoolExecutor(max_workers=scenario.concurrency) as pool:
            futures = [pool.submit(_order, lego, h, states[h.name], cas, round_) for h in due]
            try:
                issued = [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        for host, item in zip(due, issued, strict=True):
            state = states[host.name]
            state.issued, state.round_issued = item, round_
            state.ca = host.group.ca_at(round_)
            state.epoch = cas[state.ca].epoch
        virtual_hosts = [_virtual_host(lego, h.name) for h in hosts]
        try:
            if server is None:
                server = stack.enter_context(NginxFarm(virtual_hosts, workers=1))
            else:
                server.reload(virtual_hosts)
        except NginxError as error:
            raise LabError(str(error)) from None
        at = scenario.observed_at(round_)
        for host in hosts:
            row = _truth_row(host, states[host.name], cas, round_, at)
            states[host.name].row = row
            truth.append(row)
        seen = observe(
            [h.name for h in hosts], server.port, round_=round_, at=at,
            concurrency=scenario.concurrency,
        )  # fmt: skip
        observations.extend(seen)
        if on_observed is not None:
            on_observed(seen)
        expected = {row.host: row.leaf_sha256 for row in truth[-len(hosts) :]}
        mismatches.extend((o.host, round_) for o in seen if o.leaf_sha256 != expected[o.host])
        seconds.append(time.perf_counter() - started)
        if on_round is not None:
            on_round(round_, seconds[-1])
    truth_csv = write_truth(truth, out / "truth.csv")
    return LabResult(
        tuple(truth), tuple(observations), truth_csv, tuple(seconds), tuple(mismatches)
    )


def _virtual_host(lego: Lego, host: str) -> VirtualHost:
    cert, key = lego.live_files(host)
    return VirtualHost(host, cert.read_bytes(), key.read_bytes())


def _order(
    lego: Lego, host: Host, state: _HostState, cas: Mapping[str, _CA], round_: int
) -> Issued:
    group = host.group
    first = state.issued is None
    reuse = False
    if not first:
        state.renewals += 1
        reuse = group.policy.reuses_key(state.renewals, group.rotate_every)
    ca = cas[group.ca_at(round_)]
    return lego.order(
        host.name,
        ca.pebble.directory_url,
        key_type=group.key_type,
        reuse_key=reuse,
        label=f"round-{round_:03d}",
    )


def _truth_row(
    host: Host, state: _HostState, cas: Mapping[str, _CA], round_: int, at: datetime
) -> TruthRow:
    assert state.issued is not None
    previous = state.row
    renewed = state.round_issued == round_
    if previous is not None and not renewed:
        return dataclasses.replace(
            previous,
            round=round_,
            observed_at=at,
            renewed=False,
            key_reused=None,
            issuer_changed=None,
            issuer_key_changed=None,
            root_changed=None,
            ca_event="",
        )
    chain = load_certificates(state.issued.cert_file.read_bytes())
    leaf, issuer = chain[0], chain[1]
    ca = cas[state.ca]
    if state.epoch != ca.epoch:  # unreachable: a leaf is recorded in the round it was issued
        raise LabError(f"lost the roots of {state.ca} epoch {state.epoch}")
    root = ca.root_of(chain)
    event = "issued"
    if previous is not None:
        if previous.ca != state.ca:
            event = "switch"
        elif previous.ca_epoch != state.epoch:
            event = "rollover"
        else:
            event = "renewal"

    def changed(field: str, new: str) -> bool | None:
        return None if previous is None else getattr(previous, field) != new

    return TruthRow(
        host=host.name,
        group=host.group.name,
        round=round_,
        observed_at=at,
        renewed=True,
        ca=state.ca,
        ca_epoch=state.epoch,
        policy=host.group.policy.value,
        key_type=leaf.key_label,
        reuse_key_requested=state.issued.reuse_key_requested,
        leaf_sha256=leaf.sha256,
        leaf_spki_sha256=leaf.spki_sha256_hex,
        leaf_pin=leaf.pin,
        issuer=issuer.subject,
        issuer_sha256=issuer.sha256,
        issuer_spki_sha256=issuer.spki_sha256_hex,
        root_sha256=root.sha256,
        root_spki_sha256=root.spki_sha256_hex,
        chain_length=len(chain),
        key_reused=None if previous is None else previous.leaf_spki_sha256 == leaf.spki_sha256_hex,
        issuer_changed=changed("issuer", issuer.subject),
        issuer_key_changed=changed("issuer_spki_sha256", issuer.spki_sha256_hex),
        root_changed=changed("root_sha256", root.sha256),
        ca_event=event,
    )
