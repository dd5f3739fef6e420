"""Self-contained HTML: sections of figures, tables and notes -> one file with plotly.js inlined once.

Safety rules, all tested in ``tests/test_report.py``:
- Jinja2 autoescapes every string (titles, captions, card values, table cells, the text itself);
- a figure goes in as JSON inside ``<script type="application/json">``, with ``<``, ``>`` and ``&`` written
  as ``\\u003c`` etc., so no string in the data (``</script>``, ``<!--``) can end or change that element;
- figure labels were already escaped for plotly's own HTML-like renderer (``probe.viz._style``);
- the file is written to a temporary name and renamed, so an existing report is never half-written.

plotly.js is plotly's official cartesian bundle (1.5 MB, ``assets/``) when it is the version plotly.py
writes figures for and draws every trace on the page, else plotly.py's full bundle (4.8 MB).
``plotly_js="beside"`` (for galleries of many pages) writes it once as a file next to the pages and
references it by its relative name instead of inlining it into every page; the default, "inline",
keeps a single report one self-contained file.
"""

from __future__ import annotations

import functools
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

_JSON_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


@dataclass
class Block:
    """One item of a section: a figure, a table or a note. Build them with the helpers below."""

    kind: str  # "figure" | "table" | "note"
    title: str = ""
    caption: str = ""
    id: str = ""
    json: str = ""
    columns: list[str] = field(default_factory=list)
    rows: list[list[dict]] = field(default_factory=list)
    text: str = ""
    traces: frozenset[str] = frozenset()  # a figure's trace types, for choosing the plotly.js bundle
    fold: int = 0  # a table's rows after the first ``fold`` go into a closed <details> (0: show all)


@dataclass
class Section:
    """A heading with an intro line and blocks; ``id`` is its anchor in the table of contents."""

    title: str
    blocks: list[Block] = field(default_factory=list)
    intro: str = ""
    id: str = ""
    text: str = ""  # shown in monospace under the intro (e.g. the text this model read)


def figure_json(fig: go.Figure) -> str:
    """A figure as JSON that is safe inside ``<script type="application/json">``."""
    import plotly.io as pio

    text = pio.to_json(fig, validate=False, remove_uids=True)
    return re.sub("[<>&\u2028\u2029]", lambda m: _JSON_UNSAFE[m.group(0)], text)


def figure_block(fig: go.Figure, title: str = "", caption: str = "") -> Block:
    import plotly.graph_objects as go

    from probe.viz._style import fit_title

    fig = fit_title(go.Figure(fig))  # whole and below plotly's toolbar (on a copy: the caller's stays as it was)
    traces = frozenset(t.type or "scatter" for t in fig.data)
    return Block("figure", title=title, caption=caption, json=figure_json(fig), traces=traces)


def _cell(value: Any) -> dict:
    if isinstance(value, bool) or value is None:
        return {"text": "" if value is None else ("yes" if value else "no"), "num": False}
    if isinstance(value, int):
        return {"text": f"{value:,}", "num": True}
    if isinstance(value, float):
        if math.isnan(value):
            return {"text": "n/a", "num": True}
        text = f"{value:.4g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
        return {"text": text, "num": True}
    return {"text": str(value), "num": False}


def table_block(frame: pd.DataFrame, title: str = "", caption: str = "", max_rows: int = 200, fold: int = 25) -> Block:
    """A DataFrame as an HTML table block (values escaped by the template; at most ``max_rows`` rows).
    Rows after the first ``fold`` sit in a closed "N more rows" section: the page never scrolls inside
    a table, and a long one does not push the figures far down."""
    rows = [
        [_cell(v.item() if hasattr(v, "item") else v) for v in row]
        for row in frame.head(max_rows).itertuples(index=False)
    ]
    return Block("table", title=title, caption=caption, columns=[str(c) for c in frame.columns], rows=rows, fold=fold)


def note_block(text: str) -> Block:
    return Block("note", text=text)


PLOTLY_JS_MODES = ("inline", "beside")


# the trace types plotly.js's cartesian bundle registers (checked against the file in the tests)
CARTESIAN = frozenset(
    {"bar", "box", "contour", "heatmap", "histogram", "histogram2d", "histogram2dcontour", "image", "pie", "scatter",
     "scatterternary", "violin"}
)  # fmt: skip
ASSETS = Path(__file__).with_name("assets")


def _version(js: str) -> str | None:
    """The plotly.js version in a bundle's opening comment ("plotly.js (cartesian - minified) v4.1.1")."""
    found = re.search(r"plotly\.js(?: \([^)]*\))? v(\d+\.\d+\.\d+)", js[:1000])
    return found.group(1) if found else None


@functools.cache
def _full_bundle() -> tuple[str, str]:
    import plotly
    from plotly.offline import get_plotlyjs

    return f"plotly-{plotly.__version__}.min.js", get_plotlyjs()


@functools.cache
def _cartesian_bundle() -> tuple[str, str] | None:
    path = ASSETS / "plotly-cartesian.min.js"
    if not path.is_file():
        return None
    js = path.read_text(encoding="utf-8")
    version = _version(js)
    if version is None or version != _version(_full_bundle()[1]):  # figures are written for plotly.py's own plotly.js
        return None
    return f"plotly-cartesian-{version}.min.js", js


def plotly_bundle(traces: set[str] | frozenset[str] = frozenset()) -> tuple[str, str]:
    """(file name, source) of the plotly.js a page with these trace types needs: the cartesian bundle
    when it is plotly.py's own plotly.js version and draws them all, else plotly.py's full bundle."""
    small = _cartesian_bundle()
    if small is not None and set(traces) <= CARTESIAN:
        return small
    return _full_bundle()


def page_traces(sections: list[Section]) -> set[str]:
    return {t for s in sections for b in s.blocks if b.kind == "figure" for t in b.traces}


def plotly_js_file(folder: Path, traces: set[str] | frozenset[str] = frozenset()) -> str:
    """Write the page's plotly.js bundle into ``folder`` (once per version; kept when already there) and
    return its file name, which pages in that folder reference with ``<script src=...>``."""
    name, js = plotly_bundle(traces)
    target = folder / name
    if not target.exists() or target.stat().st_size != len(js.encode("utf-8")):
        write_atomic(target, js)
    return name


def check_plotly_js(plotly_js: str) -> str:
    if plotly_js not in PLOTLY_JS_MODES:
        raise InputError(
            f"plotly_js must be 'inline' (self-contained page) or 'beside' (shared file), got {plotly_js!r}"
        )
    return plotly_js


def plotly_source(path: Path, plotly_js: str, sections: list[Section] = ()) -> str | None:
    """``plotly_js`` mode -> the src of a shared file next to ``path`` ("beside"), or None (inline)."""
    check_plotly_js(plotly_js)
    return plotly_js_file(path.parent, page_traces(sections)) if plotly_js == "beside" else None


def render(
    sections: list[Section],
    title: str,
    subtitle: str = "",
    text: str = "",
    plotly_src: str | None = None,
    answer: str = "",
) -> str:
    """The whole page as a string: one inlined plotly.js (or a ``<script src=plotly_src>``), every figure
    as escaped JSON."""
    import jinja2

    from probe import __version__

    count = 0
    for i, section in enumerate(sections):
        section.id = section.id or f"section-{i + 1}"
        for block in section.blocks:
            if block.kind == "figure":
                count += 1
                block.id = f"figure-{count}"
    plotly_js = "" if plotly_src else plotly_bundle(page_traces(sections))[1]
    if re.search(r"</script", plotly_js, re.IGNORECASE):  # never true for plotly.min.js; be sure anyway
        plotly_js = re.sub(r"</(script)", r"<\\/\1", plotly_js, flags=re.IGNORECASE)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("probe.pages", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(
        title=title,
        subtitle=subtitle,
        text=text,
        sections=sections,
        plotly_js=plotly_js,
        plotly_src=plotly_src,
        version=__version__,
        answer=answer,
    )


def output_path(path: str | os.PathLike) -> Path:
    """Check where a report may go: an .html file in an existing folder, not a directory."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise InputError(f"{path} is a directory; give a file name such as {path / 'report.html'}")
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"{path} should end in .html")
    if not path.parent.exists():
        raise InputError(f"folder {path.parent} does not exist; create it first")
    return path


def write_atomic(path: Path, content: str) -> Path:
    """Write ``content`` to a temporary file next to ``path`` and rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def page(
    items: list[Section | tuple],
    path: str | os.PathLike,
    title: str = "probe",
    subtitle: str = "",
    text: str = "",
    plotly_js: str = "inline",
) -> Path:
    """Write any figures and frames as one self-contained HTML page.

    Args:
        items: Sections, or tuples (heading, caption, Figure | DataFrame) which go into one section.
        path: an .html file; written atomically.
        plotly_js: "inline" (default: one self-contained file) or "beside" (plotly.js written once next to
            the page and shared by every page in that folder).

    Returns:
        The path written.

    Example:
        >>> from probe.report import page
        >>> page([("Attention", "layer 0, head 1", run.plot.attention(0, 1))], "attention.html")
    """
    import pandas as pd

    path = output_path(path)
    check_plotly_js(plotly_js)
    sections: list[Section] = []
    loose = Section(title=title)
    for item in items:
        if isinstance(item, Section):
            sections.append(item)
            continue
        heading, caption, obj = item
        if isinstance(obj, pd.DataFrame):
            loose.blocks.append(table_block(obj, heading, caption))
        else:
            loose.blocks.append(figure_block(obj, heading, caption))
    if loose.blocks:
        sections.insert(0, loose)
    src = plotly_source(path, plotly_js, sections)
    return write_atomic(path, render(sections, title=title, subtitle=subtitle, text=text, plotly_src=src))
