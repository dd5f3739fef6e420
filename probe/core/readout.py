"""The model's read-out as linear maps, once every norm's scale is frozen at its value in a run.

Direct logit attribution (``probe.analysis.dla``) needs, at one position, the direction in the residual
stream that the output reads (the target − contrast unembedding carried back through the final norm or the
MLM head) and the same direction carried back through any norm in between (post-LN blocks). The modules
involved are the model's own, found through the adapter's points; nothing outside ``core`` touches them.

All vectors here are float64 on the CPU: one position's worth, so precision costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from probe.errors import ProbeError

if TYPE_CHECKING:
    from probe.core.adapters.base import Adapter

# the norm in front of attention in pre-LN blocks: GPT-2/GPT-Neo, GPT-NeoX/LLaMA, OPT
ATTN_NORMS = ("ln_1", "input_layernorm", "self_attn_layer_norm")


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().double().cpu()


def norm_parts(module: torch.nn.Module) -> tuple[bool, float, torch.Tensor | None, torch.Tensor | None]:
    """(centred, eps, weight, bias) of a LayerNorm or an RMSNorm (LLaMA's: weight and variance_epsilon)."""
    if isinstance(module, torch.nn.LayerNorm):
        return True, module.eps, module.weight, module.bias
    eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
    if eps is None or "rms" not in type(module).__name__.lower():
        raise ProbeError(f"direct logit attribution knows LayerNorm and RMSNorm, not {type(module).__name__}")
    return False, float(eps), getattr(module, "weight", None), None


def norm_transpose(module: torch.nn.Module, x: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, float]:
    """A read-out direction ``e`` [d] carried back through ``module`` frozen at its input ``x`` [d]:
    (the direction before it, what its bias adds). The frozen norm is v ↦ centre(v) ⊙ w / scale (no centring
    for RMSNorm), a symmetric centring times a diagonal, so its transpose is centre(w ⊙ e / scale)."""
    centred, eps, weight, bias = norm_parts(module)
    x = _f64(x)
    xc = x - x.mean() if centred else x
    scale = torch.sqrt((xc * xc).mean() + eps)
    from_bias = float(_f64(bias) @ e) if bias is not None else 0.0
    e = (e * _f64(weight) if weight is not None else e) / scale
    return (e - e.mean() if centred else e), from_bias


def back_through_norm(adapter: Adapter, point: str, x: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``norm_transpose`` through the norm module of hook point ``point`` (e.g. ``blocks.0.ln1.hook_in``)."""
    return norm_transpose(adapter.point_map[point].module, x, e)


def affine_transpose(module: torch.nn.Module, e: torch.Tensor, width: int) -> tuple[torch.Tensor, float]:
    """For an affine module f(x) = A x + c with ``width`` inputs: (A^T e, c · e), by one backward pass through
    the module itself, so Linear and GPT-2's Conv1D alike; no gradient is left on its weights."""
    param = next(module.parameters())
    x = torch.zeros(1, width, dtype=param.dtype, device=param.device, requires_grad=True)
    with torch.enable_grad():
        y = module(x)[0]
        (grad,) = torch.autograd.grad((y * e.to(y.dtype).to(y.device)).sum(), x)
    return _f64(grad[0]), float(_f64(y) @ e)


def transpose(adapter: Adapter, point: str, e: torch.Tensor, width: int) -> tuple[torch.Tensor, float]:
    """``affine_transpose`` through the module whose *input* is hook point ``point`` (``attn.hook_z``: W_O;
    ``mlp.hook_post``: W_out)."""
    return affine_transpose(adapter.point_map[point].module, e, width)


def unembedding(adapter: Adapter, target: int, contrast: int | None) -> tuple[torch.Tensor, float]:
    """(W_U[target] − W_U[contrast], b_U[target] − b_U[contrast]): the output's direction and bias."""
    out = adapter.hf.get_output_embeddings()
    weight = out.weight
    e = _f64(weight[target]) - (_f64(weight[contrast]) if contrast is not None else 0)
    bias = getattr(out, "bias", None)
    bias = _f64(bias) if bias is not None else None  # detached: no autograd warning on the scalar
    constant = float(bias[target] - (bias[contrast] if contrast is not None else 0)) if bias is not None else 0.0
    return e, constant


def final_direction(adapter: Adapter, x: torch.Tensor, target: int, contrast: int | None) -> tuple[torch.Tensor, float]:
    """The direction in the last residual stream ``x`` [d] (at one position) that the output reads for
    target − contrast, and the constant no component writes (output bias, norm biases)."""
    e, constant = unembedding(adapter, target, contrast)
    if adapter.kind == "masked":
        e, more = mlm_head_transpose(adapter, x, e)
    else:
        e, more = norm_transpose(adapter.point_map["ln_final.hook_normalized"].module, x, e)
    return e, constant + more


def mlm_head_transpose(adapter: Adapter, x: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``e`` carried back through a masked LM's head transform (dense → activation → LayerNorm) at ``x``.

    The activation is linearised by its ratio act(z) / z at this run's own pre-activation z (1/2 where
    z = 0, GELU's slope there): every part of z keeps its share of act(z), so the parts add up exactly."""
    dense, act, norm = adapter.mlm_transform()
    param = next(dense.parameters())
    with torch.no_grad():
        z = dense(x.to(param.dtype).to(param.device)[None])[0]
        a = act(z)
    e, from_norm_bias = norm_transpose(norm, a, e)
    z, a = _f64(z), _f64(a)
    ratio = torch.where(z == 0, torch.full_like(z, 0.5), a / torch.where(z == 0, torch.ones_like(z), z))
    e, from_dense_bias = affine_transpose(dense, e * ratio, x.shape[-1])
    return e, from_norm_bias + from_dense_bias


def attn_norm(block: torch.nn.Module) -> torch.nn.Module | None:
    """A pre-LN block's norm in front of attention (None where the block has none of ``ATTN_NORMS``)."""
    for name in ATTN_NORMS:
        module = getattr(block, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    return None


def value_bias(adapter: Adapter, layer: int, shape: torch.Size) -> torch.Tensor:
    """[head, d_head] the part of every value vector of ``layer`` that no token sets: the value projection
    of the attention norm's bias (pre-LN; nothing for RMSNorm or post-LN blocks) plus the projection's own
    bias. A head writes it whatever it attends to (a pattern sums to 1). One row per query head:
    grouped-query heads share their key/value head's."""
    point = adapter.point_map.get(f"blocks.{layer}.attn.hook_v")
    if point is None or point.fn is not None:
        return torch.zeros(shape, dtype=torch.float64)
    param = next(point.module.parameters())
    x = torch.zeros(1, 1, adapter.d_model, dtype=param.dtype, device=param.device)
    norm = None if adapter.block_form == "post_ln" else attn_norm(adapter.blocks[layer])
    if norm is not None and getattr(norm, "bias", None) is not None:
        x = x + norm.bias.detach().to(x.dtype)
    with torch.no_grad():
        v = point.pick(point.module(x))
    v = _f64(v).reshape(-1, shape[-1])  # [kv heads, d_head]
    return v.repeat_interleave(shape[0] // v.shape[0], dim=0)


def head_write(adapter: Adapter, layer: int, head: int, z: torch.Tensor) -> torch.Tensor:
    """[batch, pos, d_model] what one head writes into the residual stream: its slice of ``attn.hook_z``
    ([batch, pos, heads, d_head]) through W_O, without the output bias (which no head owns)."""
    module = adapter.point_map[f"blocks.{layer}.attn.hook_z"].module
    only = torch.zeros_like(z)
    only[..., head, :] = z[..., head, :]
    flat = only.flatten(-2)
    with torch.no_grad():  # forward(), not the call: a circuit run calls this from inside its own hooks
        return module.forward(flat) - module.forward(torch.zeros_like(flat))


def head_inputs(adapter: Adapter, layer: int, component: str, resid: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """[batch, pos, heads, d_head] the ``attn.hook_{component}`` (q, k or v) that layer ``layer`` would compute
    from residual stream ``resid`` [batch, pos, d_model]: through its attention norm (pre-LN) and projection.
    ``grad``: keep the autograd graph (for ``head_input_vjp``)."""
    point = adapter.point_map[f"blocks.{layer}.attn.hook_{component}"]
    norm = None if adapter.block_form == "post_ln" else attn_norm(adapter.blocks[layer])
    with torch.enable_grad() if grad else torch.no_grad():  # forward(): no hooks (see head_write)
        x = norm.forward(resid) if norm is not None else resid
        return point.pick(point.module.forward(x))


def mlp_inputs(adapter: Adapter, layer: int, resid: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """[batch, pos, d_model] what the MLP of ``layer`` writes when it reads ``resid`` (the value at
    ``mlp_reads``: its norm, if it has one, then itself)."""
    with torch.enable_grad() if grad else torch.no_grad():
        return adapter.mlp_call(layer, resid)


def head_input_vjp(
    adapter: Adapter, layer: int, component: str, resid: torch.Tensor, grad: torch.Tensor
) -> torch.Tensor:
    """[heads, batch, pos, d_model]: for each head of ``component``, the gradient ``grad`` [batch, pos, heads,
    d_head] at its q/k/v carried back to the residual stream the head reads (its own copy, through the norm
    at ``resid``). The receivers' side of edge attribution."""
    x = resid.detach().float().requires_grad_(True)
    out = head_inputs(adapter, layer, component, x.to(resid.dtype), grad=True)
    found = []
    with torch.enable_grad():
        for h in range(out.shape[2]):
            only = torch.zeros_like(out)
            only[:, :, h] = grad[:, :, h].to(out.dtype)
            (vjp,) = torch.autograd.grad(out, x, grad_outputs=only, retain_graph=h < out.shape[2] - 1)
            found.append(vjp)
    return torch.stack(found)


def mlp_reads(adapter: Adapter, layer: int) -> str:
    """The hook whose value the MLP of ``layer`` reads as its input stream: ``hook_resid_mid`` (pre-LN, before
    the MLP's own norm), ``hook_resid_pre`` (parallel blocks: attention and MLP share it) or ``hook_attn_out``
    (post-LN: the first norm's output)."""
    name = {"parallel": "hook_resid_pre", "post_ln": "hook_attn_out"}.get(adapter.block_form, "hook_resid_mid")
    return f"blocks.{layer}.{name}"


def stream_norms(adapter: Adapter, layer: int) -> tuple[str, str] | None:
    """Post-LN blocks: the hook points at the inputs of the norms *on* the stream, after attention
    (``ln1.hook_in``) and after the MLP (``hook_resid_mid``); None for pre-LN and parallel blocks, whose
    stream is a plain sum. Raises NotImplementedError where a post-LN family hooks neither input."""
    if adapter.block_form != "post_ln":
        return None
    names = (f"blocks.{layer}.ln1.hook_in", f"blocks.{layer}.hook_resid_mid")
    points = adapter.point_map
    if any(n not in points or points[n].side != "in" for n in names):
        raise NotImplementedError(f"{adapter.family} hooks no input of its post-LN norms")
    return names


def norm_vjp(adapter: Adapter, point: str, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[k, *x.shape]: each of ``v`` [k, *x.shape] carried back through the norm at hook ``point`` (its input),
    at input ``x``: the norm's own Jacobian there, its scale's dependence on x included."""
    module = adapter.point_map[point].module
    inp = x.detach().float().expand(v.shape).clone().requires_grad_(True)
    with torch.enable_grad():
        out = module.forward(inp.to(x.dtype))
        (found,) = torch.autograd.grad(out, inp, grad_outputs=v.to(out.device, out.dtype))
    return found.to(v.device)


def norm_shift(adapter: Adapter, point: str, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """[k, *x.shape] float64: norm(x + d) − norm(x) for the norm at hook ``point``, each of ``d`` [k, *x.shape]
    a change to its input ``x``: how a change before a post-LN norm reaches the stream after it."""
    module = adapter.point_map[point].module
    with torch.no_grad():
        base = module.forward(x)
        moved = module.forward((x.double() + d.to(x.device)).to(x.dtype))
    out = (moved.double() - base.double()).cpu()
    out[~d.flatten(1).any(1).cpu()] = 0  # no change in, none out (not the kernel's rounding on a new shape)
    return out


def mlp_input_vjp(adapter: Adapter, layer: int, resid: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """[batch, pos, d_model] the gradient ``grad`` at the MLP's output carried back to the residual it reads."""
    x = resid.detach().float().requires_grad_(True)
    out = mlp_inputs(adapter, layer, x.to(resid.dtype), grad=True)
    with torch.enable_grad():
        (vjp,) = torch.autograd.grad(out, x, grad_outputs=grad.to(out.dtype))
    return vjp
