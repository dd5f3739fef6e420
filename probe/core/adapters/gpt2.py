"""GPT-2 (``GPT2LMHeadModel``, ``GPT2Model``): pre-LN blocks, fused q|k|v ``Conv1D``, final ``ln_f``."""

from __future__ import annotations

import torch

from probe.core.adapters.base import Adapter, Point


class GPT2Adapter(Adapter):
    family = "gpt2"

    def __init__(self, hf, kind):
        super().__init__(hf, kind)
        c = self.config
        self.body = getattr(hf, "transformer", hf)
        self.blocks = self.body.h
        self.n_layers, self.n_heads, self.d_model = c.n_layer, c.n_head, c.n_embd
        self.d_mlp = c.n_inner or 4 * c.n_embd
        self.vocab_size, self.n_ctx = c.vocab_size, c.n_positions

    def points(self) -> list[Point]:
        d, h = self.d_model, self.n_heads
        pts = [Point("hook_embed", self.body.wte), Point("hook_pos_embed", self.body.wpe)]
        for i, b in enumerate(self.blocks):
            p = f"blocks.{i}."
            pts += [
                Point(p + "hook_resid_pre", b, side="in"),
                Point(p + "attn.hook_q", b.attn.c_attn, cols=(0, d), heads=h),
                Point(p + "attn.hook_k", b.attn.c_attn, cols=(d, 2 * d), heads=h),
                Point(p + "attn.hook_v", b.attn.c_attn, cols=(2 * d, 3 * d), heads=h),
                Point(p + "attn.hook_pattern", b.attn, item=1),
                Point(p + "attn.hook_z", b.attn.c_proj, side="in", heads=h),
                Point(p + "hook_attn_out", b.attn, item=0),
                # the input of ln_2 is resid_pre + attn_out: the residual stream between the sublayers
                Point(p + "hook_resid_mid", b.ln_2, side="in"),
                Point(p + "mlp.hook_pre", b.mlp.c_fc),
                Point(p + "mlp.hook_post", b.mlp.c_proj, side="in"),
                Point(p + "hook_mlp_out", b.mlp),
                Point(p + "hook_resid_post", b),
            ]
        pts.append(Point("ln_final.hook_normalized", self.body.ln_f))
        return pts

    def head(self, resid: torch.Tensor) -> torch.Tensor:
        if self.kind != "causal":
            return super().head(resid)
        return self.hf.lm_head(self.body.ln_f(resid))
