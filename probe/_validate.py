"""Argument checks at the public boundary: a wrong type or range becomes one InputError naming the argument.

Every public entry point (``load``, ``Model.run``, ``Run.predictions``, ``Run.logit_lens``, ``generate``,
``compare``, ``report``, ``run[...]``) calls these first, so a careless call gets "k must be a positive
integer, got '5' (str)" instead of a TypeError from deep inside torch or pandas. Light on purpose:
torch is imported only by the device and dtype checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from probe.errors import InputError

FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")


def _got(value: Any) -> str:
    return f"got {value!r} ({type(value).__name__})"


def integer(value: Any, name: str, *, minimum: int | None = None) -> int:
    """``value`` as an int (bools and floats refused, numpy ints accepted), at least ``minimum``."""
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        hint = (
            f"; pass {name}={value.strip()}" if isinstance(value, str) and value.strip().lstrip("-").isdigit() else ""
        )
        what = "an integer" if minimum is None else f"an integer >= {minimum}"
        if minimum == 1:
            what = "a positive integer"
        raise InputError(f"{name} must be {what}, {_got(value)}{hint}")
    value = int(value)
    if minimum is not None and value < minimum:
        what = "a positive integer" if minimum == 1 else f"at least {minimum}"
        raise InputError(f"{name} must be {what}, got {value}")
    return value


def optional_integer(value: Any, name: str, *, minimum: int | None = None) -> int | None:
    return None if value is None else integer(value, name, minimum=minimum)


def index(value: Any, name: str, size: int, *, what: str) -> int:
    """One rule for every layer, head, neuron, text and position index: an integer in ``-size..size-1``,
    negative counting from the end (-1 is the last), returned as ``0..size-1``.

    ``what`` completes the error, e.g. "tiny-gpt has layers 0..3".
    """
    value = integer(value, name)
    if not -size <= value < size:
        last = "; -1 is the last" if size else ""
        raise InputError(f"{name} {value} is out of range; {what} 0..{size - 1}{last}")
    return value % size


def token_ids(ids: Any, vocab_size: int, n_ctx: int, model: str):
    """Token ids given to ``run``: an integer tensor [pos] or [batch, pos] within the vocabulary and
    context; returned as int64 [batch, pos]."""
    import torch

    ids = ids[None] if ids.dim() == 1 else ids
    if ids.dtype not in (torch.int64, torch.int32) or ids.dim() != 2:
        raise InputError("token ids must be an integer tensor [batch, pos]")
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise InputError(f"token ids must lie in [0, {vocab_size}) for {model}")
    if ids.shape[1] > n_ctx:
        raise InputError(f"{ids.shape[1]} positions exceed {model}'s context of {n_ctx}")
    return ids.long()


def offload(value: Any):
    """``run(offload=)``: None, or a device to move captured tensors to."""
    if value is None:
        return None
    import torch

    try:
        return torch.device(value)
    except (RuntimeError, TypeError):
        raise InputError(
            f"offload={value!r} is not a device; use offload='cpu' (or None to keep tensors in place)"
        ) from None


def boolean(value: Any, name: str) -> bool:
    """A real bool (or numpy bool); ``"False"`` and 0/1 are refused, since ``bool("False")`` is True."""
    import numpy as np

    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, {_got(value)}")
    return bool(value)


def text(value: Any, name: str = "text", allow_empty: bool = False) -> str:
    """A string; not blank unless ``allow_empty``."""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, {_got(value)}")
    if not allow_empty and not value.strip():
        raise InputError(f"{name} is empty; pass some text")
    return value


def hooks(value: Any) -> list[str] | None:
    """``hooks=``: None, one name or pattern, or any collection of them (list, tuple, set)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, (bytes, dict)):
        items = list(value)
        bad = next((h for h in items if not isinstance(h, str)), None)
        if bad is None:
            return items
        value = bad
    raise InputError(
        f"hooks must be a hook name, a glob pattern or a list of them (e.g. ['blocks.*.hook_resid_post']), {_got(value)}"
    )


def run_inputs(value: Any) -> None:
    """``Model.run`` inputs: a string, a list/tuple of strings, or an integer tensor of ids."""
    import torch

    if isinstance(value, (str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        bad = next((t for t in value if not isinstance(t, str)), None)
        if bad is None:
            return
        raise InputError(
            f"inputs must be a string, a list of strings or a LongTensor of ids; the list holds {_got(bad)}"
        )
    raise InputError(f"inputs must be a string, a list of strings or a LongTensor of ids, {_got(value)}")


def target(value: Any) -> str | int | None:
    """``logit_lens(target=)``: None, a token id or one word (not blank)."""
    import numbers

    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        if not value.strip():
            raise InputError(f"target={value!r} is blank; pass a word (e.g. target='human') or a token id")
        return value
    raise InputError(f"target must be a word or a token id (int), {_got(value)}")


def device(value: Any):
    """``load(device=)``: None, or a device string / torch.device that exists on this machine."""
    if value is None:
        return None
    import torch

    if not isinstance(value, (str, torch.device)):
        raise InputError(f"device must be a string such as 'cpu' or 'cuda', {_got(value)}")
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise InputError(f"device={value!r} is not a device; use 'cpu', 'cuda', 'cuda:1' or 'mps'") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device={value!r} but this torch has no CUDA GPU available; use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(
                f"device={value!r} but only {torch.cuda.device_count()} CUDA device(s) exist; "
                f"use 'cuda:0'..'cuda:{torch.cuda.device_count() - 1}'"
            )
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"device={value!r} but MPS is not available on this machine; use device='cpu'")
    return dev


def dtype(value: Any):
    """``load(dtype=)``: None, or a floating-point dtype (name or torch.dtype) a model can run in."""
    if value is None or value == "auto":  # "auto": the dtype the checkpoint is stored in
        return value
    import torch

    name = str(value).removeprefix("torch.") if isinstance(value, (str, torch.dtype)) else None
    if name not in FLOAT_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(FLOAT_DTYPES)}, {_got(value)}")
    return getattr(torch, name)
