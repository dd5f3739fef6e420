"""Run: the tokens and the captured tensors of one forward pass, with analysis helpers."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from probe import _validate as check
from probe.core.names import LOGITS, act_name, dims_of
from probe.core.tokens import mask_slot, position_in
from probe.errors import HookNameError, InputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.core.model import Model


class Run:
    """What ``Model.run`` returns: tokens, captured tensors (leading batch dim) and analyses.

    ``run[name]`` -> Tensor: resid [batch, pos, d_model], pattern [batch, head, q, k],
    q/k/v/z [batch, pos, head, d_head], mlp pre/post [batch, pos, d_mlp], logits [batch, pos, vocab].
    Padding positions are present in tensors (``run.lengths`` says how many are real) and never in frames.
    """

    def __init__(
        self,
        model: Model,
        ids: torch.Tensor,
        mask: torch.Tensor,
        store: dict,
        single: bool = False,
        prepend_bos: bool | None = None,
    ):
        self.model = model
        self.prepend_bos = prepend_bos  # whether the start token was put first; None: ids were given
        self.ids = ids  # [batch, pos]
        self.mask = mask  # [batch, pos]
        self.cache = store
        self.single = single
        self.lengths: list[int] = mask.sum(1).tolist()

    # -- dict-like ---------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        if not isinstance(name, str):
            raise HookNameError(
                f"run[...] takes a hook name such as 'blocks.0.hook_resid_post', got {name!r} ({type(name).__name__}); "
                "see run.keys()"
            )
        if name in self.cache:
            return self.cache[name]
        if name in self.model.hook_names:
            raise HookNameError(f"'{name}' was not captured in this run; run again with hooks=[..., '{name}']")
        if any(c in name for c in "*?["):
            raise HookNameError(f"run[...] takes one hook name, not the pattern '{name}'; see run.keys()")
        from probe.core.capture import resolve_names

        resolve_names([name], self.model.hook_names, self.model.name)  # unknown: raises with a suggestion
        raise HookNameError(f"'{name}' was not captured in this run")

    def __contains__(self, name: str) -> bool:
        return name in self.cache

    def keys(self) -> list[str]:
        return list(self.cache)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def tokens(self) -> list[str] | list[list[str]]:
        """Tokens as strings: a list for one text, a list of lists for a batch (padding dropped)."""
        rows = [self.token_strs(i) for i in range(len(self.ids))]
        return rows[0] if self.single else rows

    def token_strs(self, index: int = 0) -> list[str]:
        self._check_index(index)
        return self.model.to_str_tokens(self.ids[index, : self.lengths[index]])

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}: {list(t.shape)}" for n, t in list(self.cache.items())[:4])
        more = f", ... ({len(self.cache)} hooks)" if len(self.cache) > 4 else ""
        return f"Run({self.model.name}, batch={len(self)}, pos={self.ids.shape[1]}, {shapes}{more})"

    def _repr_html_(self) -> str:
        toks = " ".join(f"<code>{html.escape(t)}</code>" for t in self.token_strs(0))
        rows = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{html.escape(str(list(t.shape)))}</td></tr>"
            for n, t in self.cache.items()
        )
        return (
            f"<div><b>Run</b> on {html.escape(self.model.name)} ({self.model.kind}), {len(self)} text(s)<br>{toks}"
            f"<table><tr><th>hook</th><th>shape</th></tr>{rows}</table></div>"
        )

    # -- stacked views -----------------------------------------------------------------------
    def resid(self, layer: int) -> torch.Tensor:
        """Residual stream entering block ``layer`` (``layer == n_layers``: leaving the last block).

        [batch, pos, d_model]. A block's input equals the previous block's output, so either hook serves.
        """
        n = self.model.n_layers
        layer = check.index(layer, "layer", n + 1, what=f"{self.model.name}'s residual stream has layers")
        options = [act_name("resid_pre", layer)] if layer < n else []
        options += [act_name("resid_post", layer - 1)] if layer > 0 else []
        for name in options:
            if name in self.cache:
                return self.cache[name]
        raise HookNameError(
            f"residual stream {layer} was not captured; run with hooks=None (the default) or include '{options[0]}' "
            "('blocks.*.hook_resid_*' captures every layer's)"
        )

    def residual_stream(self) -> torch.Tensor:
        """[n_layers + 1, batch, pos, d_model]: entry i enters block i, the last leaves the last block.

        Equal to HF ``hidden_states`` (for GPT-2 except the last entry, to which HF applies ``ln_f``).
        """
        return torch.stack([self.resid(i) for i in range(self.model.n_layers + 1)])

    def attention(self) -> torch.Tensor:
        """[n_layers, batch, head, q, k] attention patterns, equal to HF ``attentions``."""
        return torch.stack([self[act_name("pattern", i)] for i in range(self.model.n_layers)])

    # -- positions ---------------------------------------------------------------------------
    def _check_index(self, index: int) -> int:
        return check.index(index, "index", len(self), what=f"a run of {len(self)} text(s) has texts")

    def position_of(self, position: int | None, index: int = 0) -> int:
        """Resolve a (possibly negative or default) position within text ``index``'s real tokens."""
        index = self._check_index(index)
        return position_in(self.model, self.ids[index, : self.lengths[index]], position, index)

    def mask_position(self, index: int = 0) -> int:
        index = self._check_index(index)
        return mask_slot(self.model, self.ids[index, : self.lengths[index]])

    # -- analyses ----------------------------------------------------------------------------
    def logits_at(self, position: int | None = None, index: int = 0) -> torch.Tensor:
        """[vocab] logits at one position: the stored logits, or the head applied to the final residual."""
        pos = self.position_of(position, index)
        if LOGITS in self.cache:
            return self.cache[LOGITS][index, pos]
        with torch.inference_mode():
            return self.model.adapter.head(self.resid(self.model.n_layers)[index, pos])

    def _one_text(self, index: int | None, what: str) -> int:
        """``index``, or 0 for a run of one text; a batch must say whose ``what`` it wants."""
        if index is not None:
            return index
        if len(self) > 1:
            raise InputError(
                f"this run holds {len(self)} texts; pass index=0..{len(self) - 1} to say whose {what} to show"
            )
        return 0

    def predictions(self, k: int = 10, position: int | None = None, index: int | None = None) -> pd.DataFrame:
        """Top-k of the model's distribution: next token (causal) or the [MASK] filler (masked).

        ``index``: which text of a batch (required when the run holds several).

        Returns:
            DataFrame [rank, token, token_id, prob, logit], rank 1 = most likely. For masked models the
            special tokens ([CLS], [SEP], [MASK], ...) are never fillers and are left out; ``prob`` is
            still each token's share of the whole distribution. ``.attrs``: index, prepend_bos and tokens
            (what was read).
        """
        from probe.core.tokens import top_k_frame

        k = check.integer(k, "k", minimum=1)
        index = self._one_text(index, "predictions")
        frame = top_k_frame(self.model, self.logits_at(position, index), k)
        frame.attrs.update(index=index, prepend_bos=self.prepend_bos, tokens=self.token_strs(index))
        return frame

    def logit_lens(
        self,
        k: int = 5,
        position: int | None = None,
        target: str | int | None = None,
        index: int | None = None,
        lens=None,
    ) -> pd.DataFrame:
        """What every layer would predict: the model's own head applied to each residual stream.

        ``lens``: a ``probe.TunedLens`` (``probe.train_lens`` / ``probe.load_lens``) reads every layer but the
        last through its trained translator instead (the tuned lens); ``.attrs["lens"]`` says which.

        Returns:
            DataFrame [layer, rank, token, token_id, prob] (+ target_rank, target_prob with ``target``).
            Layer 0 is the embedding output; layer n_layers equals ``predictions()``.
        """
        from probe.analysis.lens import logit_lens

        index = self._one_text(index, "logit lens")
        return logit_lens(self, k=k, position=position, target=target, index=index, lens=lens)

    # -- frames and files --------------------------------------------------------------------
    def to_frame(self, name: str, index: int = 0) -> pd.DataFrame:
        """Tidy long frame of one hook for text ``index``: dim columns as the hook has them, then value.

        Columns: position, token, then (head, key_position, key_token) / (head, dim) / neuron / dim /
        vocab_id, then value. Padding is dropped.
        """
        import pandas as pd

        self._check_index(index)
        length = self.lengths[index]
        dims = dims_of(name)
        value = self[name][index]
        for axis, dim in enumerate(dims):  # cut padding off every position axis
            if dim in ("position", "key_position"):
                value = value.narrow(axis, 0, length)
        array = value.detach().float().cpu().numpy()
        grids = np.meshgrid(*[np.arange(s) for s in array.shape], indexing="ij")
        cols = {dim: g.ravel() for dim, g in zip(dims, grids)}
        toks = np.array(self.token_strs(index), dtype=object)
        frame = {"position": cols.pop("position"), "token": None}
        frame["token"] = toks[frame["position"]]
        frame.update(cols)
        if "key_position" in frame:
            frame["key_token"] = toks[frame["key_position"]]
        frame["value"] = array.ravel()
        return pd.DataFrame(frame)

    def to_parquet(self, path: str | os.PathLike, hooks: list[str] | str | None = None) -> Path:
        """Write captured hooks, one row per (text, real token), to Parquet; returns the path.

        Args:
            hooks: names or glob patterns of captured hooks to write; None -> every captured hook.

        Columns: text_index, position, token, token_id, special (the tokenizer's special tokens), and one
        float32 list column per hook holding that token's values flattened; each hook column's Parquet
        field metadata records ``probe.dims`` and ``probe.shape`` to reshape it. A pattern row is the
        token's [head, key_position] over its own text's real tokens (shape [n_heads, -1]: -1 = the text's
        length), never the batch's padding. The layout is the one ``probe.extract`` writes
        (see ``probe/core/layout.py``). Written to a temporary file and renamed, so an existing file is never
        left half-written.
        """
        import pyarrow.parquet as pq

        from probe.core.layout import rows_table

        path = Path(path)
        if path.suffix != ".parquet":
            raise InputError(f"{path} should end in .parquet")
        if not path.parent.exists():
            raise InputError(f"folder {path.parent} does not exist; create it first")
        store = self.cache
        if hooks is not None:
            from probe.core.capture import resolve_names

            names = resolve_names(hooks, list(self.cache), self.model.name)
            store = {n: self.cache[n] for n in names}
        table = rows_table(
            self.model,
            self.ids,
            self.mask,
            store,
            text_ids=range(len(self)),
            dtype="float32",
            index_name="text_index",
        )
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        return path

    @property
    def plot(self):
        """Plotly views of this run: ``run.plot.attention(layer, head)``, ``run.plot.logit_lens()``, ..."""
        from probe.core.plotting import view

        return view("RunPlots")(self)
