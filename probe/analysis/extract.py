"""Corpus-scale activation extraction to a folder of Parquet shards: ``probe.extract`` and ``load_activations``.

The corpus is cut into fixed windows of ``docs_per_shard`` texts; window ``k`` becomes the shard
``part-{k:06d}.parquet``. Within a window texts are sorted by length and batched (little padding), each
batch goes through the capture fast path (only the asked hooks, early exit, no LM head unless ``logits``,
sdpa unless patterns) and its rows are appended to a temporary file, so memory holds one batch, not the
corpus. A window's file is renamed into place only when complete, so ``out`` only ever holds complete
shards; re-running the same extraction skips the shards present and the result equals an uninterrupted
run. ``_manifest.json`` says what was extracted (pyarrow.dataset ignores files starting with ``_``/``.``).

Engines: "local" (this process) and "ray" (the same windows as a Ray Data pipeline over an actor pool
that holds the model; each actor writes its windows' shards with the same code).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from probe.analysis.shards import Plan, shard_name, write_shard
from probe.core.layout import check_dtype, check_positions, field_shape, row_shape
from probe.core.names import act_name
from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from probe.core.model import Model

MANIFEST = "_manifest.json"
FORMAT = "probe.extract/1"
SHARD_BYTES = 64e6  # target shard size when docs_per_shard is not given
RESERVED = ("doc_id", "position", "token", "token_id", "special")
SOURCE_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")


# -- source ---------------------------------------------------------------------------------------
def read_source(source: str | os.PathLike | Sequence[str], text_column: str = "text") -> pa.Table:
    """A list of texts or a .txt / .jsonl / .csv / .parquet file -> Table [text, carried columns...].

    A .txt file holds one text a line (blank lines skipped); the other formats need a ``text_column``.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(source, (list, tuple)):
        if not all(isinstance(t, str) for t in source):
            raise InputError("source must be a list of strings or a path to a .txt/.jsonl/.csv/.parquet file")
        table, where = pa.table({"text": pa.array(list(source), pa.string())}), "the list"
        text_column = "text"
    else:
        path = Path(source).expanduser()
        where = str(path)
        if path.suffix not in SOURCE_SUFFIXES:
            raise InputError(f"{path}: unsupported corpus file; use one of {', '.join(SOURCE_SUFFIXES)}")
        if not path.is_file():
            raise InputError(f"corpus file {path} does not exist; check the path")
        table = _read_file(path, text_column)
    if text_column not in table.column_names:
        cols = ", ".join(table.column_names) or "none"
        raise InputError(f"{where} has no '{text_column}' column (columns: {cols}); pass text_column= (--text-column)")
    text = table[text_column]
    if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
        raise InputError(f"column '{text_column}' of {where} holds {text.type}, not text; pick the text column")
    if len(table) == 0:
        raise InputError(f"{where} holds no texts; give a corpus with at least one text")
    empty = pc.or_(pc.is_null(text), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(text)), 0))
    if pc.any(empty).as_py():
        first = pc.index(empty, True).as_py()
        raise InputError(f"text {first} of {where} is empty; remove empty texts from the corpus")
    carried = [c for c in table.column_names if c != text_column]
    clash = [c for c in carried if c in RESERVED]
    if clash:
        raise InputError(f"{where} has column(s) {', '.join(clash)} that probe writes itself; rename them")
    return table.select([text_column, *carried]).rename_columns(["text", *carried]).combine_chunks()


def _read_file(path: Path, text_column: str) -> pa.Table:
    import pyarrow as pa

    try:
        if path.suffix == ".txt":
            lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            return pa.table({text_column: pa.array(lines, pa.string())})
        if path.suffix == ".jsonl":
            import pyarrow.json as pj

            return pj.read_json(path)
        if path.suffix == ".csv":
            import pyarrow.csv as pcsv

            return pcsv.read_csv(path)
        import pyarrow.parquet as pq

        return pq.read_table(path)
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise InputError(f"{path} could not be read as {path.suffix[1:]}: {str(err).splitlines()[0]}") from None


def _fingerprint(texts: pa.ChunkedArray | pa.Array, step: int = 10_000) -> str:
    """sha256 of the texts, in slices so that no second copy of the corpus is held as Python strings."""
    digest = hashlib.sha256()
    for start in range(0, len(texts), step):
        for t in texts.slice(start, step).to_pylist():
            digest.update(t.encode("utf-8"))
            digest.update(b"\0")
    return digest.hexdigest()


# -- the driver -----------------------------------------------------------------------------------
def extract(
    model: Model | str | os.PathLike,
    source: str | os.PathLike | Sequence[str],
    *,
    hooks: Sequence[str] | str,
    out: str | os.PathLike,
    positions: str = "all",
    dtype: str = "float16",
    batch_size: int = 32,
    max_length: int | None = None,
    engine: str = "local",
    text_column: str = "text",
    docs_per_shard: int | None = None,
    address: str | None = None,
    quiet: bool = False,
    prepend_bos: bool | None = None,
) -> dict[str, Any]:
    """Extract hook activations over a corpus into ``out``, a folder of Parquet shards; resumable.

    Args:
        model: a loaded Model or a name / folder for ``probe.load``.
        source: a list of texts, or a .txt (one text a line), .jsonl, .csv or .parquet file with a text
            column; its other columns (labels) are written on every row of their text.
        hooks: names or glob patterns ("blocks.*.hook_resid_post").
        out: the folder; ``pyarrow.dataset.dataset(out)`` (pandas, Ray, DuckDB, Polars) reads it.
        positions: "all" tokens, "first", "last", "mask" ([MASK] slots) or "mean" (one row per text).
        dtype: "float16" (default) or "float32" storage.
        batch_size: texts per forward pass (texts of similar length are batched together).
        max_length: cut texts to this many tokens (default: the model's context); the manifest counts them.
        engine: "local" or "ray" (Ray Data over an actor pool; ``address`` of an existing cluster).
        text_column: the text column of a .jsonl / .csv / .parquet source.
        docs_per_shard: texts per shard; default sized for ~64 MB shards. Fixed by the first run.
        quiet: no size line and no progress bar (they go to stderr, the bar only on a terminal).
        prepend_bos: read each text as ``Model.run`` does (None: ``Model.prepend_bos``, True by default):
            a causal model's start token first, as a row marked ``special`` at position 0; positions
            "first" and "mean" then mean the text's own tokens. Part of the plan (fixed by the first run).

    Returns:
        The manifest (a dict): model, hooks, positions, dtype, versions, counts, hook shapes.

    Rows: doc_id (the text's index in the source), position, token, token_id, special, carried columns,
    then one column per hook (layout and shape metadata: ``probe/core/layout.py``).

    Example:
        >>> probe.extract("tiny-gpt", ["The cat sat.", "A dog ran."], hooks="blocks.*.hook_resid_post", out="acts")
        >>> x, meta = probe.load_activations("acts", "blocks.1.hook_resid_post")   # [rows, d_model]
    """
    from probe.core.capture import resolve_names
    from probe.core.model import Model, load

    check_positions(positions)
    check_dtype(dtype)
    if engine not in ("local", "ray"):
        raise InputError(f"engine={engine!r} is not one of local, ray")
    if batch_size < 1:
        raise InputError("batch_size must be at least 1")
    if docs_per_shard is not None and docs_per_shard < 1:
        raise InputError("docs_per_shard must be at least 1")
    if engine == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise InputError("engine='ray' needs Ray Data: pip install 'probe[ray]'")
        from probe.analysis._ray import check_address

        check_address(address)
    out = Path(out).expanduser()
    table = read_source(source, text_column)
    loaded = model if isinstance(model, Model) else load(model)
    if isinstance(hooks, str):
        hooks = [hooks]
    if not hooks:
        raise InputError("hooks=[] extracts nothing; pass hook names or patterns, e.g. 'blocks.*.hook_resid_post'")
    names = resolve_names(hooks, loaded.hook_names, loaded.name)
    limit = min(loaded.n_ctx if max_length is None else max_length, loaded.n_ctx)
    if limit < 1:
        raise InputError("max_length must be at least 1")
    if positions == "mask" and loaded.tokenizer.mask_token_id is None:
        raise InputError(f"{loaded.name}'s tokenizer has no mask token; use positions='all', 'first', 'last' or 'mean'")
    _check_out_folder(out)

    shapes, est_tokens, row_bytes = _estimate(loaded, table, names, positions, dtype, limit, prepend_bos)
    est_rows = est_tokens if positions == "all" else len(table)
    per_doc = row_bytes * est_rows / len(table)
    old = _read_manifest(out)
    if docs_per_shard is None:
        docs_per_shard = old["plan"]["docs_per_shard"] if old else int(max(1, min(10_000, SHARD_BYTES // per_doc)))
    plan = Plan(
        model=loaded.name,
        model_shape=[loaded.n_layers, loaded.d_model, loaded.n_heads, loaded.vocab_size],
        hooks=names,
        positions=positions,
        dtype=dtype,
        max_length=limit,
        text_column=text_column,
        source_sha256=_fingerprint(table["text"]),
        n_texts=len(table),
        docs_per_shard=docs_per_shard,
        prepend_bos=loaded.reads_bos(prepend_bos),
    )
    if old is not None:
        _check_same(out, old["plan"], asdict(plan))
    n_shards = -(-len(table) // docs_per_shard)
    done = {k for k in range(n_shards) if (out / shard_name(k)).exists()}
    pending = [k for k in range(n_shards) if k not in done]
    est_bytes = per_doc * sum(min(docs_per_shard, len(table) - k * docs_per_shard) for k in pending)
    free = shutil.disk_usage(out).free
    log = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    log(
        f"extract: {len(table):,} texts, ~{est_tokens:,} tokens, {len(names)} hook(s) -> ~{_size(est_bytes)} to write "
        f"in {len(pending)} shard(s) ({len(done)} already done) into {out} ({_size(free)} free)"
    )
    if est_bytes * 1.1 > free:
        raise InputError(
            f"{out} has {_size(free)} free but this extraction needs ~{_size(est_bytes)}; free space, pick another "
            "--out, fewer hooks, positions='last'/'mean' or dtype float16"
        )
    manifest = _manifest(plan, shapes, complete=False)
    if old is None:
        _write_json(out / MANIFEST, manifest)
    for stale in out.glob(".tmp-part-*"):  # left by a killed run; never part of the dataset
        stale.unlink(missing_ok=True)

    table = table.add_column(0, "doc_id", _doc_ids(len(table)))
    windows = [(k, table.slice(k * docs_per_shard, docs_per_shard)) for k in pending]
    pending_tokens = int(est_tokens * sum(len(w) for _, w in windows) / len(table))
    bar = _progress(pending_tokens, quiet)
    try:
        if engine == "local":
            for k, window in windows:
                write_shard(loaded, window, out / shard_name(k), plan, batch_size, progress=bar.update)
        else:
            from probe.analysis._ray import run_windows

            run_windows(model, loaded, windows, out, plan, batch_size, address=address, progress=bar.update)
    finally:
        bar.close()
    manifest = _manifest(plan, shapes, complete=True, counts=_counts(out, n_shards, len(table)))
    _write_json(out / MANIFEST, manifest)
    cut = manifest["counts"]["truncated_texts"]
    cut_note = f"; {cut} text(s) cut to {limit} tokens" if cut else ""
    log(f"extract: wrote {manifest['counts']['rows']:,} rows in {n_shards} shard(s) to {out}{cut_note}")
    return manifest


def _doc_ids(n: int) -> pa.Array:
    import pyarrow as pa

    return pa.array(np.arange(n, dtype=np.int64))


def _check_out_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the Parquet shards")
    if out.is_dir() and not (out / MANIFEST).exists() and any(out.iterdir()):
        raise InputError(f"{out} is not empty and holds no probe extraction; give a new or empty folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe_file = out / f".tmp-write-test.{os.getpid()}"
        probe_file.write_bytes(b"")
        probe_file.unlink()
    except OSError as err:
        raise InputError(f"{out} is not writable ({err.strerror or err}); pick another --out") from None


def _read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["plan"]["docs_per_shard"]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path} is not a probe manifest; give a new folder as --out") from None
    if manifest.get("format") != FORMAT:
        raise InputError(f"{path} was written by another probe format ({manifest.get('format')}); use a new --out")
    return manifest


def _check_same(out: Path, old: dict, new: dict) -> None:
    old = {"prepend_bos": False, **old}  # folders written before the switch read texts without a start token
    diff = [k for k in new if old.get(k) != new[k]]
    if diff:
        what = "; ".join(f"{k}: {old.get(k)!r} there, {new[k]!r} now" for k in diff if k != "source_sha256")
        if "source_sha256" in diff:
            what = "; ".join(filter(None, [what, "a different corpus"]))
        raise InputError(
            f"{out} holds a different extraction ({_short(what)}); pick a new --out or delete that folder to redo it"
        )


def _short(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _estimate(model: Model, table, names, positions, dtype, limit, prepend_bos=None) -> tuple[dict, int, float]:
    """(hook shapes, estimated tokens, bytes per row) from one short forward and a tokenized sample."""
    import torch

    from probe.core.forward import forward_capture

    sample = table["text"].slice(0, 256).to_pylist()
    enc = model._token_ids(sample, prepend_bos)
    lens = [min(len(e), limit) for e in enc]
    chars = max(1, sum(len(t) for t in sample))
    import pyarrow.compute as pc

    total_chars = pc.sum(pc.utf8_length(table["text"])).as_py()
    est_tokens = int(round(sum(lens) / chars * total_chars)) if len(table) > len(sample) else sum(lens)
    est_tokens = max(est_tokens, len(table))
    ids = torch.tensor([enc[0][: min(8, lens[0])]])
    store = forward_capture(model.adapter, ids.to(model.device), torch.ones_like(ids).to(model.device), names)
    item = 2 if dtype == "float16" else 4
    mean_len = est_tokens / len(table)
    shapes, row_bytes = {}, 64.0  # index, position, token string, token id, special
    for name in names:
        dims, shape = row_shape(name, store[name])
        shapes[name] = {"dims": dims, "shape": shape}
        row_bytes += item * float(np.prod([mean_len if s == -1 else s for s in shape]))
    return shapes, est_tokens, row_bytes


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _progress(total: int, quiet: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        unit="tok",
        unit_scale=True,
        desc="extract",
        disable=quiet or not sys.stderr.isatty(),
        smoothing=0.1,
    )


def _versions() -> dict[str, str]:
    import pyarrow
    import torch
    import transformers

    import probe

    return {
        "probe": probe.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "pyarrow": pyarrow.__version__,
    }


def _manifest(plan: Plan, shapes: dict, complete: bool, counts: dict | None = None) -> dict:
    return {
        "format": FORMAT,
        "model": plan.model,
        "hooks": plan.hooks,
        "positions": plan.positions,
        "dtype": plan.dtype,
        "hook_shapes": shapes,
        "versions": _versions(),
        "complete": complete,
        "counts": counts or {},
        "plan": asdict(plan),
    }


def _counts(out: Path, n_shards: int, n_texts: int) -> dict[str, int]:
    import pyarrow.parquet as pq

    rows = tokens = truncated = 0
    for k in range(n_shards):
        meta = pq.read_metadata(out / shard_name(k))
        rows += meta.num_rows
        tokens += int((meta.metadata or {}).get(b"probe.tokens", b"0"))
        truncated += int((meta.metadata or {}).get(b"probe.truncated", b"0"))
    return {"texts": n_texts, "tokens": tokens, "rows": rows, "shards": n_shards, "truncated_texts": truncated}


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".tmp-{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    os.replace(tmp, path)


# -- reading --------------------------------------------------------------------------------------
def load_activations(
    out: str | os.PathLike, hook: str, layer: int | None = None, columns: Iterable[str] | None = None
) -> tuple[np.ndarray, pd.DataFrame]:
    """One hook of an extraction as a matrix, with the rows' metadata.

    Args:
        out: an extraction folder (or one Parquet file written by ``Run.to_parquet``).
        hook: a hook name, or a name with ``*`` / without the ``blocks.{i}.`` prefix plus ``layer``
            ("hook_resid_post", layer=3 -> "blocks.3.hook_resid_post").
        layer: the block index to fill in.
        columns: metadata columns to return (default: every non-hook column).

    Returns:
        (values [rows, d] float16/float32 as stored, DataFrame [doc_id, position, token, token_id, special,
        carried...]). d = prod(probe.shape); pattern rows, whose width is their text's length, are
        right-padded with NaN to the widest. Shards are read one at a time into one preallocated array
        through memory-mapped files, so the peak is about the result's size.

    Example:
        >>> x, meta = probe.load_activations("acts", "hook_resid_post", layer=1)
    """
    import pyarrow.dataset as ds

    path = Path(out).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist; run probe.extract first")
    name = _hook_name(hook, layer)
    dataset = ds.dataset(path, format="parquet")
    schema = dataset.schema
    if name not in schema.names:
        hooks = [f.name for f in schema if (f.metadata or {}).get(b"probe.shape")]
        raise InputError(f"'{name}' is not in {path}; it holds {', '.join(hooks) or 'no hook columns'}")
    dims, shape = field_shape(schema.field(name))
    hook_cols = {f.name for f in schema if (f.metadata or {}).get(b"probe.shape")}
    meta_cols = list(columns) if columns is not None else [c for c in schema.names if c not in hook_cols]
    missing = [c for c in meta_cols if c not in schema.names]
    if missing:
        raise InputError(f"column(s) {', '.join(missing)} not in {path}")
    return _read_matrix(dataset, name, shape, meta_cols)


def _hook_name(hook: str, layer: int | None) -> str:
    if layer is None:
        if "*" in hook:
            raise InputError(f"'{hook}' is a pattern; pass layer= to pick one hook")
        return hook
    if "*" in hook:
        return hook.replace("*", str(layer), 1)
    return hook if hook.startswith("blocks.") else act_name(hook, layer)


def _read_matrix(dataset, name: str, shape: list[int], meta_cols: list[str]):
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    files = sorted(dataset.files)
    n_rows = [pq.read_metadata(f).num_rows for f in files]
    ftype = dataset.schema.field(name).type
    np_dtype = np.float16 if ftype.value_type == pa.float16() else np.float32
    if -1 in shape:  # pattern rows: widest row decides the width
        width = max(
            (pc.max(pc.list_value_length(pq.read_table(f, columns=[name])[name])).as_py() or 0 for f in files),
            default=0,
        )
    else:
        width = int(np.prod(shape))
    values = np.full((sum(n_rows), width), np.nan, dtype=np_dtype)
    metas, start = [], 0
    for f, n in zip(files, n_rows):
        part = pq.read_table(f, columns=[*meta_cols, name], memory_map=True)
        col = part[name].combine_chunks()
        if -1 in shape:
            for i, row in enumerate(col.to_pylist()):
                values[start + i, : len(row)] = row
        else:
            values[start : start + n] = col.flatten().to_numpy().reshape(n, width)
        metas.append(part.drop_columns([name]).to_pandas())
        start += n
    meta = pd.concat(metas, ignore_index=True) if metas else pd.DataFrame(columns=meta_cols)
    return values, meta
