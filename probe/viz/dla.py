"""Direct logit attribution: which heads, MLPs and neurons write the target over the contrast."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probe.errors import InputError
from probe.viz._style import DIVERGING, cell_size, diverging_heatmap, esc, figure, rounded, tick_font

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

TOP_NEURONS = 30  # bars a neuron frame shows (the largest |attribution| over all layers)


def dla(frame: pd.DataFrame) -> go.Figure:
    """The view of ``probe.dla``'s frame.

    unit="head": a heatmap, one row per layer, one column per head plus the layer's attention bias and its
    MLP; unit="component"/"layer": one bar per write in forward order; unit="neuron": the largest neurons.
    Red writes the target over the contrast, blue the reverse; the title gives the model's own logit
    difference and the constant no component writes.

    Example:
        >>> probe.viz.dla(probe.dla(gpt, "The robot must [MASK] hurt", " not", contrast=" also", unit="head")).show()
    """
    import plotly.graph_objects as go

    if frame is None or len(frame) == 0 or "attribution" not in frame or "unit" not in frame.attrs:
        raise InputError("dla() takes the frame probe.dla returns")
    a = frame.attrs
    what = repr(a["target"]) + (f" − {a['contrast']!r}" if a.get("contrast") is not None else "")
    title = (
        f"{esc(a['model'])}: direct logit attribution of {esc(what)} at {esc(repr(a['token']))} "
        f"(logit difference {a['logit_diff']:.3f}, constant {a['constant']:.3f})"
    )
    values = frame["attribution"].to_numpy(dtype=float)
    bound = float(np.abs(values).max()) or 1.0
    if a["unit"] == "head":
        return _head_grid(frame, title, bound)
    if a["unit"] == "neuron":
        frame = frame.assign(size=frame["attribution"].abs()).nlargest(TOP_NEURONS, "size")
        values = frame["attribution"].to_numpy(dtype=float)
    names = frame["component"].tolist()
    fig = figure(
        title=title,
        width=int(240 + cell_size(len(names), target=760, lo=16, hi=48) * len(names)),
        height=420,
        xaxis={"title": {"text": "write"}, "tickangle": -45 if len(names) > 8 else 0},
        yaxis={"title": {"text": "attribution (logits)"}, "zeroline": True},
    )
    fig.add_trace(
        go.Bar(
            x=names,
            y=rounded(values),
            marker={"color": rounded(values), "colorscale": DIVERGING, "cmid": 0, "cmin": -bound, "cmax": bound},
            hovertemplate="%{x}<br>%{y:.4g}<extra></extra>",
        )
    )
    return fig


def _head_grid(frame: pd.DataFrame, title: str, bound: float) -> go.Figure:
    import pandas as pd

    heads = frame.dropna(subset=["head"])
    n_heads = int(heads["head"].max()) + 1
    layers = sorted(int(la) for la in heads["layer"].unique())
    columns = [f"H{h}" for h in range(n_heads)] + ["attn bias", "MLP"]
    z = np.full((len(layers), len(columns)), np.nan)
    for row in frame.to_dict("records"):
        if pd.isna(row["layer"]):  # the embeddings: named in the title
            continue
        name = row["component"]
        col = n_heads if name.endswith("_attn_bias") else n_heads + 1 if name.endswith("_mlp_out") else int(row["head"])
        z[layers.index(int(row["layer"])), col] = row["attribution"]
    embeds = frame[frame["layer"].isna()]
    note = ", ".join(f"{c} {v:+.3f}" for c, v in zip(embeds["component"], embeds["attribution"], strict=True))
    cell = cell_size(len(columns), target=720, lo=18, hi=56)
    fig = figure(
        title=title,
        width=int(240 + cell * len(columns)),
        height=170 + min(34, max(14, 600 // max(len(layers), 1))) * len(layers),
        xaxis={
            "tickmode": "array",
            "tickvals": list(range(len(columns))),
            "ticktext": columns,
            "tickfont": {"size": tick_font(cell)},
            "title": {"text": f"head   (embeddings: {esc(note)})" if note else "head"},
        },
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(len(layers))),
            "ticktext": [f"L{la}" for la in layers],
            "title": {"text": "layer"},
            "autorange": "reversed",
        },
    )
    hover = np.array(
        [[f"L{la} {c}<br>{z[i, j]:.4g}" for j, c in enumerate(columns)] for i, la in enumerate(layers)], dtype=object
    )
    fig.add_trace(diverging_heatmap(z, hover, bound, "logits"))
    return fig
