"""The rotation lab: real ACME renewals (Pebble + lego) served by nginx on loopback.

``run_lab(load_scenario(path), out)`` runs a scenario: every
round renews what is due through real ACME orders, reloads nginx, observes every host with
a real handshake and, at the end, writes ``truth.csv``, the oracle of what was issued.
"""

from __future__ import annotations

from pinlab.lab.errors import LabError, ScenarioError
from pinlab.lab.run import LabResult, Observed, observe, run_lab
from pinlab.lab.scenario import Policy, Scenario, load_scenario
from pinlab.lab.truth import TruthRow, write_truth

__all__ = [
    "LabError",
    "LabResult",
    "Observed",
    "Policy",
    "Scenario",
    "ScenarioError",
    "TruthRow",
    "load_scenario",
    "observe",
    "run_lab",
    "write_truth",
]
