"""Comparison views of a ``probe.compare`` frame: the words side by side, and when each model decides."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probe.errors import InputError
from probe.viz._style import PALETTE, esc, prob_format, rank_axis, template

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

METHOD_TITLES = {
    "masked": "[MASK] distribution (both sides)",
    "next_token": "next word (left context only)",
    "rescored": "whole sentence rescored",
}


def comparison(frame: pd.DataFrame, top: int | None = None) -> go.Figure:
    """One panel per (model, method), the candidate words on a shared axis, bar = probability.

    Words are ordered by their mean reciprocal rank across the panels, so words every model likes come
    first; a word missing from a panel was not in that list's top-k.

    Args:
        frame: what ``probe.compare`` returns.
        top: how many words to show; default all (the union of the top-k lists).

    Returns:
        Figure with a horizontal Bar trace per panel.

    Example:
        >>> probe.compare(models=["tiny-gpt", "tiny-bert"]).plot()
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    needed = {"model", "method", "rank", "word", "prob"}
    if not needed <= set(frame.columns) or frame.empty:
        raise InputError(f"comparison() needs a non-empty probe.compare frame with columns {sorted(needed)}")
    series = list(dict.fromkeys(zip(frame["model"], frame["method"])))
    score: dict[str, float] = {}
    for w, r in zip(frame["word"], frame["rank"]):
        score[w] = score.get(w, 0.0) + 1.0 / r
    words = sorted(score, key=lambda w: -score[w])[: top or None]
    row_of = {w: i for i, w in enumerate(words)}
    models = list(dict.fromkeys(frame["model"]))
    fig = make_subplots(
        rows=1,
        cols=len(series),
        shared_yaxes=True,
        horizontal_spacing=0.03,
        subplot_titles=[f"<b>{esc(m)}</b><br>{METHOD_TITLES.get(me, esc(me))}" for m, me in series],
    )
    for col, (model, method) in enumerate(series, start=1):
        part = frame[(frame["model"] == model) & (frame["method"] == method) & frame["word"].isin(row_of)]
        x = np.full(len(words), np.nan)
        hover = np.full(len(words), "not in this list", dtype=object)
        text = np.full(len(words), "", dtype=object)
        for w, r, p in zip(part["word"], part["rank"], part["prob"]):
            x[row_of[w]] = p
            hover[row_of[w]] = f"{esc(w)}: rank {r}, p = {p:.4f}"
            text[row_of[w]] = f"#{r}"
        colour = PALETTE[models.index(model) % len(PALETTE)]
        fig.add_trace(
            go.Bar(
                x=x.astype(np.float32),
                y=list(range(len(words))),
                orientation="h",
                marker={"color": colour, "opacity": 0.6 if method == "rescored" else 1.0},
                text=text,
                textposition="outside",
                cliponaxis=False,
                customdata=hover,
                hovertemplate="%{customdata}<extra></extra>",
                name=f"{esc(model)} {method}",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(
            tickformat=prob_format(float(np.nanmax(x)) if np.isfinite(x).any() else 1.0),
            rangemode="tozero",
            nticks=4,
            title={"text": "probability"},
            row=1,
            col=col,
        )
    fig.update_yaxes(
        tickmode="array", tickvals=list(range(len(words))), ticktext=[esc(w) for w in words], autorange="reversed"
    )
    text = frame.attrs.get("text", "")
    fig.update_layout(
        template=template(),
        title=f"Filling the slot: {esc(_short(text))}" if text else "Filling the slot",
        showlegend=False,
        height=170 + 24 * len(words),
        width=max(640, 150 + 250 * len(series)),
        margin={"t": 110},
        bargap=0.25,
    )
    return fig


def compare_layers(frame: pd.DataFrame) -> go.Figure:
    """Logit-lens rank of each model's final top word at every layer: when does each model decide?

    Returns:
        Figure with one line per model; y = rank on a log scale, 1 on top. x = layer (0 = embeddings)
        when the models are equally deep, else the share of each model's depth (0 = embeddings, 1 = its
        last block), so a 6-layer and a 30-layer model are read against each other; the hover names the
        layer.

    Example:
        >>> probe.compare(models=["tiny-gpt", "tiny-bert"]).plot_layers()
    """
    import pandas as pd
    import plotly.graph_objects as go

    layers = pd.DataFrame(frame.attrs.get("layers", []))
    if layers.empty:
        raise InputError("this frame has no layer records; make it with probe.compare(...)")
    fig = go.Figure()
    by_depth = layers["n_layers"].nunique() > 1
    for i, (model, part) in enumerate(layers.groupby("model", sort=False)):
        word = part["word"].iloc[0]
        n_layers = int(part["n_layers"].iloc[0])
        names = ["embeddings"] + [f"after block {b}" for b in range(n_layers)]
        x = [la / n_layers for la in part["layer"]] if by_depth else part["layer"].tolist()
        # rank labels on every point read well up to ~12 layers; deeper models (SmolLM2: 30) keep the
        # labels of the last few layers, where the decision happens, and the rest is in the hover
        label_from = max(0, len(part) - 6) if len(part) > 13 else 0
        fig.add_trace(
            go.Scatter(
                x=x,
                y=part["target_rank"].tolist(),
                mode="lines+markers+text",
                text=[str(r) if j >= label_from else "" for j, r in enumerate(part["target_rank"])],
                textposition="top center",
                name=f"{esc(model)}: {esc(repr(word))}",
                line={"color": PALETTE[i % len(PALETTE)], "width": 2.5},
                customdata=[
                    f"{esc(model)}, {n}<br>{esc(repr(word))}: rank {r}, p = {p:.4f}"
                    for n, r, p in zip(names, part["target_rank"], part["target_prob"])
                ],
                hovertemplate="%{customdata}<extra></extra>",
            )
        )
    depth = int(layers["layer"].max())
    if by_depth:
        xaxis = {
            "title": {"text": "depth: share of each model's blocks behind it (0 = embeddings, 1 = its last block)"},
            "tickmode": "array",
            "tickvals": [0, 0.25, 0.5, 0.75, 1],
            "ticktext": ["embeddings", "25%", "50%", "75%", "last block"],
        }
    else:
        step = 1 if depth <= 16 else 5 if depth <= 60 else 10  # a tick per layer would smear on deep models
        xaxis = {
            "title": {"text": "layer (0 = embeddings, then the output of each block)"},
            "tickmode": "array",
            "tickvals": list(range(0, depth + 1, step)) + ([depth] if depth % step else []),
        }
    fig.update_layout(
        template=template(),
        title="Rank of each model's final top word, layer by layer",
        height=420,
        width=820,
        xaxis=xaxis,
        yaxis=rank_axis(int(layers["target_rank"].max())),
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


def _short(text: str, n: int = 70) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
