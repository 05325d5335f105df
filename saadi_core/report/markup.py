"""Small HTML building blocks for the report.

Everything a run directory provides (class names, config values, warnings, plugin errors) is
user-controlled text, so every helper here escapes its text arguments; only arguments named
``*_html`` / ``body`` are trusted markup produced by other helpers. No template engine: the page is
a handful of tables, figures and collapsible blocks, and plain functions keep the escaping rules
visible in one place.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

#: the page's only stylesheet, inlined so the file is self-contained (no fonts, no scripts)
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 1rem 2rem 4rem; color: #1d2330; background: #fff; line-height: 1.4; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.3rem; border-bottom: 2px solid #d8dde6; padding-bottom: 0.2rem; margin-top: 2.2rem; }
h3 { font-size: 1.05rem; margin: 1.2rem 0 0.4rem; }
nav.toc { background: #f4f6fa; padding: 0.5rem 1rem; border-radius: 6px; font-size: 0.9rem;
          display: flex; flex-wrap: wrap; gap: 0.2rem 1.2rem; }
nav.toc a { white-space: nowrap; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.88rem; }
th, td { border: 1px solid #d8dde6; padding: 0.25rem 0.55rem; text-align: right; vertical-align: top; }
th { background: #f4f6fa; }
td.text, th.text { text-align: left; }
.na { color: #7a6a00; background: #fff8d6; padding: 0.4rem 0.7rem; border-radius: 4px; display: inline-block; }
.warning { color: #8a1f11; background: #fdeceb; padding: 0.4rem 0.7rem; border-radius: 4px; margin: 0.3rem 0; }
.note { color: #4a5366; font-size: 0.88rem; }
.good { color: #17692f; font-weight: 600; }
.bad { color: #a3231a; font-weight: 600; }
.neutral { color: #4a5366; font-weight: 600; }
figure { margin: 0.5rem 0 1rem; }
figure img { max-width: 100%; }
figcaption { font-size: 0.85rem; color: #4a5366; }
pre { background: #f4f6fa; padding: 0.7rem; overflow-x: auto; font-size: 0.8rem; border-radius: 4px; }
details { margin: 0.6rem 0; }
details > summary { cursor: pointer; font-weight: 600; }
details.run { border: 1px solid #d8dde6; border-radius: 6px; padding: 0.4rem 1rem; }
.grid { display: flex; flex-wrap: wrap; gap: 0.6rem; margin: 0.3rem 0 0.8rem; }
.pair { border: 1px solid #d8dde6; border-radius: 4px; padding: 0.25rem; text-align: center; font-size: 0.75rem; }
.pair img, .thumb { width: 96px; height: 96px; image-rendering: pixelated; display: block; }
.pair .sides { display: flex; gap: 0.25rem; }
.pair .sides > div { width: 102px; }
.pair .side { border: 3px solid #c8cdd6; }
.pair .side.pass { border-color: #2e9d4d; }
.pair .side.fail { border-color: #d0392b; }
.legend { font-size: 0.85rem; color: #4a5366; }
.row { display: flex; flex-wrap: wrap; gap: 0 2.5rem; align-items: flex-start; }
"""


def text(value: Any) -> str:
    """Escaped text of any value."""
    return escape(str(value), quote=True)


def fmt(value: Any, digits: int = 3) -> str:
    """A number for a table: ``—`` for missing, ``∞`` for infinite (PSNR of identical images)."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("inf", "infinity", "+inf"):
            return "∞"
        return text(value)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        if isinstance(value, float) and math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if isinstance(value, int):
            return str(value)
        return (
            f"{value:.{digits}g}"
            if abs(value) >= 1000 or (value != 0 and abs(value) < 10**-digits)
            else f"{value:.{digits}f}"
        )
    return text(value)


def mean_std(entry: dict[str, Any] | None, digits: int = 3) -> str:
    """``mean ± std`` of an aggregate block (``{"mean", "std", ...}``)."""
    if not entry or entry.get("mean") is None:
        return "—"
    std = entry.get("std")
    return fmt(entry["mean"], digits) + (f" ± {fmt(std, digits)}" if std is not None else "")


def not_available(reason: str) -> str:
    """The one way a missing or unreadable part of a run shows up."""
    return f'<p class="na">not available: {text(reason)}</p>'


def note(message: str) -> str:
    return f'<p class="note">{text(message)}</p>'


def warning(message: str) -> str:
    return f'<div class="warning">warning: {text(message)}</div>'


def table(
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    text_columns: Sequence[int] = (0,),
    caption: str | None = None,
) -> str:
    """A table whose cells are already-formatted, already-escaped HTML (use :func:`fmt`/:func:`text`)."""

    def cls(i: int) -> str:
        return ' class="text"' if i in text_columns else ""

    head = "".join(f"<th{cls(i)}>{text(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{cell}</td>" for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    cap = f"<caption>{text(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def side_by_side(*blocks: str) -> str:
    """Blocks (tables, figures) side by side, wrapping on narrow screens."""
    return '<div class="row">' + "".join(f"<div>{b}</div>" for b in blocks if b) + "</div>"


def section(anchor: str, title: str, body: str, level: int = 2) -> str:
    return f'<section id="{text(anchor)}"><h{level}>{text(title)}</h{level}>{body}</section>'


def details(summary: str, body: str, open_: bool = False, css_class: str = "") -> str:
    attrs = (" open" if open_ else "") + (f' class="{text(css_class)}"' if css_class else "")
    return f"<details{attrs}><summary>{text(summary)}</summary>{body}</details>"


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:`` URI: the report must open without any other file."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img(png: bytes, alt: str, css_class: str = "", title: str | None = None) -> str:
    attrs = f' class="{text(css_class)}"' if css_class else ""
    if title:
        attrs += f' title="{text(title)}"'
    return f'<img src="{data_uri(png)}" alt="{text(alt)}"{attrs}>'


def figure(png: bytes, alt: str, caption: str | None = None) -> str:
    cap = f"<figcaption>{text(caption)}</figcaption>" if caption else ""
    return f"<figure>{img(png, alt)}{cap}</figure>"


def pretty_json(data: Any) -> str:
    return f"<pre>{text(json.dumps(data, indent=2, sort_keys=False, default=str))}</pre>"


def verdict_span(label: str, tone: str) -> str:
    """A verdict word coloured by tone (``good``, ``bad`` or ``neutral``)."""
    return f'<span class="{text(tone)}">{text(label)}</span>'


def page(title: str, toc: Sequence[tuple[str, str]], body: str, subtitle: str = "") -> str:
    """The whole document: inline CSS, a table of contents of in-page anchors, the body."""
    links = "".join(f'<a href="#{text(anchor)}">{text(label)}</a>' for anchor, label in toc)
    sub = f'<p class="note">{text(subtitle)}</p>' if subtitle else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{text(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{text(title)}</h1>{sub}<nav class="toc">{links}</nav>{body}</body></html>\n'
    )
