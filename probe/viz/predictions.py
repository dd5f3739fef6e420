"""What the model predicts: a top-k bar chart, and the candidates at every step of a generation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probe.errors import InputError
from probe.viz._style import ACCENT, SEQUENTIAL, esc, figure, label, prob_format, rounded

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


def predictions(frame: pd.DataFrame, title: str | None = None) -> go.Figure:
    """Top-k bar chart of a prediction frame, rank 1 on top.

    Args:
        frame: DataFrame [rank, token, prob, ...] as ``run.predictions(k)`` returns it.
        title: figure title; default "Top-k predictions".

    Returns:
        Figure with one horizontal Bar trace of probabilities.

    Example:
        >>> probe.viz.predictions(run.predictions(k=10))
    """
    import plotly.graph_objects as go

    _require(frame, ["rank", "token", "prob"], "predictions")
    frame = frame.sort_values("rank")
    k = len(frame)
    probs = frame["prob"].to_numpy(dtype=float)
    hover = [
        f"rank {r}<br>token {esc(repr(t))}<br>p = {p:.4f}" + (f"<br>logit {lg:.3f}" if lg is not None else "")
        for r, t, p, lg in zip(
            frame["rank"], frame["token"], probs, frame["logit"] if "logit" in frame else [None] * k, strict=True
        )
    ]
    fig = figure(
        title=title or f"Top-{k} predictions",
        height=110 + 26 * k,
        width=620,
        xaxis={"title": {"text": "probability"}, "tickformat": prob_format(float(probs.max())), "rangemode": "tozero"},
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(k)),
            "ticktext": [label(t, 18) for t in frame["token"]],
            "autorange": "reversed",
        },
        bargap=0.25,
    )
    fig.add_trace(
        go.Bar(
            x=probs.astype(np.float32),
            y=list(range(k)),
            orientation="h",
            marker={"color": ACCENT},
            text=[f"{p:.1%}" if p >= 0.001 else f"{p:.2e}" for p in probs],
            textposition="outside",
            cliponaxis=False,
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
        )
    )
    return fig


def generation(frame: pd.DataFrame, title: str | None = None) -> go.Figure:
    """The top-k candidates at every step of ``model.generate``: steps x ranks, chosen token in bold.

    Args:
        frame: DataFrame [step, rank, token, prob, chosen] from ``model.generate(prompt, n, k)[1]``.

    Returns:
        Figure with one Heatmap [rank, step]: text = candidate token, colour = its probability.

    Example:
        >>> text, steps = gpt.generate("The robot", max_new_tokens=8, k=5)
        >>> probe.viz.generation(steps)
    """
    import plotly.graph_objects as go

    _require(frame, ["step", "rank", "token", "prob"], "generation")
    steps = sorted(frame["step"].unique())
    k = int(frame["rank"].max())
    z = np.full((k, len(steps)), np.nan)
    text = np.full((k, len(steps)), "", dtype=object)
    hover = np.full((k, len(steps)), "", dtype=object)
    chosen = frame["chosen"] if "chosen" in frame else np.zeros(len(frame), dtype=bool)
    col = {s: i for i, s in enumerate(steps)}
    for s, r, t, p, c in zip(frame["step"], frame["rank"], frame["token"], frame["prob"], chosen, strict=True):
        z[r - 1, col[s]] = p
        word = label(t, 10)
        text[r - 1, col[s]] = f"<b>[{word}]</b>" if c else word
        hover[r - 1, col[s]] = f"step {s}, rank {r}<br>token {esc(repr(t))}<br>p = {p:.4f}" + (
            "<br>chosen" if c else ""
        )
    cell = 74
    fig = figure(
        title=title or "Candidates at each step ([chosen])",
        height=130 + 34 * k,
        width=max(480, 120 + cell * len(steps)),
        xaxis={"title": {"text": "step"}, "tickmode": "array", "tickvals": list(range(len(steps))), "ticktext": steps},
        yaxis={
            "title": {"text": "rank"},
            "tickmode": "array",
            "tickvals": list(range(k)),
            "ticktext": list(range(1, k + 1)),
            "autorange": "reversed",
        },
    )
    fig.add_trace(
        go.Heatmap(
            z=rounded(z, 5),
            text=text,
            texttemplate="%{text}",
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=SEQUENTIAL,
            zmin=0,
            colorbar={"title": {"text": "p"}, "tickformat": prob_format(float(np.nanmax(z)))},
            xgap=2,
            ygap=2,
        )
    )
    return fig


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(f"{what}() needs a frame with columns {columns}; this one lacks {missing}")
    if frame.empty:
        raise InputError(f"{what}() got an empty frame; nothing to plot")
