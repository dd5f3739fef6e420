"""Hook names and what their tensors' dims are called."""

from __future__ import annotations

LOGITS = "logits"  # the model's output, capturable like any hook

# TransformerLens's short names (utils.get_act_name) -> the part of a block's hook name after "blocks.{i}."
ACTS = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
    "z": "attn.hook_z",
    "rot_q": "attn.hook_rot_q",
    "rot_k": "attn.hook_rot_k",
    "pattern": "attn.hook_pattern",
    "pre": "mlp.hook_pre",
    "pre_linear": "mlp.hook_pre_linear",
    "post": "mlp.hook_post",
}


def act_name(kind: str, layer: int) -> str:
    """A block's hook name: ``act_name("resid_pre", 3)`` -> "blocks.3.hook_resid_pre" (TransformerLens's
    short names, see ``ACTS``; a full suffix such as "attn.hook_z" is taken as it is). The one place that
    spells "blocks.{i}." outside the adapters."""
    return f"blocks.{layer}.{ACTS.get(kind, kind)}"


def dims_of(name: str) -> tuple[str, ...]:
    """Names of a hook tensor's dims after [batch] (position dims are 'position' / 'key_position')."""
    if name.endswith("attn.hook_pattern"):
        return ("head", "position", "key_position")
    if name.endswith(
        ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z", "attn.hook_rot_q", "attn.hook_rot_k")
    ):
        return ("position", "head", "dim")
    if name.endswith(("mlp.hook_pre", "mlp.hook_post", "mlp.hook_pre_linear")):
        return ("position", "neuron")
    if name == LOGITS:
        return ("position", "vocab_id")
    return ("position", "dim")
