"""The capture mechanism: register hooks, store only what is asked, stop early, always clean up.

Speed rules, all measured in ``benchmarks/capture.py``:
- only requested points get a hook, and each stores a reference (no copy) of the module's value;
- the forward stops as soon as the last requested value is stored (an exception out of the hook);
- the LM head runs only if ``logits`` is requested, and then on the stored final residual;
- the eager attention kernel (which materialises patterns) only when a pattern is requested.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import weakref
from collections.abc import Iterable, Iterator

import torch

from probe.adapters import Adapter, Point
from probe.errors import HookNameError

LOGITS = "logits"


class _StopForward(Exception):
    """Raised from the last needed hook so the rest of the forward pass is skipped."""


def resolve_names(patterns: Iterable[str], hook_names: list[str], model_name: str) -> list[str]:
    """Expand names and glob patterns against ``hook_names``; keep forward order; unknown -> HookNameError."""
    if isinstance(patterns, str):
        patterns = [patterns]
    known = set(hook_names)  # exact names are looked up, not scanned: "every hook" is ~160 of them
    wanted: set[str] = set()
    for pat in patterns:
        hits = fnmatch.filter(hook_names, pat) if any(c in pat for c in "*?[") else [pat] if pat in known else []
        if not hits:
            close = difflib.get_close_matches(pat, hook_names, n=3, cutoff=0.6)
            hint = (
                f"did you mean {' or '.join(repr(c) for c in close)}?"
                if close
                else f"list them with `probe hooks {model_name}` (in Python: model.hook_names)"
            )
            raise HookNameError(f"'{pat}' is not a hook point of {model_name}; {hint}")
        wanted.update(hits)
    return [n for n in hook_names if n in wanted]


@contextlib.contextmanager
def eager_attention(hf, needed: bool) -> Iterator[None]:
    """Switch to the eager attention kernel while patterns are captured; sdpa returns no weights."""
    current = getattr(hf.config, "_attn_implementation", None)
    if not needed or current == "eager":
        yield
        return
    flip = _kernel_flip(hf, current)
    flip("eager")
    try:
        yield
    finally:
        flip(current)


def _kernel_flip(hf, current: str):
    """A function that sets the attention kernel: HF's checked switch the first time, then the attribute.

    ``set_attn_implementation`` validates the kernel and walks every module on each call (~0.3 ms for
    GPT-2 small, twice per run: a tenth of a GPU forward). Where the whole model reads one config (no
    sub-models with configs of their own), a switch HF has made once is just that config's attribute,
    so repeats set it directly. Anything else goes through HF every time.
    """
    from transformers import PreTrainedModel

    config = hf.config
    if hf not in _SIMPLE_KERNEL_SWITCH:
        _SIMPLE_KERNEL_SWITCH[hf] = (
            hasattr(config, "_attn_implementation_internal")
            and not config.sub_configs
            and all(m.config is config for m in hf.modules() if isinstance(m, PreTrainedModel))
        )
    if not _SIMPLE_KERNEL_SWITCH[hf]:
        return hf.set_attn_implementation
    done = _KERNELS_SET.setdefault(hf, {current})

    def flip(kernel: str) -> None:
        if kernel in done:
            config._attn_implementation_internal = kernel
            return
        hf.set_attn_implementation(kernel)
        if config._attn_implementation == kernel:  # HF may refuse (kernel fixed at init): then ask it again
            done.add(kernel)

    return flip


_SIMPLE_KERNEL_SWITCH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_KERNELS_SET: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def hooks_on(
    points: list[Point], store: dict[str, torch.Tensor], stop_after: set[str], offload: torch.device | None = None
) -> Iterator[None]:
    """Register one hook per point; each stores ``point.pick(value)`` under its name. Always removed.

    Once every name in ``stop_after`` is stored, the hook raises ``_StopForward`` to end the pass.
    With ``offload``, each value is moved there inside the hook, before the next module runs.
    """
    pending = set(stop_after)
    handles = []

    def make(point: Point):
        def keep(value):
            value = point.pick(value)
            store[point.name] = value if offload is None else value.to(offload)
            if point.name in pending:
                pending.discard(point.name)
                if not pending:
                    raise _StopForward

        if point.side == "in":
            return point.module.register_forward_pre_hook(lambda mod, args: keep(args[0]))
        if point.side == "kwargs":
            return point.module.register_forward_pre_hook(
                lambda mod, args, kwargs: keep((args, kwargs)), with_kwargs=True
            )
        return point.module.register_forward_hook(lambda mod, args, out: keep(out))

    try:
        for p in points:
            handles.append(make(p))
        yield
    finally:
        for h in handles:
            h.remove()


def forward_capture(
    adapter: Adapter,
    ids: torch.Tensor,
    mask: torch.Tensor,
    names: list[str],
    grad: bool = False,
    offload: torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """Run the body once on ``ids`` [batch, pos] and return {name: tensor with a leading batch dim}.

    The head (the same modules HF uses) runs on the last block's output only when ``logits`` or a point
    inside the head (BERT's ``ln_final``) is requested. ``offload``: move every stored tensor there.
    """
    by_name = adapter.point_map
    final = f"blocks.{adapter.n_layers - 1}.hook_resid_post"
    wanted = [by_name[n] for n in names if n != LOGITS]
    in_head = {p.name for p in wanted if p.name in adapter.head_points}
    run_head = LOGITS in names or bool(in_head)
    if run_head and final not in names:
        wanted.append(by_name[final])
    body_names = {p.name for p in wanted} - in_head
    needs_eager = any(p.name.endswith(adapter.needs_eager) for p in wanted)
    store: dict[str, torch.Tensor] = {}
    grad_ctx = contextlib.nullcontext() if grad else torch.inference_mode()
    with grad_ctx, eager_attention(adapter.hf, needs_eager), hooks_on(wanted, store, body_names, offload):
        try:
            adapter.body(**adapter.body_inputs(ids, mask), use_cache=False)
        except _StopForward:
            pass
        if run_head:
            # an offloaded final residual goes back to the model for the head (accelerate's hooks take it
            # on to the head's own device when the model is spread over several)
            resid = store[final] if offload is None else store[final].to(ids.device)
            logits = adapter.head(resid)
            logits = logits if offload is None else logits.to(offload)
    for p in wanted:  # modules that saw [batch * pos, ...] (OPT's MLP): back to [batch, pos, ...]
        if p.flat and p.name in store:
            store[p.name] = store[p.name].unflatten(0, ids.shape)
    if LOGITS in names:
        store[LOGITS] = logits
    if run_head and final not in names:
        del store[final]
    return store
