"""GPT-Neo (``GPTNeoForCausalLM``, ``GPTNeoModel``): GPT-2's block with separate q/k/v and local layers.

Every hook of GPT-2 exists here under the same name. Two things differ from GPT-2 and are the model's,
not probe's: attention scores are *not* scaled by 1/sqrt(d_head), and the layers listed as "local" in
``config.attention_layers`` see only the last ``window_size`` keys (``hook_pattern`` is zero beyond the
window). HF has no sdpa kernel for GPT-Neo, so patterns come at no extra cost.
"""

from __future__ import annotations

import torch

from probe.core.adapters.base import Adapter, Point


class GPTNeoAdapter(Adapter):
    family = "gpt_neo"

    def __init__(self, hf, kind):
        super().__init__(hf, kind)
        c = self.config
        self.body = getattr(hf, "transformer", hf)
        self.blocks = self.body.h
        self.n_layers, self.n_heads, self.d_model = c.num_layers, c.num_heads, c.hidden_size
        self.d_mlp = c.intermediate_size or 4 * c.hidden_size
        self.vocab_size, self.n_ctx = c.vocab_size, c.max_position_embeddings

    def attn_scale(self) -> float:
        return 1.0  # GPT-Neo does not scale its attention scores

    def visible_keys(self, layer: int, n: int) -> torch.Tensor:
        keys = super().visible_keys(layer, n)
        if self.config.attention_layers[layer] == "local":  # the last window_size keys only
            keys &= torch.ones(n, n, dtype=torch.bool).triu(-(self.config.window_size - 1))
        return keys

    def points(self) -> list[Point]:
        h = self.n_heads
        pts = [Point("hook_embed", self.body.wte), Point("hook_pos_embed", self.body.wpe)]
        for i, b in enumerate(self.blocks):
            p, att = f"blocks.{i}.", b.attn.attention
            pts += [
                Point(p + "hook_resid_pre", b, side="in"),
                Point(p + "attn.hook_q", att.q_proj, heads=h),
                Point(p + "attn.hook_k", att.k_proj, heads=h),
                Point(p + "attn.hook_v", att.v_proj, heads=h),
                Point(p + "attn.hook_pattern", att, item=1),
                Point(p + "attn.hook_z", att.out_proj, side="in", heads=h),
                Point(p + "hook_attn_out", b.attn, item=0),
                Point(p + "hook_resid_mid", b.ln_2, side="in"),
                Point(p + "mlp.hook_pre", b.mlp.c_fc),
                Point(p + "mlp.hook_post", b.mlp.c_proj, side="in"),
                Point(p + "hook_mlp_out", b.mlp),
                Point(p + "hook_resid_post", b, item=0),  # the block returns (hidden, attn_weights)
            ]
        pts.append(Point("ln_final.hook_normalized", self.body.ln_f))
        return pts

    def head(self, resid: torch.Tensor) -> torch.Tensor:
        if self.kind != "causal":
            return super().head(resid)
        return self.hf.lm_head(self.body.ln_f(resid))
