"""Token distributions as frames, and generation with per-step candidates."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from probe import _validate as check
from probe.core.names import act_name
from probe.core.tokens import top_k_frame
from probe.errors import InputError

if TYPE_CHECKING:
    from probe.core.model import Model


def generate(
    model: Model,
    prompt: str,
    max_new_tokens: int = 20,
    k: int = 5,
    sample: bool = False,
    seed: int | None = None,
    hooks=None,
    patch: dict | None = None,
    prepend_bos: bool | None = None,
):
    """Continue ``prompt`` token by token; returns (full text, DataFrame of top-k candidates per step).

    Frame columns: step, rank, token, token_id, prob, chosen (the token that was taken at that step);
    ``.attrs["stop_reason"]``: "max_new_tokens", or "context" when the context filled up first (warned).
    Each step reruns the (short) context: simple, exactly the model's own distribution, fast enough for
    demo lengths; a KV cache is the upgrade if long generations matter. ``hooks`` are captured and
    ``patch`` applied at every step; with ``hooks`` the per-step Runs come back as a third item.
    The prompt is read as ``Model.run`` reads it (``prepend_bos``); the text returned leaves out the
    start token probe put first.
    """
    import warnings

    import pandas as pd

    prompt = check.text(prompt, "prompt")
    max_new_tokens = check.integer(max_new_tokens, "max_new_tokens", minimum=1)
    k = check.integer(k, "k", minimum=1)
    sample = check.boolean(sample, "sample")
    seed = check.optional_integer(seed, "seed")
    if model.kind != "causal":
        raise InputError(f"{model.name} is {article(model.kind)} model; generate needs a causal LM such as tiny-gpt")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    n_prompt = len(model._token_ids([prompt], prepend_bos)[0])
    if n_prompt >= model.n_ctx:
        raise InputError(
            f"the prompt is {n_prompt} tokens and {'fills' if n_prompt == model.n_ctx else 'overflows'} "
            f"{model.name}'s context of {model.n_ctx}, so nothing can be generated; shorten the prompt"
        )
    ids, _ = model.encode([prompt], prepend_bos=prepend_bos)
    lead = int(model.reads_bos(prepend_bos))
    frames, runs = [], []
    stop_reason = "max_new_tokens"
    final = [act_name("resid_post", model.n_layers - 1)]
    wanted = final if hooks is None else final + ([hooks] if isinstance(hooks, str) else list(hooks))
    for step in range(max_new_tokens):
        if ids.shape[1] >= model.n_ctx:
            stop_reason = "context"
            warnings.warn(
                f"generation stopped after {step} of {max_new_tokens} tokens: {model.name}'s context of "
                f"{model.n_ctx} tokens is full",
                stacklevel=3,
            )
            break
        run = model.run(ids, hooks=wanted, patch=_at_step(patch, step))
        runs.append(run)
        logits = run.logits_at(-1)
        if sample:
            choice = int(torch.multinomial(logits.float().softmax(-1).cpu(), 1, generator=gen))
        else:
            choice = int(logits.argmax())
        frame = top_k_frame(model, logits, k)
        frame.insert(0, "step", step)
        frame["chosen"] = frame["token_id"] == choice
        frames.append(frame)
        ids = torch.cat([ids, torch.tensor([[choice]])], dim=1)
    text = model.tokenizer.decode(ids[0, lead:], skip_special_tokens=False)
    steps = pd.concat(frames, ignore_index=True)
    steps.attrs.update(stop_reason=stop_reason, prepend_bos=bool(lead), tokens=model.to_str_tokens(ids[0].tolist()))
    return (text, steps) if hooks is None else (text, steps, runs)


def article(word: str) -> str:
    """``word`` with its indefinite article: "a causal", "an encoder"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _at_step(patch: dict | None, step: int) -> dict | None:
    """Edit functions see which generation step they are in (``ctx.step``)."""
    if not patch:
        return patch
    import dataclasses

    def at(fn):
        return lambda value, ctx: fn(value, dataclasses.replace(ctx, step=step))

    return {n: at(v) if callable(v) and not isinstance(v, torch.Tensor) else v for n, v in patch.items()}
