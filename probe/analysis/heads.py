"""Head detectors: which attention heads look at the previous token, the first token, an earlier copy of the
current token, or the token after that copy (induction)?

The protocol is TransformerLens's head detector on repeated random tokens (Olsson et al. 2022): ``batch``
sequences of ``length`` random tokens, each written twice in a row (a causal model reads its start token
first, as every probe call does; a masked model gets [CLS] and [SEP] around them). A head's score for a kind is the share of its attention, over every query
of the sequence, that lands on the key positions the kind names (TransformerLens's "mul" measure):

- ``previous_token``: the position just before the query;
- ``first_token``: position 0 (a causal model's start token, a masked model's [CLS]): the attention sink;
- ``duplicate_token``: earlier positions holding the query's own token (in the second copy: its twin);
- ``induction``: the position after an earlier copy of the query's token (the token that came next last time).

Scores are averaged over the batch. 1 means all of the head's attention goes there; a random head scores
about the share of positions the kind names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from probe import _validate as check
from probe.core.names import act_name
from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.core.model import Model

KINDS = ("previous_token", "induction", "duplicate_token", "first_token")
COLUMNS = ["kind", "layer", "head", "score"]


def detection_pattern(kind: str, ids: torch.Tensor) -> torch.Tensor:
    """[pos, pos] 0/1: where a head of ``kind`` attends, query rows by key columns, for one row of token ids
    (TransformerLens's detection patterns; ``first_token`` added), below the diagonal or on it."""
    n = ids.shape[-1]
    same = (ids[:, None] == ids[None, :]).float()  # [query, key]: the same token
    earlier = torch.tril(torch.ones(n, n), diagonal=-1)
    if kind == "previous_token":
        return torch.diag(torch.ones(n - 1), -1)
    if kind == "first_token":
        out = torch.zeros(n, n)
        out[:, 0] = 1
        return out
    duplicate = same * earlier
    if kind == "duplicate_token":
        return duplicate
    if kind == "induction":  # one past an earlier copy of the query's token, still before the query
        shifted = torch.zeros(n, n)
        shifted[:, 1:] = duplicate[:, :-1]
        return shifted * torch.tril(torch.ones(n, n))
    raise InputError(f"unknown head kind {kind!r}; choose from {', '.join(KINDS)}")


def repeated_tokens(model: Model, length: int, batch: int, seed: int) -> torch.Tensor:
    """[batch, (start token +) 2 * length] random ordinary tokens, each row written twice in a row."""
    from probe.core.tokens import skipped_ids

    generator = torch.Generator().manual_seed(seed)
    skip = set(skipped_ids(model)) | set(model.tokenizer.all_special_ids)
    pool = torch.tensor([i for i in range(model.vocab_size) if i not in skip])
    if len(pool) < length:
        raise InputError(f"{model.name} has {len(pool)} ordinary tokens; pass length={len(pool)} or fewer")
    rows = torch.stack([pool[torch.randperm(len(pool), generator=generator)[:length]] for _ in range(batch)])
    rows = torch.cat([rows, rows], dim=1)
    tok = model.tokenizer
    if model.kind == "causal":  # read as every probe call reads: the start token first
        start = model.start_token_id if model.reads_bos() else None
        first, last = ([start] if start is not None else []), []
    else:  # [CLS] ... [SEP], as the tokenizer frames a text
        first = [tok.cls_token_id] if tok.cls_token_id is not None else []
        last = [tok.sep_token_id] if tok.sep_token_id is not None else []
    before = torch.tensor(first, dtype=torch.long).expand(batch, len(first))
    after = torch.tensor(last, dtype=torch.long).expand(batch, len(last))
    return torch.cat([before, rows, after], dim=1)


def head_scores(
    model: Model,
    kinds: tuple[str, ...] | list[str] = KINDS,
    length: int = 24,
    batch: int = 8,
    seed: int = 0,
) -> pd.DataFrame:
    """How much every head behaves as each kind of head (see the module docstring).

    Args:
        kinds: any of "previous_token", "induction", "duplicate_token", "first_token".
        length: random tokens per copy (the sequence is twice this, plus the start token of a causal model).
        batch: sequences averaged over. seed: the random tokens' seed (the same seed, the same tokens).

    Returns:
        DataFrame [kind, layer, head, score] (score in 0..1); ``.attrs``: model, length, batch, seed, the
        tokens of the first sequence, and ``chance`` per kind (the score of a head attending uniformly).

    Example:
        >>> scores = probe.head_scores(gpt)
        >>> scores[scores.kind == "induction"].nlargest(3, "score")
    """
    import pandas as pd

    if isinstance(kinds, str):
        kinds = [kinds]
    kinds = list(dict.fromkeys(kinds))
    if not kinds:
        raise InputError(f"no head kinds given; choose from {', '.join(KINDS)}")
    for kind in kinds:
        if kind not in KINDS:
            raise InputError(f"unknown head kind {kind!r}; choose from {', '.join(KINDS)}")
    length = check.integer(length, "length", minimum=2)
    batch = check.integer(batch, "batch", minimum=1)
    seed = check.integer(seed, "seed")
    ids = repeated_tokens(model, length, batch, seed)
    if ids.shape[1] > model.n_ctx:
        fits = (model.n_ctx - (ids.shape[1] - 2 * length)) // 2
        raise InputError(
            f"{ids.shape[1]} tokens exceed {model.name}'s context of {model.n_ctx}; pass length={fits} or less"
        )
    run = model.run(ids, hooks=[act_name("pattern", i) for i in range(model.n_layers)])
    rows = []
    chance = {}
    for kind in kinds:
        masks = torch.stack([detection_pattern(kind, row) for row in ids])  # [batch, q, k]
        visible = torch.tril(torch.ones(ids.shape[1], ids.shape[1])) if model.kind == "causal" else None
        uniform = (
            visible / visible.sum(-1, keepdim=True)
            if visible is not None
            else torch.full_like(masks[0], 1 / ids.shape[1])
        )
        chance[kind] = float((uniform * masks).sum((-2, -1)).mean() / ids.shape[1])
        for layer in range(model.n_layers):
            pattern = run[act_name("pattern", layer)].float().cpu()  # [batch, head, q, k]
            share = (pattern * masks[:, None]).sum((-2, -1)) / pattern.sum((-2, -1))  # [batch, head]
            for head, score in enumerate(share.mean(0).tolist()):
                rows.append({"kind": kind, "layer": layer, "head": head, "score": score})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame.attrs.update(
        model=model.name,
        length=length,
        batch=batch,
        seed=seed,
        tokens=model.to_str_tokens(ids[0]),
        chance=chance,
    )
    return frame
