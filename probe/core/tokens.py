"""Token rows and ranking over a vocabulary: padding a batch, which token ids never count as a
prediction, and the top-k frame that ``Run.predictions``, generation and the lens share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from probe import _validate as check
from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from probe.core.model import Model


def pad(rows: list[list[int]], pad_id: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows -> (ids [batch, pos], mask [batch, pos]), right-padded with ``pad_id`` (0 if None)."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id or 0, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    return ids, mask


def mask_slot(model: Model, row: torch.Tensor) -> int:
    """Where a masked model fills in: the one mask token of ``row`` (a text's real token ids)."""
    tok = model.tokenizer
    hits = (row == tok.mask_token_id).nonzero().flatten().tolist() if tok.mask_token_id is not None else []
    if len(hits) > 1:
        raise InputError(
            f"the text has {len(hits)} {tok.mask_token} tokens (positions {', '.join(map(str, hits))}); pass position= "
            f"to pick one, e.g. position={hits[0]}"
        )
    if not hits:
        mask = tok.mask_token or "[MASK]"
        raise InputError(
            f"{model.name} is a masked LM and the text has no {mask} token; put {mask} where it "
            f"should fill in, e.g. 'The robot must {mask} hurt the human.', or pass position="
        )
    return hits[0]


def position_in(model: Model, row: torch.Tensor, position: int | None, text: int = 0) -> int:
    """A position within one text's real token ids ``row`` (0..len-1): negative counts from the end;
    None is where the model predicts (a masked model's mask token, a causal model's last token)."""
    position = check.optional_integer(position, "position")
    if position is None:
        return mask_slot(model, row) if model.kind == "masked" else len(row) - 1
    return check.index(position, "position", len(row), what=f"text {text} has {len(row)} tokens,")


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
