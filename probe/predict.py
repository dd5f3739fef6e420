"""Token distributions as frames, and generation with per-step candidates."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.model import Model


def top_k_frame(model: Model, logits: torch.Tensor, k: int) -> pd.DataFrame:
    """[vocab] logits -> DataFrame [rank, token, token_id, prob, logit] of the k most likely tokens."""
    import pandas as pd

    if k < 1:
        raise InputError("k must be at least 1")
    logits = logits.detach().float()
    probs = logits.softmax(-1)
    top = probs.topk(min(k, len(probs)))
    ids = top.indices.tolist()
    return pd.DataFrame(
        {
            "rank": range(1, len(ids) + 1),
            "token": model.to_str_tokens(ids),
            "token_id": ids,
            "prob": top.values.cpu().numpy(),
            "logit": logits[top.indices].cpu().numpy(),
        }
    )


def generate(
    model: Model,
    prompt: str,
    max_new_tokens: int = 20,
    k: int = 5,
    sample: bool = False,
    seed: int | None = None,
    hooks=None,
    patch: dict | None = None,
):
    """Continue ``prompt`` token by token; returns (full text, DataFrame of top-k candidates per step).

    Frame columns: step, rank, token, token_id, prob, chosen (the token that was taken at that step).
    Each step reruns the (short) context: simple, exactly the model's own distribution, fast enough for
    demo lengths; a KV cache is the upgrade if long generations matter. ``hooks`` are captured and
    ``patch`` applied at every step; with ``hooks`` the per-step Runs come back as a third item.
    """
    import pandas as pd

    if model.kind != "causal":
        raise InputError(f"{model.name} is a {model.kind} model; generate needs a causal LM such as tiny-gpt")
    if max_new_tokens < 1:
        raise InputError("max_new_tokens must be at least 1")
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    ids, _ = model.encode([prompt])
    frames, runs = [], []
    final = [f"blocks.{model.n_layers - 1}.hook_resid_post"]
    wanted = final if hooks is None else final + ([hooks] if isinstance(hooks, str) else list(hooks))
    for step in range(max_new_tokens):
        if ids.shape[1] >= model.n_ctx:
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
    text = model.tokenizer.decode(ids[0], skip_special_tokens=False)
    frame = pd.concat(frames, ignore_index=True)
    return (text, frame) if hooks is None else (text, frame, runs)


def _at_step(patch: dict | None, step: int) -> dict | None:
    """Edit functions see which generation step they are in (``ctx.step``)."""
    if not patch:
        return patch
    import dataclasses

    def at(fn):
        return lambda value, ctx: fn(value, dataclasses.replace(ctx, step=step))

    return {n: at(v) if callable(v) and not isinstance(v, torch.Tensor) else v for n, v in patch.items()}
