"""Neuron factors (NMF of MLP activations, Ecco's idea) and layer similarity (linear CKA).

Both take what ``Model.run`` captures and reach into no module: factors reads ``mlp.hook_post``, CKA
reads the residual stream.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd
import torch

from probe import _validate as check
from probe.core.names import act_name
from probe.errors import InputError

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from probe.core.model import Model
    from probe.core.run import Run


class FactorFrame(pd.DataFrame):
    """Per-token factor weights [text_index, position, token, factor, weight] plus the neurons.

    ``.neurons``: [factor, rank, layer, neuron, loading], the top neurons of each factor.
    ``.dominant()``: one row per token with its strongest factor. ``.plot()``: the coloured text.
    Everything extra lives in ``.attrs`` (plain records), so it survives filtering and pickling.
    """

    @property
    def _constructor(self):
        return FactorFrame

    @property
    def neurons(self) -> pd.DataFrame:
        return pd.DataFrame(self.attrs.get("neurons", []))

    def dominant(self) -> pd.DataFrame:
        """[text_index, position, token, factor, weight, share]: each token's strongest factor."""
        idx = self.groupby(["text_index", "position"], sort=True)["weight"].idxmax()
        top = pd.DataFrame(self.loc[idx]).reset_index(drop=True)
        total = self.groupby(["text_index", "position"], sort=True)["weight"].sum().to_numpy()
        top["share"] = top["weight"].to_numpy() / (total + 1e-12)
        return top

    def plot(self, per_row: int = 14) -> go.Figure:
        from probe.core.plotting import view

        return view("factors")(self, per_row=per_row)


def _layers(model: Model, layers) -> list[int]:
    if layers is None:
        return list(range(model.n_layers))
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers:
        raise InputError("layers=[] selects nothing; pass layer indices or None for all")
    return [check.index(la, "layer", model.n_layers, what=f"{model.name} has layers") for la in layers]


def factors(
    model: Model,
    texts: str | Sequence[str],
    layers: int | Sequence[int] | None = None,
    n_components: int = 8,
    top_k: int = 10,
    seed: int = 0,
) -> FactorFrame:
    """Non-negative matrix factorisation of MLP neuron activations: a few "factors" of neurons that
    fire together, and how strongly each token expresses each factor.

    NMF needs non-negative data. ``mlp.hook_post`` is the activation function's output: ReLU is already
    >= 0, but GELU / SiLU dip to about -0.17 / -0.28, so negative values are clipped to 0 (the share
    clipped, and its size, are in ``.attrs``). Neurons of several layers are concatenated, as Ecco does.

    Args:
        texts: one or more texts; every real token (special ones included) is one row of the matrix.
        layers: layer index or indices (default all).
        n_components: number of factors (at most the number of tokens).
        top_k: neurons listed per factor.
        seed: NMF initialisation seed (nndsvda is deterministic; the seed matters only for ties).

    Returns:
        FactorFrame [text_index, position, token, factor, weight] (``weight`` = the token's row of W),
        ``.neurons`` [factor, rank, layer, neuron, loading] (rows of H), ``.dominant()``, ``.plot()``.
        ``.attrs``: layers, n_components, clipped_fraction, clipped_mass, reconstruction_error, model.

    Example:
        >>> f = probe.factors(gpt, ["The robot must not hurt the human."], n_components=4)
        >>> f.neurons.head(); f.plot()
    """
    from probe.errors import need

    NMF = need("sklearn.decomposition").NMF
    texts = [texts] if isinstance(texts, str) else list(texts)
    layers = _layers(model, layers)
    if not isinstance(n_components, int) or n_components < 1:
        raise InputError("n_components must be a positive integer")
    if top_k < 1:
        raise InputError("top_k must be at least 1")
    names = [act_name("post", la) for la in layers]
    run = model.run(texts, hooks=names)
    real = run.mask.bool()
    acts = torch.cat([run[n][real].float() for n in names], dim=-1).cpu()  # [tokens, layers * d_mlp]
    if n_components > acts.shape[0]:
        raise InputError(f"n_components={n_components} exceeds the {acts.shape[0]} tokens; use fewer factors")
    negative = acts < 0
    clipped_mass = float(-acts[negative].sum() / (acts.abs().sum() + 1e-12))
    x = acts.clamp(min=0).numpy()
    nmf = NMF(n_components=n_components, init="nndsvda", max_iter=500, random_state=seed)
    w = nmf.fit_transform(x)  # [tokens, factors]
    h = nmf.components_  # [factors, layers * d_mlp]
    text_index, position = real.nonzero(as_tuple=True)
    toks = [t for i in range(len(texts)) for t in run.token_strs(i)]
    n_tok = len(toks)
    frame = FactorFrame(
        {
            "text_index": text_index.repeat_interleave(n_components).numpy(),
            "position": position.repeat_interleave(n_components).numpy(),
            "token": [t for t in toks for _ in range(n_components)],
            "factor": list(range(n_components)) * n_tok,
            "weight": w.reshape(-1).astype("float32"),
        }
    )
    records = []
    d = model.d_mlp
    for f in range(n_components):
        order = h[f].argsort()[::-1][:top_k]
        for rank, j in enumerate(order, start=1):
            records.append(
                {"factor": f, "rank": rank, "layer": layers[j // d], "neuron": int(j % d), "loading": float(h[f, j])}
            )
    frame.attrs.update(
        neurons=records,
        layers=layers,
        n_components=n_components,
        clipped_fraction=float(negative.float().mean()),
        clipped_mass=clipped_mass,
        reconstruction_error=float(nmf.reconstruction_err_),
        model=model.name,
        texts=texts,
    )
    return frame


# -- CKA ----------------------------------------------------------------------------------------
def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same n items: x [n, d1], y [n, d2] -> [0, 1].

    ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) with column-centred Xc, Yc (Kornblith et al. 2019),
    computed in float64. Invariant to orthogonal transforms and isotropic scaling of either side.
    """
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    if x.shape[0] < max(x.shape[1], y.shape[1]):  # fewer items than dims: the n x n Gram form is cheaper
        k, lg = x @ x.T, y @ y.T
        num, den = (k * lg).sum(), k.norm() * lg.norm()
    else:
        num, den = (y.T @ x).pow(2).sum(), (x.T @ x).norm() * (y.T @ y).norm()
    return float(num / den) if den > 0 else float("nan")


def _resid_hooks(model: Model) -> list[str]:
    return [act_name("resid_pre", i) for i in range(model.n_layers)] + [act_name("resid_post", model.n_layers - 1)]


def _word_vectors(run: Run, texts: list[str]) -> list[torch.Tensor]:
    """Per text, [words, layers + 1, d_model]: token vectors averaged within each whitespace word.

    Tokens map to words by character offsets (the first non-space character of the token); special
    tokens map to none. Words a tokenizer gives no token keep a NaN row and are dropped later.
    """
    model = run.model
    stream = run.residual_stream().float()  # [layers + 1, batch, pos, d_model]
    own = model.kind != "causal" or run.prepend_bos is not False  # the tokenizer's own specials, as run read it
    enc = model.tokenizer(texts, return_offsets_mapping=True, add_special_tokens=own)
    special = set(model.tokenizer.all_special_ids)
    out = []
    for i, text in enumerate(texts):
        ids, offsets = enc["input_ids"][i], enc["offset_mapping"][i]
        lead = run.lengths[i] - len(ids)  # 1 when the run read the start token first (prepend_bos)
        if lead not in (0, 1) or (lead and int(run.ids[i, 0]) != model.start_token_id):
            raise InputError(f"text {i} does not match run {i} of {model.name}; pass the texts the runs were made on")
        ids, offsets = [None] * lead + list(ids), [(0, 0)] * lead + list(offsets)
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        rows = torch.full((len(spans), stream.shape[0], stream.shape[-1]), float("nan"))
        members: dict[int, list[int]] = {}
        for p, (tid, (a, b)) in enumerate(zip(ids, offsets)):
            if tid in special or a == b:
                continue
            while a < b and text[a].isspace():
                a += 1
            w = next((j for j, (s, e) in enumerate(spans) if s <= a < e), None)
            if w is not None:
                members.setdefault(w, []).append(p)
        for w, ps in members.items():
            rows[w] = stream[:, i, ps].mean(1)
        out.append(rows)
    return out


def cka(
    a: Run | Model,
    b: Run | Model | None = None,
    texts: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """Linear CKA between every pair of residual-stream layers: within one model or across two.

    Call as ``cka(run)`` / ``cka(run_a, run_b)`` (runs with the residual stream captured, as
    ``model.run`` does by default) or ``cka(model)`` / ``cka(model_a, model_b, texts)``. Items are the
    real tokens of every text; when the two runs tokenize differently, each whitespace word's tokens
    are averaged and words are the items (``texts`` must then be given with runs).

    Returns:
        DataFrame [layer_a, layer_b, cka]: layer 0 is the embedding output, layer i the output of
        block i-1. ``.attrs``: model_a, model_b, aligned_by ("token" | "word"), n_items.

    Example:
        >>> probe.cka(gpt, bert, ["The robot must not hurt the human.", "Paris is in France."])
    """
    from probe.core.model import Model

    if isinstance(texts, str):
        texts = [texts]
    if isinstance(a, Model) or isinstance(b, Model):
        if texts is None or not texts:
            raise InputError("cka of models needs texts: cka(model_a, model_b, texts)")
        a = a.run(list(texts), hooks=_resid_hooks(a)) if isinstance(a, Model) else a
        b = b.run(list(texts), hooks=_resid_hooks(b)) if isinstance(b, Model) else b
    b = a if b is None else b
    same = a.ids.shape == b.ids.shape and torch.equal(a.ids.cpu(), b.ids.cpu()) and torch.equal(a.mask, b.mask)
    if same:
        real = a.mask.bool()
        xs = a.residual_stream().float()[:, real]  # [layers + 1, tokens, d_model]
        ys = xs if b is a else b.residual_stream().float()[:, real]
        aligned = "token"
    else:
        if texts is None:
            raise InputError(
                "the two runs tokenize differently; pass texts= (the texts both ran on) to align them by word"
            )
        wa, wb = _word_vectors(a, list(texts)), _word_vectors(b, list(texts))
        xs_, ys_ = [], []
        for ra, rb in zip(wa, wb):
            if len(ra) != len(rb):
                raise InputError("the runs were made on different texts; pass the same texts to both")
            ok = ~(ra.isnan().any(-1).any(-1) | rb.isnan().any(-1).any(-1))
            xs_.append(ra[ok]), ys_.append(rb[ok])
        xs, ys = torch.cat(xs_).transpose(0, 1), torch.cat(ys_).transpose(0, 1)  # [layers + 1, words, d]
        aligned = "word"
    if xs.shape[1] < 2:
        raise InputError("CKA needs at least 2 aligned tokens; pass longer or more texts")
    rows = [
        {"layer_a": i, "layer_b": j, "cka": linear_cka(xs[i], ys[j])}
        for i in range(xs.shape[0])
        for j in range(ys.shape[0])
    ]
    frame = pd.DataFrame(rows)
    frame.attrs.update(model_a=a.model.name, model_b=b.model.name, aligned_by=aligned, n_items=int(xs.shape[1]))
    return frame
