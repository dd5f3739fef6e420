"""One window of texts -> one complete Parquet shard: the unit both extraction engines run (the local
loop in ``extract`` and the Ray actors in ``_ray``), and the ``Plan`` that identifies an extraction."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from probe.core.layout import rows_table

if TYPE_CHECKING:
    import pyarrow as pa

    from probe.core.model import Model


@dataclass(frozen=True)
class Plan:
    """What identifies an extraction: re-running with the same plan resumes, any other is refused."""

    model: str
    model_shape: list[int]  # n_layers, d_model, n_heads, vocab_size: tells two checkpoints of one name apart
    hooks: list[str]
    positions: str
    dtype: str
    max_length: int
    text_column: str
    source_sha256: str
    n_texts: int
    docs_per_shard: int
    prepend_bos: bool = False  # the start token read first (Model.prepend_bos); absent in manifests before it


def shard_name(k: int) -> str:
    return f"part-{k:06d}.parquet"


def write_shard(
    model: Model,
    window: pa.Table,
    path: Path,
    plan: Plan,
    batch_size: int,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Extract one window of texts (Table [doc_id, text, carried...]) into the complete shard ``path``.

    Rows go to a temporary file batch by batch; it is renamed to ``path`` only when the window is done.
    Returns {"rows", "tokens", "truncated"}.
    """
    import pyarrow.parquet as pq

    from probe.core.forward import forward_capture
    from probe.core.tokens import pad

    texts = window["text"].to_pylist()
    doc_ids = np.asarray(window["doc_id"].to_numpy(), dtype=np.int64)
    carried = window.drop_columns(["doc_id", "text"])
    encoded = model._token_ids(texts, plan.prepend_bos)
    truncated = sum(len(e) > plan.max_length for e in encoded)
    encoded = [e[: plan.max_length] for e in encoded]
    tokens = sum(len(e) for e in encoded)
    order = np.argsort([len(e) for e in encoded], kind="stable")  # length-bucketed batches: little padding
    tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
    writer = None
    rows = 0
    try:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            ids, mask = pad([encoded[i] for i in batch], model.tokenizer.pad_token_id)
            store = forward_capture(model.adapter, ids.to(model.device), mask.to(model.device), plan.hooks)
            table = rows_table(
                model,
                ids,
                mask,
                store,
                text_ids=doc_ids[batch],
                positions=plan.positions,
                dtype=plan.dtype,
                lead=int(plan.prepend_bos),
            )
            local = np.searchsorted(doc_ids, table["doc_id"].to_numpy()) if len(carried.column_names) else None
            for name in carried.column_names:
                table = table.append_column(carried.schema.field(name), carried[name].take(local))
            if writer is None:
                meta = dict(table.schema.metadata or {})
                meta[b"probe.tokens"] = str(tokens).encode()
                meta[b"probe.truncated"] = str(truncated).encode()
                writer = pq.ParquetWriter(tmp, table.schema.with_metadata(meta))
            writer.write_table(table)
            rows += len(table)
            if progress is not None:
                progress(int(mask.sum()))
        writer.close()
        writer = None
        os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return {"rows": rows, "tokens": tokens, "truncated": truncated}
