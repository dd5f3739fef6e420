"""Edge attribution patching (EAP, Syed et al. 2023; EAP-IG, Hanna et al. 2024): every sender → receiver edge.

Senders write into the residual stream: the embeddings (``embed``: block 0's input), each attention head
(``L{l}H{h}``: its z through W_O) and each MLP (``MLP{l}``). Receivers read it, each through its own norm:
each head's query, key and value input (``L{l}H{h}.q`` / ``.k`` / ``.v``; grouped-query models have one
key and value receiver per key/value head, ``L{l}KV{g}.k``), each MLP's input (``MLP{l}``) and the
output (``logits``). An edge's estimate is

    (write_clean(sender) − write_corrupted(sender)) · ∂metric/∂(the receiver's copy of the residual)

at the corrupted run (``method="atp"``) or averaged over ``n_steps`` points on the embedding path from
corrupted to clean (``"ig"``), summed over positions. The receivers' gradients are the model's own: each
head's gradient at its q/k/v is carried back through that head's projection and its block's norm alone
(vector-Jacobian products at the run's activations), so a sender's edges add up to its node estimate
(``probe.attribution_patching``): the residual stream hands every reader the same vector.

The three block forms:
- sequential pre-LN (GPT-2, GPT-Neo, LLaMA, OPT pre-LN): the stream is a plain sum of the writes;
- parallel (GPT-NeoX/Pythia): attention and MLP read the block's input, so a layer's MLP receives nothing
  from its own layer's heads (no such edge);
- post-LN (BERT, RoBERTa, DistilBERT): the stream passes through a LayerNorm after each sublayer, so a write
  reaches a later reader only through every norm in between. An edge is then the write carried along the
  residual path alone, through those norms: to first order (the estimate) through each norm's Jacobian at
  the run's activations, scale included, so a sender's edges still add up to its node estimate exactly;
  in a circuit run (``probe.circuit``) and in path patching through the norms themselves, recomputed on the
  stream each receiver would see. Nothing is frozen or approximated beyond the first-order step that every
  attribution-patching estimate makes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from probe.core import readout
from probe.core.names import act_name
from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.core.model import Model
    from probe.core.run import Run

COLUMNS = ["sender", "receiver", "estimate", "normalized_estimate"]


def check_edges(model: Model) -> None:
    """Raise unless every head's q/k/v input, every MLP's input and every norm on the stream can be reached."""
    adapter = model.adapter
    form = adapter.block_form
    why = None
    if form not in ("pre_ln", "parallel", "post_ln"):
        why = f"has {form} blocks"
    else:
        try:
            readout.stream_norms(adapter, 0)  # post-LN: the norms' inputs are hooked
            hooked = readout.mlp_reads(adapter, 0) in adapter.point_map
        except NotImplementedError:
            hooked = False
        if not hooked:
            why = f"({adapter.family}, {form}) hooks no separate input of its MLPs or norms"
    if why:
        raise InputError(
            f"{model.name} {why}, so no path between its components can be traced; patch or attribute whole "
            "heads or layers instead (over='heads' or 'mlp_out')"
        )


class Graph:
    """The senders and receivers of a model, with which sender may feed which receiver (forward order)."""

    def __init__(self, model: Model, kv_heads: int):
        n, h = model.n_layers, model.n_heads
        self.parallel = model.adapter.block_form == "parallel"
        self.senders = ["embed"]
        self.sender_layer = [-1]  # the layer whose writes come before: embed before layer 0
        self.sender_kind = ["embed"]
        for la in range(n):
            self.senders += [f"L{la}H{hd}" for hd in range(h)] + [f"MLP{la}"]
            self.sender_layer += [la] * h + [la]
            self.sender_kind += ["head"] * h + ["mlp"]
        self.receivers: list[str] = []
        self.receiver_layer: list[int] = []
        self.receiver_kind: list[str] = []
        for la in range(n):
            for comp in ("q", "k", "v"):
                count = h if comp == "q" else kv_heads
                label = "H" if count == h else "KV"
                self.receivers += [f"L{la}{label}{g}.{comp}" for g in range(count)]
                self.receiver_layer += [la] * count
                self.receiver_kind += ["head"] * count
            self.receivers.append(f"MLP{la}")
            self.receiver_layer.append(la)
            self.receiver_kind.append("mlp")
        self.receivers.append("logits")
        self.receiver_layer.append(n)
        self.receiver_kind.append("logits")

    def allowed(self) -> torch.Tensor:
        """[senders, receivers] bool: the sender writes before the receiver reads."""
        out = torch.zeros(len(self.senders), len(self.receivers), dtype=torch.bool)
        for i, (sl, sk) in enumerate(zip(self.sender_layer, self.sender_kind, strict=True)):
            for j, (rl, rk) in enumerate(zip(self.receiver_layer, self.receiver_kind, strict=True)):
                # a block's MLP reads its own heads' writes (not in parallel blocks); a head reads earlier layers
                out[i, j] = sl < rl or (sl == rl and sk == "head" and rk == "mlp" and not self.parallel)
        return out


def sender_writes(model: Model, run: Run, n: int) -> torch.Tensor:
    """[senders, pos, d_model] float64: every sender's write in ``run`` (text 0), in ``Graph`` order."""
    adapter = model.adapter
    rows = [run[act_name("resid_pre", 0)][0]]
    for la in range(model.n_layers):
        z = run[act_name("z", la)]
        rows += [readout.head_write(adapter, la, hd, z)[0] for hd in range(model.n_heads)]
        rows.append(run[act_name("mlp_out", la)][0])
    return torch.stack([r.double().cpu() for r in rows])


def receiver_gradients(model: Model, store: dict, n_heads_kv: int, keep_rows: bool = False) -> torch.Tensor:
    """[receivers, pos, d_model] float64 on the CPU, averaged over the rows of ``store`` (the gradient run's
    inputs and gradients): the gradient of the metric at each receiver's own copy of the residual stream.
    ``keep_rows``: [receivers, rows, pos, d_model] on the model's device instead (post-LN walks need each
    row's own norm Jacobians)."""
    adapter = model.adapter
    rows = []
    for la in range(model.n_layers):
        resid = store["resid_pre", la]
        for comp in ("q", "k", "v"):
            rows += list(readout.head_input_vjp(adapter, la, comp, resid, store["grad", comp, la]))
        rows.append(readout.mlp_input_vjp(adapter, la, store["mlp_in", la], store["grad", "mlp", la]))
    rows.append(store["grad", "final"])
    if keep_rows:
        return torch.stack([r.float() for r in rows])
    return torch.stack([r.double().mean(0).cpu() for r in rows])


def edge_attribution(model: Model, clean_run: Run, bad_run: Run, score, slot: int, method: str, n_steps: int):
    """(Graph, [senders, receivers] estimates with disallowed edges 0) for two runs that captured
    ``edge_hooks(model)``."""
    check_edges(model)
    kv = bad_run[act_name("k", 0)].shape[2]
    graph = Graph(model, kv)
    n = bad_run.lengths[0]
    delta = sender_writes(model, clean_run, n) - sender_writes(model, bad_run, n)  # [S, pos, d]
    store = _gradient_run(model, clean_run, bad_run, score, slot, method, n_steps)
    if model.adapter.block_form == "post_ln":
        grads = receiver_gradients(model, store, kv, keep_rows=True)  # [R, rows, pos, d]
        estimates = _through_norms(model, graph, delta, grads, store)
    else:  # the stream is a sum: every later receiver's gradient reaches the sender as it is
        estimates = delta.flatten(1) @ receiver_gradients(model, store, kv).flatten(1).T
    return graph, estimates * graph.allowed()


def _through_norms(model: Model, graph: Graph, delta: torch.Tensor, grads: torch.Tensor, store: dict) -> torch.Tensor:
    """[senders, receivers] for post-LN blocks: walk the stream from the output back to the embeddings,
    carrying every receiver's gradient back through each norm's Jacobian at that row's activations, and
    read each sender's edges where it writes (heads before the first norm, the MLP before the second)."""
    adapter = model.adapter
    first = {}  # receiver kind and layer -> its first index in graph order
    for j, (kind, la) in enumerate(zip(graph.receiver_kind, graph.receiver_layer, strict=True)):
        first.setdefault((kind, la), j)
    carried = torch.zeros_like(grads)  # [R, rows, pos, d]: each receiver's gradient where the walk stands
    estimates = torch.zeros(len(graph.senders), len(graph.receivers), dtype=torch.float64)
    sender = {s: i for i, s in enumerate(graph.senders)}

    def read(start: int, stop: int) -> None:
        carried[start:stop] = grads[start:stop]

    def through(point: str, x: torch.Tensor, start: int) -> None:
        carried[start:] = readout.norm_vjp(adapter, point, x, carried[start:]).to(carried.dtype)

    def write(rows: list[int]) -> None:
        seen = carried.double().mean(1).flatten(1).cpu()  # [R, pos * d]
        estimates[rows] = delta[rows].flatten(1) @ seen.T

    n = model.n_layers
    read(len(graph.receivers) - 1, len(graph.receivers))
    for la in reversed(range(n)):
        after_attn, after_mlp = readout.stream_norms(adapter, la)
        mlp = first["mlp", la]
        through(after_mlp, store["norm", la, 1], mlp + 1)
        write([sender[f"MLP{la}"]])
        read(mlp, mlp + 1)
        through(after_attn, store["norm", la, 0], mlp)
        write([sender[f"L{la}H{h}"] for h in range(model.n_heads)])
        read(first["head", la], mlp)
    write([sender["embed"]])
    return estimates


def edge_hooks(model: Model) -> list[str]:
    return [act_name("resid_pre", 0)] + [
        name for la in range(model.n_layers) for name in (act_name("z", la), act_name("mlp_out", la), act_name("k", la))
    ]


def _gradient_run(model: Model, clean_run: Run, bad_run: Run, score, slot: int, method: str, n_steps: int) -> dict:
    """One batched forward and backward on the corrupted text (or the ``n_steps`` points of the embedding
    path): each receiver's input value and the metric's gradient at its output."""
    from probe.analysis.intervene import embedding_path
    from probe.core.forward import forward_capture

    steps = 1 if method == "atp" else n_steps
    ids = bad_run.ids.to(model.device).expand(steps, -1)
    embeds = embedding_path(model, clean_run, bad_run, steps) if method == "ig" else None
    n = model.n_layers
    outputs = {("grad", c, la): act_name(c, la) for la in range(n) for c in ("q", "k", "v")}
    outputs.update({("grad", "mlp", la): act_name("mlp_out", la) for la in range(n)})
    outputs["grad", "final"] = act_name("resid_post", n - 1)
    inputs = {("resid_pre", la): act_name("resid_pre", la) for la in range(n)}
    inputs.update({("mlp_in", la): readout.mlp_reads(model.adapter, la) for la in range(n)})
    for la in range(n):
        for i, point in enumerate(readout.stream_norms(model.adapter, la) or ()):
            inputs["norm", la, i] = point
    inputs["final"] = act_name("resid_post", n - 1)
    like = {"q": "z", "k": "k", "v": "k", "mlp": "mlp_out"}  # a captured hook of the same shape
    shapes = {
        name: bad_run[act_name("resid_pre", 0) if key[1] == "final" else act_name(like[key[1]], key[2])].shape[1:]
        for key, name in outputs.items()
    }
    zeros = {
        key: torch.zeros((steps, *shapes[name]), device=model.device, requires_grad=True)
        for key, name in outputs.items()
    }
    patch = {name: (lambda value, ctx, z=zeros[key]: value + z.to(value.dtype)) for key, name in outputs.items()}
    with torch.enable_grad():
        store = forward_capture(
            model.adapter,
            ids,
            torch.ones_like(ids),
            list(dict.fromkeys(inputs.values())),
            grad=True,
            patch=patch,
            embeds=embeds,
        )
        # the head on the slot alone (the final residual is patched above, so its gradient is there too)
        logits = model.adapter.head(store[outputs["grad", "final"]][:, slot])
        total = sum(score(logits[i]) for i in range(steps))
        found = torch.autograd.grad(total, list(zeros.values()))
    out = {key: store[name].detach() for key, name in inputs.items()}
    out.update({key: g.detach() for key, g in zip(zeros, found, strict=True)})
    return out


def edge_frame(graph: Graph, estimates: torch.Tensor, span: float) -> pd.DataFrame:
    import pandas as pd

    allowed = graph.allowed()
    rows = [
        {"sender": graph.senders[i], "receiver": graph.receivers[j], "estimate": float(estimates[i, j])}
        for i, j in allowed.nonzero().tolist()
    ]
    frame = pd.DataFrame(rows, columns=COLUMNS[:3])
    frame["normalized_estimate"] = frame["estimate"] / span if span != 0 else float("nan")
    return frame
