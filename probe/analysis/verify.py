"""``probe.verify``: prove, for one loaded model, that probe's hooks equal what the model computes.

Every value probe can check against Hugging Face's own forward pass is compared on a right-padded batch
(real positions only):

- the residual stream entering every block vs HF ``hidden_states`` (the last one vs the final norm's
  output where HF applies it, as GPT-2 and Llama do);
- every attention pattern vs HF ``attentions`` (eager kernel);
- the logits vs HF's logits (models with an LM head), through the capture path and the fast path
  (sdpa kernel, early exit, head run on the stored final residual);
- the residual identities of the block's form: pre-LN blocks (GPT-2, Llama) ``resid_mid = resid_pre +
  attn_out`` and ``resid_post = resid_mid + mlp_out``; parallel blocks ``resid_post = resid_pre +
  attn_out + mlp_out``; post-LN blocks (BERT) ``ln1.hook_in = resid_pre + attn.o.hook_out``.

A hook bound to the wrong module (an adapter bug) breaks one of these and fails the check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from probe.core.names import act_name
from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.core.model import Model

TEXTS = (
    "The robot must not hurt the human.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "A short one.",
)
# absolute + relative (to the largest reference value) tolerance per dtype
TOLERANCE = {torch.float32: (1e-5, 1e-4), torch.float64: (1e-8, 1e-7)}
LOW_PRECISION = (1e-2, 1e-2)


def _texts_for(model: Model, texts) -> list[str]:
    if texts is None:
        mask = model.tokenizer.mask_token or "[MASK]"
        texts = [t.replace(" not ", f" {mask} ", 1) if model.kind == "masked" else t for t in TEXTS]
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise InputError("verify needs one or more non-empty texts, e.g. texts=['The robot must not hurt the human.']")
    return texts


def verify(model: Model | str, texts: list[str] | str | None = None) -> pd.DataFrame:
    """Compare every hook probe can check against Hugging Face's own outputs for ``model``.

    Args:
        model: a loaded Model, or a name / path for ``probe.load``.
        texts: texts to run (a right-padded batch); default: three sentences of different lengths.

    Returns:
        DataFrame [check, max_abs_diff, tolerance, ok], one row per check; ``.attrs["ok"]`` is True when
        every check passed, ``.attrs["model"]`` the model's name. The tolerance is dtype-aware:
        ``atol + rtol * max|reference|`` with (1e-5, 1e-4) in float32, (1e-2, 1e-2) in float16/bfloat16.

    Example:
        >>> table = probe.verify("tiny-gpt"); table.attrs["ok"]
        True
    """
    import pandas as pd

    from probe.core.model import Model, load

    if not isinstance(model, Model):
        model = load(model)
    texts = _texts_for(model, texts)
    run = model.run(texts, hooks=model.hook_names)
    real = run.mask.bool()  # [batch, pos]
    dtype = next(model.hf.parameters()).dtype
    atol, rtol = TOLERANCE.get(dtype, LOW_PRECISION)
    rows: list[dict] = []

    def check(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
        ours, theirs = ours.detach().double().cpu(), theirs.detach().double().cpu()
        if ours.shape != theirs.shape:
            rows.append({"check": name, "max_abs_diff": float("inf"), "tolerance": 0.0, "ok": False})
            return
        diff = float((ours - theirs).abs().max()) if ours.numel() else 0.0
        tol = atol + rtol * (float(theirs.abs().max()) if theirs.numel() else 0.0)
        rows.append({"check": name, "max_abs_diff": diff, "tolerance": tol, "ok": diff <= tol})

    out = _hf_forward(model, run.ids, run.mask)
    n = model.n_layers
    adapter = model.adapter
    for i in range(n):
        check(
            f"hidden_states[{i}] = blocks.{i}.hook_resid_pre",
            run[act_name("resid_pre", i)][real],
            out.hidden_states[i][real],
        )
    final = run[act_name("resid_post", n - 1)]
    norm_in_body = "ln_final.hook_normalized" in run and "ln_final.hook_normalized" not in adapter.head_points
    last = getattr(adapter, "last_hidden_hook", None)
    if last is not None and last in run:
        check(f"hidden_states[{n}] = {last}", run[last][real], out.hidden_states[n][real])
    elif norm_in_body:
        check(
            f"hidden_states[{n}] = ln_final.hook_normalized",
            run["ln_final.hook_normalized"][real],
            out.hidden_states[n][real],
        )
    else:
        check(f"hidden_states[{n}] = blocks.{n - 1}.hook_resid_post", final[real], out.hidden_states[n][real])
    for i, pattern in enumerate(out.attentions):
        check(
            f"attentions[{i}] = blocks.{i}.attn.hook_pattern",
            run[act_name("pattern", i)].transpose(1, 2)[real],
            pattern.transpose(1, 2)[real],
        )
    if model.kind != "encoder":
        check("logits (every hook captured)", run["logits"][real], out.logits[real])
        fast = model.run(texts, hooks=["logits"])
        check("logits (fast path: sdpa, head on the stored residual)", fast["logits"][real], out.logits[real])
    for name, lhs, rhs in _identities(model, run):
        check(name, lhs[real], rhs[real])
    table = pd.DataFrame(rows, columns=["check", "max_abs_diff", "tolerance", "ok"])
    table.attrs.update(ok=bool(table["ok"].all()), model=model.name, dtype=str(dtype).replace("torch.", ""))
    return table


def _hf_forward(model: Model, ids: torch.Tensor, mask: torch.Tensor):
    """HF's own forward with the eager attention kernel (the one that returns attention weights)."""
    from probe.core.capture import eager_attention

    with torch.inference_mode(), eager_attention(model.hf, True):
        kwargs = model.adapter.body_inputs(ids, mask)
        from probe.core.adapters.base import _call_options

        return model.hf(**kwargs, **_call_options(type(model.hf)), output_hidden_states=True, output_attentions=True)


def _identities(model: Model, run) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, left, right) pairs that must be equal for the adapter's block form."""
    form = getattr(model.adapter, "block_form", "pre_ln")
    out = []
    for i in range(model.n_layers):
        p = f"blocks.{i}."

        def have(*names: str, p: str = p) -> bool:
            return all(p + n in run for n in names)

        if form == "pre_ln" and have("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "hook_mlp_out"):
            out.append(
                (
                    f"{p}hook_resid_mid = resid_pre + attn_out",
                    run[p + "hook_resid_mid"],
                    run[p + "hook_resid_pre"] + run[p + "hook_attn_out"],
                )
            )
            out.append(
                (
                    f"{p}hook_resid_post = resid_mid + mlp_out",
                    run[p + "hook_resid_post"],
                    run[p + "hook_resid_mid"] + run[p + "hook_mlp_out"],
                )
            )
        elif form == "parallel" and have("hook_resid_pre", "hook_attn_out", "hook_mlp_out"):
            out.append(
                (
                    f"{p}hook_resid_post = resid_pre + attn_out + mlp_out",
                    run[p + "hook_resid_post"],
                    run[p + "hook_resid_pre"] + run[p + "hook_attn_out"] + run[p + "hook_mlp_out"],
                )
            )
        elif form == "post_ln" and have("hook_resid_pre", "attn.o.hook_out", "ln1.hook_in"):
            out.append(
                (
                    f"{p}ln1.hook_in = resid_pre + attn.o.hook_out",
                    run[p + "ln1.hook_in"],
                    run[p + "hook_resid_pre"] + run[p + "attn.o.hook_out"],
                )
            )
    return out
