"""The store: what was observed, in a DuckDB file or a Parquet dataset.

:func:`open_store` opens either for reading; :class:`Store` is the DuckDB file a campaign
writes (``pinlab collect``, the lab, ``import-pem``, CT backfill) and
:class:`DatasetStore` the Parquet dataset a Dask campaign writes. The table records
(:class:`Scan`, :class:`Observation`, :class:`CertificateRow`) define both schemas in one
place. :func:`check_store` says whether a store file is whole; :func:`open_snapshot` reads
a store while a campaign writes it; :func:`frames_from_chains` makes the same tidy tables
from chains held in memory.
"""

from typing import TYPE_CHECKING

from pinlab.lazy import lazy_attributes

if TYPE_CHECKING:
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

__getattr__ = lazy_attributes(
    __name__,
    {
        "DatasetStore": "pinlab.store.dataset",
        "export_dataset": "pinlab.store.dataset",
        "import_dataset": "pinlab.store.dataset",
        "is_dataset": "pinlab.store.dataset",
        "open_dataset": "pinlab.store.dataset",
        "open_store": "pinlab.store.dataset",
        "write_atomic": "pinlab.store.dataset",
        "SCHEMA_VERSION": "pinlab.store.duckdb_file",
        "TABLES": "pinlab.store.duckdb_file",
        "Store": "pinlab.store.duckdb_file",
        "StoreError": "pinlab.store.duckdb_file",
        "arrow_table": "pinlab.store.duckdb_file",
        "pinlab_version": "pinlab.store.duckdb_file",
        "ChainSighting": "pinlab.store.frames",
        "frames_from_chains": "pinlab.store.frames",
        "CertificateRow": "pinlab.store.records",
        "Observation": "pinlab.store.records",
        "Scan": "pinlab.store.records",
        "Status": "pinlab.store.records",
        "StoreCheck": "pinlab.store.health",
        "check_store": "pinlab.store.health",
        "latest_snapshot": "pinlab.store.snapshot",
        "open_snapshot": "pinlab.store.snapshot",
        "snapshot_dir": "pinlab.store.snapshot",
    },
)

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
