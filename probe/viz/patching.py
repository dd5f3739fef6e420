"""Activation patching as a heatmap: layers x positions (or heads), how much of the clean run returns."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probe.errors import InputError
from probe.viz._style import cell_size, diverging_heatmap, esc, figure, labels, tick_font

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


def patching(frame: pd.DataFrame, value: str = "normalized_effect") -> go.Figure:
    """Heatmap of ``probe.patching``'s frame (or ``probe.attribution_patching``'s): rows are layers, columns
    positions (tokens) or heads.

    Args:
        frame: [layer, position, token, effect, normalized_effect] or [layer, head, ...]; an attribution
            patching frame has estimate and normalized_estimate instead, and is drawn from those.
        value: "normalized_effect" (1 = the clean behaviour fully restored) or "effect".

    Returns:
        Figure with one Heatmap [layer, position | head], diverging colours centred on 0.

    Example:
        >>> probe.viz.patching(probe.patching(gpt, clean, corrupted)).show()
    """

    if frame is not None and value not in frame and value.replace("effect", "estimate") in frame:
        value = value.replace("effect", "estimate")  # attribution patching: its estimate of the same thing
    if frame is None or len(frame) == 0 or value not in frame or "layer" not in frame:
        raise InputError("patching() takes the frame probe.patching returns")
    by_head = "head" in frame
    col = "head" if by_head else "position"
    table = frame.pivot_table(index="layer", columns=col, values=value, aggfunc="first")
    layers, units = table.index.tolist(), table.columns.tolist()
    z = table.to_numpy(dtype=float)
    if by_head:
        ticks = [f"H{h}" for h in units]
    else:
        token_of = dict(zip(frame["position"], frame["token"]))
        ticks = [f"{p}: {t}" for p, t in zip(units, labels([token_of[p] for p in units], 10))]
    cell = cell_size(len(units), target=720, lo=14, hi=56)
    bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    a = frame.attrs
    hover = np.array(
        [
            [f"layer {la}<br>{col} {u}<br>{value} {z[i, j]:.4g}" for j, u in enumerate(units)]
            for i, la in enumerate(layers)
        ],
        dtype=object,
    )
    what = esc(a.get("over", ""))
    fig = figure(
        title=f"{esc(a.get('model', ''))}: {esc(_kind(a))} ({what}), {esc(a.get('metric', ''))}",
        width=int(220 + cell * len(units)),
        height=160 + 34 * len(layers),
        xaxis={
            "tickmode": "array",
            "tickvals": list(range(len(units))),
            "ticktext": ticks,
            "tickangle": -45 if len(units) > 10 and not by_head else 0,
            "tickfont": {"size": tick_font(cell)},
            "title": {"text": col},
        },
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(len(layers))),
            "ticktext": [f"L{la}" for la in layers],
            "title": {"text": "layer"},
        },
    )
    bar = "restored" if value.startswith("normalized") else value
    fig.add_trace(diverging_heatmap(z, hover, bound, bar))
    return fig


def _kind(attrs: dict) -> str:
    method = attrs.get("method")
    if method is None:
        return "activation patching"
    return (
        "attribution patching" if method == "atp" else f"attribution patching, integrated over {attrs['n_steps']} steps"
    )
