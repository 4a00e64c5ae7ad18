"""The collector's validation column: path validation, remembering chains that validated."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime

from cryptography.exceptions import UnsupportedAlgorithm

from pinlab.certs import Certificate
from pinlab.names import name_matches
from pinlab.verify import TrustStore, verify_chain, wrong_name

__all__ = ["Validator"]


class Validator:
    """The validation column: :func:`pinlab.verify.verify_chain`, remembering valid chains.

    Path building does not depend on the requested name; only the final check of the
    leaf's names does. So a chain (by its certificates' digests) that built a valid path
    once is, within its path's validity window, valid for any name its leaf covers and a
    ``hostname`` failure for any other, without building the path again. CDNs and shared
    hosting serve one chain for many names; the cache saves a path build (~0.2-0.3 ms of
    signature checks) per repeat. Only successes are remembered.
    """

    def __init__(self, trust_store: TrustStore, *, cache_size: int = 4096) -> None:
        self.trust_store, self.cache_size = trust_store, cache_size
        self.valid: OrderedDict[tuple[str, ...], tuple[datetime, datetime]] = OrderedDict()

    def validate(self, chain: list[Certificate], name: str, at: datetime) -> tuple[str, str | None]:
        """(``valid``/``untrusted``/``hostname``, error text) for ``chain`` served for ``name``."""
        key = tuple(certificate.sha256 for certificate in chain)
        window = self.valid.get(key)
        if window is not None and window[0] <= at <= window[1]:
            self.valid.move_to_end(key)
            if name_matches(name, chain[0].sans):
                return "valid", None
            return "hostname", wrong_name(chain[0], name)
        try:
            result = verify_chain(chain, hostname=name, at=at, trust_store=self.trust_store)
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:
            return "untrusted", f"cannot validate: {error}"
        if result.ok:
            if self.cache_size:
                self.valid[key] = (
                    max(certificate.not_before for certificate in result.path),
                    min(certificate.not_after for certificate in result.path),
                )
                if len(self.valid) > self.cache_size:
                    self.valid.popitem(last=False)
            return "valid", None
        assert result.failure is not None
        return result.failure.value, result.error
