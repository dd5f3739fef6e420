"""Model: a loaded transformer behind the hook API. ``probe.load`` returns one."""

from __future__ import annotations

import codecs
import contextlib
import copy
import functools
import os
import re
from collections.abc import Sequence
from functools import cached_property

import torch

from probe import _validate as check
from probe.core.adapters import ADAPTERS, Adapter
from probe.core.capture import resolve_names
from probe.core.forward import capture_batches
from probe.core.names import LOGITS, act_name
from probe.core.patch import resolve_patch
from probe.core.tokens import pad
from probe.errors import InputError


class Model:
    """A pretrained transformer with TransformerLens-style hook points.

    Attributes:
        kind: "causal" (next-token), "masked" (fill [MASK]) or "encoder" (no LM head).
        name, n_layers, n_heads, d_model, d_mlp, vocab_size, n_ctx: as the checkpoint says.
        hf, tokenizer: the underlying Hugging Face objects (escape hatches).
        prepend_bos: how every entry point reads a text unless told otherwise (``prepend_bos=`` on
            ``run``, ``tokenize``, ``generate``, ``probe.compare``, ``probe.report``, ``probe.attribute``,
            ``probe.extract``, ``ablate``/``steer``/``patching``; ``--prepend-bos/--no-prepend-bos`` on the
            CLI). True (the default, TransformerLens's too): a causal model reads a text as a document,
            from the start token it was trained with (``start_token_id``) where its tokenizer adds none;
            False: the text's own tokens only. Masked models always read ``[CLS] text [SEP]``.
    """

    prepend_bos: bool = True
    literal_mask: bool = False  # True: a causal model reads "[MASK]" in a text as ordinary text

    def __init__(self, hf, tokenizer, kind: str, name: str):
        self.hf = hf
        self.tokenizer = tokenizer
        self.kind = kind
        self.name = name
        self.adapter: Adapter = ADAPTERS[hf.config.model_type](hf, kind)
        self.adapter.name = name  # errors raised inside the adapter name the model as the user knows it
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
        names = [act_name("resid_pre", i) for i in range(self.n_layers)]
        names += [act_name("resid_post", self.n_layers - 1)]
        names += [act_name("pattern", i) for i in range(self.n_layers)]
        return names + ([LOGITS] if self.kind != "encoder" else [])

    @cached_property
    def start_token_id(self) -> int | None:
        """The token a causal LM saw at document starts, when its tokenizer does not add one itself.

        GPT-2 and SmolLM2 tokenizers add no BOS; both models were trained on documents separated by
        ``<|endoftext|>``, and scoring or predicting without it makes the first token an attention sink
        with no context (SmolLM2 ranks "The robot must not hurt the human." clearly higher with it).
        Order: ``<|endoftext|>`` if the vocabulary has it, else BOS, else EOS. None for masked/encoder
        models and for tokenizers that add a BOS themselves (Llama 2/3).
        """
        if self.kind != "causal":
            return None
        tok = self.tokenizer
        added = tok("a", add_special_tokens=True)["input_ids"]
        if tok.bos_token_id is not None and added and added[0] == tok.bos_token_id:
            return None
        vocab = tok.get_vocab()
        if "<|endoftext|>" in vocab:
            return vocab["<|endoftext|>"]
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def reads_bos(self, prepend_bos: bool | None = None) -> bool:
        """Whether a text is read with the start token first: ``prepend_bos`` or, when None, the model's
        default (``Model.prepend_bos``); always False for models without one (masked, Llama's own BOS)."""
        bos = self.prepend_bos if prepend_bos is None else check.boolean(prepend_bos, "prepend_bos")
        return bool(bos) and self.start_token_id is not None

    def reading(self, prepend_bos: bool | None) -> Model:
        """This model, reading texts by ``prepend_bos`` wherever it is not told otherwise: itself when that is
        already its default (or None), else a light copy sharing weights, tokenizer and hooks."""
        if prepend_bos is None or check.boolean(prepend_bos, "prepend_bos") == self.prepend_bos:
            return self
        other = copy.copy(self)
        other.prepend_bos = prepend_bos
        return other

    def document_ids(self, text: str | None, prepend_bos: bool | None = None) -> torch.Tensor:
        """[1, pos] ids of ``text`` as every entry point reads it (see ``prepend_bos``).

        ``text=None`` (or empty) gives the start token alone: the context before a document's first word.
        """
        ids = self._token_ids([text or ""], prepend_bos)[0]
        if not ids:
            raise InputError(
                f"{self.name} reads no start token here, so it cannot read an empty context; give it some text"
            )
        if len(ids) > self.n_ctx:
            raise InputError(
                f"text of {len(ids)} tokens (with its start token) is longer than {self.name}'s context of "
                f"{self.n_ctx}; shorten it or pass truncate=True (--truncate)"
            )
        return torch.tensor([ids])

    def hook_shapes(self):
        """Every hook point in forward order with the shape of its tensor, as ``probe hooks MODEL`` prints it.

        Found by running one token through the model with every hook captured, so the shapes are the
        ones ``run[...]`` returns; batch and positions are named, every other dim is "name=size".

        Returns:
            DataFrame [hook, shape, dims, sizes]: shape like "[batch, pos, d_model=64]"; dims the dim
            names; sizes the sizes (None for batch and positions).

        Example:
            >>> probe.load("tiny-gpt").hook_shapes().head(3)
        """
        import pandas as pd

        from probe.core.names import dims_of

        run = self.run(torch.zeros((1, 1), dtype=torch.long), hooks=self.hook_names)
        sizes_by_dim = {"head": "head", "neuron": "d_mlp", "vocab_id": "d_vocab"}
        rows = []
        for name in self.hook_names:
            shape = list(run[name].shape)[1:]
            dims, sizes = ["batch"], [None]
            names = dims_of(name)
            if len(names) != len(shape):  # a hook dims_of does not know: number its dims
                names = tuple(f"dim{i + 1}" for i in range(len(shape)))
            for dim, size in zip(names, shape, strict=True):
                if dim in ("position", "key_position"):
                    dims.append("pos" if dim == "position" else "key_pos")
                    sizes.append(None)
                    continue
                if dim == "dim":
                    label = "d_head" if len(shape) == 3 else "d_model" if size == self.d_model else "dim"
                else:
                    label = sizes_by_dim.get(dim, dim)
                dims.append(label)
                sizes.append(int(size))
            if name.endswith("attn.hook_pattern"):
                dims[2:4] = ["q_pos", "k_pos"] if dims[1] == "head" else dims[2:4]
            shape_text = ", ".join(d if s is None else f"{d}={s}" for d, s in zip(dims, sizes))
            rows.append({"hook": name, "shape": f"[{shape_text}]", "dims": dims, "sizes": sizes})
        return pd.DataFrame(rows, columns=["hook", "shape", "dims", "sizes"])

    # -- tokens ------------------------------------------------------------------------------
    def tokenize(self, text: str, prepend_bos: bool | None = None) -> list[str]:
        """The tokens the model reads for ``text`` (special tokens and the start token included, as ``run``
        reads it; see ``prepend_bos``), as readable strings.

        Works for text of any length (to count tokens, ``len(model.tokenize(text))``); only running
        the model is limited to the context of ``n_ctx`` tokens.
        """
        check.text(text, allow_empty=True)
        return self.to_str_tokens(self._token_ids([text], prepend_bos)[0])

    def to_str_tokens(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """Token ids -> one decoded string per token, as the tokenizer decodes it alone (" the", "##ing").

        A byte-level piece that is only part of a UTF-8 character ("🤖" is four such pieces) decodes to
        "\ufffd" on its own; it is shown as its bytes instead (``<0xF0>``), so the pieces stay distinct.
        Every view (tokens, frames, Parquet, figures, reports) gets its strings from here.
        """
        ids = [int(i) for i in ids]
        strs = self.tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
        if any("\ufffd" in s for s in strs):
            strs = _show_bytes(self.tokenizer, ids, strs)
        return strs

    def _token_ids(self, texts: list[str], prepend_bos: bool | None = None) -> list[list[int]]:
        """Texts -> token ids as every entry point reads them (the one rule: see ``prepend_bos``), any
        length (the tokenizer's long-text warning muted: ``encode`` gives probe's own error for text that
        does not fit)."""
        bos = self.prepend_bos if prepend_bos is None else check.boolean(prepend_bos, "prepend_bos")
        own = self.kind != "causal" or bool(bos)  # False: a causal text's own tokens, no BOS of the tokenizer's
        with quiet_length_warning(self.tokenizer) as tok:
            ids = tok(texts, add_special_tokens=own)["input_ids"]
        start = self.start_token_id if self.reads_bos(bos) else None
        if start is not None:
            ids = [row if row[:1] == [start] else [start] + row for row in ids]
        return ids

    def encode(
        self, texts: list[str], truncate: bool = False, prepend_bos: bool | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (ids [batch, pos], mask [batch, pos]) right-padded, read by the ``prepend_bos`` rule;
        errors for empty or too long text."""
        if not texts:
            raise InputError("no text given; pass a string or a non-empty list of strings")
        for t in texts:
            if not isinstance(t, str):
                raise InputError(f"inputs must be str, list[str] or a LongTensor of ids, got {type(t).__name__}")
            if self.kind == "causal" and "[MASK]" in t and not self.literal_mask:
                pieces = self.to_str_tokens(self.tokenizer.encode("[MASK]", add_special_tokens=False))
                raise InputError(
                    f"{self.name} is a causal LM: it would read [MASK] as the text {pieces}, not as a blank; "
                    "to see what it predicts there use probe.compare(text, [model]) (it reads the text left of "
                    "[MASK]), or set model.literal_mask = True to read it as text"
                )
        enc = self._token_ids(texts, prepend_bos)
        rows = []
        for text, ids in zip(texts, enc):
            if not ids or not text:
                raise InputError(f"text {text!r} has no tokens; pass some text")
            if len(ids) > self.n_ctx:
                if not truncate:
                    raise InputError(
                        f"text of {len(ids)} tokens is longer than {self.name}'s context of {self.n_ctx}; "
                        "shorten it or pass truncate=True (--truncate)"
                    )
                ids = ids[: self.n_ctx]
            rows.append(ids)
        return pad(rows, self.tokenizer.pad_token_id)

    def _resolve(self, hooks: list[str]) -> list[str]:
        """``resolve_names`` against this model's hooks, remembered per pattern list (a loop of runs
        resolves once)."""
        key = tuple(hooks)
        cache = self.__dict__.setdefault("_resolved", {})
        if key not in cache:
            if len(cache) >= 64:
                cache.clear()
            cache[key] = resolve_names(hooks, self.hook_names, self.name)
        return cache[key]

    def reset_hooks(self) -> int:
        """Remove the reading hooks probe keeps on ``hf`` between runs of the same hook set.

        They do nothing outside ``run`` (each returns at once) and save re-registering every hook on each
        call; remove them before handing ``hf`` to code that must see a module without hooks. Returns how
        many were removed. The next ``run`` registers what it needs again.
        """
        from probe.core.forward import release

        return release(self.adapter)

    # -- running -----------------------------------------------------------------------------
    def run(
        self,
        inputs: str | list[str] | torch.Tensor,
        *,
        hooks: Sequence[str] | str | None = None,
        batch_size: int = 32,
        truncate: bool = False,
        grad: bool = False,
        patch: dict | None = None,
        offload: str | torch.device | None = None,
        prepend_bos: bool | None = None,
    ):
        """Run text through the model and capture hook values.

        Args:
            inputs: a string, a list of strings, or token ids [batch, pos] (LongTensor, no padding).
            hooks: names or glob patterns ("blocks.*.hook_resid_post"); None -> ``default_hooks``.
            batch_size: texts per forward pass; results are concatenated.
            truncate: cut texts longer than the context instead of raising.
            grad: keep the autograd graph (for saliency); otherwise ``torch.inference_mode``.
            patch: {hook name or glob: tensor | fn} to change values on the way (``probe.analysis.intervene``): a
                tensor replaces the value (shape as ``run[name]``, with or without the batch dim); a
                function ``fn(value, ctx) -> value`` edits it (``ctx``: ``probe.PatchContext``). Head
                splits work (``attn.hook_z`` [batch, pos, head, d_head], ``attn.hook_pattern``). Captured
                values are the patched model's.
            offload: a device ("cpu") to move each captured tensor to as soon as it is produced, inside
                the hook, so GPU memory stays flat however many hooks are captured; None keeps them where
                the model computes them.
            prepend_bos: read a causal model's text from its start token (True) or as bare tokens
                (False); None: ``Model.prepend_bos`` (True unless changed). Ids are read as given.

        Returns:
            Run: ``run["blocks.0.hook_resid_post"]`` [batch, pos, d_model], predictions, logit lens, frames.

        Example:
            >>> run = probe.load("tiny-gpt").run("The robot must not", hooks=["blocks.*.hook_resid_post", "logits"])
        """
        from probe.core.run import Run

        check.run_inputs(inputs)
        hooks = check.hooks(hooks)
        batch_size = check.integer(batch_size, "batch_size", minimum=1)
        truncate, grad = check.boolean(truncate, "truncate"), check.boolean(grad, "grad")
        single = isinstance(inputs, str)
        if isinstance(inputs, torch.Tensor):
            ids = check.token_ids(inputs, self.vocab_size, self.n_ctx, self.name)
            mask = torch.ones_like(ids)
        else:
            ids, mask = self.encode([inputs] if single else list(inputs), truncate=truncate, prepend_bos=prepend_bos)
        names = self.default_hooks if hooks is None else self._resolve(hooks)
        if not names:
            raise InputError("hooks=[] captures nothing; pass hook names or patterns, or None for the default set")
        offload = check.offload(offload)
        patch = resolve_patch(self, patch) if patch else None
        ids, mask = ids.to(self.device), mask.to(self.device)
        store = capture_batches(self.adapter, ids, mask, names, batch_size, grad=grad, patch=patch, offload=offload)
        bos = None if isinstance(inputs, torch.Tensor) else self.reads_bos(prepend_bos)
        return Run(self, ids, mask, store, single=single, prepend_bos=bos)

    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 20,
        k: int = 5,
        sample: bool = False,
        seed: int | None = None,
        *,
        hooks: Sequence[str] | str | None = None,
        patch: dict | None = None,
        prepend_bos: bool | None = None,
    ):
        """Greedy (or sampled) continuation with the top-k candidates at every step; causal models only.

        Generation stops after ``max_new_tokens`` or when the context (``n_ctx`` tokens) is full; a prompt
        that already fills the context is an error (nothing can be generated).

        Args:
            hooks: also capture these hooks at every step (each step is a full forward pass).
            patch: apply these patches at every step (as in ``run``; edit functions see ``ctx.step``).
                The context grows by one token a step, so position-shaped tensors fit only the first
                step: use a function (``ctx.positions(-1)`` is the newest token).

        Returns:
            (text, DataFrame[step, rank, token, token_id, prob, chosen]); the frame's
            ``.attrs["stop_reason"]`` is "max_new_tokens" or "context" (then a warning says so too).
            With ``hooks``, a third item: the list of per-step Runs.
        """
        from probe.analysis.predict import generate

        return generate(
            self,
            prompt,
            max_new_tokens=max_new_tokens,
            k=k,
            sample=sample,
            seed=seed,
            hooks=hooks,
            patch=patch,
            prepend_bos=prepend_bos,
        )


@contextlib.contextmanager
def quiet_length_warning(tokenizer):
    """Mute transformers' "Token indices sequence length is longer than ..." warning inside probe's own
    tokenizer calls (probe checks lengths itself, with a clearer error); the user's own calls still get it."""
    warned = getattr(tokenizer, "deprecation_warnings", None)
    key = "sequence-length-is-longer-than-the-specified-maximum"
    before = warned.get(key, False) if warned is not None else False
    if warned is not None:
        warned[key] = True  # transformers checks this flag before it logs the warning
    try:
        yield tokenizer
    finally:
        if warned is not None:
            warned[key] = before


_BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _hex_bytes(err: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(f"<0x{b:02X}>" for b in err.object[err.start : err.end]), err.end


codecs.register_error("probe_hex", _hex_bytes)


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet inverted: the printable character a BPE piece uses -> the byte it stands for."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _show_bytes(tokenizer, ids: list[int], strs: list[str]) -> list[str]:
    """Replace each "\ufffd" decoding of a lone partial-UTF-8 piece with its bytes, ``<0xF0>``.

    Byte-level BPE pieces (GPT-2, ``Ġ``-style) map back to bytes through the byte alphabet; SentencePiece
    byte-fallback pieces are already spelt ``<0xF0>``; anything else keeps the tokenizer's own string.
    """
    pieces = tokenizer.convert_ids_to_tokens(ids)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    byte_level = "ByteLevel" in str(getattr(backend, "decoder", ""))
    inverse = _byte_decoder()
    out = []
    for text, piece in zip(strs, pieces):
        if "\ufffd" in text and isinstance(piece, str):
            if _BYTE_PIECE.fullmatch(piece):
                text = piece.upper().replace("0X", "0x")
            elif byte_level and piece and all(c in inverse for c in piece):
                text = bytes(inverse[c] for c in piece).decode("utf-8", errors="probe_hex")
        out.append(text)
    return out


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
        dtype: float32 (default), float16, bfloat16, or "auto" (the dtype the checkpoint is stored in).
        revision: a hub branch, tag or commit.
        allow_pickle: also accept .bin (pickle) weights, which can execute code when loaded.
        device_map: handed to transformers (needs ``accelerate``): "auto" spreads a model larger than one
            GPU over the GPUs (and CPU); also "cpu", "cuda:0" or a {module: device} dict. Use instead of
            ``device``. Pair with ``dtype="bfloat16"`` (or "auto") for big models, and with
            ``run(..., offload="cpu")`` to keep captured activations off the GPU.

    Example:
        >>> gpt = probe.load("tiny-gpt"); gpt.kind
        'causal'
    """
    from probe.core.loading import load_hf

    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InputError(
            f"name_or_path must be a model name or a folder, got {name_or_path!r} ({type(name_or_path).__name__})"
        )
    device, dtype = check.device(device), check.dtype(dtype)
    allow_pickle = check.boolean(allow_pickle, "allow_pickle")
    if revision is not None and not isinstance(revision, str):
        raise InputError(f"revision must be a branch, tag or commit (str), got {revision!r}")
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
