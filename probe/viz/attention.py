"""Attention views: one head, every head (model view), a head picker, and entropy per head.

Patterns are [head, q, k] per layer, so a 128-token text has 16k weights per head. Single-head views
keep every weight (with scrolling); the all-heads grid pools long texts into blocks (``_style.pool``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from probe.errors import InputError
from probe.viz._style import SEQUENTIAL, cell_size, compact_list, esc, figure, label, pool, rounded, template, tick_font

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from probe.core.run import Run


def patterns(run: Run, index: int = 0) -> np.ndarray:
    """[n_layers, head, q, k] attention weights of text ``index`` over its real tokens (float32)."""
    run._check_index(index)
    length = run.lengths[index]
    att = run.attention()[:, index, :, :length, :length]  # [n_layers, head, q, k]
    return att.detach().float().cpu().numpy()


def _check_head(run: Run, layer: int, head: int) -> None:
    m = run.model
    if not 0 <= layer < m.n_layers:
        raise InputError(f"layer {layer} is out of range; {m.name} has layers 0..{m.n_layers - 1}")
    if not 0 <= head < m.n_heads:
        raise InputError(f"head {head} is out of range; {m.name} has heads 0..{m.n_heads - 1}")


def _categories(toks: list[str], spans: list[tuple[int, int]] | None = None) -> tuple[list[str], list[str]]:
    """Axis (categories, tick labels) for tokens, or for pooled blocks of them.

    Categories are unique, escaped names such as "3 ·robot" (a pooled block: "3-5 ·robot…"), so hover can
    name the token for free (no [q, k] array of hover strings), while the tick labels show just the token.
    """
    spans = spans or [(i, i) for i in range(len(toks))]
    cats, ticks = [], []
    for a, b in spans:
        more = "…" if b > a else ""
        cats.append(f"{a}{f'-{b}' if b > a else ''} {label(toks[a], 24)}{more}")
        ticks.append(label(toks[a], 10) + more)
    return cats, ticks


def _axes(cats: list[str], ticktext: list[str], cell: float) -> tuple[dict, dict]:
    ticks = {
        "type": "category",
        "tickmode": "array",
        "tickvals": cats,
        "ticktext": ticktext,
        "tickfont": {"size": tick_font(cell)},
    }
    x = {**ticks, "title": {"text": "key (attended to)"}, "tickangle": -60, "side": "bottom", "constrain": "domain"}
    y = {
        **ticks,
        "title": {"text": "query (attending)"},
        "autorange": "reversed",
        "scaleanchor": "x",
        "constrain": "domain",
    }
    return x, y


def attention(run: Run, layer: int, head: int, index: int = 0) -> go.Figure:
    """One head's pattern as a heatmap: row = query token, column = key token, colour = weight.

    Returns:
        Figure with one Heatmap [q, k]; hover names both tokens. Long texts keep every weight
        (cells shrink to 9 px, then the figure grows and scrolls).

    Example:
        >>> run.plot.attention(layer=1, head=3)
    """
    import plotly.graph_objects as go

    _check_head(run, layer, head)
    toks = run.token_strs(index)
    z = patterns(run, index)[layer, head]
    n = len(toks)
    cats, ticks = _categories(toks)
    cell = cell_size(n, target=520, lo=9, hi=40)
    xaxis, yaxis = _axes(cats, ticks, cell)
    fig = figure(
        title=f"{esc(run.model.name)}: layer {layer} head {head}",
        width=int(200 + cell * n),
        height=int(170 + cell * n),
        xaxis=xaxis,
        yaxis=yaxis,
    )
    fig.add_trace(
        go.Heatmap(
            z=rounded(z),
            x=cats,
            y=cats,
            hovertemplate="query %{y} → key %{x}<br>weight %{z:.3f}<extra></extra>",
            colorscale=SEQUENTIAL,
            zmin=0,
            zmax=1,
            colorbar={"title": {"text": "weight"}},
        )
    )
    return fig


def attention_grid(run: Run, index: int = 0, max_tokens: int = 40) -> go.Figure:
    """Model view: every head of every layer as a small heatmap (rows = layers, columns = heads).

    Args:
        max_tokens: texts longer than this are pooled into ``max_tokens`` blocks per axis (queries
            averaged, keys summed, so rows still sum to 1); hover gives the block's positions.

    Returns:
        Figure with n_layers x n_heads Heatmap subplots sharing one 0..1 colour scale.

    Example:
        >>> run.plot.attention_grid()
    """
    import plotly.graph_objects as go

    model = run.model
    att = patterns(run, index)
    pooled, spans = pool(att, max_tokens)
    L, H = model.n_layers, model.n_heads
    size = 96 if H <= 8 else 72
    names = [f"{a}" if a == b else f"{a}-{b}" for a, b in spans]
    # The grid is laid out by hand (one axis pair per head) and built in one go: make_subplots plus
    # per-axis updates cost ~0.1 s per head row in plotly's validation, which matters for 144 heads.
    gap_x, gap_y = 0.012, 0.012 * 8 / max(L, 1)
    width_x, width_y = (1 - gap_x * (H - 1)) / H, (1 - gap_y * (L - 1)) / L
    layout: dict = {}
    traces = []
    for layer in range(L):
        for head in range(H):
            i = layer * H + head + 1
            suffix = "" if i == 1 else str(i)
            x0, y1 = head * (width_x + gap_x), 1 - layer * (width_y + gap_y)
            axis = {"type": "category", "showticklabels": False, "ticks": "", "showline": False}
            layout[f"xaxis{suffix}"] = {**axis, "domain": _span(x0, x0 + width_x), "anchor": f"y{suffix}"}
            layout[f"yaxis{suffix}"] = {
                **axis,
                "domain": _span(y1 - width_y, y1),
                "anchor": f"x{suffix}",
                "autorange": "reversed",
            }
            if layer == 0:
                layout[f"xaxis{suffix}"].update(
                    side="top", title={"text": f"head {head}", "standoff": 2, "font": {"size": 11}}
                )
            if head == 0:
                layout[f"yaxis{suffix}"]["title"] = {"text": f"layer {layer}", "standoff": 2, "font": {"size": 11}}
            traces.append(
                go.Heatmap(
                    z=rounded(pooled[layer, head], 3),
                    x=names,
                    y=names,
                    xaxis=f"x{suffix}",
                    yaxis=f"y{suffix}",
                    coloraxis="coloraxis",
                    hovertemplate=f"layer {layer} head {head}<br>query %{{y}} → key %{{x}}<br>weight %{{z:.3f}}<extra></extra>",
                )
            )
    pooled_note = f" (pooled into {len(spans)} blocks)" if len(spans) < att.shape[-1] else ""
    layout.update(
        template=template(),
        title={"text": f"{esc(model.name)}: all heads, {att.shape[-1]} tokens{pooled_note}"},
        width=int(120 + size * H),
        height=int(110 + size * L),
        coloraxis={
            "colorscale": SEQUENTIAL,
            "cmin": 0,
            "cmax": 1,
            "colorbar": {"title": {"text": "weight"}, "len": 0.8},
        },
        margin={"l": 70, "r": 20, "t": 90, "b": 20},
    )
    return go.Figure(data=traces, layout=layout)


def _span(a: float, b: float) -> list[float]:
    """An axis domain clipped into [0, 1] (float sums drift to -2e-17, which plotly rejects)."""
    return [min(1.0, max(0.0, round(a, 6))), min(1.0, max(0.0, round(b, 6)))]


def attention_heads(run: Run, index: int = 0, max_tokens: int = 128) -> go.Figure:
    """Head view: one head at a time, a layer dropdown and a head slider.

    Args:
        max_tokens: longer texts are pooled into blocks as in ``attention_grid``.

    Returns:
        Figure with one Heatmap [q, k]; the slider steps and dropdown buttons carry each head's pattern
        and swap it in (one trace whose data changes: plotly.js 3 fails when a button hides the visible
        trace and a slider at once).

    Example:
        >>> run.plot.attention_heads()
    """
    import plotly.graph_objects as go

    model = run.model
    toks = run.token_strs(index)
    att = patterns(run, index)
    pooled, spans = pool(att, max_tokens)
    n = len(spans)
    cats, ticks = _categories(toks, spans)
    L, H = model.n_layers, model.n_heads
    cell = cell_size(n, target=520, lo=9, hi=40)
    xaxis, yaxis = _axes(cats, ticks, cell)

    def hover(layer: int, head: int) -> str:
        return f"layer {layer} head {head}<br>query %{{y}} → key %{{x}}<br>weight %{{z:.3f}}<extra></extra>"

    def show(layer: int, head: int) -> dict:
        return {
            "z": [compact_list(pooled[layer, head], 3)],
            "hovertemplate": [hover(layer, head)],
        }

    def title(layer: int, head: int) -> dict:
        return {"title.text": f"{esc(model.name)}: layer {layer} head {head}"}

    fig = figure(
        title=title(0, 0)["title.text"],
        width=int(max(200 + cell * n, 160 + 44 * H)),
        height=int(290 + cell * n),
        xaxis=xaxis,
        yaxis=yaxis,
        margin={"l": 60, "r": 30, "t": 110, "b": 60},
    )
    fig.add_trace(
        go.Heatmap(
            z=rounded(pooled[0, 0], 3),
            x=cats,
            y=cats,
            colorscale=SEQUENTIAL,
            zmin=0,
            zmax=1,
            colorbar={"title": {"text": "weight"}},
            hovertemplate=hover(0, 0),
        )
    )
    # one head slider per layer, only the chosen layer's shown: the dropdown picks the layer
    sliders = [
        {
            "active": 0,
            "visible": layer == 0,
            "steps": [
                {"method": "update", "label": str(head), "args": [show(layer, head), title(layer, head)]}
                for head in range(H)
            ],
            "currentvalue": {"prefix": f"layer {layer}, head ", "font": {"size": 12}},
            "pad": {"t": 70, "b": 10},
            "len": 1.0,
        }
        for layer in range(L)
    ]
    buttons = [
        {
            "method": "update",
            "label": f"layer {layer}",
            "args": [
                show(layer, 0),
                {
                    **title(layer, 0),
                    **{f"sliders[{j}].visible": j == layer for j in range(L)},
                    f"sliders[{layer}].active": 0,
                },
            ],
        }
        for layer in range(L)
    ]
    fig.update_layout(
        sliders=sliders,
        updatemenus=[
            {
                "buttons": buttons,
                "direction": "down",
                "x": 0.0,
                "xanchor": "left",
                "y": 1.0,
                "yanchor": "bottom",
                "pad": {"b": 10},
                "showactive": True,
            }
        ],
    )
    return fig


def entropy(run: Run, index: int = 0) -> np.ndarray:
    """[n_layers, head] mean attention entropy in bits over the real query positions.

    Low: the head looks at one token; high: it spreads out (the most a query at position q can reach
    is log2(q + 1) bits for a causal model, log2(n) for a masked one).
    """
    att = patterns(run, index).astype(np.float64)  # [L, H, q, k]
    ent = -(att * np.log2(np.clip(att, 1e-12, None))).sum(-1)  # [L, H, q]
    return ent.mean(-1)


def attention_entropy(run: Run, index: int = 0) -> go.Figure:
    """Heatmap of mean attention entropy (bits) per layer and head; hover gives the maximum possible.

    Example:
        >>> run.plot.attention_entropy()
    """
    import plotly.graph_objects as go

    model = run.model
    ent = entropy(run, index)
    L, H = ent.shape
    n = run.lengths[index]
    ceiling = float(np.mean(np.log2(np.arange(1, n + 1)))) if model.kind == "causal" else float(np.log2(n))
    fig = figure(
        title=f"{esc(model.name)}: attention entropy (bits)",
        width=int(max(420, 170 + 54 * H)),
        height=int(150 + 40 * L),
        xaxis={
            "tickmode": "array",
            "tickvals": list(range(H)),
            "ticktext": [str(h) for h in range(H)],
            "title": {"text": "head"},
        },
        yaxis={
            "tickmode": "array",
            "tickvals": list(range(L)),
            "ticktext": [f"layer {i}" for i in range(L)],
            "autorange": "reversed",
        },
    )
    fig.add_trace(
        go.Heatmap(
            z=rounded(ent, 3),
            text=[[f"{v:.2f}" for v in row] for row in ent],
            texttemplate="%{text}",
            colorscale="Viridis",
            zmin=0,
            zmax=max(ceiling, float(ent.max()), 1e-6),
            colorbar={"title": {"text": "bits"}},
            hovertemplate=f"layer %{{y}} head %{{x}}<br>%{{z:.3f}} bits (uniform would be {ceiling:.2f})<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    return fig
