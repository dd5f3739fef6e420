"""Reading: resolve hook names, hook the modules that compute them, store what is asked, stop early.

Speed rules, all measured in ``benchmarks/capture.py``:
- only modules with a requested point get a hook, one PyTorch hook per module and side (GPT-2's fused
  q|k|v projection is one hook for three points), and each stores a reference (no copy);
- a hook set's plan (which points each hook serves) is built once per model and reused while its
  module tree is unchanged (``probe.core.forward``);
- the forward stops as soon as the last requested value is stored (an exception out of the hook);
- the LM head runs only if ``logits`` is requested, and then on the stored final residual
  (``probe.core.forward``);
- the eager attention kernel (which materialises patterns) only when a pattern is requested, switched
  by one config attribute after HF's first checked switch.

Writing (``patch=``) lives in ``probe.core.patch``; its hooks are registered before these, so a
reader on the same module sees the written value. Nothing here knows about patching.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import weakref
from collections.abc import Hashable, Iterable, Iterator

import torch

from probe.core.adapters import Point
from probe.errors import HookNameError


class StopForward(Exception):
    """Raised from the last needed hook so the rest of the forward pass is skipped."""


class Finish:
    """What must still happen in this pass; the hook that completes the last of it ends the pass.

    Readers mark point names, writers mark ``("write", name)``, so a reader and a writer on the same point
    both run before the pass stops.
    """

    __slots__ = ("pending",)

    def __init__(self, keys: Iterable[Hashable] = ()):
        self.pending = set(keys)

    def done(self, key: Hashable) -> None:
        pending = self.pending
        if key in pending:
            pending.discard(key)
            if not pending:
                raise StopForward

    def done_all(self, keys: frozenset) -> None:
        """``done`` for every key of a group at once (one set operation per hook, not one call per point)."""
        pending = self.pending
        if not pending.isdisjoint(keys):
            pending -= keys
            if not pending:
                raise StopForward


def picked(point: Point, value, lead: torch.Size | None) -> torch.Tensor:
    """``point.pick(value)`` with tokens restored to [batch, pos, ...] where the module sees them flattened."""
    value = point.pick(value)
    return value.unflatten(0, lead) if point.flat else value


def by_module(points: Iterable[Point]) -> list[tuple[torch.nn.Module, str, tuple[Point, ...]]]:
    """Points grouped by (module, side), in forward order of their first point: one hook per group."""
    groups: dict[tuple[int, str], tuple[torch.nn.Module, str, list[Point]]] = {}
    for p in points:
        key = (id(p.module), "in" if p.side == "kwargs" else p.side)
        if key not in groups:
            groups[key] = (p.module, key[1], [])
        groups[key][2].append(p)
    return [(m, side, tuple(ps)) for m, side, ps in groups.values()]


class Readers:
    """The reading hooks of one hook set: one per (module, side) of ``groups`` (``by_module``).

    Registered once (``attach``) and left on the model between runs, so a repeated hook set (a loop of
    ``run`` calls, every generation step, every extraction batch) pays no registration; between runs
    each hook returns at once, and ``detach`` removes them (``probe.core.forward`` keeps one set attached
    per model). ``reading`` arms them for one forward pass.
    """

    def __init__(self, groups: list[tuple[torch.nn.Module, str, tuple[Point, ...]]]):
        self.groups = groups
        self.session: _Session | None = None
        self.handles: list = []

    @property
    def attached(self) -> bool:
        return bool(self.handles)

    def attach(self) -> Readers:
        for module, side, group in self.groups:
            if side == "out":
                self.handles.append(module.register_forward_hook(_ReadOut(self, group)))
            elif any(p.side == "kwargs" for p in group):  # points derived from the call's arguments (rotary q/k)
                self.handles.append(module.register_forward_pre_hook(_ReadCall(self, group), with_kwargs=True))
            else:
                self.handles.append(module.register_forward_pre_hook(_ReadIn(self, group)))
        return self

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    @contextlib.contextmanager
    def reading(
        self,
        store: dict[str, torch.Tensor],
        finish: Finish,
        offload: torch.device | None = None,
        lead: torch.Size | None = None,
    ) -> Iterator[None]:
        """Store each point's value under its name and mark it done in ``finish``, for one pass.

        ``offload``: stored values are moved there inside the hook. ``lead``: [batch, pos], to restore
        points whose module sees tokens flattened (``Point.flat``).
        """
        self.session = _Session(store, finish, offload, lead)
        try:
            yield
        finally:
            self.session = None


class _Session:
    __slots__ = ("store", "finish", "offload", "lead")

    def __init__(self, store, finish, offload, lead):
        self.store, self.finish, self.offload, self.lead = store, finish, offload, lead

    def keep(self, group: tuple[Point, ...], names: frozenset, value) -> None:
        store, offload, lead = self.store, self.offload, self.lead
        for point in group:
            v = picked(point, value, lead)
            store[point.name] = v if offload is None else v.to(offload)
        self.finish.done_all(names)  # after every point of the group is stored


class _ReadOut:
    """A module's output hook (a small class rather than a closure, so a model that carries it pickles)."""

    __slots__ = ("readers", "group", "names")

    def __init__(self, readers: Readers, group: tuple[Point, ...]):
        self.readers, self.group = readers, group
        self.names = frozenset(p.name for p in group)

    def __call__(self, module, args, out):
        session = self.readers.session
        if session is not None:
            session.keep(self.group, self.names, out)


class _ReadIn(_ReadOut):
    def __call__(self, module, args):
        session = self.readers.session
        if session is not None:
            session.keep(self.group, self.names, args[0])


class _ReadCall(_ReadOut):
    """A pre-hook with the call's kwargs: plain inputs and points derived from the call (rotary q/k)."""

    __slots__ = ("plain", "derived", "plain_names", "derived_names")

    def __init__(self, readers: Readers, group: tuple[Point, ...]):
        super().__init__(readers, group)
        self.plain = tuple(p for p in group if p.side == "in")
        self.derived = tuple(p for p in group if p.side == "kwargs")
        self.plain_names = frozenset(p.name for p in self.plain)
        self.derived_names = frozenset(p.name for p in self.derived)

    def __call__(self, module, args, kwargs):
        session = self.readers.session
        if session is not None:
            if self.plain:
                session.keep(self.plain, self.plain_names, args[0])
            session.keep(self.derived, self.derived_names, (args, kwargs))


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
