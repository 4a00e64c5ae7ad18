"""Advice: what to pin, judged from the data.

The submodules are the entry points (``from pinlab.advice import recommend``); the package
re-exports the configuration reader and the audit.

:mod:`~pinlab.advice.recommend` ranks strategies for a host from its history;
:mod:`~pinlab.advice.audit` reads an app's pin configuration (:mod:`~pinlab.advice.pinconfig`)
and scores it against the store; :mod:`~pinlab.advice.updates` models how fast users take
an app update; :mod:`~pinlab.advice.forward` replays pins against announced CA changes.
"""

from pinlab.advice.audit import lint, score
from pinlab.advice.pinconfig import ConfigError, PinConfig, PinRule, parse_config
from pinlab.advice.recommend import DEFAULT_HORIZON_DAYS, NoHistoryError

__all__ = [
    "DEFAULT_HORIZON_DAYS",
    "ConfigError",
    "NoHistoryError",
    "PinConfig",
    "PinRule",
    "lint",
    "parse_config",
    "score",
]
