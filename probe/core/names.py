"""Hook names and what their tensors' dims are called."""

from __future__ import annotations

LOGITS = "logits"  # the model's output, capturable like any hook


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
