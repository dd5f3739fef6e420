"""Layer similarity: linear CKA between every pair of residual-stream layers as a heatmap."""

from __future__ import annotations

from typing import TYPE_CHECKING

from probe.errors import InputError
from probe.viz._style import esc, figure, rounded

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


def cka(frame: pd.DataFrame) -> go.Figure:
    """Heatmap of ``probe.cka``'s frame: model A's layers (rows) x model B's (columns), CKA in [0, 1].

    Example:
        >>> probe.viz.cka(probe.cka(gpt, bert, texts)).show()
    """
    import plotly.graph_objects as go

    if frame is None or len(frame) == 0 or "cka" not in frame:
        raise InputError("cka() takes the frame probe.cka returns")
    table = frame.pivot_table(index="layer_a", columns="layer_b", values="cka", aggfunc="first")
    a, b = frame.attrs.get("model_a", "A"), frame.attrs.get("model_b", "B")

    def names(layers) -> list[str]:
        return ["emb" if la == 0 else f"after {la - 1}" for la in layers]

    fig = figure(
        title=f"Linear CKA: {esc(a)} vs {esc(b)} ({frame.attrs.get('n_items', '?')} "
        f"{'words' if frame.attrs.get('aligned_by') == 'word' else 'tokens'})",
        width=int(260 + 48 * table.shape[1]),
        height=int(200 + 40 * table.shape[0]),
        xaxis={
            "tickmode": "array",
            "tickvals": list(table.columns),
            "ticktext": names(table.columns),
            "title": {"text": f"{esc(b)} layer"},
        },
        yaxis={
            "tickmode": "array",
            "tickvals": list(table.index),
            "ticktext": names(table.index),
            "title": {"text": f"{esc(a)} layer"},
            "autorange": "reversed",
        },
    )
    fig.add_trace(
        go.Heatmap(
            z=rounded(table.to_numpy(dtype=float), 3),
            x=list(table.columns),
            y=list(table.index),
            texttemplate="%{z:.2f}",
            hovertemplate="A layer %{y}, B layer %{x}<br>CKA %{z:.3f}<extra></extra>",
            colorscale="Viridis",
            zmin=0,
            zmax=1,
            colorbar={"title": {"text": "CKA"}},
            xgap=1,
            ygap=1,
        )
    )
    return fig
