"""The store: what was observed, in a DuckDB file or a Parquet dataset.

:func:`open_store` opens either for reading; :class:`Store` is the DuckDB file a campaign
writes (``pinlab collect``, the lab, ``import-pem``, CT backfill) and
:class:`DatasetStore` the Parquet dataset a Dask campaign writes. The table records
(:class:`Scan`, :class:`Observation`, :class:`CertificateRow`) define both schemas in one
place. :func:`check_store` says whether a store file is whole; :func:`open_snapshot` reads a store
while a campaign writes it.
:func:`frames_from_chains` makes the same tidy tables from chains held in memory.
"""

from pinlab.store.dataset import (
    DatasetStore,
    export_dataset,
    import_dataset,
    is_dataset,
    open_dataset,
    open_store,
    write_atomic,
)
from pinlab.store.duckdb_file import (
    SCHEMA_VERSION,
    TABLES,
    Store,
    StoreError,
    arrow_table,
    pinlab_version,
)
from pinlab.store.frames import ChainSighting, frames_from_chains
from pinlab.store.health import StoreCheck, check_store
from pinlab.store.records import CertificateRow, Observation, Scan, Status
from pinlab.store.snapshot import latest_snapshot, open_snapshot, snapshot_dir

__all__ = [
    "SCHEMA_VERSION",
    "TABLES",
    "CertificateRow",
    "ChainSighting",
    "DatasetStore",
    "Observation",
    "Scan",
    "Status",
    "Store",
    "StoreCheck",
    "StoreError",
    "arrow_table",
    "check_store",
    "export_dataset",
    "frames_from_chains",
    "import_dataset",
    "is_dataset",
    "latest_snapshot",
    "open_dataset",
    "open_snapshot",
    "open_store",
    "pinlab_version",
    "snapshot_dir",
    "write_atomic",
]
