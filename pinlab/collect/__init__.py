"""Collection: targets in, one observation per target and scan out, into the store.

:func:`collect` runs a campaign in one process (asyncio, memory BIOs), or in one per core
(``processes=N``, :mod:`pinlab.collect.processes`); :func:`run_campaign`
shards one over a Dask cluster whose workers write Parquet parts. :func:`iter_targets`
streams a target file; :func:`import_pem` brings chains saved as PEM files in as a scan.
TLS (:mod:`pinlab.collect.tls`), target parsing and the validation column are private to
this stage.
"""

from typing import TYPE_CHECKING

from pinlab.lazy import lazy_attributes

if TYPE_CHECKING:
    from pinlab.collect.engine import TRANSIENT_STATUSES, CollectOptions, CollectSummary
    from pinlab.collect.pemimport import import_pem
    from pinlab.collect.processes import collect
    from pinlab.collect.targets import Target, count_target_lines, iter_targets, parse_target_line

__getattr__ = lazy_attributes(
    __name__,
    {
        "TRANSIENT_STATUSES": "pinlab.collect.engine",
        "CollectOptions": "pinlab.collect.engine",
        "CollectSummary": "pinlab.collect.engine",
        "collect": "pinlab.collect.processes",
        "import_pem": "pinlab.collect.pemimport",
        "Target": "pinlab.collect.targets",
        "count_target_lines": "pinlab.collect.targets",
        "iter_targets": "pinlab.collect.targets",
        "parse_target_line": "pinlab.collect.targets",
    },
)

__all__ = [
    "TRANSIENT_STATUSES",
    "CollectOptions",
    "CollectSummary",
    "Target",
    "collect",
    "count_target_lines",
    "import_pem",
    "iter_targets",
    "parse_target_line",
]
