"""GPT-NeoX / Pythia (``GPTNeoXForCausalLM``): parallel attention + MLP, partial rotary, fused per-head qkv.

- ``attn.hook_q|k|v`` are the projections *before* rotary. HF's fused ``query_key_value`` output is laid
  out per head, ``[..., head, (q | k | v)]`` (it is viewed as ``[heads, 3 * d_head]`` and then chunked),
  not ``[q | k | v]`` as in GPT-2, so each is a slice *after* the head split.
- ``attn.hook_rot_q|rot_k`` are q/k after rotary, which acts on the first ``rotary_dim`` dims of each
  head inside ``forward`` (no module boundary): they are computed from the attention module's inputs
  with GPT-NeoX's own ``apply_rotary_pos_emb`` (exact, read-only; one extra qkv projection each, only
  when asked for), as the Llama adapter does.
- No ``hook_pos_embed``: rotary has no position embedding added to the residual stream.
- No ``hook_resid_mid`` when ``use_parallel_residual`` (Pythia, GPT-NeoX-20B): attention and MLP both
  read ``hook_resid_pre`` and their outputs are added together, so there is no stream between them.
  Checkpoints with sequential blocks get it (the input of ``post_attention_layernorm``).
"""

from __future__ import annotations

import torch

from probe.core.adapters.base import Adapter, Point, rotated


def _qkv_part(attn, which: int, heads: int, d_head: int):
    """q (which=0) or k (1) from the fused projection, laid out per head as [heads, q|k|v]."""
    return lambda hidden: attn.query_key_value(hidden).unflatten(-1, (heads, 3 * d_head))[
        ..., which * d_head : (which + 1) * d_head
    ]


class GPTNeoXAdapter(Adapter):
    family = "gpt_neox"

    def __init__(self, hf, kind):
        super().__init__(hf, kind)
        c = self.config
        self.body = getattr(hf, "gpt_neox", hf)
        self.blocks = self.body.layers
        self.n_layers, self.n_heads, self.d_model = c.num_hidden_layers, c.num_attention_heads, c.hidden_size
        self.d_mlp, self.vocab_size, self.n_ctx = c.intermediate_size, c.vocab_size, c.max_position_embeddings
        self.parallel = bool(c.use_parallel_residual)
        self.block_form = "parallel" if self.parallel else "pre_ln"
        self.rotary_dim = self.blocks[0].attention.rotary_ndims if len(self.blocks) else self.d_head

    def points(self) -> list[Point]:
        h, dh = self.n_heads, self.d_head
        pts = [Point("hook_embed", self.body.embed_in)]
        for i, b in enumerate(self.blocks):
            p, att = f"blocks.{i}.", b.attention
            pts += [
                Point(p + "hook_resid_pre", b, side="in"),
                Point(p + "attn.hook_q", att.query_key_value, heads=h, head_cols=(0, dh)),
                Point(p + "attn.hook_k", att.query_key_value, heads=h, head_cols=(dh, 2 * dh)),
                Point(p + "attn.hook_v", att.query_key_value, heads=h, head_cols=(2 * dh, 3 * dh)),
                Point(p + "attn.hook_rot_q", att, side="kwargs", fn=rotated(att, _qkv_part(att, 0, h, dh))),
                Point(p + "attn.hook_rot_k", att, side="kwargs", fn=rotated(att, _qkv_part(att, 1, h, dh))),
                Point(p + "attn.hook_pattern", att, item=1),
                Point(p + "attn.hook_z", att.dense, side="in", heads=h),
                Point(p + "hook_attn_out", att, item=0),
            ]
            if not self.parallel:
                pts.append(Point(p + "hook_resid_mid", b.post_attention_layernorm, side="in"))
            pts += [
                Point(p + "mlp.hook_pre", b.mlp.dense_h_to_4h),
                Point(p + "mlp.hook_post", b.mlp.dense_4h_to_h, side="in"),
                Point(p + "hook_mlp_out", b.mlp),
                Point(p + "hook_resid_post", b),
            ]
        pts.append(Point("ln_final.hook_normalized", self.body.final_layer_norm))
        return pts

    def mlp_call(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        if not self.parallel:
            return super().mlp_call(layer, resid)
        b = self.blocks[layer]  # parallel: the MLP's own norm on the block's input
        return b.mlp.forward(b.post_attention_layernorm.forward(resid))

    def head(self, resid: torch.Tensor) -> torch.Tensor:
        if self.kind != "causal":
            return super().head(resid)
        return self.hf.get_output_embeddings()(self.body.final_layer_norm(resid))  # embed_out on transformers 4
