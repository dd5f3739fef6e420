"""A circuit as a graph: layers as columns, heads and MLPs as nodes, kept edges as lines."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from probe.errors import InputError
from probe.viz._style import esc, figure

if TYPE_CHECKING:
    import plotly.graph_objects as go

POSITIVE, NEGATIVE = "#d62728", "#1f77b4"  # the metric's direction, as the diverging heatmaps colour it
MAX_WIDTH = 9.0


def _place(node: str, n_layers: int, n_heads: int) -> tuple[float, float]:
    """(x, y) of a node: embeddings left, layer l's heads in column l (one row per head), its MLP half a
    column right on a row of their own below the heads, the logits right of the last layer. Receivers' q/k/v
    (and shared KV heads) sit on their head."""
    if node == "embed":
        return -1.0, n_heads / 2
    if node == "logits":
        return float(n_layers), n_heads / 2
    mlp = re.fullmatch(r"MLP(\d+)", node)
    if mlp:
        return int(mlp[1]) + 0.5, float(n_heads)
    head = re.fullmatch(r"L(\d+)(?:H|KV)(\d+)(?:\.[qkv])?", node)
    if head is None:
        raise InputError(f"{node!r} is not a circuit node")
    return float(head[1]), float(head[2])


def circuit(c) -> go.Figure:
    """The view of ``probe.circuit``'s result (a ``probe.analysis.circuit.Circuit``): every kept edge as a line from sender to receiver, width by
    |estimate|, red where it pushes the metric up, blue down; the title gives the faithfulness.

    Example:
        >>> probe.circuit(gpt, clean, corrupted, metric, edges=30).plot().show()
    """
    import plotly.graph_objects as go

    edges = getattr(c, "edges", None)
    if edges is None or not {"sender", "receiver", "estimate"} <= set(edges.columns):
        raise InputError("circuit() takes the Circuit probe.circuit returns")
    scores = c.scores
    n_layers, n_heads = c.attrs["n_layers"], c.attrs["n_heads"]
    fig = figure(
        title=f"{esc(c.model)}: circuit of {len(edges)} of {len(scores)} edges, faithfulness {c.faithfulness:.3f} "
        f"({esc(c.ablation)} ablation)",
        width=int(260 + 110 * (n_layers + 2)),
        height=int(220 + 34 * n_heads),
        showlegend=False,
        xaxis={
            "tickmode": "array",
            "tickvals": [-1, *range(n_layers), n_layers],
            "ticktext": ["embed", *[f"L{la}" for la in range(n_layers)], "logits"],
            "zeroline": False,
            "showgrid": False,
        },
        yaxis={
            "title": {"text": "head"},
            "autorange": "reversed",
            "zeroline": False,
            "tickmode": "array",
            "tickvals": [*range(n_heads), n_heads],
            "ticktext": [*[f"H{h}" for h in range(n_heads)], "MLP"],
        },
    )
    top = float(edges["estimate"].abs().max()) if len(edges) else 1.0
    for row in edges.itertuples():
        (x0, y0), (x1, y1) = _place(row.sender, n_layers, n_heads), _place(row.receiver, n_layers, n_heads)
        fig.add_trace(
            go.Scatter(
                x=[x0, x1],
                y=[y0, y1],
                mode="lines",
                line={
                    "width": max(0.5, MAX_WIDTH * abs(row.estimate) / (top or 1.0)),
                    "color": POSITIVE if row.estimate > 0 else NEGATIVE,
                },
                opacity=0.7,
                hovertemplate=f"{esc(row.sender)} → {esc(row.receiver)}<br>estimate {row.estimate:.4g}<extra></extra>",
            )
        )
    nodes = sorted({row.sender for row in edges.itertuples()} | {re.sub(r"\.[qkv]$", "", r) for r in edges["receiver"]})
    nodes = nodes or ["embed", "logits"]
    points = [_place(node, n_layers, n_heads) for node in nodes]
    fig.add_trace(
        go.Scatter(
            x=[p[0] for p in points],
            y=[p[1] for p in points],
            mode="markers+text",
            text=[esc(node) for node in nodes],
            textposition="top center",
            marker={
                "size": 12,
                "color": "#444",
                "symbol": ["square" if n.startswith("MLP") else "circle" for n in nodes],
            },
            hovertemplate="%{text}<extra></extra>",
        )
    )
    return fig
