"""The attention neuron view (bertviz's, for every family): how one head computes one query's pattern.

For a query token: its query vector q (after rotary where the model rotates), each key vector k_j (grouped-
query heads read their key/value head's), their elementwise product q ⊙ k_j (its sum is the score), the
scores scale · q·k_j over the keys the query may see, and their softmax, which is the model's own
``attn.hook_pattern`` row (``.pattern``; the two agree to float error on every family).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from probe import _validate as check
from probe.core.names import act_name

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from probe.core.run import Run


@dataclass
class NeuronView:
    """One head, one query: ``query`` [d_head], ``keys`` and ``products`` [keys, d_head], ``scores`` and
    ``probs`` [keys] (-inf and 0 where the query cannot see the key), ``pattern`` [keys] the model's own."""

    model: str
    layer: int
    head: int
    position: int
    tokens: list[str]
    scale: float
    query: torch.Tensor
    keys: torch.Tensor
    products: torch.Tensor
    scores: torch.Tensor
    probs: torch.Tensor
    pattern: torch.Tensor

    def plot(self) -> go.Figure:
        from probe.core.plotting import view

        return view("attention_neurons")(self)


def attention_neurons(run: Run, layer: int, head: int, query: int | None = None, index: int = 0) -> NeuronView:
    """How head ``head`` of ``layer`` computes query ``query``'s pattern in text ``index`` of ``run``.

    Args:
        query: the query position (default the slot: a masked model's mask token, a causal model's last
            token; negative from the end). The q/k hooks are read from ``run`` when it captured them, else
            the text is run again for them.

    Returns:
        ``NeuronView`` (``.plot()`` draws it).

    Example:
        >>> probe.attention_neurons(gpt.run("The robot must not hurt the"), layer=1, head=3).plot()
    """
    model = run.model
    adapter = model.adapter
    layer = check.index(layer, "layer", model.n_layers, what=f"{model.name} has layers")
    head = check.index(head, "head", model.n_heads, what=f"{model.name} has heads")
    pos = run.position_of(query, index)
    rotary = act_name("rot_q", layer) in model.hook_names
    names = [act_name("rot_q" if rotary else "q", layer), act_name("rot_k" if rotary else "k", layer)]
    names.append(act_name("pattern", layer))
    n = run.lengths[index]
    if all(name in run for name in names):
        values = [run[name][index, :n] if "pattern" not in name else run[name][index, :, :n, :n] for name in names]
    else:
        again = model.run(run.ids[index : index + 1, :n], hooks=names)
        values = [again[name][0] for name in names]
    q, k, pattern = values  # [pos, heads, d_head], [pos, kv heads, d_head], [heads, q, k]
    kv = head // (model.n_heads // k.shape[1])
    qv, keys = q[pos, head].double().cpu(), k[:, kv].double().cpu()
    products = qv * keys
    scale = adapter.attn_scale()
    visible = adapter.visible_keys(layer, n)[pos]
    scores = (products.sum(-1) * scale).masked_fill(~visible, float("-inf"))
    return NeuronView(
        model=model.name,
        layer=layer,
        head=head,
        position=pos,
        tokens=run.token_strs(index),
        scale=scale,
        query=qv,
        keys=keys,
        products=products,
        scores=scores,
        probs=scores.softmax(-1),
        pattern=pattern[head, pos].double().cpu(),
    )
