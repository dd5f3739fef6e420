"""Attribution patching: every node's patching effect estimated from gradients, in a few passes.

Activation patching (``probe.patching``) runs the corrupted text once per patched unit. Attribution
patching (Nanda 2023; Syed et al. 2023) estimates all of them at once, to first order:

    estimate(node) = (a_clean − a_corrupted) · ∂metric/∂a   at the corrupted run   (method="atp")

two forwards and one backward, whatever the number of nodes. The sign follows ``probe.patching`` (and
TransformerLens's ``attribution_patch``): a positive estimate means putting the clean value back raises
the metric. Where the metric is far from linear in a node, the first-order step misses; ``method="ig"``
(EAP-IG, Hanna et al. 2024) averages the gradient over ``n_steps`` points on the straight path from the
corrupted to the clean input embeddings (midpoint rule), which follows the metric's curvature, at the
cost of ``n_steps`` forwards and backwards (run as one batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from probe import _validate as check
from probe.core.names import act_name
from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.core.model import Model

METHODS = ("atp", "ig")
OVERS = ("heads", "resid_pre", "attn_out", "mlp_out", "edges")


def attribution_patching(
    model: Model,
    clean: str,
    corrupted: str,
    metric=("logit_diff", " not", " be"),
    over: str = "heads",
    method: str = "atp",
    n_steps: int = 16,
    positions: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Estimate ``probe.patching``'s effects from gradients (see the module docstring).

    Args:
        clean, corrupted, metric, positions: as ``probe.patching`` (the same number of tokens; the metric
            on the slot's logits).
        over: "heads" (each head's ``attn.hook_z`` at ``positions``, default all), or "resid_pre",
            "attn_out", "mlp_out" (one node per layer and position), or "edges" (every sender → receiver
            edge, ``probe.analysis.edges``: frame [sender, receiver, estimate, normalized_estimate]).
        method: "atp" (one gradient, at the corrupted run) or "ig" (``n_steps`` gradients along the path).

    Returns:
        DataFrame with ``probe.patching``'s key columns for that ``over`` ([layer, head] or [layer,
        position, token]) and estimate (the metric change) and normalized_estimate (divided by
        metric(clean) − metric(corrupted), as ``normalized_effect``). ``.attrs``: clean_value,
        corrupted_value (the exact metric at both ends), metric, over, method, n_steps, model, clean,
        corrupted.

    Example:
        >>> probe.attribution_patching(gpt, "The robot must not", "The robot must be", ("logit_diff", " hurt", " a"))
    """
    import pandas as pd

    from probe.analysis.intervene import OVER, metric_fn, pair_runs

    if over not in OVERS:
        raise InputError(f"over={over!r} has no attribution patching; use one of {', '.join(OVERS)}")
    if method not in METHODS:
        raise InputError(f"method={method!r} is not one of {', '.join(METHODS)}")
    if model.kind == "encoder":
        raise InputError(f"{model.name} has no language-model head, so there is no metric to patch against")
    n_steps = check.integer(n_steps, "n_steps", minimum=1)
    score, label = metric_fn(model, metric, differentiable=True)
    if over == "edges":
        from probe.analysis import edges

        edges.check_edges(model)
        hooks = edges.edge_hooks(model)
    else:
        hooks = [OVER[over].format(layer=layer) for layer in range(model.n_layers)]
    clean_run, bad_run, slot, pos, clean_logits, bad_logits = pair_runs(
        model, clean, corrupted, hooks, hooks, positions, slot_only=True
    )
    clean_value, bad_value = float(score(clean_logits)), float(score(bad_logits))
    span = clean_value - bad_value
    attrs = {
        "clean_value": clean_value,
        "corrupted_value": bad_value,
        "metric": label,
        "over": over,
        "method": method,
        "n_steps": n_steps if method == "ig" else 1,
        "model": model.name,
        "clean": clean,
        "corrupted": corrupted,
    }
    if over == "edges":
        graph, estimates = edges.edge_attribution(model, clean_run, bad_run, score, slot, method, n_steps)
        frame = edges.edge_frame(graph, estimates, span)
        frame.attrs.update(attrs)
        return frame
    grads = _gradients(model, clean_run, bad_run, hooks, score, slot, method, n_steps)
    toks = clean_run.token_strs(0)
    rows = []
    for layer, hook in enumerate(hooks):
        diff = (clean_run[hook][0] - bad_run[hook][0]).double()  # [pos, ...]
        product = diff * grads[hook]
        if over == "heads":  # [pos, head, d_head] -> per head, over the chosen positions
            per_head = product[pos].sum((0, 2))
            rows += [{"layer": layer, "head": h, "estimate": float(v)} for h, v in enumerate(per_head)]
        else:
            per_pos = product.sum(-1)
            rows += [{"layer": layer, "position": p, "token": toks[p], "estimate": float(per_pos[p])} for p in pos]
    frame = pd.DataFrame(rows)
    frame["normalized_estimate"] = frame["estimate"] / span if span != 0 else float("nan")
    frame.attrs.update(attrs, hook=OVER[over])
    return frame


def _gradients(model: Model, clean_run, bad_run, hooks, score, slot, method, n_steps) -> dict[str, torch.Tensor]:
    """{hook: [pos, ...] float64}: ∂metric/∂activation at the corrupted run ("atp"), or its mean over the
    path from the corrupted to the clean input embeddings ("ig")."""
    from probe.analysis.intervene import embedding_path
    from probe.core.forward import forward_capture

    steps = 1 if method == "atp" else n_steps
    ids = bad_run.ids.to(model.device).expand(steps, -1)
    mask = torch.ones_like(ids)
    embeds = embedding_path(model, clean_run, bad_run, steps) if method == "ig" else None
    # a zero added at every node, one per step: its gradient is the node's
    zeros = {h: torch.zeros((steps, *bad_run[h].shape[1:]), device=model.device, requires_grad=True) for h in hooks}
    patch = {h: (lambda value, ctx, z=zeros[h]: value + z.to(value.dtype)) for h in hooks}
    with torch.enable_grad():
        final = act_name("resid_post", model.n_layers - 1)
        store = forward_capture(model.adapter, ids, mask, [final], grad=True, patch=patch, embeds=embeds)
        logits = model.adapter.head(store[final][:, slot])  # the slot alone: the vocabulary is most of the head's cost
        total = sum(score(logits[i]) for i in range(steps))
        found = torch.autograd.grad(total, [zeros[h] for h in hooks])
    return {h: g.double().mean(0).cpu() for h, g in zip(hooks, found, strict=True)}
