"""The "ray" engine of ``probe.extract``: the same windows, as a Ray Data pipeline over an actor pool.

read (one item per pending window, its texts as Arrow IPC bytes) -> ``map_batches`` over an actor pool
whose actors each load the model once (one GPU each when the cluster has GPUs) and write their windows'
shards with ``write_shard``, the local engine's own code -> one small summary row per shard back to the
driver. Ray schedules, retries and scales; probe has no scheduler or worker protocol of its own. The
shards are written by the actors rather than by ``Dataset.write_parquet`` so each stays atomic (temp
file + rename: resumable) and keeps probe's field metadata; ``out`` must therefore be a path every
worker can write (a shared filesystem on a multi-machine cluster).

Loopback: a Ray that probe starts itself (no ``address``), or reaches at a loopback address
(``127.0.0.1:6379``, ``localhost:6379``), listens on 127.0.0.1 only. Ray's control plane runs any code
sent to it, unauthenticated, and by default binds the machine's network address, even for a job that
never needed another machine; its single-node mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read once
when Ray is imported) keeps every server on loopback. Any other address is the user's cluster, left as
Ray handles it.
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from probe.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa

    from probe.analysis.shards import Plan
    from probe.core.model import Model


class ShardWriter:
    """A Ray Data actor: holds one model, turns window items into shards."""

    def __init__(self, model, out: str, plan: dict, batch_size: int):
        from probe.analysis.shards import Plan
        from probe.core.model import load

        self.model = _rebuild(model) if isinstance(model, dict) else load(model, device=_device())
        self.out = Path(out)
        self.plan = Plan(**plan)
        self.batch_size = batch_size

    def __call__(self, batch: dict) -> dict:
        import pyarrow as pa

        from probe.analysis.shards import shard_name, write_shard

        shards, rows, tokens = [], [], []
        for k, payload in zip(batch["shard"], batch["window"]):
            window = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
            done = write_shard(self.model, window, self.out / shard_name(int(k)), self.plan, self.batch_size)
            shards.append(int(k))
            rows.append(done["rows"])
            tokens.append(done["tokens"])
        return {"shard": shards, "rows": rows, "tokens": tokens}


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's single-node mode, every server on 127.0.0.1
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
CONNECT_TIMEOUT_S = 5.0
_warned = False


def _host_port(address: str) -> tuple[str, int] | None:
    """("host", port) for a plain ``host:port`` address; None for "auto", "ray://...", "local"."""
    if "://" in address or ":" not in address:
        return None
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or not host:
        raise InputError(f"Ray address {address!r} is not host:port; e.g. 127.0.0.1:6379, auto or ray://head:10001")
    return host, int(port)


def is_loopback(address: str | None) -> bool:
    """True when Ray should stay on 127.0.0.1: no address (probe starts Ray) or a loopback ``host:port``."""
    if address is None:
        return True
    hp = _host_port(address)
    return hp is not None and hp[0].lower() in LOOPBACK_HOSTS


def import_ray(loopback: bool):
    """Import Ray; when ``loopback``, in its single-node mode, so every server it starts or joins is on 127.0.0.1.

    If Ray was imported before (by the user's code) without that mode, it is too late to change: warn once,
    naming the fix, and go on.
    """
    global _warned
    chosen = LOOPBACK_ENV in os.environ  # the user's explicit choice stands, either way
    if loopback and not chosen and "ray" not in sys.modules:
        os.environ[LOOPBACK_ENV] = "0"
    try:
        import ray
        from ray._private import ray_constants
    except ImportError:
        raise InputError("engine='ray' needs Ray Data: pip install 'probe[ray]'") from None
    if loopback and not chosen and getattr(ray_constants, "ENABLE_RAY_CLUSTER", False) and not _warned:
        _warned = True
        warnings.warn(
            "Ray was imported before probe could keep it on 127.0.0.1, so the Ray it starts listens on this "
            f"machine's network address; set {LOOPBACK_ENV}=0 in the environment (or import probe's extract "
            "before ray) to keep it on loopback",
            RuntimeWarning,
            stacklevel=3,
        )
    return ray


def check_address(address: str | None) -> None:
    """Fail in seconds, not minutes, when nothing listens at a ``host:port`` address (Ray would wait on it).

    Called before anything is loaded or written; skipped when this process already runs Ray (it is used as is).
    """
    ray = sys.modules.get("ray")
    if address is None or (ray is not None and ray.is_initialized()):
        return
    hp = _host_port(address)
    if hp is None:
        return
    try:
        socket.create_connection(hp, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise InputError(
            f"could not reach the Ray cluster at {address!r} ({reason}); start one with `ray start --head` "
            "or fix --address"
        ) from None


def _portable(model: Model) -> dict:
    """A loaded Model as plain parts (class, config, weights, tokenizer) that pickle whatever was attached
    to the live modules (other libraries' wrappers can leave unpicklable state on them)."""
    hf = model.hf
    return {
        "cls": type(hf),
        "config": hf.config,
        "state": {k: v.detach().cpu() for k, v in hf.state_dict().items()},
        "dtype": next(hf.parameters()).dtype,
        "tokenizer": model.tokenizer,
        "kind": model.kind,
        "name": model.name,
    }


def _rebuild(parts: dict) -> Model:
    from probe.core.model import Model

    hf = parts["cls"](parts["config"])
    hf.load_state_dict(parts["state"])
    device = _device()
    hf = hf.to(dtype=parts["dtype"], device=device or "cpu").eval()
    return Model(hf, parts["tokenizer"], parts["kind"], parts["name"])


def _device() -> str | None:
    import torch

    return "cuda" if torch.cuda.is_available() else None


def _ipc(table: pa.Table) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def run_windows(
    model_arg: Model | str | os.PathLike,
    loaded: Model,
    windows: list[tuple[int, pa.Table]],
    out: Path,
    plan: Plan,
    batch_size: int,
    address: str | None = None,
    progress: Callable[[int], None] | None = None,
    actors: int | None = None,
) -> None:
    """Write the shards of ``windows`` on a Ray cluster (a local one when none is running).

    ``address``: "auto", "ray://head:10001", "127.0.0.1:6379", ... (see ``ray.init``); None starts a local Ray
    on 127.0.0.1 for this call. The model goes to the actors as the
    name/path it was given (each actor loads it, on its GPU if any), or as class + config + weights +
    tokenizer when a Model object was passed (prefer a name for large models: no weights in the plan).
    """
    from dataclasses import asdict

    ray = import_ray(loopback=is_loopback(address))
    if not windows:
        return
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as err:
            raise InputError(f"could not reach the Ray cluster at {address!r}: {err}; check --address") from None
        started = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        pool = actors or max(1, gpus or int(resources.get("CPU", 1)) // 2)
        pool = min(pool, len(windows))
        # a name or path loads on each actor; a Model object travels as its parts (fine for small models)
        model_ref = str(model_arg) if isinstance(model_arg, (str, os.PathLike)) else _portable(loaded)
        items = [{"shard": k, "window": _ipc(w)} for k, w in windows]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(
            ShardWriter,
            fn_constructor_kwargs={"model": model_ref, "out": str(out), "plan": asdict(plan), "batch_size": batch_size},
            batch_size=1,
            concurrency=pool,
            num_gpus=1 if gpus else 0,
            num_cpus=1,
            batch_format="numpy",
        )
        for row in ds.iter_rows():
            if progress is not None:
                progress(int(row["tokens"]))
    finally:
        if started:
            ray.shutdown()
