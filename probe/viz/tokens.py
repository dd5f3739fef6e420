"""Tokenisation made visible: the text as the model's tokens, with ids, wrapped in rows."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from probe.viz._style import esc, figure, label

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from probe.core.run import Run

# category -> (name, colour): special tokens, tokens that start a word, pieces that continue one
KINDS = [("special", "#d9d9d9"), ("starts a word", "#c6dbef"), ("continues a word", "#fdd0a2")]


def token_kinds(run: Run, index: int = 0) -> list[int]:
    """0 special, 1 starts a word, 2 continues a word, for each real token of text ``index``."""
    tok = run.model.tokenizer
    special = set(tok.all_special_ids)
    ids = run.ids[index, : run.lengths[index]].tolist()
    pieces = tok.convert_ids_to_tokens(ids)
    marked = any(p.startswith(("Ġ", "▁")) for p in pieces)  # BPE / SentencePiece mark word starts
    kinds = []
    prev_special = True
    for i, piece in zip(ids, pieces):
        if i in special:
            kinds.append(0)
            prev_special = True
            continue
        if piece.startswith("##"):
            starts = False
        elif marked:
            starts = piece.startswith(("Ġ", "▁")) or prev_special or not piece[:1].isalnum()
        else:
            starts = True
        kinds.append(1 if starts else 2)
        prev_special = False
    return kinds


def tokens(run: Run, index: int = 0, per_row: int = 12) -> go.Figure:
    """The text as its tokens: one cell per token with its id, coloured by special / word start / piece.

    Args:
        run: a Run; text ``index`` of it is shown.
        per_row: tokens per row; long texts wrap into more rows (the figure grows downwards).

    Returns:
        Figure with one Heatmap [rows, per_row] whose cells read "token / id".

    Example:
        >>> run.plot.tokens()
    """
    import plotly.graph_objects as go

    toks = run.token_strs(index)
    ids = run.ids[index, : run.lengths[index]].tolist()
    kinds = token_kinds(run, index)
    n = len(toks)
    per_row = max(1, min(per_row, n))
    rows = math.ceil(n / per_row)
    z = np.full((rows, per_row), np.nan)
    text = np.full((rows, per_row), "", dtype=object)
    hover = np.full((rows, per_row), "", dtype=object)
    for p, (t, i, kind) in enumerate(zip(toks, ids, kinds)):
        r, c = divmod(p, per_row)
        z[r, c] = kind
        text[r, c] = f"{label(t, 12)}<br><sub>{i}</sub>"
        hover[r, c] = f"position {p}<br>token {esc(repr(t))}<br>id {i}<br>{KINDS[kind][0]}"
    colorscale = []
    for k, (_, colour) in enumerate(KINDS):
        colorscale += [[k / len(KINDS), colour], [(k + 1) / len(KINDS), colour]]
    fig = figure(
        title=f"{esc(run.model.name)}: {n} tokens",
        height=120 + 46 * rows,
        width=max(420, 80 + 74 * per_row),
        xaxis={"visible": False, "range": [-0.5, per_row - 0.5]},
        yaxis={"visible": False, "autorange": "reversed"},
        margin={"l": 10, "r": 10, "t": 60, "b": 40},
        # below the tokens: at the top right it runs into the title of a short text's narrow figure
        legend={"orientation": "h", "y": 0, "x": 0, "xanchor": "left", "yanchor": "top"},
    )
    fig.add_trace(
        go.Heatmap(
            z=z,
            text=text,
            customdata=hover,
            texttemplate="%{text}",
            hovertemplate="%{customdata}<extra></extra>",
            colorscale=colorscale,
            zmin=-0.5,
            zmax=len(KINDS) - 0.5,
            showscale=False,
            xgap=3,
            ygap=3,
            textfont={"size": 12},
        )
    )
    for name, colour in KINDS:  # legend entries for the three colours
        fig.add_trace(
            go.Scatter(
                x=[None], y=[None], mode="markers", name=name, marker={"color": colour, "size": 12, "symbol": "square"}
            )
        )
    return fig
