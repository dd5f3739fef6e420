"""Attribution as coloured text (the Ecco way): each token a cell, coloured by how much it drove the target."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from probe.errors import InputError
from probe.viz._style import DIVERGING, esc, figure, label, rounded

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


def token_cells(tokens: list[str], per_row: int) -> tuple[int, int, list[tuple[int, int]], np.ndarray]:
    """Lay tokens out in rows like text: (rows, per_row, [(row, col)] per token, escaped label grid)."""
    n = len(tokens)
    per_row = max(1, min(per_row, n))
    rows = math.ceil(n / per_row)
    where = [divmod(p, per_row) for p in range(n)]
    text = np.full((rows, per_row), "", dtype=object)
    for (r, c), t in zip(where, tokens):
        text[r, c] = label(t, 12)
    return rows, per_row, where, text


def attribution(frame: pd.DataFrame, per_row: int = 12, title: str | None = None) -> go.Figure:
    """The text with every token coloured by its attribution (red: raised the target, blue: lowered it).

    Args:
        frame: what ``probe.attribute`` returns, [position, token, attribution, method].
        per_row: tokens per row; long texts wrap.

    Returns:
        Figure with one Heatmap [rows, per_row]; cell text is the token, hover gives the value.

    Example:
        >>> probe.viz.attribution(probe.attribute(gpt, "The robot must not hurt the")).show()
    """
    import plotly.graph_objects as go

    if frame is None or len(frame) == 0 or "attribution" not in frame:
        raise InputError("attribution() takes the frame probe.attribute returns")
    toks = frame["token"].tolist()
    values = frame["attribution"].to_numpy(dtype=float)
    rows, per_row, where, text = token_cells(toks, per_row)
    z = np.full((rows, per_row), np.nan)
    hover = np.full((rows, per_row), "", dtype=object)
    for (r, c), p, t, v in zip(where, frame["position"], toks, values):
        z[r, c] = v
        hover[r, c] = f"position {p} {esc(repr(t))}<br>attribution {v:.4g}"
    signed = bool((values < 0).any())
    bound = float(np.abs(values).max()) or 1.0
    a = frame.attrs
    target = esc(repr(a.get("target", "")))
    title = title or f"{esc(a.get('model', ''))}: which tokens drove {target} ({esc(frame['method'].iloc[0])})"
    fig = figure(
        title=title,
        height=110 + 46 * rows,
        width=max(460, 80 + 74 * per_row),
        xaxis={"visible": False, "range": [-0.5, per_row - 0.5]},
        yaxis={"visible": False, "autorange": "reversed"},
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
    )
    fig.add_trace(
        go.Heatmap(
            z=rounded(z),
            text=text,
            customdata=hover,
            texttemplate="%{text}",
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=DIVERGING if signed else "Reds",
            zmid=0 if signed else None,
            zmin=-bound if signed else 0,
            zmax=bound,
            colorbar={"title": {"text": "attribution"}},
            xgap=3,
            ygap=3,
            textfont={"size": 12},
        )
    )
    return fig
