"""Logit lens: project every layer's residual stream through the model's own head.

Causal models: final layer norm + unembedding. Masked models: the MLM head's transform (dense, GELU,
LayerNorm) + decoder, which is what BERT itself applies to its last layer (Ecco refuses masked models
here; we don't).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from probe import _validate as check
from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.run import Run


def target_id(model, target: str | int) -> int:
    """A word or token id -> one token id; words try the spaced form first (" not" for BPE models)."""
    target = check.target(target)
    if isinstance(target, int):
        if not 0 <= target < model.vocab_size:
            raise InputError(f"target id {target} is outside {model.name}'s vocabulary (0..{model.vocab_size - 1})")
        return target
    tok = model.tokenizer
    word = target.strip()
    tries = [tok.encode(" " + word, add_special_tokens=False), tok.encode(word, add_special_tokens=False)]
    for ids in tries:
        if len(ids) == 1:
            return ids[0]
    pieces = model.to_str_tokens(tries[0])
    raise InputError(
        f"target {target!r} is {len(pieces)} tokens for {model.name} ({pieces}); pass one token or a token id"
    )


def logit_lens(run: Run, k: int = 5, position: int | None = None, target=None, index: int = 0) -> pd.DataFrame:
    import pandas as pd

    from probe.predict import for_ranking, skipped_ids

    k = check.integer(k, "k", minimum=1)
    target = check.target(target)
    model = run.model
    pos = run.position_of(position, index)
    n = model.n_layers
    with torch.inference_mode():
        stacked = torch.stack([run.resid(layer)[index, pos] for layer in range(n)])  # [n_layers, d_model]
        logits = list(model.adapter.head(stacked.to(model.device)).float())  # the run may be offloaded
    # the top layer is the model's own output: take it from the same place predictions() does
    logits.append(run.logits_at(pos, index).float())
    tid = target_id(model, target) if target is not None else None
    rows = []
    for layer, lg in enumerate(logits):
        probs = lg.softmax(-1)
        ranked = for_ranking(model, probs, keep=tid)  # the same candidates as predictions()
        top = for_ranking(model, probs).topk(min(k, len(probs) - len(skipped_ids(model))))
        ids = top.indices.tolist()
        frame = pd.DataFrame(
            {
                "layer": layer,
                "rank": range(1, len(ids) + 1),
                "token": model.to_str_tokens(ids),
                "token_id": ids,
                "prob": probs[top.indices].cpu().numpy(),
            }
        )
        if tid is not None:
            frame["target_rank"] = int((ranked > probs[tid]).sum()) + 1
            frame["target_prob"] = float(probs[tid])
        rows.append(frame)
    out = pd.concat(rows, ignore_index=True)
    out.attrs.update(position=pos, token=run.token_strs(index)[pos], target=target, target_id=tid)
    return out
