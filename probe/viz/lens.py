"""Logit lens views: every layer's best guess at every position, and one target token across layers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probe.analysis.lens import lens_table  # noqa: F401  (the analysis lives in probe.analysis.lens; kept importable here)
from probe.viz._style import (
    ACCENT,
    SECOND,
    SEQUENTIAL,
    cell_size,
    esc,
    figure,
    fit_title,
    labels,
    layer_names,
    prob_format,
    rank_axis,
    rounded,
    template,
    tick_font,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from probe.core.run import Run


def logit_lens(run: Run, index: int = 0, max_text_positions: int = 160, lens=None, k: int = 3) -> go.Figure:
    """Layers x positions heatmap: each cell shows the layer's top token, coloured by its probability.

    Args:
        run: a Run with the residual stream captured (the default ``run(text)`` does).
        index: which text of the run.
        max_text_positions: above this many tokens the cell text is left out (hover still tells).
        lens: a ``probe.TunedLens``: read every layer but the last through it (the tuned lens).
        k: candidates listed in each cell's hover.

    Returns:
        Figure with one Heatmap [layer, position]; x labels are the input tokens. Wide texts scroll.

    Example:
        >>> run.plot.logit_lens()
    """
    import plotly.graph_objects as go

    table = lens_table(run, index, k=k, lens=lens)
    model = run.model
    n_layers, length = model.n_layers, run.lengths[index]
    top1 = table[table["rank"] == 1]
    z = top1["prob"].to_numpy().reshape(n_layers + 1, length)
    words = np.array(labels(top1["top_token"].tolist(), 8), dtype=object).reshape(n_layers + 1, length)
    alts = {}
    for (layer, pos), group in table.groupby(["layer", "position"], sort=False):
        alts[layer, pos] = "<br>".join(
            f"{r}. {esc(repr(t))} {p:.3f}" for r, t, p in zip(group["rank"], group["top_token"], group["prob"])
        )
    toks = run.token_strs(index)
    names = layer_names(n_layers)
    nxt = top1["next_rank"].to_numpy().reshape(n_layers + 1, length)
    hover = np.empty((n_layers + 1, length), dtype=object)
    for layer in range(n_layers + 1):
        for pos in range(length):
            extra = ""
            if model.kind == "causal" and pos + 1 < length:
                extra = f"<br>actual next {esc(repr(toks[pos + 1]))}: rank {int(nxt[layer, pos])}"
            hover[layer, pos] = f"{names[layer]}, position {pos} {esc(repr(toks[pos]))}<br>{alts[layer, pos]}{extra}"
    cell = cell_size(length, target=760, lo=30, hi=64)
    show_text = length <= max_text_positions
    what = "the next token" if model.kind == "causal" else "the token at each position"
    fig = figure(
        title=f"{esc(model.name)}: {'logit' if lens is None else 'tuned'} lens (top guess for {what})",
        width=int(170 + cell * length),
        height=140 + 34 * (n_layers + 1),
        xaxis={
            "tickmode": "array",
            "tickvals": list(range(length)),
            "ticktext": labels(toks, 10),
            "tickangle": -45 if length > 12 else 0,
            "tickfont": {"size": tick_font(cell / 2)},
            "title": {"text": "input token"},
        },
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(n_layers + 1)),
            "ticktext": names,
            "title": {"text": "residual stream"},
        },
    )
    fig.add_trace(
        go.Heatmap(
            z=rounded(z),
            text=words if show_text else None,
            texttemplate="%{text}" if show_text else None,
            textfont={"size": 10},
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=SEQUENTIAL,
            zmin=0,
            colorbar={"title": {"text": "p(top)"}, "len": 0.9},
            xgap=1,
            ygap=1,
        )
    )
    return fig


def lens_compare(run: Run, lens, index: int = 0, k: int = 1, left_hover: bool = True) -> go.Figure:
    """The logit lens and a tuned lens side by side, on one colour scale: the same layers x positions grid
    read through the unembedding alone (left) and through the lens's translators (right).

    Args:
        run: a Run with the residual stream captured (the default ``run(text)`` does).
        lens: a ``probe.TunedLens`` for the run's model (``probe.load_lens``).
        index: which text of the run.
        k: candidates listed in each cell's hover.
        left_hover: list the logit lens's candidates in its hover too (the report, which shows the logit lens
            in full just above, leaves them out: page size).

    Example:
        >>> probe.viz.lens_compare(run, probe.load_lens("smollm2-135m"))
    """
    from plotly.subplots import make_subplots

    from probe.errors import InputError

    if lens is None:
        raise InputError("lens_compare() needs a tuned lens: probe.load_lens(name_or_folder)")
    sides = [logit_lens(run, index, lens=None, k=k), logit_lens(run, index, lens=lens, k=k)]
    left = sides[0].layout
    fig = make_subplots(
        rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.03, subplot_titles=("logit lens", "tuned lens")
    )
    top = max(float(np.nanmax(np.asarray(side.data[0].z, dtype=float))) for side in sides)
    for col, side in enumerate(sides, start=1):
        trace = side.data[0]
        trace.update(zmax=top, showscale=col == 2)
        if col == 1 and not left_hover:
            trace.update(customdata=None, hovertemplate="logit lens: p(top) %{z}<extra></extra>")
        fig.add_trace(trace, row=1, col=col)
        fig.update_xaxes(
            tickmode="array",
            tickvals=left.xaxis.tickvals,
            ticktext=left.xaxis.ticktext,
            tickangle=left.xaxis.tickangle,
            tickfont=left.xaxis.tickfont,
            row=1,
            col=col,
        )
    fig.update_yaxes(tickmode="array", tickvals=left.yaxis.tickvals, ticktext=left.yaxis.ticktext, row=1, col=1)
    fig.update_layout(
        template=template(),
        title=f"{esc(run.model.name)}: logit lens and tuned lens, side by side (top guess, coloured by its probability)",
        width=int(2 * left.width - 120),
        height=left.height,
    )
    return fig


def lens_target(run: Run, target: str | int, position: int | None = None, index: int = 0) -> go.Figure:
    """Rank and probability of one target token at one position, layer by layer.

    Args:
        target: a word (one token, e.g. "not") or a token id.
        position: default: the [MASK] for masked models, the last token for causal ones.

    Returns:
        Figure with two panels over layers: probability (left) and rank (right, log scale, 1 on top).

    Example:
        >>> run.plot.lens_target("human")
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    lens = run.logit_lens(k=1, position=position, target=target, index=index)
    per_layer = lens.drop_duplicates("layer").sort_values("layer")
    names = layer_names(run.model.n_layers)
    tok = lens.attrs["token"]
    tid = lens.attrs["target_id"]
    shown = run.model.to_str_tokens([tid])[0]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("probability", "rank (1 = top)"), horizontal_spacing=0.14)
    fig.update_layout(
        template=template(),
        title=f"{esc(run.model.name)}: {esc(repr(shown))} at position {lens.attrs['position']} ({esc(repr(tok))})",
        height=400,
        width=820,
        margin={"t": 100},
        showlegend=False,
    )
    x = list(range(len(per_layer)))
    fig.add_trace(
        go.Scatter(
            x=x,
            y=rounded(per_layer["target_prob"].to_numpy(), 6),
            mode="lines+markers",
            line={"color": ACCENT},
            hovertemplate="%{y:.4f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=per_layer["target_rank"].to_numpy(),
            mode="lines+markers+text",
            text=[str(r) for r in per_layer["target_rank"]],
            textposition="top center",
            line={"color": SECOND},
            hovertemplate="rank %{y}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    for col in (1, 2):
        fig.update_xaxes(tickmode="array", tickvals=x, ticktext=names, tickangle=-30, row=1, col=col)
    fig.update_yaxes(rangemode="tozero", tickformat=prob_format(float(per_layer["target_prob"].max())), row=1, col=1)
    fig.update_yaxes(**rank_axis(int(per_layer["target_rank"].max())), row=1, col=2)
    return fig


def lens_kl(frame, title: str | None = None) -> go.Figure:
    """Logit lens and tuned lens side by side: KL(final || lens) per layer, one line each (lower reads better).

    Args:
        frame: what ``probe.analysis.tuned_lens.lens_kl`` (held-out text) or ``lens_kl_at`` (one token of a
            run) returns, [layer, logit_lens, tuned_lens].

    Example:
        >>> probe.viz.lens_kl(lens_kl(gpt, held_out, lens)).show()
    """
    import plotly.graph_objects as go

    from probe.errors import InputError

    if frame is None or len(frame) == 0 or not {"layer", "logit_lens", "tuned_lens"} <= set(frame.columns):
        raise InputError("lens_kl() takes the frame probe.analysis.tuned_lens.lens_kl (or lens_kl_at) returns")
    model = frame.attrs.get("model", "")
    where = (
        f" at {esc(repr(frame.attrs['token']))} (position {frame.attrs['position']})" if "token" in frame.attrs else ""
    )
    fig = figure(
        title=title or f"{esc(model)}: how far each layer's reading{where} is from the output (KL, nats)",
        width=640,
        height=380,
        xaxis={"title": {"text": "layer (residual stream entering the block)"}, "dtick": 1 if len(frame) <= 16 else 5},
        yaxis={"title": {"text": "KL(final || lens)"}, "type": "log", "dtick": "D2"},
    )
    for column, name in (("logit_lens", "logit lens"), ("tuned_lens", "tuned lens")):
        if frame[column].notna().any():  # no tuned lens for these weights: the logit lens alone
            fig.add_trace(go.Scatter(x=frame["layer"], y=frame[column], mode="lines+markers", name=name))
    return fit_title(fig)
