"""Writing the lab's observations into the pinlab store, as a scan of source ``lab``.

Every time written is the lab's **virtual** clock: a round's observations carry
``start + round x days``, and the scan runs from the scenario's start to its last round, so
a lab history is never mistaken for real time (the source says ``lab`` as well).
Validation is left null: Pebble's certificates are dated by the real clock, which the
virtual one does not follow, so a validity check at the virtual time would say nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path

from pinlab.certs import Certificate
from pinlab.lab.run import Observed
from pinlab.lab.scenario import Scenario
from pinlab.records import CertificateRow, Observation, Scan
from pinlab.store import Store, pinlab_version

__all__ = ["LabRecorder"]


class LabRecorder:
    """Records one lab run into ``store``: one scan, one batch of observations per round."""

    def __init__(self, store: Store, scenario: Scenario, *, source: Path | None = None) -> None:
        self.store = store
        self.scenario = scenario
        self.scan = Scan(
            scan_id=uuid.uuid4().hex,
            source="lab",
            label=f"lab:{scenario.name}",
            targets=str(source.resolve()) if source is not None else None,
            parameters=json.dumps(
                {
                    "scenario": scenario.name,
                    "rounds": scenario.rounds,
                    "days_per_round": scenario.days_per_round,
                    "hosts": len(scenario.hosts),
                    "virtual_clock": True,
                },
                sort_keys=True,
            ),
            started_at=scenario.start,
            finished_at=None,
            pinlab_version=pinlab_version(),
        )
        store.add_scan(self.scan)

    def round(self, observed: Sequence[Observed]) -> None:
        """Store the observations of one round (and their certificates) in one batch."""
        certificates: dict[str, CertificateRow] = {}
        rows = []
        for item in observed:
            chain = [Certificate.from_der(der) for der in item.chain]
            for certificate in chain:
                certificates[certificate.sha256] = CertificateRow.from_certificate(certificate)
            shake = item.handshake
            rows.append(
                Observation(
                    scan_id=self.scan.scan_id,
                    host=item.host,
                    port=item.port,
                    sni=item.host,
                    ip=shake.peer_ip if shake is not None else None,
                    target_ip="127.0.0.1",
                    observed_at=item.observed_at,
                    status=item.status,
                    error=item.error,
                    tls_version=shake.tls_version if shake is not None else None,
                    cipher=shake.cipher if shake is not None else None,
                    chain=tuple(c.sha256 for c in chain),
                    validation=None,
                    validation_error=None,
                    connect_ms=shake.connect_seconds * 1000 if shake is not None else None,
                    handshake_ms=shake.handshake_seconds * 1000 if shake is not None else None,
                    attempts=1,
                    source_extra=json.dumps({"round": item.round}),
                )
            )
        self.store.write(rows, certificates.values())

    def finish(self) -> None:
        """Mark the scan finished at the virtual time of the last round."""
        self.store.finish_scan(
            self.scan.scan_id, at=self.scenario.observed_at(self.scenario.rounds - 1)
        )
