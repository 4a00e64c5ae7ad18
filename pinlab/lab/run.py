"""The lab's rounds: renew what is due, reload the TLS server, collect, write the truth.

Round 0 issues a certificate to every host; round i > 0 renews the hosts whose group is
due (``renew_every``, or a CA switch), after restarting the Pebble of any CA that rolls over
at i. Orders run concurrently. Then the TLS server (nginx, one SNI virtual host per lab
host) is reloaded and every host is collected into the store by the collector, as one scan
of source ``lab`` stamped with the virtual time of the round (start + i x days) and
validated at real time against every Pebble root of the run (:mod:`pinlab.lab.record`).

The **truth** (``truth.csv``) is derived from lego's output files alone, independently of
what was observed: it is the oracle later stages are tested against. Each round, what the
collector stored is compared with it; a leaf that differs is a mismatch. ``roots.pem``
beside it holds the Pebble roots (the trust store of the validation column).

Everything runs in one temporary folder that is removed at the end, and every process
started is stopped, on success, on error and on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509

from pinlab.certs import Certificate, load_certificates
from pinlab.lab.acme import Issued, Lego
from pinlab.lab.errors import LabError
from pinlab.lab.pebble import Pebble, PebbleTLS, make_tls, require_binary
from pinlab.lab.record import LabRecorder, Observed
from pinlab.lab.scenario import Host, Scenario
from pinlab.lab.truth import TruthRow, write_truth
from pinlab.store import Scan, Store
from pinlab.testbed.nginx import NginxError, NginxFarm, VirtualHost
from pinlab.verify import TrustStore

__all__ = ["LabResult", "run_lab"]


@dataclass(frozen=True, slots=True)
class LabResult:
    """What a lab run produced."""

    run_id: str
    """Shared by the run's scans (``lab_run`` in their parameters)."""
    truth: tuple[TruthRow, ...]
    observations: tuple[Observed, ...]
    """What the collector stored, read back from the store, round by round."""
    scans: tuple[Scan, ...]
    """The store's scans of this run, one per round (index = round)."""
    truth_csv: Path
    roots_pem: Path
    round_seconds: tuple[float, ...]
    mismatches: tuple[tuple[str, int], ...]
    """(host, round) where the stored leaf is not the one the truth says was served."""


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
    store: Store,
    *,
    validation_clock: Callable[[], datetime],
    source: Path | None = None,
    on_round: Callable[[int, float], None] | None = None,
    workdir_parent: Path | None = None,
) -> LabResult:
    """Run every round of ``scenario`` into ``store``; write ``truth.csv`` into ``out``.

    Each round is collected into ``store`` as one scan of source ``lab`` on the virtual
    clock; ``validation_clock`` is the real clock the validation column is computed at
    (Pebble dates its certificates by it; see :mod:`pinlab.lab.record`). ``source`` (the
    scenario file) is recorded as the scans' targets. ``on_round`` receives the round and
    its seconds. Files are made under a temporary folder in ``workdir_parent`` (the
    system's default when None), removed at the end whatever happens.
    """
    preflight(scenario)
    out.mkdir(parents=True, exist_ok=True)
    recorder = LabRecorder(store, scenario, validation_clock=validation_clock, source=source)
    workdir = Path(tempfile.mkdtemp(prefix="pinlab-lab-", dir=workdir_parent))
    try:
        with contextlib.ExitStack() as stack:
            return _run(scenario, out, workdir, stack, recorder, on_round)
    finally:
        _remove(workdir)


def _remove(workdir: Path, *, attempts: int = 50) -> None:
    """Remove the run's folder, again while stopped servers still write their last files.

    On a loaded machine an nginx or Pebble that was just told to stop may write a log or
    pid file while the folder is being removed, leaving it non-empty.
    """
    for _ in range(attempts):
        shutil.rmtree(workdir, ignore_errors=True)
        if not workdir.exists():
            return
        time.sleep(0.1)


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
    recorder: LabRecorder,
    on_round: Callable[[int, float], None] | None,
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
    anchors: dict[str, Certificate] = {}  # every root of the run, rolled over or not
    for spec in scenario.cas:
        if spec.name in used:
            cas[spec.name] = _start_ca(scenario, spec.name, workdir, tls, 0)
            anchors.update((root.sha256, root) for root in cas[spec.name].roots)
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
                anchors.update((root.sha256, root) for root in cas[spec.name].roots)
        due = [h for h in hosts if h.group.renews_at(round_)]
        with ThreadPoolExecutor(max_workers=scenario.concurrency) as pool:
            futures = [pool.submit(_order, lego, h, states[h.name], cas, round_) for h in due]
            try:
                issued = [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                lego.stop()  # orders in flight would outlive the run and write into it
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
        trust_store = TrustStore.from_certificates(
            anchors.values(), name=f"lab:{scenario.name} Pebble roots ({len(anchors)})"
        )
        seen = recorder.observe(round_, server.port, trust_store)
        observations.extend(seen)
        expected = {row.host: row.leaf_sha256 for row in truth[-len(hosts) :]}
        mismatches.extend(_mismatches(expected, seen, round_))
        seconds.append(time.perf_counter() - started)
        if on_round is not None:
            on_round(round_, seconds[-1])
    truth_csv = write_truth(truth, out / "truth.csv")
    roots_pem = _write_roots(anchors.values(), out / "roots.pem")
    return LabResult(
        recorder.run_id,
        tuple(truth),
        tuple(observations),
        tuple(recorder.scans),
        truth_csv,
        roots_pem,
        tuple(seconds),
        tuple(mismatches),
    )


def _mismatches(
    expected: Mapping[str, str], seen: Sequence[Observed], round_: int
) -> list[tuple[str, int]]:
    """Hosts whose stored leaf differs from the truth, or that the store lacks."""
    stored = {o.host: o.leaf_sha256 for o in seen}
    return [(host, round_) for host, leaf in expected.items() if stored.get(host) != leaf]


def _write_roots(roots: Iterable[Certificate], path: Path) -> Path:
    path.write_text("".join(root.to_pem() for root in roots), encoding="ascii")
    return path


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
