"""Logit lens: project every layer's residual stream through the model's own head.

Causal models: final layer norm + unembedding. Masked models: the MLM head's transform (dense, GELU,
LayerNorm) + decoder, which is what BERT itself applies to its last layer (Ecco refuses masked models
here; we don't).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from probe import _validate as check
from probe.core.names import LOGITS
from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.core.run import Run


def target_id(model, target: str | int, what: str = "target") -> int:
    """A word or token id -> one token id; words try the spaced form first (" not" for BPE models).
    ``what`` names the argument in errors ("contrast")."""
    target = check.target(target)
    if isinstance(target, int):
        if not 0 <= target < model.vocab_size:
            raise InputError(f"{what} id {target} is outside {model.name}'s vocabulary (0..{model.vocab_size - 1})")
        return target
    tok = model.tokenizer
    word = target.strip()
    tries = [tok.encode(" " + word, add_special_tokens=False), tok.encode(word, add_special_tokens=False)]
    for ids in tries:
        if len(ids) == 1:
            return ids[0]
    pieces = model.to_str_tokens(tries[0])
    raise InputError(
        f"{what} {target!r} is {len(pieces)} tokens for {model.name} ({pieces}); pass one token or a token id"
    )


def _reader(run: Run, lens):
    """layer, residual stream -> logits: the model's own head, or a tuned lens checked against the model."""
    if lens is None:
        return lambda layer, resid: run.model.adapter.head(resid)
    from probe.analysis.tuned_lens import TunedLens

    if not isinstance(lens, TunedLens):
        raise InputError(f"lens must be a TunedLens (probe.train_lens / probe.load_lens), got {type(lens).__name__}")
    lens.check(run.model)
    return lambda layer, resid: lens(resid, layer)


def logit_lens(
    run: Run, k: int = 5, position: int | None = None, target=None, index: int = 0, lens=None
) -> pd.DataFrame:
    import pandas as pd

    from probe.core.tokens import for_ranking, skipped_ids

    k = check.integer(k, "k", minimum=1)
    target = check.target(target)
    model = run.model
    pos = run.position_of(position, index)
    n = model.n_layers
    read = _reader(run, lens)
    with torch.inference_mode():
        stacked = torch.stack([run.resid(layer)[index, pos] for layer in range(n)])  # [n_layers, d_model]
        if lens is None:  # one head call for every layer
            logits = list(read(None, stacked.to(model.device)).float())  # the run may be offloaded
        else:
            logits = [read(layer, stacked[layer].to(model.device)).float() for layer in range(n)]
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
    out.attrs.update(
        position=pos,
        token=run.token_strs(index)[pos],
        target=target,
        target_id=tid,
        lens="logit" if lens is None else "tuned",
    )
    return out


def _head_by_layer(run: Run, index: int, length: int, rows: int = 512, lens=None):
    """layer -> [pos, vocab] logits of the model's head on that layer's residual stream.

    The head runs on several layers at once (about ``rows`` vectors per call): each call reads the whole
    unembedding, so one call per chunk instead of one per layer is 3-8x faster on CPU for SmolLM2-sized
    vocabularies (``benchmarks/dashboard.py``), while only one chunk's logits are held at a time.
    """
    model = run.model
    if lens is not None:
        read = _reader(run, lens)
        return lambda layer: read(layer, run.resid(layer)[index, :length].to(model.device))
    per_call = max(1, rows // max(length, 1))
    chunk: dict[int, torch.Tensor] = {}

    def head(layer: int) -> torch.Tensor:
        if layer not in chunk:
            chunk.clear()
            layers = range(layer, min(layer + per_call, model.n_layers))
            stacked = torch.cat([run.resid(i)[index, :length] for i in layers])  # [len(layers) * pos, d_model]
            logits = model.adapter.head(stacked.to(model.device))  # the run may be offloaded
            chunk.update({i: logits[j * length : (j + 1) * length] for j, i in enumerate(layers)})
        return chunk[layer]

    return head


def lens_table(run: Run, index: int = 0, k: int = 3, lens=None) -> pd.DataFrame:
    """The logit lens at every real position at once (one head call per layer, not per position).

    Layer ``n_layers`` is the model's own output (the stored logits when captured), as in ``run.logit_lens``.
    For causal models ``next_rank`` / ``next_prob`` say how each layer ranks the token that actually comes
    next (NaN at the last position).

    Returns:
        DataFrame [layer, position, token, rank, top_token, top_id, prob, next_rank, next_prob],
        ``k`` rows (ranks) per (layer, position). ``lens``: a ``TunedLens`` to read layers 0 .. n_layers - 1
        with instead of the model's head (``.attrs["lens"]`` says which).
    """
    import pandas as pd

    from probe.core.tokens import for_ranking, skipped_ids

    run._check_index(index)
    model = run.model
    length = run.lengths[index]
    toks = run.token_strs(index)
    ids = run.ids[index, :length]
    causal = model.kind == "causal"
    head = _head_by_layer(run, index, length, lens=lens)
    frames = []
    with torch.inference_mode():
        for layer in range(model.n_layers + 1):
            if layer == model.n_layers and LOGITS in run.cache:
                logits = run.cache[LOGITS][index, :length]
            else:
                logits = head(layer)  # [pos, vocab]
            probs = logits.float().softmax(-1)
            # masked models: special tokens are never fillers, as in run.predictions()
            top = for_ranking(model, probs).topk(min(k, probs.shape[-1] - len(skipped_ids(model))), dim=-1)
            frame = {
                "layer": layer,
                "position": np.repeat(np.arange(length), top.indices.shape[1]),
                "rank": np.tile(np.arange(1, top.indices.shape[1] + 1), length),
                "top_id": top.indices.flatten().cpu().numpy(),
                "prob": top.values.flatten().cpu().numpy(),
            }
            if causal:
                nxt = ids[1:]
                p_next = probs[:-1].gather(-1, nxt[:, None])  # [pos - 1, 1]
                rank = (probs[:-1] > p_next).sum(-1) + 1
                frame["next_rank"] = np.repeat(
                    np.append(rank.cpu().numpy().astype(float), np.nan), top.indices.shape[1]
                )
                frame["next_prob"] = np.repeat(np.append(p_next[:, 0].cpu().numpy(), np.nan), top.indices.shape[1])
            frames.append(pd.DataFrame(frame))
    out = pd.concat(frames, ignore_index=True)
    vocab_strs = dict(zip(out["top_id"].unique().tolist(), model.to_str_tokens(out["top_id"].unique().tolist())))
    out.insert(2, "token", np.array(toks, dtype=object)[out["position"].to_numpy()])
    out.insert(4, "top_token", out["top_id"].map(vocab_strs))
    if not causal:
        out["next_rank"] = np.nan
        out["next_prob"] = np.nan
    out.attrs["lens"] = "logit" if lens is None else "tuned"
    return out
