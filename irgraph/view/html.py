"""One self-contained HTML page for `irgraph view`: data, dagre and the page script inline.

Nothing is fetched when the page is opened: the vendored dagre (`vendor/dagre.min.js`, MIT,
licence in `vendor/dagre.LICENSE`) and the page's own script and style are copied into it,
and the graph travels as JSON in a `<script type="application/json">` block.
"""

from __future__ import annotations

import html
import json
from importlib.resources import files
from typing import Any

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<div id="main">
<div id="bar">
<h1 id="title"></h1>
<label>colour by <select id="metric"></select></label>
<button id="collapse">fold layers</button>
<button id="expand">unfold all</button>
<button id="fit">fit</button>
<span class="legend" id="legend"><span style="border-color:#1a9641">added</span>
<span style="border-color:#e08000">rewritten</span>
<span style="border-color:#d7191c">removed</span></span>
</div>
<svg id="canvas"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5"
markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z" fill="#999"/></marker>
</defs><g id="scene"></g></svg>
</div>
<div id="side">
<h2>Totals (as irgraph inspect)</h2>
<table id="totals"></table>
<h2>Selected</h2>
<div id="details">Click a node; click a layer block to unfold it.</div>
<h2>Top nodes</h2>
<table><thead><tr><th>op</th><th>block</th><th>cost</th><th>share</th></tr></thead>
<tbody id="top"></tbody></table>
<p>dagre (MIT licence, Chris Pettitt) lays the graph out.</p>
</div>
<script type="application/json" id="irgraph-data">{data}</script>
<script>{dagre}</script>
<script>{script}</script>
</body>
</html>
"""


def _asset(name: str) -> str:
    return files("irgraph.view").joinpath(name).read_text(encoding="utf-8")


def render(data: dict[str, Any]) -> str:
    """The page for `data` (from `view_data`)."""
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    # Inside <script>, "</" could end the block early; "<\\/" reads the same to JSON.parse.
    payload = payload.replace("</", "<\\/").replace("<!--", "<\\u0021--")
    return _PAGE.format(
        title=html.escape(str(data["title"])),
        css=_asset("page.css"),
        data=payload,
        dagre=_asset("vendor/dagre.min.js"),
        script=_asset("page.js"),
    )


def embedded_data(page: str) -> dict[str, Any]:
    """The JSON data block of a page written by `render` (for tests and tools)."""
    start = page.index('<script type="application/json" id="irgraph-data">')
    start = page.index(">", start) + 1
    end = page.index("</script>", start)
    data: dict[str, Any] = json.loads(page[start:end])
    return data
