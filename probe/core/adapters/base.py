"""What an adapter is: the one place that knows a model family's module paths.

A family adapter lists its hook points as declarative ``Point``s (which module, its input or output,
which tuple item, which slice of the last dim, split into heads or not). Because a Point says *where*
the value lives rather than holding a closure, the same table serves capture today and writing a value
back (patching, ablation, steering) later. Analyses never see modules, only the tensors.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from probe.errors import NoHeadError


@dataclass(frozen=True)
class Point:
    """One hook point: ``module``'s input (``side="in"``, first positional arg) or output.

    ``side="kwargs"``: a value HF computes inside ``module.forward`` with no module boundary (rotary q/k);
    ``fn(args, kwargs)`` derives it from the module's call arguments. Such points are read-only.
    """

    name: str
    module: nn.Module
    side: Literal["in", "out", "kwargs"] = "out"
    item: int | None = None  # tuple element of the output (attention modules return (out, weights))
    cols: tuple[int, int] | None = None  # slice of the last dim (GPT-2's fused q|k|v projection)
    heads: int | None = None  # split the last dim into [heads, d_head]
    fn: Callable | None = None  # side="kwargs" only: (args, kwargs) -> value
    # slice of the last dim after the head split (GPT-NeoX's fused qkv is laid out per head: [q_h | k_h | v_h])
    head_cols: tuple[int, int] | None = None
    # the module sees [batch * pos, ...] (OPT's MLP flattens tokens); capture restores [batch, pos, ...]
    flat: bool = False
    # where the value sits when a module returns a tuple though ``item`` is None (transformers 4's blocks:
    # (hidden, ...), and DistilBERT's (weights, hidden) when attention weights are asked for)
    tuple_item: int = 0

    def pick(self, value) -> torch.Tensor:
        if self.fn is not None:
            return self.fn(*value)
        if self.item is not None:
            value = value[self.item]
        elif type(value) is tuple:  # transformers 4 returns (hidden, ...) where 5 returns hidden (blocks)
            value = value[self.tuple_item]
        if self.cols is not None:
            value = value[..., self.cols[0] : self.cols[1]]
        if self.heads is not None:
            value = value.unflatten(-1, (self.heads, -1))
        if self.head_cols is not None:
            value = value[..., self.head_cols[0] : self.head_cols[1]]
        return value

    def put(self, value, new: torch.Tensor):
        """The inverse of ``pick``: ``value`` as the module gave it, with the picked part replaced by ``new``.

        ``new`` has the picked shape (e.g. [batch, pos, head, d_head]); the result has the module's own
        shape and container (tuple item, full width of a fused projection), so it can be handed back to
        the forward pass. This is what lets patching, ablation and steering write through any Point.
        """
        bare = self.item is None and type(value) is tuple  # transformers 4's (hidden, ...): replace hidden
        whole = value[self.item] if self.item is not None else value[self.tuple_item] if bare else value
        if self.head_cols is not None:  # put the slice back into the full heads first (GPT-NeoX's fused qkv)
            a, b = self.head_cols
            full = whole.unflatten(-1, (self.heads, -1))
            new = torch.cat([full[..., :a], new, full[..., b:]], dim=-1)
        if self.heads is not None:
            new = new.flatten(-2)
        if self.cols is not None:
            a, b = self.cols
            new = torch.cat([whole[..., :a], new, whole[..., b:]], dim=-1)
        if self.item is not None:
            return (*value[: self.item], new, *value[self.item + 1 :])
        if bare:
            i = self.tuple_item % len(value)
            return (*value[:i], new, *value[i + 1 :])
        return new


def rotated(attn: nn.Module, project: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """A ``Point.fn`` for a pre-hook (``side="kwargs"``) on a rotary attention module: ``project(hidden)``
    ([batch, pos, heads, d_head]: q or k before rotary) rotated by the family's own
    ``apply_rotary_pos_emb`` with the cos/sin the module is called with. HF applies rotary inside
    ``forward``, with no module boundary to hook, so the value is derived exactly as HF derives it."""
    apply_rotary = sys.modules[type(attn).__module__].apply_rotary_pos_emb

    def fn(args: tuple, kwargs: dict) -> torch.Tensor:
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        cos, sin = kwargs["position_embeddings"]
        x = project(hidden)
        out, _ = apply_rotary(x, x, cos, sin, unsqueeze_dim=2)  # unsqueeze_dim=2: the [b, pos, h, d] layout
        return out

    return fn


class Adapter:
    """Base adapter. Subclasses set ``family`` and fill the dims, ``body``, ``blocks`` and ``points``."""

    family: str = ""
    name: str = ""  # the model's display name (``Model.name``), set by Model; used in error messages
    # Hooks whose values are only produced by the eager attention kernel.
    needs_eager = ("attn.hook_pattern",)
    # How a block adds to the residual stream, for ``probe.verify``'s identities: "pre_ln" (GPT-2, Llama),
    # "post_ln" (BERT) or "parallel" (attention and MLP read the same input: GPT-NeoX, GPT-J).
    block_form: str = "pre_ln"
    # The hook equal to HF's last hidden state when it is neither ``ln_final.hook_normalized`` nor the last
    # ``hook_resid_post`` (OPT-350m projects it: ``project_out.hook_out``); read by ``probe.verify``.
    last_hidden_hook: str | None = None
    # Hook points inside the LM head rather than the body (fired by ``head``, not by the body's forward).
    head_points: frozenset[str] = frozenset()

    def __init__(self, hf: nn.Module, kind: str):
        self.hf = hf
        self.kind = kind
        self.config = hf.config

    # -- shape -------------------------------------------------------------------------------
    n_layers: int
    n_heads: int
    d_model: int
    d_mlp: int
    vocab_size: int
    n_ctx: int

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    # -- structure ---------------------------------------------------------------------------
    body: nn.Module  # the bare transformer, without any LM head
    blocks: nn.ModuleList

    def points(self) -> list[Point]:
        """Every hook point, in forward order (``logits`` is added by the capture code)."""
        raise NotImplementedError

    @property
    def point_map(self) -> dict[str, Point]:
        """``points()`` by name, rebuilt only when the module tree changed.

        Building GPT-2 small's table takes ~0.4 ms (a tenth of a GPU forward); checking that no module
        was swapped since (LoRA wrapping a projection, a bridge wrapping blocks) takes ~0.03 ms.
        """
        key = _module_ids(self.hf)
        cached = self.__dict__.get("_point_cache")
        if cached is None or cached[0] != key:
            cached = self._point_cache = (key, {p.name: p for p in self.points()})
        return cached[1]

    def attn_scale(self) -> float:
        """What the model multiplies q·k by before the softmax (1/sqrt(d_head) unless a family says otherwise)."""
        return self.d_head**-0.5

    def visible_keys(self, layer: int, n: int) -> torch.Tensor:
        """[n, n] bool: which key positions a query may attend to in ``layer`` (causal: itself and before)."""
        ones = torch.ones(n, n, dtype=torch.bool)
        return ones.tril() if self.kind == "causal" else ones

    def mlp_call(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        """What block ``layer``'s MLP writes when it reads residual stream ``resid`` [..., d_model] (its norm,
        then the MLP): the receiver of edge attribution. Blocks whose MLP is one module after ``hook_resid_mid``'s
        norm; others override it (OPT, parallel GPT-NeoX, the post-LN masked models, whose MLP reads
        ``hook_attn_out`` without a norm of its own)."""
        points = self.point_map
        mid = points.get(f"blocks.{layer}.hook_resid_mid")
        out = points[f"blocks.{layer}.hook_mlp_out"]
        if mid is None or mid.side != "in" or out.flat:
            raise NotImplementedError(f"{self.family} blocks have no separate MLP input")
        return out.module.forward(mid.module.forward(resid))  # forward(): the modules' own hooks stay out

    def body_inputs(self, ids: torch.Tensor, mask: torch.Tensor) -> dict:
        return {"input_ids": ids, "attention_mask": mask}

    def call_body(self, ids: torch.Tensor, mask: torch.Tensor, patterns: bool = False):
        """Run the bare transformer on a batch: no KV cache where it has one. ``patterns``: the attention
        weights are wanted (eager kernel); transformers 4's attention modules compute them only when
        asked (``output_attentions``), 5's always do."""
        extra = _call_options(type(self.body))
        kwargs = {**self.body_inputs(ids, mask), **extra}
        if patterns and _TRANSFORMERS_4:
            kwargs["output_attentions"] = True
        return self.body(**kwargs)

    # -- heads -------------------------------------------------------------------------------
    def head(self, resid: torch.Tensor) -> torch.Tensor:
        """Logits from a residual-stream vector (before any final norm), exactly as the model's head.

        ``resid`` [..., d_model] -> [..., vocab]. The logit lens applies this to every layer.
        """
        raise NoHeadError(
            f"{self.name or self.family} is a bare encoder with no language-model head, so it has "
            "no token distribution; load a checkpoint with an LM head (e.g. tiny-bert, bert-base-uncased)"
        )


def _transformers_major() -> int:
    import transformers

    return int(transformers.__version__.split(".")[0])


_TRANSFORMERS_4 = _transformers_major() < 5


@functools.cache
def _call_options(body_type: type) -> dict:
    """``use_cache=False`` for bodies whose forward takes it (transformers 4's encoders do not)."""
    import inspect

    params = inspect.signature(body_type.forward).parameters
    takes = "use_cache" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {"use_cache": False} if takes else {}


def _module_ids(root: nn.Module) -> tuple[int, ...]:
    """Identities of every module under ``root`` (the cached table holds them, so ids are not reused)."""
    ids, stack = [id(root)], [root]
    while stack:
        for child in stack.pop()._modules.values():
            if child is not None:
                ids.append(id(child))
                stack.append(child)
    return tuple(ids)
