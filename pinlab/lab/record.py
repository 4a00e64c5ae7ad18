"""The lab's observations: each round collected by :func:`pinlab.collect.collect`.

The lab observes exactly as a campaign against the internet would: one collector run per
round over every lab host (``Target(host, nginx port, sni=host, ip=127.0.0.1)``), written
into the store by the collector itself. A repeated run of the same targets is a new scan,
so each round is **one scan** of source ``lab``, labelled ``lab:<scenario> round <i>``; its
parameters (JSON) hold the round, the run id shared by all rounds of one lab run, the
scenario, the trust anchors (their certificates are stored too) and the real time of
validation, so that :func:`pinlab.survival.observed_chains` can validate lab chains later
as the collector did.

**Two clocks.** ``observed_at`` (and the scan's start and end) is the lab's **virtual**
clock, start + round x days, so that a lab history spans months and is never mistaken for
real time (the source says ``lab`` as well). The **validation column** is computed at the
**real** time of the handshake (``validation_clock``), against every Pebble root the run
has started so far (rolled-over and second-CA roots included): Pebble dates its
certificates by the real clock, so validating them at the virtual time would only ever say
``untrusted`` (not yet valid, or long expired). A lab observation is ``valid`` when the
chain built to a Pebble root and named the host at the moment it was served.

**Certificate dates on the virtual clock.** So that renewal intervals, validity lengths and
death bounds read in the scenario's days, the store dates every certificate of a lab run on
the virtual clock (:meth:`pinlab.store.Store.redate_certificates`): ``not_before`` is the
virtual time of the round that first served it (a leaf is issued and served in the same
round), ``not_after`` that plus the certificate's own validity (Pebble's, 5 years for a
leaf). The DER keeps Pebble's real dates, which validation uses; the scans say
``"certificate_clock": "virtual"``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pinlab.collect import CollectOptions, Target, collect
from pinlab.lab.pebble import HOST
from pinlab.lab.scenario import Scenario
from pinlab.store import CertificateRow, Observation, Scan, Store, pinlab_version
from pinlab.survival import ScanAnchors
from pinlab.verify import TrustStore

__all__ = ["LabRecorder", "Observed"]


@dataclass(frozen=True, slots=True)
class Observed:
    """One lab host in one round, as the collector stored it."""

    round: int
    observation: Observation

    @property
    def host(self) -> str:
        """The lab host (also the SNI sent)."""
        return self.observation.host

    @property
    def status(self) -> str:
        """``ok`` or the failure's status."""
        return self.observation.status

    @property
    def leaf_sha256(self) -> str | None:
        """Hex SHA-256 of the presented leaf, None when nothing was presented."""
        return self.observation.chain[0] if self.observation.chain else None


class LabRecorder:
    """Collects each round of one lab run into ``store``: one scan of source ``lab`` each.

    ``validation_clock`` gives the real time the validation column is computed at (see the
    module's docstring); ``source`` is the scenario file, recorded as the scans' targets.
    """

    def __init__(
        self,
        store: Store,
        scenario: Scenario,
        *,
        validation_clock: Callable[[], datetime],
        source: Path | None = None,
    ) -> None:
        self.store = store
        self.scenario = scenario
        self.validation_clock = validation_clock
        self.source = str(source.resolve()) if source is not None else None
        self.run_id = uuid.uuid4().hex
        self.scans: list[Scan] = []
        self._dated: set[str] = set()

    def observe(self, round_: int, port: int, trust_store: TrustStore) -> list[Observed]:
        """Collect every lab host on ``127.0.0.1:port`` as the scan of round ``round_``.

        Returns what the collector stored for that scan (read back from the store), one
        row per host; failures are rows too.
        """
        at = self.scenario.observed_at(round_)
        scan = self._scan(round_, at, trust_store)
        # The anchors go into the store too, so that it alone can be replayed later.
        self.store.write([], [CertificateRow.from_certificate(root) for root in trust_store.roots])
        self.store.add_scan(scan)
        self.scans.append(scan)
        targets = [Target(h.name, port, h.name, HOST) for h in self.scenario.hosts]
        concurrency = self.scenario.concurrency
        collect(
            targets,
            self.store,
            scan,
            clock=lambda: at,
            # Every lab host is one address (loopback): the per-IP limit is the global one.
            options=CollectOptions(concurrency=concurrency, per_ip=concurrency),
            trust_store=trust_store,
            validation_clock=self.validation_clock,
        )
        observed = [Observed(round_, row) for row in stored_observations(self.store, scan.scan_id)]
        self._redate(at, trust_store, observed)
        return observed

    def _redate(self, at: datetime, trust_store: TrustStore, observed: Sequence[Observed]) -> None:
        """Date the certificates first served (or first trusted) this round at ``at``."""
        served = {digest for row in observed for digest in row.observation.chain}
        served |= {root.sha256 for root in trust_store.roots}
        new = served - self._dated
        if not new:
            return
        own = self.store.connection.execute(
            "SELECT sha256, not_before, not_after FROM certificates "
            "WHERE sha256 IN (SELECT unnest(?)) AND not_before IS NOT NULL",
            [sorted(new)],
        ).fetchall()
        self.store.redate_certificates({d: (at, at + (na - nb)) for d, nb, na in own})
        self._dated |= new

    def _scan(self, round_: int, at: datetime, trust_store: TrustStore) -> Scan:
        scenario = self.scenario
        parameters = {
            "lab_run": self.run_id,
            "scenario": scenario.name,
            "round": round_,
            "rounds": scenario.rounds,
            "days_per_round": scenario.days_per_round,
            "hosts": len(scenario.hosts),
            "virtual_clock": True,
            "certificate_clock": "virtual",
            "validation_clock": "real",
            "trust_store": trust_store.name,
            **ScanAnchors(
                tuple(root.sha256 for root in trust_store.roots), self.validation_clock()
            ).parameters(),
        }
        return Scan(
            scan_id=uuid.uuid4().hex,
            source="lab",
            label=f"lab:{scenario.name} round {round_}",
            targets=self.source,
            parameters=json.dumps(parameters, sort_keys=True),
            started_at=at,
            finished_at=None,
            pinlab_version=pinlab_version(),
        )


def stored_observations(store: Store, scan_id: str) -> Sequence[Observation]:
    """The observations of one scan, as records, in host order."""
    cursor = store.connection.execute(
        "SELECT * FROM observations WHERE scan_id = ? ORDER BY host, port", [scan_id]
    )
    names = [d[0] for d in cursor.description or ()]
    rows = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        row["chain"] = tuple(row["chain"] or ())
        rows.append(Observation(**row))
    return rows
