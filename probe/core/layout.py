"""The one Parquet row layout of captured activations, shared by ``Run.to_parquet`` and ``probe.extract``.

One row per (text, selected token); columns, in order:

- the text's index (``text_index`` for a Run, ``doc_id`` for an extraction), ``position`` (int32; -1 for a
  ``"mean"`` row), ``token`` (the token as decoded alone), ``token_id`` (int64; -1 for a mean row),
  ``special`` (bool: the tokenizer's special tokens such as [CLS] / [SEP] are marked, not dropped);
- one column per hook holding that token's values flattened in row-major order.

Hook columns carry their shape in the Parquet field metadata, so a reader reshapes without guessing:
``probe.dims`` (JSON list, e.g. ``["head", "dim"]``) and ``probe.shape`` (JSON list, e.g. ``[4, 8]``).
Every hook is a ``fixed_size_list<float>`` except attention patterns: a pattern row is the token's
query row, ``[head, key_position]``, over the text's *own* real tokens only (no padding, no NaN), so its
width varies with the text's length and the column is a ``list<float>``; its ``probe.shape`` is
``[n_heads, -1]`` and ``-1`` is that text's token count (``row.reshape(n_heads, -1)``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from probe.core.names import dims_of
from probe.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

    from probe.core.model import Model

POSITIONS = ("all", "first", "last", "mask", "mean")
DTYPES = {"float16": torch.float16, "float32": torch.float32}
LAYOUT_VERSION = "1"


def is_pattern(name: str) -> bool:
    return dims_of(name)[0] == "head"


def row_shape(name: str, value: torch.Tensor) -> tuple[list[str], list[int]]:
    """Per-row (dims, shape) of hook ``name`` whose captured value (leading batch dim) is ``value``."""
    if is_pattern(name):  # [batch, head, q, k] -> a row is [head, key_position] over the text's length
        return ["head", "key_position"], [int(value.shape[1]), -1]
    dims = [d for d in dims_of(name) if d != "position"]
    return dims, [int(s) for s in value.shape[2:]]


def check_positions(positions: str) -> None:
    if positions not in POSITIONS:
        raise InputError(f"positions={positions!r} is not one of {', '.join(POSITIONS)}")


def check_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise InputError(f"dtype={dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def select_positions(
    model: Model, ids: torch.Tensor, lengths: Sequence[int], positions: str, lead: int = 0
) -> list[np.ndarray]:
    """For each text, the positions whose rows are kept (``"mean"``: averaged later). ``lead``: 1 when the
    start token was put first (``prepend_bos``); "first" and "mean" then mean the text's own tokens."""
    rows = []
    mask_id = model.tokenizer.mask_token_id
    if positions == "mask" and mask_id is None:
        raise InputError(f"{model.name}'s tokenizer has no mask token; use positions='all', 'first', 'last' or 'mean'")
    ids_np = ids.cpu().numpy()
    for b, length in enumerate(lengths):
        if positions == "all":
            rows.append(np.arange(length))
        elif positions == "mean":
            rows.append(np.arange(min(lead, length - 1), length))
        elif positions == "first":
            rows.append(np.array([min(lead, length - 1)]))
        elif positions == "last":
            rows.append(np.array([length - 1]))
        else:
            rows.append(np.flatnonzero(ids_np[b, :length] == mask_id))
    return rows


def token_strings(model: Model, token_ids: np.ndarray) -> list[str]:
    """Decode each id alone (as ``Model.to_str_tokens``), with a per-model cache: corpora repeat tokens."""
    cache: dict[int, str] = model.__dict__.setdefault("_token_str_cache", {})
    missing = sorted({int(i) for i in token_ids} - cache.keys())
    if missing:
        cache.update(zip(missing, model.to_str_tokens(missing)))
    return [cache[int(i)] for i in token_ids]


def rows_table(
    model: Model,
    ids: torch.Tensor,
    mask: torch.Tensor,
    store: dict[str, torch.Tensor],
    *,
    text_ids: Sequence[int],
    positions: str = "all",
    dtype: str = "float32",
    index_name: str = "doc_id",
    lead: int = 0,
) -> pa.Table:
    """Captured tensors of one batch -> the row layout above, as a pyarrow Table.

    Args:
        ids, mask: [batch, pos] token ids and attention mask (right padding).
        store: {hook name: tensor with a leading batch dim}, as ``forward_capture`` returns it.
        text_ids: [batch] the index written to ``index_name`` for each text.
        positions: "all" | "first" | "last" | "mask" | "mean" (one row per text, averaged over its tokens).
        dtype: "float16" or "float32" storage of the hook values.
        lead: 1 when the start token was put before each text (``prepend_bos``): "first" is then the
            text's first token and "mean" averages the text's own tokens, not the attention sink.
    """
    import pyarrow as pa

    torch_dtype = check_dtype(dtype)
    lengths = [int(n) for n in mask.sum(1).tolist()]
    keep = select_positions(model, ids, lengths, positions, lead)
    counts = [1 for _ in keep] if positions == "mean" else [len(k) for k in keep]
    b_idx = torch.as_tensor(np.repeat(np.arange(len(keep)), counts), dtype=torch.long)
    ids_cpu = ids.cpu()
    special_ids = np.array(sorted(model.tokenizer.all_special_ids or []), dtype=np.int64)
    if positions == "mean":
        p_idx = torch.full((len(keep),), -1, dtype=torch.long)
        token_id = np.full(len(keep), -1, dtype=np.int64)
        tokens = pa.nulls(len(keep), pa.string())
    else:
        p_idx = torch.as_tensor(np.concatenate(keep) if keep else np.zeros(0), dtype=torch.long)
        token_id = ids_cpu[b_idx, p_idx].numpy().astype(np.int64)
        tokens = pa.array(token_strings(model, token_id), pa.string())
    columns = {
        index_name: pa.array(np.asarray(text_ids, dtype=np.int64)[b_idx.numpy()]),
        "position": pa.array(p_idx.numpy().astype(np.int32)),
        "token": tokens,
        "token_id": pa.array(token_id),
        "special": pa.array(np.isin(token_id, special_ids)),
    }
    fields = [pa.field(n, c.type) for n, c in columns.items()]
    for name, value in store.items():
        dims, shape = row_shape(name, value)
        meta = {b"probe.dims": json.dumps(dims).encode(), b"probe.shape": json.dumps(shape).encode()}
        if is_pattern(name):
            array = _pattern_rows(value, lengths, keep, positions, torch_dtype)
        else:
            array = _token_rows(value, mask, b_idx, p_idx, positions, torch_dtype, keep)
        columns[name] = array
        fields.append(pa.field(name, array.type, metadata=meta))
    schema = pa.schema(fields, metadata={b"probe.layout": LAYOUT_VERSION.encode()})
    return pa.Table.from_arrays(list(columns.values()), schema=schema)


def _token_rows(value, mask, b_idx, p_idx, positions, torch_dtype, keep):
    """[batch, pos, *shape] -> fixed_size_list rows [rows, prod(shape)]."""
    import pyarrow as pa

    value = value.detach()
    if positions == "mean":  # over each text's kept positions
        m = torch.zeros(mask.shape, dtype=torch.float32)
        for b, k in enumerate(keep):
            m[b, torch.as_tensor(k, dtype=torch.long)] = 1.0
        m = m.to(value.device).reshape(*mask.shape, *([1] * (value.dim() - 2)))
        rows = (value.float() * m).sum(1) / m.sum(1)
    else:
        rows = value[b_idx.to(value.device), p_idx.to(value.device)]
    flat = rows.to(torch_dtype).flatten(1).cpu().numpy()  # cast before the copy off the device
    width = int(np.prod(value.shape[2:]))
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), width)


def _pattern_rows(value, lengths, keep, positions, torch_dtype):
    """[batch, head, q, k] -> list rows, each [head, key_position] over its text's own length."""
    import pyarrow as pa

    parts, sizes = [], []
    for b, length in enumerate(lengths):
        pat = value[b, :, :length, :length].detach().transpose(0, 1)  # [q, head, k]
        chosen = pat[torch.as_tensor(keep[b], dtype=torch.long)]
        rows = chosen.float().mean(0, keepdim=True) if positions == "mean" else chosen
        flat = rows.to(torch_dtype).flatten(1).cpu().numpy()
        parts.append(flat.reshape(-1))
        sizes += [flat.shape[1]] * flat.shape[0]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(parts)))


def field_shape(field: pa.Field) -> tuple[list[str], list[int]]:
    """(dims, shape) recorded on a hook column; shape -1 = the text's own length (pattern rows)."""
    meta = field.metadata or {}
    if b"probe.shape" not in meta:
        raise InputError(f"column '{field.name}' carries no probe shape metadata; was it written by probe?")
    return json.loads(meta[b"probe.dims"]), json.loads(meta[b"probe.shape"])
