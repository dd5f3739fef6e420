"""Plotly views of runs and comparisons; every function returns a ``plotly.graph_objects.Figure``.

One module per view: ``tokens``, ``predictions`` (+ ``generation``), ``lens`` (``logit_lens``,
``lens_target``, ``lens_compare``, ``lens_kl``), ``attention`` (one head, grid, head picker, entropy), ``activations`` (residual norms,
neurons), ``compare``, and the "why" views that take a frame: ``attribution`` (coloured text), ``attribution_generation`` (generated x read tokens),
``dla`` (direct logit attribution per head, MLP or neuron), ``head_scores`` (head detectors), ``circuit`` (a circuit's kept edges), ``agreement`` (methods' head rankings), ``patching`` (layers x positions/heads), ``factors`` (tokens by dominant factor) and ``cka`` (layer
similarity). Plotly itself is imported only when a figure is built.

>>> run = probe.load("tiny-gpt").run("The robot must not hurt the human.")
>>> run.plot.attention(layer=0, head=1).show()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from probe.viz.activations import neurons, residual_norms
from probe.viz.agreement import agreement
from probe.viz.attention import attention, attention_entropy, attention_grid, attention_heads
from probe.viz.attribution import attribution, attribution_generation
from probe.viz.circuit import circuit
from probe.viz.cka import cka
from probe.viz.compare import compare_layers, comparison
from probe.viz.dla import dla
from probe.viz.factors import factors
from probe.viz.heads import head_scores
from probe.viz.inside_head import attention_neurons
from probe.viz.lens import lens_compare, lens_kl, lens_table, lens_target, logit_lens
from probe.viz.patching import patching
from probe.viz.predictions import generation, predictions
from probe.viz.probing import probe_accuracy
from probe.viz.tokens import tokens

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from probe.core.run import Run

__all__ = [
    "RunPlots",
    "tokens",
    "predictions",
    "generation",
    "logit_lens",
    "lens_target",
    "lens_table",
    "lens_kl",
    "lens_compare",
    "attention",
    "attention_grid",
    "attention_heads",
    "attention_entropy",
    "attention_neurons",
    "residual_norms",
    "neurons",
    "comparison",
    "compare_layers",
    "attribution",
    "attribution_generation",
    "dla",
    "circuit",
    "agreement",
    "head_scores",
    "patching",
    "factors",
    "cka",
    "probe_accuracy",
]


class RunPlots:
    """``run.plot``: the figures of one run (text ``index`` of a batch, default the first).

    Example:
        >>> run.plot.tokens(); run.plot.predictions(k=10); run.plot.attention(layer=1, head=0)
    """

    def __init__(self, run: Run, index: int = 0):
        run._check_index(index)
        self.run = run
        self.index = index

    def __repr__(self) -> str:
        names = ", ".join(n for n in dir(self) if not n.startswith("_") and n not in ("run", "index"))
        return f"RunPlots({self.run.model.name}): {names}"

    def tokens(self, per_row: int = 12) -> go.Figure:
        """The text as tokens with ids (see ``probe.viz.tokens``)."""
        return tokens(self.run, self.index, per_row=per_row)

    def predictions(self, k: int = 10, position: int | None = None) -> go.Figure:
        """Top-k bar chart at ``position`` (default: the [MASK] for masked models, the last token otherwise)."""
        from probe.viz._style import esc

        run = self.run
        frame = run.predictions(k=k, position=position, index=self.index)
        pos = run.position_of(position, self.index)
        name, token = esc(run.model.name), esc(repr(run.token_strs(self.index)[pos]))
        if run.model.kind == "causal":
            title = f"{name}: top-{k} next tokens after {token} (position {pos})"
        else:
            title = f"{name}: top-{k} tokens for {token} (position {pos})"
        return predictions(frame, title=title)

    def logit_lens(self, lens=None, k: int = 3) -> go.Figure:
        """Layers x positions heatmap of each layer's top token (see ``probe.viz.logit_lens``); ``lens``: a
        ``probe.TunedLens`` to read the layers with; ``k`` candidates in the hover."""
        return logit_lens(self.run, self.index, lens=lens, k=k)

    def lens_kl(self, lens=None, position: int | None = None) -> go.Figure:
        """KL(final || logit lens), and through ``lens`` the tuned lens, per layer at one token (default the
        slot): ``probe.viz.lens_kl`` of ``lens_kl_at``."""
        from probe.analysis.tuned_lens import lens_kl_at

        return lens_kl(lens_kl_at(self.run, lens, position=position, index=self.index))

    def lens_target(self, target: str | int, position: int | None = None) -> go.Figure:
        """Rank and probability of ``target`` at ``position``, layer by layer."""
        return lens_target(self.run, target, position=position, index=self.index)

    def attention(self, layer: int, head: int) -> go.Figure:
        """One head's pattern with token labels."""
        return attention(self.run, layer, head, self.index)

    def attention_neurons(self, layer: int, head: int, query: int | None = None) -> go.Figure:
        """How one head computes one query's pattern: q, each k, q ⊙ k and the softmax (bertviz's neuron view)."""
        return attention_neurons(_neurons(self.run, layer, head, query, self.index))

    def attention_grid(self, max_tokens: int = 40) -> go.Figure:
        """Every head of every layer (model view); long texts pooled into ``max_tokens`` blocks."""
        return attention_grid(self.run, self.index, max_tokens=max_tokens)

    def attention_heads(self, max_tokens: int = 128) -> go.Figure:
        """One head at a time, with a layer dropdown and a head slider."""
        return attention_heads(self.run, self.index, max_tokens=max_tokens)

    def attention_entropy(self) -> go.Figure:
        """Mean attention entropy (bits) per layer and head."""
        return attention_entropy(self.run, self.index)

    def residual_norms(self) -> go.Figure:
        """Residual-stream norm per layer and position."""
        return residual_norms(self.run, self.index)

    def neurons(self, layer: int | None = None, k: int = 20) -> go.Figure:
        """Top-k MLP neurons x tokens of ``layer`` (default: the last); needs ``mlp.hook_post`` captured."""
        layer = self.run.model.n_layers - 1 if layer is None else layer
        return neurons(self.run, layer, k=k, index=self.index)


def _neurons(run, layer, head, query, index):
    from probe.analysis.inside_head import attention_neurons as compute

    return compute(run, layer, head, query, index)
