"""Interventions: change an activation and see what the model does. Patching, ablation, steering.

Everything here is ``model.run(..., patch={hook: tensor | fn})`` underneath, which writes through the
adapters' Points (``probe.core.patch``), so it works for every family and every hook name, head splits
included. Positions are real-token positions: with right padding, position ``p`` is the same token
in every text and ``-1`` is each text's own last token (``PatchContext.positions``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch

from probe import _validate as check
from probe.core.names import LOGITS, act_name
from probe.core.patch import PatchContext, resolve_patch
from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.core.model import Model
    from probe.core.run import Run

__all__ = ["ablate", "steer", "patching", "resolve_patch", "PatchContext", "OVER"]

# activation patching: what ``over`` patches, one hook per layer
OVER = {
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "heads": "blocks.{layer}.attn.hook_z",
}


def _check_layer(model: Model, layer: int, what: str = "layer") -> int:
    return check.index(layer, what, model.n_layers, what=f"{model.name} has layers")


def _pairs(model: Model, pairs, what: str, size: int) -> list[tuple[int, int]]:
    out = []
    for pair in pairs or []:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise InputError(f"{what}s are (layer, index) pairs, got {pair!r}")
        layer, index = pair
        out.append((_check_layer(model, layer), check.index(index, what, size, what=f"{model.name} has {what}s")))
    return out


def ablate(
    model: Model,
    text: str | list[str],
    heads: Sequence[tuple[int, int]] = (),
    neurons: Sequence[tuple[int, int]] = (),
    how: str = "zero",
    hooks: Sequence[str] | str | None = None,
) -> Run:
    """Run ``text`` with attention heads and/or MLP neurons knocked out.

    Args:
        heads: (layer, head) pairs; the head's output ``attn.hook_z`` [batch, pos, head, d_head] is set
            to zero or to its mean.
        neurons: (layer, neuron) pairs; the neuron's ``mlp.hook_post`` [batch, pos, d_mlp] is replaced.
        how: "zero", or "mean": the value's mean over every real token of ``text`` (a reference set
            of one or more texts; pass several for a better mean).
        hooks: what to capture (default: as ``model.run``).

    Returns:
        Run of the ablated model; compare with ``model.run(text)``.

    Example:
        >>> probe.ablate(gpt, "The robot must not", heads=[(0, 1)]).predictions()
    """
    if how not in ("zero", "mean"):
        raise InputError(f"how={how!r} is not an ablation; use 'zero' or 'mean'")
    heads = _pairs(model, heads, "head", model.n_heads)
    neurons = _pairs(model, neurons, "neuron", model.d_mlp)
    if not heads and not neurons:
        raise InputError("nothing to ablate; pass heads=[(layer, head)] and/or neurons=[(layer, neuron)]")
    targets: dict[str, list[int]] = {}
    for layer, h in heads:
        targets.setdefault(act_name("z", layer), []).append(h)
    for layer, i in neurons:
        targets.setdefault(act_name("post", layer), []).append(i)
    means: dict[str, torch.Tensor] = {}
    if how == "mean":
        ref = model.run(text, hooks=list(targets))
        real = _unsunk(ref)
        means = {n: ref[n][real].float().mean(0) for n in targets}  # [head, d_head] or [d_mlp]

    def knock(name: str, index: list[int]) -> Callable:
        def fn(value: torch.Tensor, ctx: PatchContext) -> torch.Tensor:
            # the index is the head (z: [batch, pos, head, d_head]) or the neuron (post: [batch, pos, d_mlp])
            value[:, :, index] = means[name][index].to(value.dtype) if name in means else 0
            return value

        return fn

    return model.run(text, hooks=hooks, patch={n: knock(n, idx) for n, idx in targets.items()})


def _unsunk(run: Run) -> torch.Tensor:
    """[batch, pos] bool: the real tokens of a run but the start token probe put first, an attention sink
    whose residual norm is ~100x the rest (SmolLM2: ~23k vs ~170); means and norms leave it out."""
    real = run.mask.bool().clone()
    if run.prepend_bos:
        real[:, 0] = False
    return real


def steering_vector(model: Model, layer: int, plus: str, minus: str) -> torch.Tensor:
    """ActAdd-style direction: resid_pre at ``layer`` of ``plus`` minus that of ``minus``, last tokens
    (never the start token, which is read first).

    Returns:
        Tensor [d_model].
    """
    name = act_name("resid_pre", _check_layer(model, layer))
    run = model.run([plus, minus], hooks=[name])
    last = [n - 1 for n in run.lengths]
    return (run[name][0, last[0]] - run[name][1, last[1]]).float()


def steer(
    model: Model,
    text: str | list[str],
    vector: torch.Tensor | tuple[str, str],
    layer: int,
    scale: float = 1.0,
    positions: Sequence[int] | None = None,
    hooks: Sequence[str] | str | None = None,
    max_new_tokens: int | None = None,
    relative: bool = True,
):
    """Add a multiple of ``vector`` to the residual stream entering block ``layer`` and run (or generate).

    Args:
        vector: Tensor [d_model], or two texts (plus, minus): their resid_pre difference at ``layer``.
        scale: with ``relative`` (default) the added vector's length as a share of the residual stream's
            mean norm at ``layer`` over the text's tokens (start token left out), so one scale means the
            same push on every model (0.5-2 steer; much more drowns the text); else the raw coefficient
            of ``vector`` (ActAdd's).
        positions: real-token positions to steer (negative from each text's end); default every position
            but the start token read first (an attention sink: steering it derails every later token).
        max_new_tokens: generate this many tokens with the steer applied at every step (causal models;
            ``text`` is then one prompt) instead of one run.

    Returns:
        Run of the steered model, or ``(text, steps)`` as ``model.generate`` when ``max_new_tokens``
        (``steps.attrs["steer"]``: layer, scale, relative, the added vector's norm and the residual norm).

    Example:
        >>> probe.steer(gpt, "I think that", (" love", " hate"), layer=2, scale=1, max_new_tokens=10)
    """
    layer = _check_layer(model, layer)
    if isinstance(vector, (tuple, list)) and len(vector) == 2 and all(isinstance(v, str) for v in vector):
        vector = steering_vector(model, layer, *vector)
    if not isinstance(vector, torch.Tensor) or vector.shape != (model.d_model,):
        got = list(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__
        raise InputError(f"the steering vector must be a tensor [d_model={model.d_model}], got {got}")
    name = act_name("resid_pre", layer)
    resid_norm = None
    if relative or max_new_tokens is not None:  # a reference forward only where its norm is used
        ref = model.run(text, hooks=[name])
        resid_norm = float(ref[name][_unsunk(ref)].float().norm(dim=-1).mean())
    vector = vector.float()
    if relative:
        length = float(vector.norm())  # a zero vector (plus and minus read alike) adds nothing
        delta = scale * resid_norm / length * vector if length else vector
    else:
        delta = scale * vector
    lead = int(model.reads_bos())  # the start token, read first, is never steered

    def add(value: torch.Tensor, ctx: PatchContext) -> torch.Tensor:  # value [batch, pos, d_model]
        d = delta.to(value.device, value.dtype)
        if positions is None:
            m = ctx.mask[..., None].to(value.dtype).clone()
            m[:, :lead] = 0  # not the start token
            return value + m * d
        rows = torch.arange(len(value), device=value.device)
        for p in positions:
            value[rows, ctx.positions(p)] += d
        return value

    patch = {act_name("resid_pre", layer): add}
    if max_new_tokens is not None:
        if not isinstance(text, str):
            raise InputError("steered generation takes one prompt (a string)")
        out = model.generate(text, max_new_tokens=max_new_tokens, patch=patch, hooks=hooks)
        out[1].attrs["steer"] = {
            "layer": layer,
            "scale": scale,
            "relative": relative,
            "vector_norm": float(delta.norm()),
            "residual_norm": resid_norm,
        }
        return out
    return model.run(text, hooks=hooks, patch=patch)


def metric_fn(model: Model, metric, differentiable: bool = False) -> tuple[Callable[[torch.Tensor], float], str]:
    """("logit_diff", a, b) | ("logit", a) | ("prob", a) | ("logprob", a) | fn(logits [vocab]) -> float.

    ``differentiable``: the function returns a 0-d tensor in the logits' graph (attribution patching), and a
    given function must return one too."""
    from probe.analysis.lens import target_id

    if callable(metric):
        name = getattr(metric, "__name__", "metric")
        if not differentiable:
            return (lambda logits: float(metric(logits))), name

        def tensor_metric(logits):
            value = metric(logits)
            if not isinstance(value, torch.Tensor):
                raise InputError(
                    f"metric {name} returned {type(value).__name__}; return a tensor (no float()) to differentiate it"
                )
            return value

        return tensor_metric, name
    kinds = {"logit_diff": 3, "logit": 2, "prob": 2, "logprob": 2}
    if not (isinstance(metric, (tuple, list)) and metric and metric[0] in kinds and len(metric) == kinds[metric[0]]):
        raise InputError(
            f"metric {metric!r} is not understood; pass ('logit_diff', word_a, word_b), ('logit', word), "
            "('prob', word), ('logprob', word) or a function of the slot's logits [vocab]"
        )
    kind, *words = metric
    ids = [target_id(model, w) for w in words]
    label = f"{kind}({', '.join(repr(model.to_str_tokens([i])[0]) for i in ids)})"
    if kind == "logit_diff":
        fn = lambda lg: lg[ids[0]].float() - lg[ids[1]].float()  # noqa: E731
    elif kind == "logit":
        fn = lambda lg: lg[ids[0]].float()  # noqa: E731
    elif kind == "prob":
        fn = lambda lg: lg.float().softmax(-1)[ids[0]]  # noqa: E731
    else:
        fn = lambda lg: lg.float().log_softmax(-1)[ids[0]]  # noqa: E731
    return (fn if differentiable else lambda lg: float(fn(lg))), label


def pair_runs(
    model: Model,
    clean: str,
    corrupted: str,
    clean_hooks: list[str],
    bad_hooks: list[str],
    positions=None,
    slot_only: bool = False,
):
    """The clean and corrupted runs of a patching experiment, checked to line up: (clean run, corrupted run,
    the slot's position, the positions to patch: ``positions`` resolved, default every one, and the two
    runs' logits at the slot [vocab]). ``slot_only``: the head runs on the slot alone (over the whole
    vocabulary it costs a third of a GPT-2-small forward at every position), for estimates; exact patching
    keeps the whole-run head, so that its numbers are the patched runs' own to the last bit."""
    final = act_name("resid_post", model.n_layers - 1)
    out = final if slot_only else LOGITS
    clean_run = model.run(clean, hooks=list(dict.fromkeys([*clean_hooks, out])))
    bad_run = model.run(corrupted, hooks=list(dict.fromkeys([*bad_hooks, out])))
    n = clean_run.lengths[0]
    if bad_run.lengths[0] != n:
        raise InputError(
            f"clean and corrupted texts must have the same number of tokens for {model.name} "
            f"({n} vs {bad_run.lengths[0]}); change words one for one"
        )
    slot = clean_run.position_of(None)
    if bad_run.position_of(None) != slot:
        raise InputError("clean and corrupted texts must have [MASK] at the same token position")
    pos = list(range(n)) if positions is None else [clean_run.position_of(p) for p in positions]
    if not slot_only:
        return clean_run, bad_run, slot, pos, clean_run.logits_at(slot), bad_run.logits_at(slot)
    with torch.inference_mode():
        clean_logits, bad_logits = (model.adapter.head(run[final][0, slot]) for run in (clean_run, bad_run))
    return clean_run, bad_run, slot, pos, clean_logits, bad_logits


def embedding_path(model: Model, clean_run, bad_run, steps: int) -> torch.Tensor:
    """[steps, pos, d_model] token embeddings at the midpoints of ``steps`` equal pieces of the straight path
    from the corrupted text's to the clean text's (the points EAP-IG takes its gradients at)."""
    emb = model.hf.get_input_embeddings()
    with torch.no_grad():
        start, end = emb(bad_run.ids.to(model.device)).float(), emb(clean_run.ids.to(model.device)).float()
    alphas = (torch.arange(steps, device=start.device, dtype=torch.float32) + 0.5) / steps
    return (start + alphas[:, None, None] * (end - start)).to(emb.weight.dtype)


def patching(
    model: Model,
    clean: str,
    corrupted: str,
    metric=("logit_diff", " not", " be"),
    over: str = "resid_pre",
    positions: Sequence[int] | None = None,
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Activation patching: run ``corrupted`` with one clean activation put back, for every layer and
    position (or head), and measure how much of the clean behaviour returns.

    Args:
        clean, corrupted: two texts with the same number of tokens (masked models: [MASK] in the same place).
        metric: measured on the slot's logits (causal: after the last token; masked: at [MASK]):
            ("logit_diff", a, b) = logit(a) - logit(b), ("logit", a), ("prob", a), ("logprob", a), or
            a function of the logits [vocab] returning a float.
        over: "resid_pre" | "attn_out" | "mlp_out" (one patch per layer and position) or "heads"
            (``attn.hook_z`` of one head at ``positions``, default all, per layer and head).
        positions: real-token positions to patch (negative from the end); default every position.
        layers: default every layer.

    Returns:
        DataFrame [layer, position, token, effect, normalized_effect] ("heads": [layer, head, effect,
        normalized_effect]). effect = metric(patched) - metric(corrupted); normalized_effect divides by
        metric(clean) - metric(corrupted): 1 means this activation alone restores the clean behaviour.
        ``.attrs``: clean_value, corrupted_value, metric, over, hook. Plot: ``probe.viz.patching(frame)``.

    Example:
        >>> probe.patching(gpt, "The robot must not", "The robot must be", ("logit_diff", " hurt", " a"))
    """
    import pandas as pd

    if over not in OVER:
        raise InputError(f"over={over!r} is not patchable; use one of {', '.join(OVER)}")
    if model.kind == "encoder":
        raise InputError(f"{model.name} has no language-model head, so there is no metric to patch against")
    score, label = metric_fn(model, metric)
    layers = [_check_layer(model, la) for la in (range(model.n_layers) if layers is None else layers)]
    hooks = [OVER[over].format(layer=la) for la in layers]
    clean_run, bad_run, slot, pos, clean_logits, bad_logits = pair_runs(model, clean, corrupted, hooks, [], positions)
    clean_value, bad_value = score(clean_logits), score(bad_logits)
    span = clean_value - bad_value
    toks = clean_run.token_strs(0)
    rows = []
    for layer, hook in zip(layers, hooks):
        source = clean_run[hook]  # [1, pos, ...]
        if over == "heads":  # row j patches head j at the chosen positions
            units = list(range(model.n_heads))

            def fn(value, ctx, source=source, units=units):
                for j, h in enumerate(units):
                    value[j, pos, h] = source[0, pos, h].to(value.dtype)
                return value
        else:  # row j patches position units[j]
            units = pos

            def fn(value, ctx, source=source, units=units):
                rows_ = torch.arange(len(units))
                value[rows_, units] = source[0, units].to(value.dtype)
                return value

        ids = bad_run.ids.repeat(len(units), 1)
        patched = model.run(ids, hooks=[LOGITS], patch={hook: fn}, batch_size=max(batch_size, len(units)))
        for j, unit in enumerate(units):
            effect = score(patched[LOGITS][j, slot]) - bad_value
            row = {"layer": layer}
            row.update({"head": unit} if over == "heads" else {"position": unit, "token": toks[unit]})
            row.update(effect=effect, normalized_effect=effect / span if span != 0 else float("nan"))
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs.update(
        clean_value=clean_value,
        corrupted_value=bad_value,
        metric=label,
        over=over,
        hook=OVER[over],
        model=model.name,
        clean=clean,
        corrupted=corrupted,
    )
    return frame
