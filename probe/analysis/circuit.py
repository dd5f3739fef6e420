"""Circuits: the edges that carry a behaviour, and how much of it they carry alone (faithfulness).

``circuit`` scores every edge by edge attribution patching (``probe.analysis.edges``), keeps the ``edges``
largest by |estimate|, and runs the clean text with every other edge ablated: each receiver reads the
residual stream with the writes of the senders outside its kept edges swapped for their ablated value
(the corrupted run's write, or the mean over positions of the clean run's), while the kept edges carry the
circuit's own values forward. Faithfulness is (metric(circuit) − metric(corrupted)) / (metric(clean) −
metric(corrupted)): 1 with every edge kept (the run is the clean run), 0 with none (every receiver reads
the ablated stream), and in between it says how much of the behaviour the kept edges explain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from probe import _validate as check
from probe.core import readout
from probe.core.names import LOGITS, act_name
from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from probe.core.model import Model

ABLATIONS = ("corrupted", "mean")


@dataclass
class Circuit:
    """The kept edges and how faithful they are. ``edges``: [sender, receiver, estimate, normalized_estimate]
    (the kept ones, largest |estimate| first); ``scores``: every edge; ``faithfulness``: see the module
    docstring; ``values``: the metric on the clean, corrupted and circuit runs."""

    model: str
    edges: pd.DataFrame
    scores: pd.DataFrame
    faithfulness: float
    values: dict[str, float]
    ablation: str
    attrs: dict[str, Any] = field(default_factory=dict)

    def plot(self) -> go.Figure:
        from probe.core.plotting import view

        return view("circuit")(self)


def circuit(
    model: Model,
    clean: str,
    corrupted: str,
    metric=("logit_diff", " not", " be"),
    edges: int | str = 20,
    ablation: str = "corrupted",
    method: str = "atp",
    n_steps: int = 16,
) -> Circuit:
    """Find the ``edges`` highest-scoring edges and measure how much of the metric they carry alone.

    Args:
        clean, corrupted, metric: as ``probe.patching``.
        edges: how many edges to keep (largest |estimate| first), "all", or 0.
        ablation: what an edge outside the circuit carries instead: "corrupted" (the corrupted run's write)
            or "mean" (the clean run's write averaged over positions).
        method, n_steps: how edges are scored (``probe.attribution_patching(over="edges")``).

    Returns:
        ``Circuit`` (``.edges``, ``.scores``, ``.faithfulness``, ``.values``, ``.plot()``).

    Example:
        >>> c = probe.circuit(gpt, clean, corrupted, ("logit_diff", " Mary", " John"), edges=30)
        >>> c.faithfulness, c.edges.head()
    """
    from probe.analysis import edges as eap
    from probe.analysis.atp import attribution_patching
    from probe.analysis.intervene import metric_fn, pair_runs

    if ablation not in ABLATIONS:
        raise InputError(f"ablation {ablation!r} is not one of {', '.join(ABLATIONS)}")
    scores = attribution_patching(model, clean, corrupted, metric, over="edges", method=method, n_steps=n_steps)
    if isinstance(edges, str):
        if edges != "all":
            raise InputError(f"edges={edges!r}: pass a number of edges, 'all' or 0")
        keep = len(scores)
    else:
        keep = check.integer(edges, "edges", minimum=0)
    ranked = scores.reindex(scores["estimate"].abs().sort_values(ascending=False, kind="stable").index)
    kept = ranked.head(keep).reset_index(drop=True)
    score, _ = metric_fn(model, metric)
    hooks = eap.edge_hooks(model)
    clean_run, bad_run, slot, _, clean_logits, bad_logits = pair_runs(model, clean, corrupted, hooks, hooks)
    graph = eap.Graph(model, bad_run[act_name("k", 0)].shape[2])
    inside = torch.zeros(len(graph.senders), len(graph.receivers), dtype=torch.bool)
    s_index = {s: i for i, s in enumerate(graph.senders)}
    r_index = {r: j for j, r in enumerate(graph.receivers)}
    for s, r in zip(kept["sender"], kept["receiver"], strict=True):
        inside[s_index[s], r_index[r]] = True
    ablated = eap.sender_writes(model, bad_run, bad_run.lengths[0])  # [S, pos, d]
    if ablation == "mean":
        clean_writes = eap.sender_writes(model, clean_run, clean_run.lengths[0])
        ablated = clean_writes.mean(1, keepdim=True).expand_as(clean_writes)
    logits = _circuit_run(model, clean_run, graph, ~inside & graph.allowed(), ablated)
    values = {
        "clean": float(score(clean_logits)),
        "corrupted": float(score(bad_logits)),
        "circuit": float(score(logits[slot])),
    }
    span = values["clean"] - values["corrupted"]
    faithfulness = (values["circuit"] - values["corrupted"]) / span if span != 0 else float("nan")
    attrs = dict(scores.attrs, edges=keep, total_edges=len(scores), ablation=ablation)
    attrs.update(n_layers=model.n_layers, n_heads=model.n_heads, faithfulness=faithfulness, values=values)
    kept.attrs.update(attrs)
    return Circuit(model.name, kept, scores, faithfulness, values, ablation, attrs)


def _circuit_run(model: Model, clean_run, graph, excluded: torch.Tensor, ablated: torch.Tensor) -> torch.Tensor:
    """[pos, vocab] logits of the clean text with each receiver reading the stream it would see if every
    sender excluded from it wrote its ablated value instead of its write in this run.

    The run keeps, for every receiver, how its stream differs from the run's own (``moved``, [R, pos, d]):
    an excluded sender's write moves it by (ablated − now); a norm on the stream (post-LN blocks) carries
    the difference through itself, norm(x + moved) − norm(x); a receiver reads the stream plus its row."""
    adapter = model.adapter
    n, h = model.n_layers, model.n_heads
    seen: dict[str, torch.Tensor] = {}  # the stream where receivers read it, in this run
    sender = {s: i for i, s in enumerate(graph.senders)}
    receiver = {r: j for j, r in enumerate(graph.receivers)}
    moved = torch.zeros(len(graph.receivers), clean_run.lengths[0], adapter.d_model, dtype=torch.float64)
    excluded = excluded.double()

    def write(rows: list[int], now: torch.Tensor) -> None:
        """Senders ``rows`` wrote ``now`` [k, pos, d] in this run: move the streams of those excluding them."""
        change = ablated[rows] - now.double().cpu()
        moved.add_((excluded[rows].T @ change.flatten(1)).view_as(moved))

    def reading(j: int, stream: torch.Tensor) -> torch.Tensor:
        return stream + moved[j].to(stream.dtype).to(stream.device)

    def keep_stream(name: str, first: bool = False):
        def fn(value, ctx):
            seen[name] = value[0]
            if first:  # block 0's input is the embeddings' write
                write([sender["embed"]], value[:1])
            return value

        return fn

    def norm(point: str):
        def fn(value, ctx):  # the norm's input: carry every receiver's difference through it
            moved.copy_(readout.norm_shift(adapter, point, value[0], moved))
            return value

        return fn

    def heads_in(layer: int, comp: str):
        def fn(value, ctx):  # value [1, pos, heads, d_head]
            for g in range(value.shape[2]):
                j = receiver[f"L{layer}{'H' if value.shape[2] == h else 'KV'}{g}.{comp}"]
                if moved[j].any():
                    x = reading(j, seen[act_name("resid_pre", layer)])
                    value[0, :, g] = readout.head_inputs(adapter, layer, comp, x[None])[0, :, g].to(value.dtype)
            return value

        return fn

    def heads_out(layer: int):
        def fn(value, ctx):  # z [1, pos, heads, d_head]: each head's write in this run
            now = torch.stack([readout.head_write(adapter, layer, hd, value)[0] for hd in range(h)])
            write([sender[f"L{layer}H{hd}"] for hd in range(h)], now)
            return value

        return fn

    def mlp(layer: int):
        def fn(value, ctx):
            j = receiver[f"MLP{layer}"]
            if moved[j].any():
                x = reading(j, seen[readout.mlp_reads(adapter, layer)])
                value = readout.mlp_inputs(adapter, layer, x[None]).to(value.dtype)
            write([sender[f"MLP{layer}"]], value[:1])
            return value

        return fn

    def final(value, ctx):
        return reading(receiver["logits"], value[0])[None]

    patch = {}
    for la in range(n):
        for name in {act_name("resid_pre", la), readout.mlp_reads(adapter, la)}:
            patch[name] = keep_stream(name, first=name == act_name("resid_pre", 0))
        for comp in ("q", "k", "v"):
            patch[act_name(comp, la)] = heads_in(la, comp)
        patch[act_name("z", la)] = heads_out(la)
        for point in readout.stream_norms(adapter, la) or ():
            patch[point] = norm(point)
        patch[act_name("mlp_out", la)] = mlp(la)
    patch[act_name("resid_post", n - 1)] = final
    run = model.run(clean_run.ids, hooks=[LOGITS], patch=patch)
    return run[LOGITS][0]
