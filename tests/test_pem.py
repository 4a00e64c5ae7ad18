"""PEM scanning: the blocks RFC 7468 defines, and linear time on input made to be slow."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest

from pinlab.certs import load_certificates
from pinlab.errors import MalformedCertificateError, MalformedKeyError
from pinlab.keys import load_public_key
from pinlab.pem import iter_pem
from pinlab.testbed.pki import CA

_END_OF_SECOND_BLOCK = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----"
SIZE = 50 * 1024 * 1024
RATIO = 30


def _cert_pem() -> bytes:
    return CA.root("pem scan").cert_pem


def test_blocks_in_order_with_crlf_and_text_between() -> None:
    one = _cert_pem()
    data = b"junk\n" + one + b"between\r\n" + one.replace(b"\n", b"\r\n")
    blocks = list(iter_pem(data))
    assert [block.complete for block in blocks] == [True, True]
    assert [block.label for block in blocks] == [b"CERTIFICATE", b"CERTIFICATE"]
    assert len(load_certificates(data)) == 2


@pytest.mark.parametrize(
    ("data", "truncated"),
    [
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n", 1),
        (b"-----BEGIN CERTIFICATE-----\nAA\n" + _END_OF_SECOND_BLOCK, 1),
        (b"-----BEGIN CERTIFICATE-----\nAA\n-----END PRIVATE KEY-----\n", 1),
        (b"-----BEGIN CERTIFICATE-----AA\n-----END CERTIFICATE-----\n", 1),
        (b"-----BEGIN " + b"A" * 100 + b"-----\n-----END " + b"A" * 100 + b"-----", 1),
    ],
)
def test_a_block_without_its_end_line_is_cut_short(data: bytes, truncated: int) -> None:
    blocks = list(iter_pem(data))
    assert [(b.number, b.complete) for b in blocks][-1] == (truncated, False)
    with pytest.raises(MalformedCertificateError):
        load_certificates(data)


def test_the_block_after_complete_ones_is_named() -> None:
    data = _cert_pem() + b"-----BEGIN CERTIFICATE-----\nAAAA\n"
    with pytest.raises(MalformedCertificateError, match="PEM block 2 is truncated"):
        load_certificates(data, source="x.pem")


def _adversarial() -> dict[str, bytes]:
    begin = b"-----BEGIN CERTIFICATE-----\n"
    garbage = b"-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n"
    near_miss = b"-----END CERTIFICAT-----\n-----BEGIN CERTIFICAT\n"
    other = b"-----BEGIN X-----\ngarbage\n-----END X-----\n"
    return {
        "begin lines without end": begin * (SIZE // len(begin)),
        "begin/end around garbage": garbage * (SIZE // len(garbage)),
        # A Python step per block: 10 MB (300,000 blocks) keeps the run short.
        "complete blocks of another label": other * (SIZE // 5 // len(other)),
        "one very long line": begin + b"A" * SIZE,
        "near misses after one begin": begin + near_miss * (SIZE // len(near_miss)),
        "public key begins": b"-----BEGIN PUBLIC KEY-----\n" * (SIZE // 27),
    }


def _best_of(runs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best


def _refuse(data: bytes) -> None:
    with contextlib.suppress(MalformedCertificateError):
        load_certificates(data, source="adversarial.pem")
    with contextlib.suppress(MalformedKeyError):
        load_public_key(data, source="adversarial.pem")


def test_adversarial_pem_is_scanned_in_linear_time() -> None:
    # A baseline measured here, on the same data: counting dashes and splitting lines, what
    # any reader of the file must at least do. The old regex took minutes on 1 MB.
    for name, data in _adversarial().items():
        baseline = _best_of(3, lambda d=data: (d.count(b"-----"), d.split(b"\n")))  # type: ignore[misc]
        spent = _best_of(2, lambda d=data: _refuse(d))  # type: ignore[misc]
        print(f"{name}: {spent:.3f} s, baseline {baseline:.3f} s, {spent / baseline:.1f}x")
        assert spent < RATIO * baseline, (name, spent, baseline)
