"""HTML pages: each executed notebook through nbconvert, and the index linking them."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pinlab.report import NotebookResult

__all__ = ["notebook_html", "page_findings", "title_and_summary", "write_index"]


def notebook_html(nb: Any) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")  # type: ignore[no-untyped-call]
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    return str(body)


def page_findings(nb: Any) -> list[dict[str, Any]]:
    """The findings an executed notebook displayed (:func:`pinlab.findings.show_findings`)."""
    from pinlab.findings import FINDINGS_MIME

    found: list[dict[str, Any]] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {})
            if FINDINGS_MIME in data:
                found.extend(data[FINDINGS_MIME])
    return found


def _findings_html(found: Sequence[Mapping[str, Any]]) -> str:
    if not found:
        return ""
    items = []
    for finding in found:
        items.append(
            f"<li><strong>{html.escape(str(finding['statement']))}: "
            f"{html.escape(str(finding['text']))}</strong>"
            f' <span class="meta">n = {html.escape(str(finding["n"]))}; '
            f"{html.escape(str(finding['data']))}</span></li>"
        )
    return '<ul class="findings">' + "".join(items) + "</ul>"


def title_and_summary(nb: Any, fallback: str) -> tuple[str, str]:
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = [line.strip() for line in cell.source.splitlines()]
        title = next((line.lstrip("# ") for line in lines if line.startswith("#")), fallback)
        paragraph: list[str] = []
        for line in lines:
            if line.startswith("#"):
                if paragraph:
                    break
                continue
            if not line and paragraph:
                break
            if line:
                paragraph.append(line)
        return title, " ".join(paragraph)
    return fallback, ""


_INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>pinlab report</title>
<style>
 body {{ font: 16px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
        max-width: 52rem; margin: 3rem auto; padding: 0 1.5rem; }}
 h1 {{ font-size: 1.9rem; margin-bottom: .2rem; }}
 .lead {{ color: #555; margin-top: 0; }}
 ol {{ padding-left: 0; list-style: none; counter-reset: nb; }}
 li {{ border-top: 1px solid #e3e3e3; padding: 1rem 0; }}
 li a {{ font-size: 1.15rem; font-weight: 600; color: #0b57d0; text-decoration: none; }}
 li a:hover {{ text-decoration: underline; }}
 li p {{ margin: .3rem 0 0; color: #333; }}
 .meta {{ color: #777; font-size: .85rem; }}
 .skipped {{ color: #a15c00; }}
 ul.findings {{ margin: .5rem 0 .3rem; padding-left: 1.2rem; list-style: disc; }}
 ul.findings li {{ border: 0; padding: .1rem 0; font-size: .95rem; }}
 table {{ border-collapse: collapse; font-size: .9rem; margin-top: 2rem; }}
 td {{ padding: .15rem 1rem .15rem 0; vertical-align: top; }}
 td:first-child {{ color: #777; }}
 code {{ font-size: .85rem; }}
</style></head>
<body>
<h1>pinlab report</h1>
<p class="lead">What servers do when they renew, whether pins would have survived it, and
what a pin check costs. Under each page, its findings: a number with its 95 % interval, its n
and the data it rests on. Findings about the world rest on real data only; the rotation lab
and loopback campaigns, which have ground truth, check the machinery.</p>
<ol>
{items}
</ol>
<table>
{parameters}
<tr><td>generated</td><td>{now} by pinlab {version}</td></tr>
</table>
</body></html>
"""


def _inline_markdown(text: str) -> str:
    """Escaped ``text`` with Markdown's inline code, bold and emphasis as HTML."""
    escaped = html.escape(text, quote=False)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    escaped = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", escaped)


def write_index(
    out: Path, results: Sequence[NotebookResult], parameters: Mapping[str, object], now: datetime
) -> Path:
    from pinlab.store import pinlab_version

    items = []
    for result in results:
        title, summary = html.escape(result.title), _inline_markdown(result.summary)
        if result.html is None:
            items.append(
                f'<li><span class="meta">{html.escape(result.name)}</span><br>'
                f"<strong>{title}</strong><p>{summary}</p>"
                f'<p class="skipped">Skipped: {html.escape(result.skipped or "")}</p></li>'
            )
            continue
        link = html.escape(result.html.name)
        items.append(
            f'<li><span class="meta">{html.escape(result.name)}</span><br>'
            f'<a href="{link}">{title}</a><p>{summary}</p>{_findings_html(result.findings)}'
            f'<span class="meta">executed in {result.seconds:.0f} s</span></li>'
        )
    rows = [
        f"<tr><td>{html.escape(name)}</td><td><code>{html.escape(str(value))}</code></td></tr>"
        for name, value in parameters.items()
        if value is not None
    ]
    target = out / "index.html"
    target.write_text(
        _INDEX.format(
            items="\n".join(items),
            parameters="\n".join(rows),
            now=html.escape(now.strftime("%Y-%m-%d %H:%M UTC")),
            version=html.escape(pinlab_version()),
        ),
        encoding="utf-8",
    )
    return target
