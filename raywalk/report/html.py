"""The page's HTML pieces: escaping, tables, images, ids shortened with a tooltip, and its style sheet."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from typing import Any

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:980px;
padding:16px 24px 48px;color:#1d1d1f;background:#fff}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.sub{color:#666}
.banner{background:#b00020;color:#fff;font-weight:700;padding:10px 14px;border-radius:6px;margin:12px 0}
.stats{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0 4px}.stat{border:1px solid #ddd;border-radius:8px;
padding:6px 14px}.stat b{font-size:22px;margin-right:6px}.ok b{color:#1a7f37}.warn b{color:#b35900}.bad b{color:#b00020}
table{border-collapse:collapse;margin:8px 0}td,th{border-bottom:1px solid #eee;padding:3px 12px 3px 0;text-align:left;
vertical-align:top}th{color:#555;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,pre,abbr{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}abbr{text-decoration:none}
pre{background:#f6f8fa;padding:10px 12px;border-radius:6px;overflow-x:auto}
.outputs{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}figure{margin:0}
figcaption{color:#666;font-size:12px}img.out,video{max-width:100%;border:1px solid #ddd}
.anim{min-width:256px;image-rendering:pixelated}img.pic{max-width:192px;max-height:192px}img.plot{width:100%;height:auto}ol{padding-left:22px}
footer{margin-top:32px;color:#888;font-size:12px}
"""


def data_uri(mime: str, data: bytes) -> str:
    """`data` inline as a base64 data: URI of type `mime`."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def short(name: str) -> str:
    """A long worker or node id cut to its first 8 characters."""
    return name[:8] if len(name) > 12 else name


class Html(str):
    """Text that is already HTML (a table cell `html_table` must not escape)."""


def escape(value: Any) -> str:
    """`value` as HTML text: escaped, unless it is `Html` already."""
    return value if isinstance(value, Html) else html.escape(str(value))


def short_id(name: str) -> Html:
    """A worker or node id, shortened, the whole id in its tooltip."""
    return Html(f'<abbr title="{escape(name)}">{escape(short(name))}</abbr>')


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """A table with `header` and `rows`, the columns in `numeric` right-aligned in tabular figures."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class=n>{escape(v)}</td>" if i in numeric else f"<td>{escape(v)}</td>" for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def secs(x: float) -> str:
    """Seconds to 3 significant digits, or whole and grouped from 100 up."""
    return f"{x:.3g}" if x < 100 else f"{x:,.0f}"


def img(alt: str, src: str, cls: str = "plot") -> str:
    """An <img> of `src` (a data: URI) with text `alt`."""
    return f'<img class="{cls}" alt="{escape(alt)}" src="{src}">'
