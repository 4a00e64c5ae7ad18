"""Describe the machine a benchmark ran on: the figures mean nothing without it."""

from __future__ import annotations

import os
import platform
import shutil
import ssl
import subprocess
import sys
from importlib import metadata
from pathlib import Path

__all__ = ["describe_machine"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "absent"


def _load() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def _openssl_binary() -> str:
    binary = shutil.which("openssl")
    if binary is None:
        return "absent"
    try:
        done = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def describe_machine() -> dict[str, object]:
    """CPU, cores, load, Python, OpenSSL and the versions of the libraries measured."""
    from cryptography.hazmat.backends.openssl.backend import backend
    from OpenSSL import SSL

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": usable,
        "load_average": _load(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "python_openssl": ssl.OPENSSL_VERSION,
        "cryptography": _version("cryptography"),
        "cryptography_openssl": backend.openssl_version_text(),
        "pyopenssl": _version("pyOpenSSL"),
        "pyopenssl_openssl": SSL.SSLeay_version(SSL.SSLEAY_VERSION).decode(),
        "openssl_s_server": _openssl_binary(),
        "pinlab": _version("pinlab"),
    }
