"""Writing: what a ``patch={...}`` argument means and the hooks that carry it out.

A patch maps hook names (or globs) to a tensor that replaces the value or a function ``fn(value, ctx)``
that edits it. Writers are registered before readers (``probe.core.capture``), so what is captured is
the patched model's. An attention-pattern patch is realised where the pattern acts: the same layer's z
becomes ``pattern' @ v``. With no patch nothing of this runs (``benchmarks/intervene.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch

from probe.core.adapters import Adapter, Point
from probe.core.capture import Finish, picked, resolve_names
from probe.core.names import dims_of
from probe.errors import PatchError

if TYPE_CHECKING:
    from probe.core.model import Model


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


def resolve_patch(model: Model, patch: dict) -> dict:
    """{name or glob: tensor | fn} -> {hook name: tensor | fn}; unknown names raise ``HookNameError``."""
    if not isinstance(patch, dict):
        raise PatchError(f"patch must be a dict {{hook name: tensor or fn}}, got {type(patch).__name__}")
    out = {}
    for key, spec in patch.items():
        if not isinstance(key, str):
            raise PatchError(f"patch keys are hook names, got {key!r}")
        if not isinstance(spec, torch.Tensor) and not callable(spec):
            raise PatchError(
                f"patch for '{key}' is a {type(spec).__name__}; pass a tensor or a function fn(value, ctx) -> value"
            )
        for name in resolve_names([key], model.hook_names, model.name):
            out[name] = spec
    return out


def write_points(adapter: Adapter, patch: dict[str, Patch]) -> list[Point]:
    """The points a resolved patch writes through (a pattern patch also needs its layer's v and z);
    read-only points and patterns a family cannot realise are a ``PatchError``."""
    from probe.core.names import LOGITS

    by_name = adapter.point_map
    points = [by_name[n] for n in patch if n != LOGITS]
    for p in points:
        if p.side == "kwargs":  # derived inside the module's forward: there is nothing to write back into
            base = p.name.replace("hook_rot_", "hook_")
            raise PatchError(f"'{p.name}' is read-only (computed inside the module); patch '{base}' instead")
    for n in [n for n in patch if n.endswith("attn.hook_pattern")]:
        missing = [part for part in _pattern_parts(n) if part not in by_name]
        if missing:
            raise PatchError(f"patching '{n}' needs {' and '.join(missing)}, which {adapter.family} models lack")
        points += [by_name[part] for part in _pattern_parts(n)]
    return list({p.name: p for p in points}.values())


@contextlib.contextmanager
def writers_on(
    points: list[Point],
    patches: dict[str, Patch],
    context: PatchContext,
    finish: Finish,
    lead: torch.Size | None = None,
) -> Iterator[set[str]]:
    """Register a hook per written point (``write_points``) that hands the patched value back to the
    forward pass; yields the set of patched names whose hook fired. Always removed. Writers go first on
    their module (``prepend``), so readers there capture the patched value.

    Each marks ``("write", name)`` done in ``finish``, so the pass runs until every patch has acted. If
    z is computed inside the module that returns the pattern (GPT-2), that module runs once more with
    the new z.
    """
    handles = []
    fired: set[str] = set()
    by_name = {p.name: p for p in points}
    internal: dict[str, torch.Tensor] = {}  # hook_v of layers whose pattern is patched
    need_v = {_pattern_parts(n)[0] for n in patches if n.endswith("attn.hook_pattern")}
    overrides: dict[str, torch.Tensor] = {}  # hook_z values computed from patched patterns
    rerunning: dict[int, torch.Tensor] = {}  # modules being run again, with the pattern they must return

    def write(point: Point, value):
        """Patch (or override) the value; return the module's new value (None: unchanged)."""
        old = picked(point, value, lead)
        new = overrides.pop(point.name, old)
        if point.name in patches:
            ctx = dataclasses.replace(context, name=point.name, layer=_layer_of(point.name))
            new = apply_patch(patches[point.name], new, ctx)
            fired.add(point.name)
        if point.name in need_v:
            internal[point.name] = new
        finish.done(("write", point.name))
        if new is old:
            return None
        return point.put(value, new.flatten(0, 1) if point.flat else new)

    def write_pattern(point: Point, module, args, kwargs, out):
        if id(module) in rerunning:  # the rerun's own output carries the patched pattern too: readers there see it
            return point.put(out, rerunning[id(module)])
        pattern = point.pick(out)  # [batch, head, q, k]
        if pattern is None:
            raise PatchError(f"'{point.name}' is not computed by this attention kernel; it cannot be patched")
        ctx = dataclasses.replace(context, name=point.name, layer=_layer_of(point.name))
        new = apply_patch(patches[point.name], pattern, ctx)
        v_name, z_name = _pattern_parts(point.name)
        overrides[z_name] = _mix(new, internal[v_name])
        z_module = by_name[z_name].module
        if any(m is z_module for m in module.modules()):  # z was already used: recompute the module's output
            rerunning[id(module)] = new
            try:
                out = module(*args, **kwargs)
            finally:
                del rerunning[id(module)]
        fired.add(point.name)
        finish.done(("write", point.name))
        return point.put(out, new)

    def hook(point: Point):
        if point.name.endswith("attn.hook_pattern") and point.name in patches:
            return point.module.register_forward_hook(
                lambda mod, args, kwargs, out: write_pattern(point, mod, args, kwargs, out),
                with_kwargs=True,
                prepend=True,
            )
        if point.side == "in":
            return point.module.register_forward_pre_hook(
                lambda mod, args: None if (new := write(point, args[0])) is None else (new, *args[1:]), prepend=True
            )
        return point.module.register_forward_hook(lambda mod, args, out: write(point, out), prepend=True)

    try:
        for p in reversed(points):  # each goes before the last: forward order, ahead of the readers
            handles.append(hook(p))
        yield fired
    finally:
        for h in handles:
            h.remove()


def chunk(patch: dict, start: int, size: int, total: int) -> dict:
    """The part of each per-text patch tensor ([batch, ...] with batch = all texts) for one chunk."""
    if total <= size:
        return patch
    return {
        n: v[start : start + size]
        if isinstance(v, torch.Tensor) and v.dim() == 1 + len(dims_of(n)) and len(v) == total
        else v
        for n, v in patch.items()
    }


def context_for(ids: torch.Tensor, mask: torch.Tensor, start: int = 0, size: int | None = None) -> PatchContext:
    """The ``PatchContext`` of the chunk of texts ``start:start + size`` of a ``run``."""
    end = len(ids) if size is None else start + size
    return PatchContext(name="", layer=None, ids=ids[start:end], mask=mask[start:end], offset=start)
