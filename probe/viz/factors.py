"""Neuron factors as coloured text (Ecco's "explorable"): each token takes its dominant factor's colour."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probe.errors import InputError
from probe.viz._style import PALETTE, esc, figure
from probe.viz.attribution import token_cells

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


def factors(frame: pd.DataFrame, per_row: int = 14) -> go.Figure:
    """Every text as its tokens, coloured by the token's dominant NMF factor, paler where it is weak.

    Args:
        frame: what ``probe.factors`` returns.
        per_row: tokens per row; each text starts a new row.

    Returns:
        Figure with one Heatmap per factor (so the legend toggles factors); hover lists the factor's
        top neurons and the token's weight.

    Example:
        >>> probe.factors(gpt, texts, n_components=6).plot()
    """
    import plotly.graph_objects as go

    if frame is None or len(frame) == 0 or "factor" not in frame:
        raise InputError("factors() takes the frame probe.factors returns")
    top = frame.dominant()
    k = int(frame.attrs.get("n_components", frame["factor"].max() + 1))
    neurons = frame.neurons
    top_neurons = {
        f: ", ".join(f"L{r.layer}n{r.neuron}" for r in part.head(5).itertuples())
        for f, part in (neurons.groupby("factor") if len(neurons) else [])
    }
    cells, row0 = [], 0
    grid_rows = 0
    for _, part in top.groupby("text_index", sort=True):
        rows, width, where, text = token_cells(part["token"].tolist(), per_row)
        for (r, c), t, rec in zip(where, text.ravel()[: len(part)], part.itertuples()):
            cells.append((row0 + r, c, t, rec))
        row0 += rows + 1  # a blank row between texts
        grid_rows = row0 - 1
    width = max(c for _, c, _, _ in cells) + 1
    peak = float(top["weight"].max()) or 1.0
    fig = figure(
        title=f"{esc(frame.attrs.get('model', ''))}: tokens by dominant neuron factor (NMF, {k} factors)",
        height=130 + 40 * grid_rows,
        width=max(520, 80 + 70 * width),
        xaxis={"visible": False, "range": [-0.5, width - 0.5]},
        yaxis={"visible": False, "autorange": "reversed", "range": [grid_rows - 0.5, -0.5]},
        margin={"l": 10, "r": 10, "t": 70, "b": 10},
        legend={"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"},
    )
    for f in range(k):
        z = np.full((grid_rows, width), np.nan)
        text = np.full((grid_rows, width), "", dtype=object)
        hover = np.full((grid_rows, width), "", dtype=object)
        for r, c, t, rec in cells:
            if rec.factor != f:
                continue
            z[r, c] = 0.25 + 0.75 * rec.weight / peak  # pale = the factor is weak here
            text[r, c] = t
            hover[r, c] = (
                f"{esc(repr(rec.token))} (text {rec.text_index}, position {rec.position})<br>factor {f}, "
                f"weight {rec.weight:.3g} ({rec.share:.0%} of the token's total)<br>top neurons: {top_neurons.get(f, '')}"
            )
        colour = PALETTE[f % len(PALETTE)]
        fig.add_trace(
            go.Heatmap(
                z=np.round(z, 3),
                text=text,
                customdata=hover,
                texttemplate="%{text}",
                hovertemplate="%{customdata}<extra></extra>",
                colorscale=[[0, "#ffffff"], [1, colour]],
                zmin=0,
                zmax=1,
                showscale=False,
                xgap=3,
                ygap=3,
                name=f"factor {f}",
                showlegend=True,
                textfont={"size": 12},
            )
        )
    return fig
