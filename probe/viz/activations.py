"""Activation views: residual-stream norm per layer and position, and the most active MLP neurons."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probe.core.names import act_name
from probe.errors import InputError
from probe.viz._style import DIVERGING, cell_size, esc, figure, labels, layer_names, rounded, tick_font

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from probe.core.run import Run


def _token_axis(toks: list[str], cell: float) -> dict:
    return {
        "tickmode": "array",
        "tickvals": list(range(len(toks))),
        "ticktext": labels(toks, 10),
        "tickangle": -45 if len(toks) > 10 else 0,
        "tickfont": {"size": tick_font(cell)},
        "title": {"text": "token"},
    }


def residual_norms(run: Run, index: int = 0) -> go.Figure:
    """Heatmap of the residual stream's L2 norm, layers (embeddings .. last block) x positions.

    Returns:
        Figure with one Heatmap [n_layers + 1, pos]. The first token often has a far larger norm
        (an "attention sink": SmolLM2 ~23k against ~170); positions whose peak norm is over 4x the median
        peak are clipped at the others' maximum so the colours show the rest (the title says so; hover
        gives exact values).

    Example:
        >>> run.plot.residual_norms()
    """
    import plotly.graph_objects as go

    run._check_index(index)
    length = run.lengths[index]
    resid = run.residual_stream()[:, index, :length]  # [n_layers + 1, pos, d_model]
    norms = resid.detach().float().norm(dim=-1).cpu().numpy()
    toks = run.token_strs(index)
    names = layer_names(run.model.n_layers)
    cell = cell_size(length, target=760, lo=12, hi=56)
    tl = [esc(repr(t)) for t in toks]
    hover = np.array(
        [[f"{names[layer]}<br>position {p} {tl[p]}" for p in range(length)] for layer in range(len(names))],
        dtype=object,
    )
    peaks = norms.max(axis=0)  # [pos]
    sinks = peaks > 4 * np.median(peaks) if length > 2 else np.zeros(length, dtype=bool)
    zmax = float(peaks[~sinks].max()) if sinks.any() and not sinks.all() else None
    clipped = f" (colours clipped at {zmax:.0f}: {int(sinks.sum())} sink position(s) above)" if zmax else ""
    fig = figure(
        title=f"{esc(run.model.name)}: residual-stream norm{clipped}",
        width=int(190 + cell * length),
        height=150 + 34 * len(names),
        xaxis=_token_axis(toks, cell),
        yaxis={"tickmode": "array", "tickvals": list(range(len(names))), "ticktext": names},
    )
    fig.add_trace(
        go.Heatmap(
            z=rounded(norms, 3),
            customdata=hover,
            hovertemplate="%{customdata}<br>norm %{z:.2f}<extra></extra>",
            colorscale="Viridis",
            zmax=zmax,
            zmin=float(norms.min()) if zmax else None,
            colorbar={"title": {"text": "‖x‖"}},
            xgap=1,
            ygap=1,
        )
    )
    return fig


def top_neurons(run: Run, layer: int, k: int = 20, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` MLP neurons of ``layer`` with the largest activation anywhere in text ``index``.

    Returns:
        (neuron indices [k], activations [k, pos]) from ``blocks.{layer}.mlp.hook_post``.
    """
    m = run.model
    if not 0 <= layer < m.n_layers:
        raise InputError(f"layer {layer} is out of range; {m.name} has layers 0..{m.n_layers - 1}")
    if k < 1:
        raise InputError("k must be at least 1")
    run._check_index(index)
    post = run[act_name("post", layer)][index, : run.lengths[index]]  # [pos, d_mlp]
    acts = post.detach().float().cpu().numpy().T  # [d_mlp, pos]
    top = np.argsort(-acts.max(axis=1), kind="stable")[: min(k, acts.shape[0])]
    return top, acts[top]


def neurons(run: Run, layer: int, k: int = 20, index: int = 0) -> go.Figure:
    """Heatmap of the top-k MLP neurons of ``layer`` (rows) over the tokens (columns).

    Needs ``blocks.{layer}.mlp.hook_post`` captured: ``model.run(text, hooks=[..., "blocks.*.mlp.hook_post"])``.

    Returns:
        Figure with one Heatmap [k, pos], diverging colours centred on 0, neurons sorted by peak.

    Example:
        >>> run = gpt.run(text, hooks=gpt.default_hooks + ["blocks.1.mlp.hook_post"])
        >>> run.plot.neurons(layer=1, k=20)
    """
    import plotly.graph_objects as go

    ids, acts = top_neurons(run, layer, k, index)
    toks = run.token_strs(index)
    length = len(toks)
    cell = cell_size(length, target=760, lo=12, hi=56)
    bound = float(np.abs(acts).max()) or 1.0
    tl = [esc(repr(t)) for t in toks]
    hover = np.array([[f"neuron {i}<br>position {p} {tl[p]}" for p in range(length)] for i in ids], dtype=object)
    fig = figure(
        title=f"{esc(run.model.name)}: top {len(ids)} MLP neurons of layer {layer}",
        width=int(190 + cell * length),
        height=int(150 + 20 * len(ids)),
        xaxis=_token_axis(toks, cell),
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(len(ids))),
            "ticktext": [f"n{i}" for i in ids],
            "autorange": "reversed",
            "title": {"text": "neuron"},
        },
    )
    fig.add_trace(
        go.Heatmap(
            z=rounded(acts, 3),
            customdata=hover,
            hovertemplate="%{customdata}<br>activation %{z:.3f}<extra></extra>",
            colorscale=DIVERGING,
            zmid=0,
            zmin=-bound,
            zmax=bound,
            colorbar={"title": {"text": "act"}},
            xgap=1,
            ygap=1,
        )
    )
    return fig
