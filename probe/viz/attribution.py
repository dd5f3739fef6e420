"""Attribution as coloured text (the Ecco way): each token a cell, coloured by how much it drove the target."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from probe.errors import InputError
from probe.viz._style import DIVERGING, cell_size, diverging_heatmap, esc, figure, label, labels, rounded, tick_font

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
    target = esc(repr(a.get("target", ""))) + (f" over {esc(repr(a['contrast']))}" if a.get("contrast") else "")
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


def attribution_generation(frame: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Generation attribution as inseq draws it: one row per generated token, one column per token read.

    Args:
        frame: what ``probe.attribute_generation`` returns, [step, generated_token, position, token,
            attribution]. Cells right of a step's own context (tokens not generated yet) stay empty.

    Returns:
        Figure with one Heatmap [generated token, source token], diverging colours centred on 0; a line
        marks where the prompt ends.

    Example:
        >>> probe.viz.attribution_generation(probe.attribute_generation(gpt, "The robot must", 6)).show()
    """
    need = {"step", "generated_token", "position", "token", "attribution"}
    if frame is None or len(frame) == 0 or not need <= set(frame.columns):
        raise InputError("attribution_generation() takes the frame probe.attribute_generation returns")
    table = frame.pivot_table(index="step", columns="position", values="attribution", aggfunc="first")
    steps, positions = table.index.tolist(), table.columns.tolist()
    z = table.to_numpy(dtype=float)
    a = frame.attrs
    source = dict(zip(frame["position"], frame["token"]))
    made = dict(zip(frame["step"], frame["generated_token"]))
    rows = [f"{s}: {t}" for s, t in zip(steps, labels([made[s] for s in steps], 12))]
    cols = [f"{p}: {t}" for p, t in zip(positions, labels([source[p] for p in positions], 10))]
    hover = np.array(
        [
            [
                f"step {s} {esc(repr(made[s]))}<br>from position {p} {esc(repr(source[p]))}<br>attribution {z[i, j]:.4g}"
                for j, p in enumerate(positions)
            ]
            for i, s in enumerate(steps)
        ],
        dtype=object,
    )
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    cell = cell_size(len(positions), target=720, lo=14, hi=56)
    method = esc(str(a.get("method", "attribution")).replace("_", " "))
    title = title or f"{esc(a.get('model', ''))}: what each generated token was read from ({method})"
    fig = figure(
        title=title,
        width=int(260 + cell * len(positions)),
        height=190 + 30 * len(steps),
        xaxis={
            "tickmode": "array",
            "tickvals": list(range(len(positions))),
            "ticktext": cols,
            "tickangle": -45 if len(positions) > 8 else 0,
            "tickfont": {"size": tick_font(cell)},
            "title": {"text": "token read"},
        },
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(len(steps))),
            "ticktext": rows,
            "autorange": "reversed",
            "title": {"text": "token generated"},
        },
    )
    fig.add_trace(diverging_heatmap(z, hover, bound, "attribution"))
    n_prompt = a.get("n_prompt")
    if n_prompt and n_prompt < len(positions):  # the prompt | generated boundary
        fig.add_vline(x=n_prompt - 0.5, line_width=2, line_color="#444")
    return fig
