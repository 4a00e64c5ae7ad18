"""The rotation lab: real ACME renewals (Pebble + lego) served by nginx on loopback.

``run_lab(load_scenario(path), out, store, validation_clock=...)`` runs a scenario: every
round renews what is due through real ACME orders, reloads nginx, collects every host
into the store with the collector (one scan of source ``lab`` per round, on a virtual
clock) and, at the end, writes ``truth.csv``, the oracle of what was issued.
"""

from __future__ import annotations

from pinlab.lab.errors import LabError, ScenarioError
from pinlab.lab.record import LabRecorder, Observed
from pinlab.lab.run import LabResult, run_lab
from pinlab.lab.scenario import Policy, Scenario, load_scenario
from pinlab.lab.truth import TruthRow, write_truth

__all__ = [
    "LabError",
    "LabRecorder",
    "LabResult",
    "Observed",
    "Policy",
    "Scenario",
    "ScenarioError",
    "TruthRow",
    "load_scenario",
    "run_lab",
    "write_truth",
]
