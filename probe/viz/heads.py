"""Head detector scores: one heatmap (layers x heads) per kind of head, side by side."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probe.errors import InputError
from probe.viz._style import SEQUENTIAL, esc, rounded, template

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


def head_scores(frame: pd.DataFrame) -> go.Figure:
    """The view of ``probe.head_scores``'s frame: for each kind, layers (rows) by heads (columns), coloured by
    the share of attention that lands where that kind looks (0..1, one scale for all); the panel title gives
    the share a uniformly attending head would get.

    Example:
        >>> probe.viz.head_scores(probe.head_scores(gpt)).show()
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if frame is None or len(frame) == 0 or not {"kind", "layer", "head", "score"} <= set(frame.columns):
        raise InputError("head_scores() takes the frame probe.head_scores returns")
    kinds = list(dict.fromkeys(frame["kind"]))
    chance = frame.attrs.get("chance", {})
    titles = [
        f"{kind.replace('_', ' ')}" + (f" (uniform: {chance[kind]:.2f})" if kind in chance else "") for kind in kinds
    ]
    n_layers, n_heads = int(frame["layer"].max()) + 1, int(frame["head"].max()) + 1
    fig = make_subplots(rows=1, cols=len(kinds), subplot_titles=titles, horizontal_spacing=0.04, shared_yaxes=True)
    for col, kind in enumerate(kinds, start=1):
        table = frame[frame["kind"] == kind].pivot(index="layer", columns="head", values="score")
        z = table.reindex(index=range(n_layers), columns=range(n_heads)).to_numpy(dtype=float)
        hover = np.array(
            [[f"L{la}H{h} {kind}<br>score {z[la, h]:.3f}" for h in range(n_heads)] for la in range(n_layers)],
            dtype=object,
        )
        fig.add_trace(
            go.Heatmap(
                z=rounded(z, 3),
                customdata=hover,
                hovertemplate="%{customdata}<extra></extra>",
                colorscale=SEQUENTIAL,
                zmin=0,
                zmax=1,
                showscale=col == len(kinds),
                colorbar={"title": {"text": "share"}},
                xgap=1,
                ygap=1,
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="head", row=1, col=col)
    fig.update_yaxes(title_text="layer", autorange="reversed", row=1, col=1)
    a = frame.attrs
    fig.update_layout(
        template=template(),
        title=f"{esc(a.get('model', ''))}: head detectors on {a.get('batch', '?')} x 2 x {a.get('length', '?')} "
        "repeated random tokens",
        width=int(160 + len(kinds) * max(200, 18 * n_heads)),
        height=int(200 + max(12, min(28, 600 // n_layers)) * n_layers),
    )
    return fig
