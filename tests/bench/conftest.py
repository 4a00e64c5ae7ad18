"""The benchmark tests reuse the collector tests' nginx farm and Dask cluster."""

from tests.collect.conftest import client, scale_farm

__all__ = ["client", "scale_farm"]
