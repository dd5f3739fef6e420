"""Probing view: probe accuracy per layer, one line per hook kind, with the control task shaded."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from probe.errors import InputError
from probe.viz._style import PALETTE, esc, figure

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


def probe_accuracy(scores: pd.DataFrame, title: str = "Linear probes") -> go.Figure:
    """Accuracy per layer (lines) over the control task's accuracy (shaded), from ``fit_probes``.

    Args:
        scores: DataFrame [hook, layer, accuracy, control_accuracy, selectivity, ...].

    Returns:
        Figure: per hook kind ("hook_resid_post", ...) a shaded area for the control accuracy and a
        line for the probe's accuracy; the gap between them is the selectivity.

    Example:
        >>> scores, _ = probe.fit_probes("acts", "label"); probe_accuracy(scores).show()
    """
    import plotly.graph_objects as go

    missing = {"hook", "layer", "accuracy", "control_accuracy"} - set(scores.columns)
    if missing:
        raise InputError(f"scores lack column(s) {', '.join(sorted(missing))}; pass what fit_probes returns")
    metric = str(scores["metric"].iloc[0]) if "metric" in scores.columns and len(scores) else "accuracy"
    fig = figure(
        title=esc(title),
        width=760,
        height=420,
        xaxis={"title": {"text": "layer (block index; -1: embeddings)"}, "dtick": 1},
        yaxis={"title": {"text": metric}, "range": [0, 1.02] if metric != "r2" else None},
        legend={"orientation": "h", "y": -0.2},
    )
    kinds = scores.assign(kind=[re.sub(r"^blocks\.\d+\.", "", h) for h in scores["hook"]])
    for i, (kind, part) in enumerate(kinds.groupby("kind", sort=False)):
        part = part.sort_values("layer")
        colour = PALETTE[i % len(PALETTE)]
        if part["control_accuracy"].notna().any():
            fig.add_trace(
                go.Scatter(
                    x=part["layer"],
                    y=part["control_accuracy"],
                    name=f"{esc(kind)} control",
                    mode="lines",
                    line={"color": colour, "width": 0.5, "dash": "dot"},
                    fill="tozeroy",
                    opacity=0.25,
                    hovertemplate="layer %{x}: control %{y:.3f}<extra></extra>",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=part["layer"],
                y=part["accuracy"],
                name=esc(kind),
                mode="lines+markers",
                line={"color": colour, "width": 2},
                customdata=part["accuracy"] - part["control_accuracy"],
                hovertemplate="layer %{x}: %{y:.3f} (selectivity %{customdata:.3f})<extra></extra>",
            )
        )
    return fig
