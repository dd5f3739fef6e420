"""The attention neuron view: query, keys, their elementwise product and the softmax, for one query."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probe.errors import InputError
from probe.viz._style import DIVERGING, esc, labels, rounded, template

if TYPE_CHECKING:
    import plotly.graph_objects as go


def attention_neurons(view) -> go.Figure:
    """The view of ``probe.attention_neurons`` (a ``NeuronView``): the query vector above the key vectors
    (one row per key token, one column per dimension), their elementwise product q ⊙ k (a row sums to that
    key's score), and the softmax over the scores the query may see, as bars (the model's own pattern in the
    hover). Blue negative, red positive.

    Example:
        >>> probe.attention_neurons(run, layer=1, head=3).plot().show()
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not hasattr(view, "products"):
        raise InputError("attention_neurons() takes the view probe.attention_neurons returns")
    names = labels(view.tokens, 14)
    rows = [f"{i}: {t}" for i, t in enumerate(names)]
    keys = view.keys.numpy()
    products = view.products.numpy()
    stacked = np.vstack([view.query.numpy()[None], keys])
    bound = float(np.abs(stacked).max()) or 1.0
    pbound = float(np.abs(products).max()) or 1.0
    fig = make_subplots(
        rows=1,
        cols=3,
        shared_yaxes=True,
        column_widths=[0.4, 0.4, 0.2],
        horizontal_spacing=0.03,
        subplot_titles=[f"query ({esc(names[view.position])}) and keys", "query ⊙ key", "softmax"],
    )
    fig.add_trace(
        go.Heatmap(
            z=rounded(stacked),
            y=["query", *rows],
            colorscale=DIVERGING,
            zmid=0,
            zmin=-bound,
            zmax=bound,
            showscale=False,
            hovertemplate="%{y}<br>dim %{x}: %{z:.3f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Heatmap(
            z=rounded(np.vstack([np.full((1, products.shape[1]), np.nan), products])),
            y=["query", *rows],
            colorscale=DIVERGING,
            zmid=0,
            zmin=-pbound,
            zmax=pbound,
            showscale=False,
            hovertemplate="%{y}<br>dim %{x}: %{z:.3f}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    scores = view.scores.numpy()
    hover = [
        f"{r}<br>score {s:.3f}<br>softmax {p:.3f}<br>model's pattern {m:.3f}"
        for r, s, p, m in zip(rows, scores, view.probs.numpy(), view.pattern.numpy(), strict=True)
    ]
    fig.add_trace(
        go.Bar(
            x=rounded(view.probs.numpy()),
            y=rows,
            orientation="h",
            marker={"color": "#1f77b4"},
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
        ),
        row=1,
        col=3,
    )
    fig.update_yaxes(autorange="reversed", row=1, col=1)
    fig.update_xaxes(title_text="dimension", row=1, col=1)
    fig.update_xaxes(title_text="dimension", row=1, col=2)
    fig.update_xaxes(range=[0, 1], row=1, col=3)
    fig.update_layout(
        template=template(),
        title=f"{esc(view.model)}: how head L{view.layer}H{view.head} attends from {esc(repr(names[view.position]))} "
        f"(scores = {view.scale:.3g} · q·k)",
        width=1000,
        height=int(200 + 22 * (len(rows) + 1)),
        showlegend=False,
    )
    return fig
