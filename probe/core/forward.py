"""One forward pass that reads (``capture``) and writes (``patch``) hook values, and ``run``'s chunking.

This is the core's public pass: ``Model.run``, extraction and attribution all go through
``forward_capture``; ``capture_batches`` splits a batch into chunks (and each chunk's share of the
patch) the way ``Model.run(batch_size=...)`` does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref

import torch

from probe.core.adapters import Adapter, Point
from probe.core.capture import Finish, Readers, StopForward, by_module, eager_attention
from probe.core.names import LOGITS, act_name
from probe.core.patch import Patch, PatchContext, apply_patch, chunk, context_for, write_points, writers_on
from probe.errors import PatchError


def forward_capture(
    adapter: Adapter,
    ids: torch.Tensor,
    mask: torch.Tensor,
    names: list[str],
    grad: bool = False,
    patch: dict[str, Patch] | None = None,
    context: PatchContext | None = None,
    offload: torch.device | None = None,
    embeds: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Run the body once on ``ids`` [batch, pos] and return {name: tensor with a leading batch dim}.

    ``names`` are resolved hook names (``resolve_names``). The head (the same modules HF uses) runs on
    the last block's output only when ``logits`` or a point inside the head (BERT's ``ln_final``) is
    requested. ``patch`` ({resolved name: tensor | fn}) edits values on the way; the pass then runs at
    least until every patched point has fired, and a patch whose point never fires is a ``PatchError``.
    ``offload``: move every stored tensor there (a device). ``embeds`` [batch, pos, d_model]: the token
    embeddings to use instead of looking ``ids`` up (attribution differentiates with respect to them;
    position embeddings and everything after are the model's own).
    """
    patch = patch or {}
    final = act_name("resid_post", adapter.n_layers - 1)
    by_name = adapter.point_map
    writes = write_points(adapter, patch) if patch else []
    head_points = adapter.head_points
    run_head = (
        LOGITS in names
        or LOGITS in patch
        or any(n in head_points for n in names)
        or any(p.name in head_points for p in writes)
    )
    wanted = [n for n in names if n != LOGITS]
    if run_head and final not in names:
        wanted.append(final)
    readers, eager = _readers(adapter, by_name, wanted)
    eager = eager or any(p.name.endswith(adapter.needs_eager) for p in writes)
    finish = Finish([n for n in wanted if n not in head_points])
    finish.pending.update(("write", p.name) for p in writes if p.name not in head_points)
    store: dict[str, torch.Tensor] = {}
    if patch and context is None:
        context = context_for(ids, mask)
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.nullcontext() if grad else torch.inference_mode())
        stack.enter_context(eager_attention(adapter.hf, eager))
        if embeds is not None:  # first, so that hooks on the embedding layer see these vectors
            stack.enter_context(_embeddings(adapter, embeds))
        fired = stack.enter_context(writers_on(writes, patch, context, finish, ids.shape)) if patch else set()
        stack.enter_context(readers.reading(store, finish, offload=offload, lead=ids.shape))
        if not readers.attached:  # a pass inside another pass of this model: its own hooks, removed after
            stack.callback(readers.attach().detach)
        try:
            adapter.call_body(ids, mask, patterns=eager)
        except StopForward:
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


def _readers(adapter: Adapter, by_name: dict[str, Point], wanted: list[str]) -> tuple[Readers, bool]:
    """(the ``Readers`` of a hook set, whether a pattern is read).

    Each hook set's readers are built once per model (per HF module tree); the last one used stays attached, so repeating
    a hook set costs no registration. A model's ``point_map`` is a new table after a module was
    swapped: then every cached set is dropped. A pass that starts while the attached set is reading
    (a run inside an edit function) gets readers of its own.
    """
    cache = _READERS.get(adapter.hf)
    if cache is None or cache[0] is not by_name:  # another adapter on these weights, or a swapped module
        if cache is not None:
            for r in cache[1].values():
                r[0].detach()
        cache = _READERS[adapter.hf] = (by_name, {})
    plans = cache[1]
    key = tuple(wanted)
    plan = plans.get(key)
    if plan is None:
        points = [by_name[n] for n in wanted]
        plan = (by_module(points), any(p.name.endswith(adapter.needs_eager) for p in points))
        if len(plans) >= 32:  # a long session of ad-hoc hook sets: keep the table small
            for r in plans.values():
                r[0].detach()
            plans.clear()
        plan = plans[key] = (Readers(plan[0]), plan[1])
    readers = plan[0]
    if readers.session is not None:  # busy: this pass runs inside one that uses the same hook set
        return Readers(readers.groups), plan[1]
    if not readers.attached:
        for other, _ in plans.values():
            if other.attached and other.session is None:
                other.detach()
        readers.attach()
    return readers, plan[1]


_READERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # hf model -> (point_map, {hook set: readers})


def release(adapter: Adapter) -> int:
    """Remove the reading hooks ``forward_capture`` keeps on the model between runs; how many were removed."""
    cache = _READERS.pop(adapter.hf, None)
    removed = 0
    for readers, _ in cache[1].values() if cache else ():
        removed += len(readers.handles)
        readers.detach()
    return removed


@contextlib.contextmanager
def _embeddings(adapter: Adapter, embeds: torch.Tensor):
    """The token-embedding layer returns ``embeds`` instead of looking ids up (HF's
    ``get_input_embeddings()``, so it holds for every family). Always removed."""
    handle = adapter.hf.get_input_embeddings().register_forward_hook(lambda mod, args, out: embeds, prepend=True)
    try:
        yield
    finally:
        handle.remove()


def capture_batches(
    adapter: Adapter,
    ids: torch.Tensor,
    mask: torch.Tensor,
    names: list[str],
    batch_size: int,
    grad: bool = False,
    patch: dict[str, Patch] | None = None,
    offload: torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """``forward_capture`` over chunks of ``batch_size`` texts, concatenated; a per-text patch tensor
    ([all texts, ...]) is sliced to each chunk and edit functions see the chunk's ``ctx.offset``."""
    chunks = [
        forward_capture(
            adapter,
            ids[s : s + batch_size],
            mask[s : s + batch_size],
            names,
            grad=grad,
            patch=chunk(patch, s, batch_size, len(ids)) if patch else None,
            context=context_for(ids, mask, s, batch_size) if patch else None,
            offload=offload,
        )
        for s in range(0, len(ids), batch_size)
    ]
    return chunks[0] if len(chunks) == 1 else {n: torch.cat([c[n] for c in chunks]) for n in chunks[0]}
