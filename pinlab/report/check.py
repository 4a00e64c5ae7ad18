"""Read the written report as a reader would: rendered by headless Chromium, then checked.

:func:`check_report` renders every page of a report folder with Chromium (``--dump-dom``
for the text a reader sees, ``--screenshot`` for a picture of it) and lists what must never
reach a reader: ``NaN`` or ``inf`` in the text, a chart that had nothing to draw (the
figures mark those, :data:`pinlab.figures.EMPTY_CHART_ID`), a negative share added to a
handshake outside a "not resolved at this load" line, a page that renders blank.
"""

from __future__ import annotations

import base64
import html
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from pinlab.report.errors import ReportError

__all__ = ["PageCheck", "check_report", "find_chromium", "reader_problems"]

# Chromium as a probe starts it here: no sandbox as root, and none of the background
# connections a closed network refuses.
_CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--hide-scrollbars", "--virtual-time-budget=5000",
)  # fmt: skip

_NOT_A_NUMBER = re.compile(r"(?<![\w.])(?:NaN|nan|-?inf|-?Infinity|NaT|<NA>)(?![\w.])")
_NEGATIVE_SHARE = re.compile(r"(?<![\w.])[-\u2212]\d+(?:\.\d+)?\s?%")
# Figures only: the page's stylesheet carries icons as SVG data URLs too.
_SVG_IMAGE = re.compile(r"<img\b[^>]*\bsrc=\"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)")


@dataclass
class PageCheck:
    """One rendered page: its screenshot and what a reader must not see on it."""

    page: Path
    screenshot: Path | None
    problems: list[str] = field(default_factory=list)


def find_chromium() -> str:
    """The Chromium binary (Debian's ``chromium``), or a :class:`ReportError` naming it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise ReportError("no Chromium to render the report: install the Debian package chromium")


def reader_problems(text: str, source_html: str) -> list[str]:
    """What must not reach a reader, in a page's visible ``text`` and its ``source_html``."""
    from pinlab.figures import EMPTY_CHART_ID

    problems = []
    for line in text.splitlines():
        if _NOT_A_NUMBER.search(line):
            problems.append(f"a value that is not a number: {line.strip()[:160]!r}")
        if _NEGATIVE_SHARE.search(line) and "not resolved" not in line and _about_cost(line):
            problems.append(f"a negative cost: {line.strip()[:160]!r}")
    for number, encoded in enumerate(_SVG_IMAGE.findall(source_html), start=1):
        svg = base64.b64decode(encoded).decode("utf-8", "replace")
        if EMPTY_CHART_ID in svg:
            problems.append(f"figure {number} is an empty chart (nothing to draw)")
    return problems


def _about_cost(line: str) -> bool:
    lowered = line.lower()
    return any(word in lowered for word in ("handshake", "overhead", "cost", "added"))


def _visible_text(dom: str) -> str:
    dom = re.sub(r"(?is)<(script|style|svg|head)\b.*?</\1>", " ", dom)
    dom = re.sub(r"(?i)<br\s*/?>|</(p|div|li|tr|h\d|pre|table)>", "\n", dom)
    text = html.unescape(re.sub(r"<[^>]+>", " ", dom))
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def _render(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [chromium, *_CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ReportError(f"{chromium}: cannot render the report: {error}") from None


def _trim(shot: Path) -> bool:
    """Crop the screenshot to what was drawn (the window is taller than most pages);
    False when nothing was."""
    from PIL import Image, ImageOps

    with Image.open(shot) as image:
        drawn = ImageOps.invert(image.convert("L")).getbbox()
        if drawn is None:
            return False
        bottom = min(image.height, drawn[3] + 40)
        image.crop((0, 0, image.width, bottom)).save(shot, optimize=True)
    return True


def check_report(
    folder: Path, screenshots: Path, *, chromium: str | None = None, width: int = 1280
) -> list[PageCheck]:
    """Render every ``*.html`` of ``folder`` with headless Chromium, write a full-height
    screenshot of each into ``screenshots``, and list each page's problems."""
    pages = sorted(folder.glob("*.html"))
    if not pages:
        raise ReportError(f"{folder}: no report pages (*.html) to check")
    binary = chromium or find_chromium()
    screenshots.mkdir(parents=True, exist_ok=True)
    checks = []
    with tempfile.TemporaryDirectory(prefix="pinlab-chromium-") as profile:
        for page in pages:
            url = page.resolve().as_uri()
            dom = _render(binary, Path(profile), "--dump-dom", url)
            source = page.read_text(encoding="utf-8")
            text = _visible_text(dom.stdout)
            problems = reader_problems(text, source)
            if not text.strip():
                problems.append(f"renders blank (chromium: {dom.stderr.strip()[-200:]!r})")
            # Taller than the page (a line of text per ~100 characters, 450 px a figure):
            # the screenshot is cropped to what was drawn afterwards.
            figures_drawn = len(_SVG_IMAGE.findall(source))
            height = max(2000, min(40000, 24 * (len(text) // 80 + len(text.splitlines()))
                                   + 450 * figures_drawn))  # fmt: skip
            shot = screenshots / f"{page.stem}.png"
            _render(binary, Path(profile), f"--screenshot={shot}",
                    f"--window-size={width},{height}", url)  # fmt: skip
            if not shot.is_file() or not _trim(shot):
                problems.append("no screenshot, or a blank one")
            checks.append(PageCheck(page, shot if shot.is_file() else None, problems))
    return checks
