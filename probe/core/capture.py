"""The capture mechanism: register hooks, store only what is asked, stop early, always clean up.

Speed rules, all measured in ``benchmarks/capture.py``:
- only requested points get a hook, and each stores a reference (no copy) of the module's value;
- the forward stops as soon as the last requested value is stored (an exception out of the hook);
- the LM head runs only if ``logits`` is requested, and then on the stored final residual;
- the eager attention kernel (which materialises patterns) only when a pattern is requested, switched
  by one config attribute after HF's first checked switch;
- per run, the Point table is reused (rebuilt only if a module was swapped) and exact names are looked
  up in a set: together ~1 ms less per run on GPT-2 small, where a GPU forward takes a few ms.

Writing (``patch=``) goes through the same Points: a patched point's hook edits the picked value and
hands ``point.put(...)`` back to the forward pass, before any capture on the same module, so what is
captured is the patched model's. With no patch nothing of this runs (``benchmarks/intervene.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fnmatch
import weakref
from collections.abc import Callable, Iterable, Iterator

import torch

from probe.core.adapters import Adapter, Point
from probe.core.names import LOGITS
from probe.errors import HookNameError, PatchError


class _StopForward(Exception):
    """Raised from the last needed hook so the rest of the forward pass is skipped."""


@dataclasses.dataclass(frozen=True)
class PatchContext:
    """What an edit function sees besides the value: ``fn(value, ctx) -> value``.

    Attributes:
        name: the hook being edited, e.g. "blocks.1.attn.hook_z".
        layer: its block index (None outside the blocks).
        ids, mask: the token ids and attention mask of this forward pass, [batch, pos] (right-padded).
        offset: index of this batch's first text among all texts given to ``run`` (``batch_size`` chunks).
        step: the generation step (``generate(..., patch=...)``), None in ``run``.
    """

    name: str
    layer: int | None
    ids: torch.Tensor
    mask: torch.Tensor
    offset: int = 0
    step: int | None = None

    @property
    def lengths(self) -> torch.Tensor:
        """Real tokens per text, [batch]."""
        return self.mask.sum(1)

    def positions(self, position: int) -> torch.Tensor:
        """One position per text as an index into the padded row, [batch]; negative counts from each
        text's own last real token (-1 is the last real token, not the last padded column)."""
        lengths = self.lengths
        index = lengths + position if position < 0 else torch.full_like(lengths, position)
        if bool(((index < 0) | (index >= lengths)).any()):
            raise PatchError(
                f"position {position} is out of range for '{self.name}'; the texts have "
                f"{lengths.min().item()}..{lengths.max().item()} tokens"
            )
        return index


Patch = torch.Tensor | Callable[[torch.Tensor, PatchContext], torch.Tensor | None]


def apply_patch(spec: Patch, value: torch.Tensor, ctx: PatchContext) -> torch.Tensor:
    """The new value of a hook: ``spec`` itself (a tensor, broadcast over batch) or ``spec(value, ctx)``."""
    if isinstance(spec, torch.Tensor):
        new = spec.to(device=value.device, dtype=value.dtype)
        if new.dim() == value.dim() - 1:  # no batch dim: the same value for every text
            new = new.unsqueeze(0)
        if new.dim() == value.dim() and new.shape[0] == 1 and new.shape[1:] == value.shape[1:]:
            new = new.expand(value.shape)
        if new.shape != value.shape:
            raise PatchError(
                f"patch for '{ctx.name}' has shape {list(spec.shape)} but the hook's value is {list(value.shape)} "
                f"[batch, ...]; pass a tensor of shape {list(value.shape[1:])} or {list(value.shape)}"
            )
        return new
    if not callable(spec):
        raise PatchError(
            f"patch for '{ctx.name}' is a {type(spec).__name__}; pass a tensor or a function fn(value, ctx) -> value"
        )
    mine = value.clone()  # the function may edit in place and return None, TransformerLens-style
    new = spec(mine, ctx)
    new = mine if new is None else new
    if not isinstance(new, torch.Tensor) or new.shape != value.shape:
        got = list(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
        raise PatchError(
            f"the edit function for '{ctx.name}' returned {got}; it must return a tensor of the value's "
            f"shape {list(value.shape)}"
        )
    return new.to(dtype=value.dtype)


def _layer_of(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[1]) if parts[0] == "blocks" and len(parts) > 1 and parts[1].isdigit() else None


def _pattern_parts(name: str) -> tuple[str, str]:
    """For ``blocks.L.attn.hook_pattern``: the names of the same layer's hook_v and hook_z."""
    stem = name[: -len("hook_pattern")]
    return stem + "hook_v", stem + "hook_z"


def _mix(pattern: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """z = pattern @ v per head: pattern [batch, head, q, k], v [batch, k, kv_head, d_head] -> [batch, q, head, d_head].

    Grouped-query attention (fewer K/V heads) shares each K/V head among ``head // kv_head`` query heads.
    """
    vt = v.transpose(1, 2)
    if vt.shape[1] != pattern.shape[1]:
        vt = vt.repeat_interleave(pattern.shape[1] // vt.shape[1], dim=1)
    return (pattern.to(vt.dtype) @ vt).transpose(1, 2)


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
    points: list[Point],
    store: dict[str, torch.Tensor],
    stop_after: set[str],
    patches: dict[str, Patch] | None = None,
    context: PatchContext | None = None,
    capture: set[str] | None = None,
    offload: torch.device | None = None,
    lead: torch.Size | None = None,
) -> Iterator[set[str]]:
    """Register one hook per point; each stores ``point.pick(value)`` under its name. Always removed.

    Once every name in ``stop_after`` is stored, the hook raises ``_StopForward`` to end the pass.
    With ``patches`` ({name: tensor or fn}), the patched points' hooks (registered first, so a capture on
    the same module sees the result) replace the value; yields the set of names whose hook fired.
    ``capture`` limits what patched points store (the pattern machinery hooks points nobody asked for).
    An attention-pattern patch is realised where the pattern acts: the same layer's z becomes
    ``pattern' @ v``; if z is computed inside the module that returns the pattern (GPT-2), that module
    is run once more with the new z. ``offload``: stored values are moved there inside the hook.
    ``lead``: [batch, pos], to restore points whose module sees tokens flattened (``Point.flat``).
    """
    pending = set(stop_after)
    handles = []
    fired: set[str] = set()
    patches = patches or {}
    by_name = {p.name: p for p in points}
    internal: dict[str, torch.Tensor] = {}  # hook_v of layers whose pattern is patched
    need_v = {_pattern_parts(n)[0] for n in patches if n.endswith("attn.hook_pattern")}
    overrides: dict[str, torch.Tensor] = {}  # hook_z values computed from patched patterns
    rerunning: set[int] = set()

    def done(name: str) -> None:
        fired.add(name)
        if name in pending:
            pending.discard(name)
            if not pending:
                raise _StopForward

    def picked(point: Point, value) -> torch.Tensor:
        value = point.pick(value)
        return value.unflatten(0, lead) if point.flat else value

    def stored(value: torch.Tensor) -> torch.Tensor:
        return value if offload is None else value.to(offload)

    def keep(point: Point, value):
        store[point.name] = stored(picked(point, value))
        done(point.name)

    def write(point: Point, value):
        """Patch (or override) the value, store what the model now carries; return the module's new value."""
        old = picked(point, value)
        new = old
        if point.name in overrides:
            new = overrides.pop(point.name)
        if point.name in patches:
            ctx = dataclasses.replace(context, name=point.name, layer=_layer_of(point.name))
            new = apply_patch(patches[point.name], new, ctx)
        if point.name in need_v:
            internal[point.name] = new
        if capture is None or point.name in capture:
            store[point.name] = stored(new)
        done(point.name)
        if new is old:
            return None
        return point.put(value, new.flatten(0, 1) if point.flat else new)

    def write_pattern(point: Point, module, args, kwargs, out):
        if id(module) in rerunning:
            return None
        pattern = point.pick(out)  # [batch, head, q, k]
        if pattern is None:
            raise PatchError(f"'{point.name}' is not computed by this attention kernel; it cannot be patched")
        ctx = dataclasses.replace(context, name=point.name, layer=_layer_of(point.name))
        new = apply_patch(patches[point.name], pattern, ctx)
        v_name, z_name = _pattern_parts(point.name)
        overrides[z_name] = _mix(new, internal[v_name])
        z_module = by_name[z_name].module
        if any(m is z_module for m in module.modules()):  # z was already used: recompute the module's output
            rerunning.add(id(module))
            try:
                out = module(*args, **kwargs)
            finally:
                rerunning.discard(id(module))
        if capture is None or point.name in capture:
            store[point.name] = stored(new)
        done(point.name)
        return point.put(out, new)

    def make(point: Point, patched: bool):
        if patched and point.name.endswith("attn.hook_pattern"):
            return point.module.register_forward_hook(
                lambda mod, args, kwargs, out: write_pattern(point, mod, args, kwargs, out), with_kwargs=True
            )
        if patched:
            if point.side == "in":
                return point.module.register_forward_pre_hook(
                    lambda mod, args: None if (new := write(point, args[0])) is None else (new, *args[1:])
                )
            return point.module.register_forward_hook(lambda mod, args, out: write(point, out))
        if point.side == "in":
            return point.module.register_forward_pre_hook(lambda mod, args: keep(point, args[0]))
        if point.side == "kwargs":
            return point.module.register_forward_pre_hook(
                lambda mod, args, kwargs: keep(point, (args, kwargs)), with_kwargs=True
            )
        return point.module.register_forward_hook(lambda mod, args, out: keep(point, out))

    writes = set(patches) | need_v | {_pattern_parts(n)[1] for n in patches if n.endswith("attn.hook_pattern")}
    try:
        for p in points:  # writers first: a capture on the same module then sees the written value
            if p.name in writes:
                handles.append(make(p, patched=True))
        for p in points:
            if p.name not in writes:
                handles.append(make(p, patched=False))
        yield fired
    finally:
        for h in handles:
            h.remove()


def forward_capture(
    adapter: Adapter,
    ids: torch.Tensor,
    mask: torch.Tensor,
    names: list[str],
    grad: bool = False,
    patch: dict[str, Patch] | None = None,
    context: PatchContext | None = None,
    offload: torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """Run the body once on ``ids`` [batch, pos] and return {name: tensor with a leading batch dim}.

    The head (the same modules HF uses) runs on the last block's output only when ``logits`` or a point
    inside the head (BERT's ``ln_final``) is requested. ``patch`` ({resolved name: tensor | fn}) edits
    values on the way; the pass then runs at least until every patched point has fired, and a patch
    whose point never fires is a ``PatchError``. ``offload``: move every stored tensor there (a device).
    """
    by_name = adapter.point_map
    final = f"blocks.{adapter.n_layers - 1}.hook_resid_post"
    patch = patch or {}
    wanted = [by_name[n] for n in names if n != LOGITS]
    writes = [by_name[n] for n in patch if n != LOGITS]
    for p in writes:
        if p.side == "kwargs":  # derived inside the module's forward: there is nothing to write back into
            base = p.name.replace("hook_rot_", "hook_")
            raise PatchError(f"'{p.name}' is read-only (computed inside the module); patch '{base}' instead")
    for n in [n for n in patch if n.endswith("attn.hook_pattern")]:
        missing = [part for part in _pattern_parts(n) if part not in by_name]
        if missing:
            raise PatchError(f"patching '{n}' needs {' and '.join(missing)}, which {adapter.family} models lack")
        writes += [by_name[part] for part in _pattern_parts(n)]
    in_head = {p.name for p in wanted + writes if p.name in adapter.head_points}
    run_head = LOGITS in names or LOGITS in patch or bool(in_head)
    if run_head and final not in names:
        wanted.append(by_name[final])
    points = list({p.name: p for p in wanted + writes}.values())
    body_names = {p.name for p in points} - in_head
    needs_eager = any(p.name.endswith(adapter.needs_eager) for p in points)
    store: dict[str, torch.Tensor] = {}
    if patch and context is None:
        context = PatchContext(name="", layer=None, ids=ids, mask=mask)
    capture = {p.name for p in wanted} if patch else None
    grad_ctx = contextlib.nullcontext() if grad else torch.inference_mode()
    with (
        grad_ctx,
        eager_attention(adapter.hf, needs_eager),
        hooks_on(points, store, body_names, patch, context, capture, offload=offload, lead=ids.shape) as fired,
    ):
        try:
            adapter.body(**adapter.body_inputs(ids, mask), use_cache=False)
        except _StopForward:
            pass
        if run_head:
            # an offloaded final residual goes back to the model for the head (accelerate's hooks take it
            # on to the head's own device when the model is spread over several)
            logits = adapter.head(store[final] if offload is None else store[final].to(ids.device))
            if LOGITS in patch:
                logits = apply_patch(patch[LOGITS], logits, dataclasses.replace(context, name=LOGITS))
                fired.add(LOGITS)
    silent = [n for n in patch if n not in fired]
    if silent:
        raise PatchError(
            f"the patch on '{silent[0]}' never fired: {adapter.family} models do not compute that point in "
            "this forward pass; patch another hook (see model.hook_names)"
        )
    if LOGITS in names:
        store[LOGITS] = logits if offload is None else logits.to(offload)
    if run_head and final not in names:
        del store[final]
    return store


@contextlib.contextmanager
def embeddings_replaced(adapter: Adapter, embeds: torch.Tensor) -> Iterator[None]:
    """The token-embedding layer returns ``embeds`` [batch, pos, d_model] instead of looking ids up.

    Attribution differentiates with respect to these vectors; position embeddings, token types and
    everything after are the model's own. Uses HF's ``get_input_embeddings()``, so it holds for every
    family. Always removed.
    """
    handle = adapter.hf.get_input_embeddings().register_forward_hook(lambda mod, args, out: embeds)
    try:
        yield
    finally:
        handle.remove()
