"""Model: a loaded transformer behind the hook API. ``probe.load`` returns one."""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property

import torch

from probe.adapters import ADAPTERS, Adapter
from probe.errors import InputError
from probe.hooks import LOGITS, forward_capture, resolve_names


class Model:
    """A pretrained transformer with TransformerLens-style hook points.

    Attributes:
        kind: "causal" (next-token), "masked" (fill [MASK]) or "encoder" (no LM head).
        name, n_layers, n_heads, d_model, d_mlp, vocab_size, n_ctx: as the checkpoint says.
        hf, tokenizer: the underlying Hugging Face objects (escape hatches).
    """

    def __init__(self, hf, tokenizer, kind: str, name: str):
        self.hf = hf
        self.tokenizer = tokenizer
        self.kind = kind
        self.name = name
        self.adapter: Adapter = ADAPTERS[hf.config.model_type](hf, kind)
        a = self.adapter
        self.n_layers, self.n_heads, self.d_model, self.d_mlp = a.n_layers, a.n_heads, a.d_model, a.d_mlp
        self.vocab_size, self.n_ctx, self.d_head = a.vocab_size, a.n_ctx, a.d_head
        if tokenizer.pad_token_id is None:  # GPT-2's tokenizer has none; padding is masked out anyway
            tokenizer.pad_token = tokenizer.eos_token

    def __repr__(self) -> str:
        return (
            f"Model('{self.name}', kind={self.kind}, family={self.adapter.family}, n_layers={self.n_layers}, "
            f"n_heads={self.n_heads}, d_model={self.d_model}, d_mlp={self.d_mlp}, vocab_size={self.vocab_size})"
        )

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @cached_property
    def hook_names(self) -> list[str]:
        """Every hook point, in forward order; ``logits`` last for models with an LM head."""
        names = [p.name for p in self.adapter.points()]
        return names + [LOGITS] if self.kind != "encoder" else names

    @cached_property
    def default_hooks(self) -> list[str]:
        """What ``run(text)`` captures: the residual stream, attention patterns and logits."""
        names = [f"blocks.{i}.hook_resid_pre" for i in range(self.n_layers)]
        names += [f"blocks.{self.n_layers - 1}.hook_resid_post"]
        names += [f"blocks.{i}.attn.hook_pattern" for i in range(self.n_layers)]
        return names + ([LOGITS] if self.kind != "encoder" else [])

    # -- tokens ------------------------------------------------------------------------------
    def tokenize(self, text: str) -> list[str]:
        """The tokens the model sees for ``text`` (special tokens included), as readable strings."""
        return self.to_str_tokens(self.encode([text])[0][0])

    def to_str_tokens(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """Token ids -> one decoded string per token, as the tokenizer decodes it alone (" the", "##ing")."""
        return self.tokenizer.batch_decode([[int(i)] for i in ids], clean_up_tokenization_spaces=False)

    def encode(self, texts: list[str], truncate: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (ids [batch, pos], mask [batch, pos]) right-padded; errors for empty or too long text."""
        if not texts:
            raise InputError("no text given; pass a string or a non-empty list of strings")
        for t in texts:
            if not isinstance(t, str):
                raise InputError(f"inputs must be str, list[str] or a LongTensor of ids, got {type(t).__name__}")
        enc = self.tokenizer(texts, add_special_tokens=True)["input_ids"]
        rows = []
        for text, ids in zip(texts, enc):
            if not ids:
                raise InputError(f"text {text!r} has no tokens; pass some text")
            if len(ids) > self.n_ctx:
                if not truncate:
                    raise InputError(
                        f"text of {len(ids)} tokens is longer than {self.name}'s context of {self.n_ctx}; "
                        "shorten it or pass truncate=True (--truncate)"
                    )
                ids = ids[: self.n_ctx]
            rows.append(ids)
        return _pad(rows, self.tokenizer.pad_token_id)

    # -- running -----------------------------------------------------------------------------
    def run(
        self,
        inputs: str | list[str] | torch.Tensor,
        *,
        hooks: Sequence[str] | str | None = None,
        batch_size: int = 32,
        truncate: bool = False,
        grad: bool = False,
        offload: str | torch.device | None = None,
    ):
        """Run text through the model and capture hook values.

        Args:
            inputs: a string, a list of strings, or token ids [batch, pos] (LongTensor, no padding).
            hooks: names or glob patterns ("blocks.*.hook_resid_post"); None -> ``default_hooks``.
            batch_size: texts per forward pass; results are concatenated.
            truncate: cut texts longer than the context instead of raising.
            grad: keep the autograd graph (for saliency); otherwise ``torch.inference_mode``.
            offload: a device ("cpu") to move each captured tensor to as soon as it is produced, inside
                the hook, so GPU memory stays flat however many hooks are captured; None keeps them where
                the model computes them.

        Returns:
            Run: ``run["blocks.0.hook_resid_post"]`` [batch, pos, d_model], predictions, logit lens, frames.

        Example:
            >>> run = probe.load("tiny-gpt").run("The robot must not", hooks=["blocks.*.hook_resid_post", "logits"])
        """
        from probe.run import Run

        single = isinstance(inputs, str)
        if single:
            inputs = [inputs]
        if isinstance(inputs, torch.Tensor):
            ids = inputs[None] if inputs.dim() == 1 else inputs
            if ids.dtype not in (torch.int64, torch.int32) or ids.dim() != 2:
                raise InputError("token ids must be an integer tensor [batch, pos]")
            if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
                raise InputError(f"token ids must lie in [0, {self.vocab_size}) for {self.name}")
            if ids.shape[1] > self.n_ctx:
                raise InputError(f"{ids.shape[1]} positions exceed {self.name}'s context of {self.n_ctx}")
            ids = ids.long()
            mask = torch.ones_like(ids)
        else:
            ids, mask = self.encode(list(inputs), truncate=truncate)
        if batch_size < 1:
            raise InputError("batch_size must be at least 1")
        names = self.default_hooks if hooks is None else resolve_names(hooks, self.hook_names, self.name)
        if not names:
            raise InputError("hooks=[] captures nothing; pass hook names or patterns, or None for the default set")
        offload = _offload_device(offload)
        ids, mask = ids.to(self.device), mask.to(self.device)
        chunks = [
            forward_capture(
                self.adapter, ids[s : s + batch_size], mask[s : s + batch_size], names, grad=grad, offload=offload
            )
            for s in range(0, len(ids), batch_size)
        ]
        store = chunks[0] if len(chunks) == 1 else {n: torch.cat([c[n] for c in chunks]) for n in chunks[0]}
        return Run(self, ids, mask, store, single=single)

    def generate(
        self, prompt: str, max_new_tokens: int = 20, k: int = 5, sample: bool = False, seed: int | None = None
    ):
        """Greedy (or sampled) continuation with the top-k candidates at every step; causal models only.

        Returns:
            (text, DataFrame[step, rank, token, token_id, prob, chosen]).
        """
        from probe.predict import generate

        return generate(self, prompt, max_new_tokens=max_new_tokens, k=k, sample=sample, seed=seed)


def _offload_device(offload) -> torch.device | None:
    if offload is None:
        return None
    try:
        return torch.device(offload)
    except (RuntimeError, TypeError):
        raise InputError(
            f"offload={offload!r} is not a device; use offload='cpu' (or None to keep tensors in place)"
        ) from None


def _pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def load(
    name_or_path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    allow_pickle: bool = False,
    device_map: str | dict | None = None,
) -> Model:
    """Load a pretrained transformer: a bundled name, a local checkpoint folder or a hub id.

    Args:
        name_or_path: "tiny-gpt", "tiny-bert", a folder with config.json + safetensors, or "gpt2", ...
        device: "cpu", "cuda", ...; default: where transformers puts it (CPU).
        dtype: float32 (default), float16, bfloat16.
        revision: a hub branch, tag or commit.
        allow_pickle: also accept .bin (pickle) weights, which can execute code when loaded.
        device_map: handed to transformers (needs ``accelerate``): "auto" spreads a model larger than one
            GPU over the GPUs (and CPU); also "cpu", "cuda:0" or a {module: device} dict. Use instead of
            ``device``. Pair with ``dtype="bfloat16"`` (or "auto", the checkpoint's own) for big models,
            and with ``run(..., offload="cpu")`` to keep captured activations off the GPU.

    Example:
        >>> gpt = probe.load("tiny-gpt"); gpt.kind
        'causal'
    """
    from probe.loading import load_hf

    if device_map is not None:
        _check_device_map(device, device_map)
    hf = load_hf(
        name_or_path, device=device, dtype=dtype, revision=revision, allow_pickle=allow_pickle, device_map=device_map
    )
    return Model(*hf)


def _check_device_map(device, device_map) -> None:
    import importlib.util

    from probe.errors import LoadError

    if device is not None:
        raise LoadError("pass device= or device_map=, not both; device_map='auto' places every layer itself")
    if importlib.util.find_spec("accelerate") is None:
        raise LoadError("device_map= needs the accelerate package; `pip install accelerate`, or pass device= instead")
