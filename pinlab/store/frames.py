"""Build the store's two tidy tables from chains held in memory.

The history and survival stages read ``observations`` and ``certificates`` as the store
returns them; this module makes the same tables from chains a user already has (a notebook,
a test, data from elsewhere) without going through a DuckDB file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import datetime

import pandas as pd

from pinlab.certs import Certificate
from pinlab.store.records import CertificateRow

__all__ = ["ChainSighting", "frames_from_chains"]

ChainSighting = tuple[str, int, str | None, datetime, Sequence[Certificate]]
"""(host, port, sni, observed_at, presented chain leaf first)."""


def frames_from_chains(sightings: Iterable[ChainSighting]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(observations, certificates) with the store's columns, every sighting status ``ok``."""
    observations, certificates = [], {}
    for host, port, sni, observed_at, chain in sightings:
        observations.append(
            {
                "host": host,
                "port": port,
                "sni": sni,
                "observed_at": observed_at,
                "status": "ok",
                "chain": [certificate.sha256 for certificate in chain],
            }
        )
        for certificate in chain:
            certificates[certificate.sha256] = CertificateRow.from_certificate(certificate)
    names = [field.name for field in fields(CertificateRow)]
    certificate_frame = pd.DataFrame(
        [[getattr(row, name) for name in names] for row in certificates.values()], columns=names
    )
    observation_frame = pd.DataFrame(
        observations, columns=["host", "port", "sni", "observed_at", "status", "chain"]
    )
    observation_frame["observed_at"] = pd.to_datetime(observation_frame["observed_at"], utc=True)
    return observation_frame, certificate_frame
