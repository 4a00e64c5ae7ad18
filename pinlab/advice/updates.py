"""App updates: how many users a broken pin strands, given how slowly they update.

A replay on a release calendar (``replay(chains, release_every=R)``) says, for every release
``k`` shipped at ``t_k``, when the pins it carries first rejected the server (``broken_at``).
Users do not run the newest release: they adopt each one some days after it ships. With
``F`` the adoption curve (the share of users who have installed a release ``d`` days after it
shipped), the share of users running release ``k`` at time ``t`` is::

    F(t - t_k) - F(t - t_{k+1})        (release 0: 1 - F(t - t_1); the install base)

which holds when a user's lag is a habit (the same for every release), so that whoever
runs release ``k+1`` has also passed release ``k``. A user is **stranded** (the app rejects
the server) while running a release whose pins broke, and is **unprotected** while running a
release whose pin set has expired (Android ``<pin-set expiration>``, TrustKit
``TSKExpirationDate``): expired pins are not enforced, so the app works but pins nothing.
Expiry therefore trades bricked user-days for unprotected ones; :func:`expiry_tradeoff`
tabulates that trade. A pin that broke stays broken: servers do not return to a key once
rotated away, and the model does not credit a flap back. A release for which the replay
has no row (nothing validated to pin that day) is taken as not shipped.

Everything here is a pure function of tidy DataFrames; the time grid comes from the data
(first release to the host's last observation) or from ``until=``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import pandas as pd

__all__ = [
    "BREAKAGE_COLUMNS",
    "DEFAULT_LAG",
    "EmpiricalLag",
    "LagDistribution",
    "LogNormalLag",
    "bricked_user_days",
    "expiry_tradeoff",
    "user_breakage",
]

BREAKAGE_COLUMNS = [
    "host", "port", "sni", "lineage", "strategy", "semantics", "expiry_days", "day",
    "days_since_first_release", "stranded_share", "unprotected_share", "releases_live",
]  # fmt: skip
_GROUP = ["host", "port", "sni", "lineage", "strategy", "semantics"]


class LagDistribution(Protocol):
    """The adoption curve of one release: share of users who installed it ``days`` after."""

    def cdf(self, days: np.ndarray) -> np.ndarray:
        """Share in [0, 1], non-decreasing in ``days``; 0 for ``days < 0``."""
        ...


@dataclass(frozen=True, slots=True)
class LogNormalLag:
    """Log-normal update lag, with an optional share of users who never update.

    Default: median 7 days, from Möller, Michahelles, Diewald, Roalter and Kranz, "Update
    Behavior in App Markets and Security Implications: A Case Study in Google Play" (3rd
    Intl. Workshop on Research in the Large, UbiComp 2012), whose finding is that almost
    half of the users still ran the old version 7 days after an update was published.
    The spread ``sigma=1.5`` is an assumption, not a measurement: it gives the long tail
    that single-app reports show (about 17% not updated after 30 days, 5% after 90), and
    the log-normal is the usual shape for a delay that is the product of independent
    waits (noticing, Wi-Fi, charging, opening the store). ``never`` adds stragglers who
    never update (devices abandoned with the app installed); 0 by default.
    """

    median_days: float = 7.0
    sigma: float = 1.5
    never: float = 0.0

    def __post_init__(self) -> None:
        if self.median_days <= 0 or self.sigma <= 0:
            raise ValueError("median_days and sigma must be positive")
        if not 0 <= self.never < 1:
            raise ValueError("never is a share of users in [0, 1)")

    def cdf(self, days: np.ndarray) -> np.ndarray:
        days = np.asarray(days, dtype=float)
        positive = np.where(days > 0, days, 1.0)
        z = (np.log(positive) - math.log(self.median_days)) / (self.sigma * math.sqrt(2))
        erf = np.vectorize(math.erf, otypes=[float])(z)
        share = (1 - self.never) * 0.5 * (1 + erf)
        return np.where(days > 0, share, 0.0)


@dataclass(frozen=True, slots=True)
class EmpiricalLag:
    """An adoption curve given as points ``(days, share)``, interpolated linearly.

    Use it to plug in a curve measured for one's own app. Before the first point the share
    is 0 (from day 0), after the last it stays at the last share.
    """

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        days = [d for d, _ in self.points]
        shares = [s for _, s in self.points]
        if not self.points or days != sorted(days) or shares != sorted(shares):
            raise ValueError("points must be (days, share) pairs, both non-decreasing")
        if not all(0 <= s <= 1 for s in shares) or days[0] < 0:
            raise ValueError("shares lie in [0, 1] and days are not negative")

    def cdf(self, days: np.ndarray) -> np.ndarray:
        days = np.asarray(days, dtype=float)
        xs = [0.0, *(d for d, _ in self.points)]
        ys = [0.0, *(s for _, s in self.points)]
        return np.where(days < 0, 0.0, np.interp(days, xs, ys))


DEFAULT_LAG = LogNormalLag()
"""Median 7 days (Möller et al. 2012), sigma 1.5 (assumed); see :class:`LogNormalLag`."""


def user_breakage(
    replayed: pd.DataFrame,
    *,
    lag: LagDistribution = DEFAULT_LAG,
    expiry_days: float | None = None,
    step_days: float = 1.0,
    until: datetime | None = None,
) -> pd.DataFrame:
    """Share of users stranded and unprotected, per host, strategy and day.

    ``replayed`` is a replay on a release calendar: each row's ``pinned_at`` is a release
    and ``broken_at`` when its pins first rejected the server. ``expiry_days`` gives every
    release a pin-set expiry that many days after it ships (None: pins never expire). The
    grid runs every ``step_days`` from a host's first release to its last observation, or
    to ``until``.
    """
    if step_days <= 0:
        raise ValueError("step_days must be positive")
    if expiry_days is not None and expiry_days <= 0:
        raise ValueError("expiry_days must be positive (None: no expiry)")
    frames = []
    for key, group in replayed.groupby(_GROUP, sort=True, dropna=False):
        frames.append(_one_timeline(key, group, lag, expiry_days, step_days, until))
    if not frames:
        return pd.DataFrame(columns=BREAKAGE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[BREAKAGE_COLUMNS]


def _one_timeline(
    key: Any,
    group: pd.DataFrame,
    lag: LagDistribution,
    expiry_days: float | None,
    step_days: float,
    until: datetime | None,
) -> pd.DataFrame:
    group = group.sort_values("pinned_at")
    first = pd.Timestamp(group["pinned_at"].iloc[0])
    released = _days(group["pinned_at"], first)
    broken = _days(group["broken_at"], first)
    ends = released + group["days_survived"].to_numpy(dtype=float)
    horizon = float(ends.max()) if until is None else _days(pd.Series([until]), first)[0]
    grid = np.arange(0.0, max(horizon, 0.0) + 1e-9, step_days)
    # adopted[k, g]: share of users on release k or newer at grid time g.
    adopted = lag.cdf(grid[None, :] - released[:, None])
    adopted[0, :] = 1.0
    newer = np.vstack([adopted[1:], np.zeros((1, grid.size))])
    running = np.clip(adopted - newer, 0.0, 1.0)
    expires = released + expiry_days if expiry_days is not None else np.full(released.size, np.inf)
    enforced = grid[None, :] < expires[:, None]
    is_broken = grid[None, :] >= np.where(np.isnan(broken), np.inf, broken)[:, None]
    frame = pd.DataFrame({
        "day": first + pd.to_timedelta(grid, unit="D"),
        "days_since_first_release": grid,
        "stranded_share": (running * (is_broken & enforced)).sum(axis=0),
        "unprotected_share": (running * ~enforced).sum(axis=0),
        "releases_live": (released[:, None] <= grid[None, :]).sum(axis=0),
    })  # fmt: skip
    for column, value in zip(_GROUP, key, strict=True):
        frame[column] = value
    frame["expiry_days"] = float(expiry_days) if expiry_days is not None else np.nan
    return frame


def _days(times: pd.Series, origin: pd.Timestamp) -> np.ndarray:
    """Days since ``origin``, NaN for missing times."""
    stamps = pd.to_datetime(times, utc=True)
    return ((stamps - origin).dt.total_seconds() / 86400).to_numpy(dtype=float)


def bricked_user_days(breakage: pd.DataFrame, *, users: float = 1000.0) -> pd.DataFrame:
    """Per strategy, semantics and expiry: bricked and unprotected user-days.

    Figures are for ``users`` users per host timeline, summed over the timelines (each
    grid point weighs ``step_days``, inferred from the grid). Also: the timelines ever
    stranding a user, the worst stranded share of any day, and the mean stranded share.
    """
    rows = []
    keys = ["strategy", "semantics", "expiry_days"]
    for key, group in breakage.groupby(keys, sort=True, dropna=False):
        step = _step(group)
        rows.append({
            **dict(zip(keys, key, strict=True)),
            "timelines": group.groupby(_GROUP[:4], dropna=False).ngroups,
            "bricked_user_days": float(group["stranded_share"].sum() * step * users),
            "unprotected_user_days": float(group["unprotected_share"].sum() * step * users),
            "timelines_stranding": int(
                group.groupby(_GROUP[:4], dropna=False)["stranded_share"].max().gt(0).sum()
            ),
            "peak_stranded_share": float(group["stranded_share"].max()),
            "mean_stranded_share": float(group["stranded_share"].mean()),
        })  # fmt: skip
    return pd.DataFrame(rows)


def _step(group: pd.DataFrame) -> float:
    grid = np.unique(group["days_since_first_release"].to_numpy(dtype=float))
    return float(np.diff(grid).min()) if grid.size > 1 else 1.0


def expiry_tradeoff(
    replayed: pd.DataFrame,
    *,
    expiries: Iterable[float | None] = (None, 30, 60, 90, 180, 365),
    lag: LagDistribution = DEFAULT_LAG,
    users: float = 1000.0,
    until: datetime | None = None,
) -> pd.DataFrame:
    """:func:`bricked_user_days` for each pin-set expiry: what expiry buys and costs."""
    tables: Sequence[pd.DataFrame] = [
        bricked_user_days(
            user_breakage(replayed, lag=lag, expiry_days=expiry, until=until), users=users
        )
        for expiry in expiries
    ]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
