"""Llama and the models of its shape (``LlamaForCausalLM``, ``MistralForCausalLM``, ``Qwen2ForCausalLM``).

Pre-norm blocks with RMSNorm, rotary position embeddings, grouped-query attention and a gated MLP
(``down(act(gate(x)) * up(x))``). Names follow TransformerLens 4's bridge for these models:

- no ``hook_pos_embed``: rotary embeddings rotate q and k inside attention; nothing is added to the
  residual stream, so there is no such value to show;
- ``attn.hook_q`` [batch, pos, n_heads, d_head] is before rotary, ``attn.hook_rot_q`` after;
  ``attn.hook_k`` / ``hook_v`` / ``hook_rot_k`` keep the model's **n_kv_heads** (grouped-query
  attention shares each K/V head among ``n_heads / n_kv_heads`` query heads; ``hook_pattern`` and
  ``hook_z`` have all n_heads);
- ``mlp.hook_pre`` is the gate projection (before the activation), ``mlp.hook_pre_linear`` the up
  projection, ``mlp.hook_post`` = act(gate) * up, the down projection's input.

``hook_rot_q`` / ``hook_rot_k`` are computed from the attention module's inputs with the family's own
``apply_rotary_pos_emb`` (HF applies rotary inside ``forward`` with no module boundary to hook): exact,
read-only, and they cost one extra q (or k) projection per layer, only when asked for.
"""

from __future__ import annotations

import torch

from probe.core.adapters.base import Adapter, Point, rotated


def _heads(proj, d_head: int):
    return lambda hidden: proj(hidden).unflatten(-1, (-1, d_head))


class LlamaAdapter(Adapter):
    family = "llama"

    def __init__(self, hf, kind):
        super().__init__(hf, kind)
        c = self.config
        self.family = c.model_type  # llama, mistral or qwen2: one adapter, the config's own name
        self.body = getattr(hf, "model", hf)
        self.blocks = self.body.layers
        self.n_layers, self.n_heads, self.d_model = c.num_hidden_layers, c.num_attention_heads, c.hidden_size
        self.n_kv_heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        self.d_mlp, self.vocab_size, self.n_ctx = c.intermediate_size, c.vocab_size, c.max_position_embeddings
        self._d_head = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads

    @property
    def d_head(self) -> int:
        return self._d_head

    def points(self) -> list[Point]:
        h, kv = self.n_heads, self.n_kv_heads
        pts = [Point("hook_embed", self.body.embed_tokens)]
        for i, b in enumerate(self.blocks):
            p, att, mlp = f"blocks.{i}.", b.self_attn, b.mlp
            pts += [
                Point(p + "hook_resid_pre", b, side="in"),
                Point(p + "attn.hook_q", att.q_proj, heads=h),
                Point(p + "attn.hook_k", att.k_proj, heads=kv),
                Point(p + "attn.hook_v", att.v_proj, heads=kv),
                Point(p + "attn.hook_rot_q", att, side="kwargs", fn=rotated(att, _heads(att.q_proj, att.head_dim))),
                Point(p + "attn.hook_rot_k", att, side="kwargs", fn=rotated(att, _heads(att.k_proj, att.head_dim))),
                Point(p + "attn.hook_pattern", att, item=1),
                Point(p + "attn.hook_z", att.o_proj, side="in", heads=h),
                Point(p + "hook_attn_out", att, item=0),
                Point(p + "hook_resid_mid", b.post_attention_layernorm, side="in"),
                Point(p + "mlp.hook_pre", mlp.gate_proj),
                Point(p + "mlp.hook_pre_linear", mlp.up_proj),
                Point(p + "mlp.hook_post", mlp.down_proj, side="in"),
                Point(p + "hook_mlp_out", mlp),
                Point(p + "hook_resid_post", b),
            ]
        pts.append(Point("ln_final.hook_normalized", self.body.norm))
        return pts

    def head(self, resid: torch.Tensor) -> torch.Tensor:
        if self.kind != "causal":
            return super().head(resid)
        return self.hf.lm_head(self.body.norm(resid))
