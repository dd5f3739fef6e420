"""Do the methods agree? Exact patching, attribution patching (AtP), EAP-IG and DLA, head by head.

The four answer different questions, so they need not agree: exact patching measures each head's whole
effect (put back alone into the corrupted run); AtP is its first-order estimate; EAP-IG integrates the
gradient along the embedding path; DLA measures only what a head writes directly into the output, here as
its change between the two texts (DLA on the clean text minus DLA on the corrupted one, for the metric's
target − contrast). Where they agree, a head's role is robust to the method; where they do not, the
difference says something (an indirect effect, or a metric far from linear in that head).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from probe.core.model import Model

METHODS = ("exact", "atp", "ig", "dla")


@dataclass
class Agreement:
    """``scores``: [layer, head, exact, atp, ig, dla] (the methods asked for); ``pairs``: [a, b, spearman,
    pearson, top_overlap] for every two methods (top_overlap: the share of the ``top`` heads by |score| both
    name)."""

    model: str
    scores: pd.DataFrame
    pairs: pd.DataFrame
    top: int

    def plot(self) -> go.Figure:
        from probe.core.plotting import view

        return view("agreement")(self)


def agreement(
    model: Model,
    clean: str,
    corrupted: str,
    metric=("logit_diff", " not", " be"),
    methods: tuple[str, ...] | list[str] = METHODS,
    n_steps: int = 16,
    top: int = 5,
) -> Agreement:
    """Score every head by each method and compare the rankings (see the module docstring).

    Args:
        clean, corrupted, metric: as ``probe.patching``; "dla" needs metric ("logit_diff", a, b) or ("logit", a).
        methods: any of "exact", "atp", "ig", "dla" (two or more).
        n_steps: EAP-IG's steps. top: how many heads ``top_overlap`` compares.

    Returns:
        ``Agreement`` (``.scores``, ``.pairs``, ``.plot()``).

    Example:
        >>> a = probe.agreement(gpt, clean, corrupted, ("logit_diff", " Mary", " John"))
        >>> a.pairs
    """
    import pandas as pd

    from probe.analysis.atp import attribution_patching
    from probe.analysis.dla import dla
    from probe.analysis.intervene import patching

    methods = list(dict.fromkeys([methods] if isinstance(methods, str) else methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or len(methods) < 2:
        raise InputError(f"methods must be two or more of {', '.join(METHODS)}; got {methods!r}")
    key = ["layer", "head"]
    columns: dict[str, pd.Series] = {}
    if "exact" in methods:
        columns["exact"] = patching(model, clean, corrupted, metric, over="heads").set_index(key)["effect"]
    for method in ("atp", "ig"):
        if method in methods:
            frame = attribution_patching(model, clean, corrupted, metric, over="heads", method=method, n_steps=n_steps)
            columns[method] = frame.set_index(key)["estimate"]
    if "dla" in methods:
        if not (isinstance(metric, (tuple, list)) and metric and metric[0] in ("logit_diff", "logit")):
            raise InputError("dla compares with metric ('logit_diff', a, b) or ('logit', a); pass one of those")
        target, contrast = metric[1], metric[2] if metric[0] == "logit_diff" else None

        def per_head(text):
            frame = dla(model, text, target, contrast=contrast, unit="head").dropna(subset=["head"])
            return frame.astype({"layer": int, "head": int}).set_index(key)["attribution"]

        columns["dla"] = per_head(clean) - per_head(corrupted)
    scores = pd.DataFrame(columns)[methods].reset_index()
    rows = []
    for a, b in combinations(methods, 2):
        top_a = set(scores[a].abs().nlargest(top).index)
        top_b = set(scores[b].abs().nlargest(top).index)
        rows.append(
            {
                "a": a,
                "b": b,
                "spearman": float(scores[a].corr(scores[b], method="spearman")),
                "pearson": float(scores[a].corr(scores[b])),
                "top_overlap": len(top_a & top_b) / top,
            }
        )
    pairs = pd.DataFrame(rows, columns=["a", "b", "spearman", "pearson", "top_overlap"])
    return Agreement(model.name, scores, pairs, top)
