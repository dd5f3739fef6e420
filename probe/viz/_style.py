"""Shared look and safety rules of every figure: one small template, escaped token labels, sizes.

Plotly renders text as a small subset of HTML (``<b>``, ``<br>``, ``<a href>``...), so a token such as
``<img src=x onerror=alert(1)>`` or ``<b>`` would become markup inside an SVG label. Every string that
comes from a text, a tokenizer or a model folder goes through :func:`label` (or :func:`esc`) first.
Tokens never go into a ``hovertemplate`` or ``texttemplate`` (which plotly evaluates): only into
``text`` / ``customdata`` / ``ticktext``.
"""

from __future__ import annotations

import html
import unicodedata
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import plotly.graph_objects as go

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', Arial, sans-serif"
# One colour per role, reused across views so a reader learns them once.
SEQUENTIAL = "Blues"
DIVERGING = "RdBu_r"
ACCENT = "#1f77b4"
SECOND = "#ff7f0e"
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def esc(text: object) -> str:
    """Escape a string for plotly's HTML-like text renderer (``&``, ``<``, ``>``)."""
    return html.escape(str(text), quote=False)


def visible(token: str) -> str:
    """Make whitespace in a token visible: ``" the"`` -> ``"·the"``, newline -> ``"↵"``, ``""`` -> ``"∅"``.

    Other control characters (byte tokens such as ``\x07``) would draw as empty boxes: they become ``\x07``.
    """
    if token == "":
        return "∅"
    token = token.replace(" ", "·").replace("\n", "↵").replace("\t", "→").replace("\r", "␍")
    return "".join(_escape_char(c) if unicodedata.category(c) in ("Cc", "Cf") else c for c in token)


def _escape_char(c: str) -> str:
    return f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"


def prob_format(max_prob: float) -> str:
    """A d3 tick format that keeps small probabilities apart (".0%" would print 0% for all of them)."""
    if max_prob >= 0.1:
        return ".0%"
    if max_prob >= 0.01:
        return ".1%"
    return ".2%" if max_prob >= 0.001 else ".1e"


def label(token: str, max_len: int | None = 14) -> str:
    """A token as a safe, readable label: visible whitespace, cut to ``max_len`` characters, escaped."""
    text = visible(token)
    if max_len is not None and len(text) > max_len:
        text = text[: max_len - 1] + "…"
    return esc(text)


def labels(tokens: list[str], max_len: int | None = 14) -> list[str]:
    return [label(t, max_len) for t in tokens]


def notebook_renderer() -> str | None:
    """In a Jupyter kernel, show figures everywhere without the user choosing a renderer.

    plotly's default there is its mimetype alone, which JupyterLab and VS Code draw but classic
    notebooks, ``nbconvert --execute`` and exported HTML show blank. "plotly_mimetype+notebook" adds an
    HTML output with plotly.js inlined once per notebook (offline); each frontend picks the one it
    draws. A renderer the user chose (``PLOTLY_RENDERER``, or one set before the first figure) stands.
    Returns the renderer set, or None.
    """
    import os
    import sys

    if "IPython" not in sys.modules or os.environ.get("PLOTLY_RENDERER"):
        return None
    shell = sys.modules["IPython"].get_ipython()
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":  # a terminal IPython has its own
        return None
    import plotly.io as pio

    if pio.renderers.default not in ("plotly_mimetype", "plotly_mimetype+notebook_connected"):
        return None  # the user's choice, or a frontend plotly recognised itself
    pio.renderers.default = "plotly_mimetype+notebook"
    return pio.renderers.default


@lru_cache(maxsize=1)
def template() -> go.layout.Template:
    """A small template: plotly's default one is ~10 kB per figure once serialised; this is < 1 kB.
    (The first call also picks a notebook renderer that shows in every frontend: ``notebook_renderer``.)"""
    import plotly.graph_objects as go

    notebook_renderer()

    axis = {"showgrid": False, "zeroline": False, "linecolor": "#888", "ticks": "outside", "automargin": True}
    return go.layout.Template(
        layout={
            "font": {"family": FONT, "size": 12, "color": "#222"},
            "paper_bgcolor": "white",
            "plot_bgcolor": "white",
            "colorway": PALETTE,
            "title": {"x": 0.01, "xanchor": "left", "font": {"size": 15}},
            "xaxis": axis,
            "yaxis": axis,
            "hoverlabel": {"font": {"family": FONT}},
            "margin": {"l": 60, "r": 30, "t": 60, "b": 50},
        }
    )


def figure(**layout) -> go.Figure:
    """An empty Figure with probe's template and the given layout."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(template=template(), **layout)
    return fig


TITLE_CHAR = 8.3  # px: a character of the 15 px title font, on average


def fit_title(fig: go.Figure, max_lines: int = 3) -> go.Figure:
    """Keep a figure's title whole: wrapped at spaces to the figure's width (at most ``max_lines`` lines,
    the rest cut with "…"), the top margin grown to hold the extra lines. Changes ``fig`` in place and
    returns it. (A report gives plotly's toolbar a row of its own above each figure.)"""
    import html as _html
    import re

    title = fig.layout.title.text
    if not title:
        return fig
    width = fig.layout.width or 700
    chars = max(20, int((width - 30) / TITLE_CHAR))

    def shown(text: str) -> int:
        return len(_html.unescape(re.sub(r"<[^>]+>", "", text)))

    lines: list[str] = []
    for part in re.split(r"<br\s*/?>", title):
        line = ""
        for word in part.split(" "):
            if line and shown(f"{line} {word}") > chars:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [lines[max_lines - 1] + " …"]
    if len(lines) > 1:
        top = fig.layout.margin.t if fig.layout.margin.t is not None else 60
        fig.update_layout(title_text="<br>".join(lines), margin_t=top + 20 * (len(lines) - 1))
    return fig


def cell_size(n: int, target: float = 700.0, lo: float = 9.0, hi: float = 36.0) -> float:
    """Pixels per cell for ``n`` cells: fill ``target`` px for short texts, never below ``lo`` (scroll)."""
    return float(min(hi, max(lo, target / max(n, 1))))


def tick_font(cell: float) -> int:
    """A tick-label font size that fits a cell of ``cell`` pixels."""
    return int(min(12, max(7, cell * 0.8)))


def rounded(array: np.ndarray, digits: int = 4) -> np.ndarray:
    """float32 rounded to ``digits`` decimals: smaller JSON, no visible change."""
    return np.round(np.asarray(array, dtype=np.float32), digits)


def diverging_heatmap(z: np.ndarray, hover: np.ndarray, bound: float, colorbar: str):
    """A heatmap centred on 0 (red up, blue down) from -bound to bound, hover text per cell, thin gaps."""
    import plotly.graph_objects as go

    bound = bound or 1.0
    return go.Heatmap(
        z=rounded(z),
        customdata=hover,
        hovertemplate="%{customdata}<extra></extra>",
        colorscale=DIVERGING,
        zmid=0,
        zmin=-bound,
        zmax=bound,
        colorbar={"title": {"text": colorbar}},
        xgap=1,
        ygap=1,
    )


def compact_list(array: np.ndarray, digits: int = 3) -> list:
    """``array`` rounded to ``digits`` decimals as nested lists for JSON, exact 0 and 1 written as ints
    ("0" not "0.0": half of a causal model's attention pattern is masked-out zeros)."""

    def small(v: float):
        return int(v) if v in (0.0, 1.0) else v

    out = np.round(np.asarray(array, dtype=np.float64), digits).tolist()
    if isinstance(out, list) and out and isinstance(out[0], list):
        return [[small(v) for v in row] for row in out]
    return [small(v) for v in out] if isinstance(out, list) else small(out)


def layer_names(n_layers: int) -> list[str]:
    """Residual-stream labels, index 0..n_layers: the embeddings, then the output of each block."""
    return ["embeddings"] + [f"after block {i}" for i in range(n_layers)]


def pool(matrix: np.ndarray, bins: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Aggregate a [q, k] attention pattern into at most ``bins`` x ``bins`` blocks.

    Query blocks are averaged and key blocks summed, so every row still sums to 1 (the share of
    attention a typical query in the block pays to each key block). Returns (pooled, [(start, end)]).
    """
    n = matrix.shape[-1]
    if n <= bins:
        return matrix, [(i, i) for i in range(n)]
    edges = np.linspace(0, n, bins + 1).round().astype(int)
    spans = [(int(a), int(b) - 1) for a, b in zip(edges[:-1], edges[1:])]
    rows = np.stack([matrix[..., a : b + 1, :].mean(-2) for a, b in spans], axis=-2)
    return np.stack([rows[..., a : b + 1].sum(-1) for a, b in spans], axis=-1), spans


def rank_axis(max_rank: int) -> dict:
    """A log-scale rank axis, 1 on top, ticks at 1, 2, 5, 10, 20, 50, ... up to ``max_rank``."""
    ticks = [m * 10**e for e in range(7) for m in (1, 2, 5) if m * 10**e <= max(max_rank, 1) * 2]
    top = np.log10(max(max_rank, 2) * 1.3)
    return {
        "title": {"text": "rank (1 = top, log scale)"},
        "type": "log",
        "range": [top, -0.08],
        "tickmode": "array",
        "tickvals": ticks,
        "ticktext": [f"{t:,}" for t in ticks],
    }
