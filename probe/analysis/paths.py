"""Path patching: what one head's output does through one path only (Wang et al. 2022, direct paths).

``path_patching`` takes the sender head's clean-minus-corrupted write (its z through W_O) and adds it to
the residual stream as one receiver head alone reads it (its q, k or v input, through that block's own
attention norm), while every other reader, the rest of the network included, still sees the corrupted
run. The metric then measures that edge alone: the sender's effect through the receiver, not through the
residual stream at large. Equal to TransformerLens's ``get_act_patch_direct_path`` on the same weights.

Post-LN (BERT-style) blocks normalise the stream after each sublayer, so the sender's write reaches a later
head only through those norms: the receiver reads the corrupted stream plus the sender's change carried
through every norm in between, each recomputed on the corrupted stream with the change added (norm(x + d) −
norm(x)); every other reader, the MLPs in between included, still sees the corrupted run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from probe import _validate as check
from probe.core import readout
from probe.core.names import LOGITS, act_name
from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.core.model import Model

COMPONENTS = ("q", "k", "v")


def path_patching(
    model: Model,
    clean: str,
    corrupted: str,
    sender: tuple[int, int],
    receivers: Sequence[tuple[int, int]] | None = None,
    metric=("logit_diff", " not", " be"),
    component: str = "q",
) -> pd.DataFrame:
    """Patch the direct path from head ``sender`` into each receiver head's ``component`` input, one at a time.

    Args:
        clean, corrupted, metric: as ``probe.patching`` (texts of the same length; the slot's logits).
        sender: (layer, head) whose output is patched (negative indices count from the end).
        receivers: (layer, head) pairs after the sender's layer; default every head of every later layer.
            Grouped-query models (LLaMA, SmolLM2) read k and v once per key/value head, shared by a group of
            query heads: for component "k" or "v" a receiver is (layer, key/value head), and patching it
            moves every query head of its group.
        component: "q", "k" or "v": which input of the receiver reads the sender's clean write.

    Returns:
        DataFrame [layer, head, component, value, effect, normalized_effect], one row per receiver (``head``
        is the key/value head for a grouped-query k or v; ``.attrs["kv_heads"]`` says so): value is
        the metric with that path patched (TransformerLens's number), effect = value − metric(corrupted),
        normalized_effect divides by metric(clean) − metric(corrupted). ``.attrs``: sender, clean_value,
        corrupted_value, metric, model, clean, corrupted. All receivers run as one batch.

    Example:
        >>> probe.path_patching(gpt, clean, corrupted, sender=(0, 1), metric=("logit_diff", " Mary", " John"))
    """
    import pandas as pd

    from probe.analysis.intervene import metric_fn, pair_runs

    if model.kind == "encoder":
        raise InputError(f"{model.name} has no language-model head, so there is no metric to patch against")
    from probe.analysis.edges import check_edges

    check_edges(model)
    if component not in COMPONENTS:
        raise InputError(f"component {component!r} is not one of q, k, v")
    n_layers, n_heads = model.n_layers, model.n_heads
    if not (isinstance(sender, (tuple, list)) and len(sender) == 2):
        raise InputError(f"sender must be a (layer, head) pair, got {sender!r}")
    layer = check.index(sender[0], "sender layer", n_layers, what=f"{model.name} has layers")
    head = check.index(sender[1], "sender head", n_heads, what=f"{model.name} has heads")
    shared = component != "q" and getattr(model.adapter, "n_kv_heads", n_heads) != n_heads
    count = model.adapter.n_kv_heads if shared else n_heads
    if receivers is None:
        receivers = [(la, h) for la in range(layer + 1, n_layers) for h in range(count)]
    what = "key/value heads" if shared else "heads"
    receivers = [
        (
            check.index(la, "receiver layer", n_layers, what=f"{model.name} has layers"),
            check.index(h, "receiver head", count, what=f"{model.name} has {what}"),
        )
        for la, h in receivers
    ]
    if not receivers:
        raise InputError(
            f"head {layer}.{head} is in the last layer: no later head receives from it; pick an earlier sender"
        )
    early = [r for r in receivers if r[0] <= layer]
    if early:
        raise InputError(
            f"receiver {early[0]} does not come after the sender's layer {layer}; receivers read later layers"
        )
    score, label = metric_fn(model, metric)
    z = act_name("z", layer)
    layers = sorted({la for la, _ in receivers})
    inputs = [act_name("resid_pre", la) for la in layers] + [act_name(component, la) for la in layers]
    adapter = model.adapter
    norms = {la: readout.stream_norms(adapter, la) for la in range(layer, layers[-1])}
    inputs += [point for pair in norms.values() if pair for point in pair]
    clean_run, bad_run, slot, _, clean_logits, bad_logits = pair_runs(model, clean, corrupted, [z], [z, *inputs])
    assert all(bad_run[act_name(component, la)].shape[2] == count for la in layers)
    delta = readout.head_write(adapter, layer, head, clean_run[z]) - readout.head_write(
        adapter, layer, head, bad_run[z]
    )
    carried = {}  # layer -> the sender's change as that layer's heads read it
    for la in range(layer, layers[-1]):
        for point in norms[la] or ():  # post-LN: through the norm after attention, then after the MLP
            delta = readout.norm_shift(adapter, point, bad_run[point][0], delta.double()).to(delta.dtype)
        carried[la + 1] = delta.to(bad_run[act_name("resid_pre", la + 1)].device)
    new = {
        la: readout.head_inputs(adapter, la, component, bad_run[act_name("resid_pre", la)] + carried[la])
        for la in layers
    }

    def patch_for(la: int):
        rows = [(j, h) for j, (rl, h) in enumerate(receivers) if rl == la]

        def fn(value, ctx):
            for j, h in rows:
                if ctx.offset <= j < ctx.offset + len(value):
                    value[j - ctx.offset, :, h] = new[la][0, :, h].to(value.dtype)
            return value

        return fn

    ids = bad_run.ids.repeat(len(receivers), 1)
    patch = {act_name(component, la): patch_for(la) for la in layers}
    patched = model.run(ids, hooks=[LOGITS], patch=patch, batch_size=len(receivers))
    clean_value, bad_value = score(clean_logits), score(bad_logits)
    span = clean_value - bad_value
    rows = []
    for j, (la, h) in enumerate(receivers):
        value = score(patched[LOGITS][j, slot])
        effect = value - bad_value
        rows.append(
            {
                "layer": la,
                "head": h,
                "component": component,
                "value": value,
                "effect": effect,
                "normalized_effect": effect / span if span != 0 else float("nan"),
            }
        )
    frame = pd.DataFrame(rows)
    frame.attrs.update(
        sender=(layer, head),
        kv_heads=shared,
        clean_value=clean_value,
        corrupted_value=bad_value,
        metric=label,
        model=model.name,
        clean=clean,
        corrupted=corrupted,
    )
    return frame
