"""Scale-out: campaigns over a Dask cluster, stores as partitioned Parquet datasets.

:mod:`pinlab.scale.cluster` shards a campaign over Dask workers that write Parquet parts;
:mod:`pinlab.scale.dataset` lays those parts out by campaign date and reads them back with
the store's API (:func:`open_store` opens a DuckDB file or a dataset alike).
"""

from pinlab.scale.dataset import DatasetStore, import_dataset, open_dataset, open_store

__all__ = ["DatasetStore", "import_dataset", "open_dataset", "open_store"]
