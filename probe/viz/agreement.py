"""Method agreement: Spearman's rho between every two ways of scoring the heads."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probe.errors import InputError
from probe.viz._style import diverging_heatmap, esc, figure

if TYPE_CHECKING:
    import plotly.graph_objects as go


def agreement(a) -> go.Figure:
    """The view of ``probe.agreement``'s result (an ``Agreement``): a matrix of Spearman's rho between the
    methods' head rankings (1 = same order, -1 = reversed), the share of top heads both name in the hover.

    Example:
        >>> probe.agreement(gpt, clean, corrupted, metric).plot().show()
    """
    pairs = getattr(a, "pairs", None)
    if pairs is None or not {"a", "b", "spearman"} <= set(pairs.columns):
        raise InputError("agreement() takes the Agreement probe.agreement returns")
    methods = [c for c in a.scores.columns if c not in ("layer", "head")]
    k = len(methods)
    z = np.eye(k)
    overlap = np.ones((k, k))
    for row in pairs.itertuples():
        i, j = methods.index(row.a), methods.index(row.b)
        z[i, j] = z[j, i] = row.spearman
        overlap[i, j] = overlap[j, i] = row.top_overlap
    hover = np.array(
        [
            [
                f"{methods[i]} vs {methods[j]}<br>Spearman {z[i, j]:.3f}<br>top-{a.top} overlap {overlap[i, j]:.0%}"
                for j in range(k)
            ]
            for i in range(k)
        ],
        dtype=object,
    )
    fig = figure(
        title=f"{esc(a.model)}: do the methods rank the heads alike? ({len(a.scores)} heads)",
        width=200 + 90 * k,
        height=180 + 70 * k,
        xaxis={"tickmode": "array", "tickvals": list(range(k)), "ticktext": methods},
        yaxis={"tickmode": "array", "tickvals": list(range(k)), "ticktext": methods, "autorange": "reversed"},
    )
    fig.add_trace(diverging_heatmap(z, hover, 1.0, "Spearman"))
    fig.update_traces(texttemplate="%{z:.2f}", selector={"type": "heatmap"})
    return fig
