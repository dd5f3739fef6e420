"""Ranking over a vocabulary: which token ids never count as a prediction, and the top-k frame that
``Run.predictions``, generation and the lens share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from probe import _validate as check

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from probe.core.model import Model


def skipped_ids(model: Model) -> list[int]:
    """Token ids left out of ranked lists: a masked model's special tokens ([CLS], [SEP], [PAD], [MASK],
    ...), which are never a filler for the slot; none for causal models (end-of-text is a real prediction)."""
    if model.kind != "masked":
        return []
    return sorted(i for i in model.tokenizer.all_special_ids if i is not None and 0 <= i < model.vocab_size)


def for_ranking(model: Model, probs: torch.Tensor, keep: int | None = None) -> torch.Tensor:
    """``probs`` [..., vocab] with ``skipped_ids`` set to -1 (so topk and rank counts pass over them);
    ``keep`` (a target id) is never skipped."""
    skip = [i for i in skipped_ids(model) if i != keep]
    if not skip:
        return probs
    ranked = probs.clone()
    ranked[..., skip] = -1.0
    return ranked


def top_k_frame(model: Model, logits: torch.Tensor, k: int) -> pd.DataFrame:
    """[vocab] logits -> DataFrame [rank, token, token_id, prob, logit] of the k most likely tokens
    (``skipped_ids`` left out; prob is still the share of the whole distribution)."""
    import pandas as pd

    k = check.integer(k, "k", minimum=1)
    logits = logits.detach().float()
    probs = logits.softmax(-1)
    ranked = for_ranking(model, probs)
    top = ranked.topk(min(k, len(probs) - len(skipped_ids(model))))
    ids = top.indices.tolist()
    return pd.DataFrame(
        {
            "rank": range(1, len(ids) + 1),
            "token": model.to_str_tokens(ids),
            "token_id": ids,
            "prob": probs[top.indices].cpu().numpy(),
            "logit": logits[top.indices].cpu().numpy(),
        }
    )
