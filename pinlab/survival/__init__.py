"""Survival: would a pin taken from the data have kept working, and for how long?

- :mod:`~pinlab.survival.rules`: the one rule book both engines read (the strategies, the CA
  organisation of a name, how a scan records its own trust anchors, host-name matching);
- :func:`replay` (the Python engine): certificates as objects, validated by cryptography,
  SHA-1-era paths rebuilt by signature;
- :func:`replay_store` (the DuckDB engine): out of core, DuckDB prepares and numpy replays,
  for datasets of any size;
- :class:`PinSurvival`: survival curves fitted to either engine's output.
"""

from pinlab.survival.duckdb_engine import ScaleReplay, replay_store
from pinlab.survival.fit import PinSurvival
from pinlab.survival.python_engine import (
    REPLAY_COLUMNS,
    TrustStores,
    checkability,
    observed_chains,
    replay,
)
from pinlab.survival.rules import (
    ENGINES,
    SHA1_ERA_END,
    STRATEGIES,
    CaCatalog,
    Engine,
    KeyRecipe,
    ObservedChain,
    ScanAnchors,
    Strategy,
    UnknownStrategyError,
    strategy,
)

__all__ = [
    "ENGINES",
    "REPLAY_COLUMNS",
    "SHA1_ERA_END",
    "STRATEGIES",
    "CaCatalog",
    "Engine",
    "KeyRecipe",
    "ObservedChain",
    "PinSurvival",
    "ScaleReplay",
    "ScanAnchors",
    "Strategy",
    "TrustStores",
    "UnknownStrategyError",
    "checkability",
    "observed_chains",
    "replay",
    "replay_store",
    "strategy",
]
