"""OPT (``OPTForCausalLM``): learned positions offset by 2, optional embedding projections, pre- or post-LN.

- ``hook_embed`` is the token embedding as stored, ``word_embed_proj_dim`` wide; where that differs from
  ``d_model`` (opt-350m) HF projects it: ``project_in.hook_out`` is what enters the residual stream, and
  the head applies ``project_out`` (``project_out.hook_out``) before the unembedding. Both hooks exist
  only on such checkpoints (names as TransformerLens's bridge).
- ``hook_pos_embed`` is the looked-up position embedding (HF adds the offset of 2 to the position ids).
- ``attn.hook_q`` is ``q_proj``'s output before HF multiplies it by 1/sqrt(d_head).
- Pre-LN (``do_layer_norm_before``, all OPTs but 350m): ``hook_resid_mid`` is the input of the block's
  ``final_layer_norm``. Post-LN (350m): the stream after attention is ``self_attn_layer_norm``'s output,
  so that is ``hook_resid_mid``, and there is no final LayerNorm (no ``ln_final.hook_normalized``).
- HF runs the MLP on tokens flattened to ``[batch * pos, d]``; capture restores ``[batch, pos, ...]``.
"""

from __future__ import annotations

import torch

from probe.core.adapters.base import Adapter, Point


class OPTAdapter(Adapter):
    family = "opt"

    def __init__(self, hf, kind):
        super().__init__(hf, kind)
        c = self.config
        self.body = hf.model.decoder if hasattr(hf, "model") else getattr(hf, "decoder", hf)
        self.blocks = self.body.layers
        self.n_layers, self.n_heads, self.d_model = c.num_hidden_layers, c.num_attention_heads, c.hidden_size
        self.d_mlp, self.vocab_size, self.n_ctx = c.ffn_dim, c.vocab_size, c.max_position_embeddings
        self.pre_ln = bool(c.do_layer_norm_before)
        self.block_form = "pre_ln" if self.pre_ln else "post_ln"
        if self.body.project_out is not None:  # HF's last hidden state is after the projection
            self.last_hidden_hook = "project_out.hook_out"

    def points(self) -> list[Point]:
        h, body = self.n_heads, self.body
        pts = [Point("hook_embed", body.embed_tokens), Point("hook_pos_embed", body.embed_positions)]
        if body.project_in is not None:
            pts.append(Point("project_in.hook_out", body.project_in))
        for i, b in enumerate(self.blocks):
            p, att = f"blocks.{i}.", b.self_attn
            resid_mid = (
                Point(p + "hook_resid_mid", b.final_layer_norm, side="in", flat=True)
                if self.pre_ln
                else Point(p + "hook_resid_mid", b.self_attn_layer_norm)
            )
            pts += [
                Point(p + "hook_resid_pre", b, side="in"),
                Point(p + "attn.hook_q", att.q_proj, heads=h),
                Point(p + "attn.hook_k", att.k_proj, heads=h),
                Point(p + "attn.hook_v", att.v_proj, heads=h),
                Point(p + "attn.hook_pattern", att, item=1),
                Point(p + "attn.hook_z", att.out_proj, side="in", heads=h),
                Point(p + "hook_attn_out", att, item=0),
                resid_mid,
                Point(p + "mlp.hook_pre", b.fc1, flat=True),
                Point(p + "mlp.hook_post", b.fc2, side="in", flat=True),
                Point(p + "hook_mlp_out", b.fc2, flat=True),
                Point(p + "hook_resid_post", b),
            ]
        if body.final_layer_norm is not None:
            pts.append(Point("ln_final.hook_normalized", body.final_layer_norm))
        if body.project_out is not None:
            pts.append(Point("project_out.hook_out", body.project_out))
        return pts

    def mlp_call(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        if not self.pre_ln:
            raise NotImplementedError("post-LN OPT blocks have no separate MLP input")
        b = self.blocks[layer]
        return b.fc2.forward(b.activation_fn(b.fc1.forward(b.final_layer_norm.forward(resid))))

    def head(self, resid: torch.Tensor) -> torch.Tensor:
        if self.kind != "causal":
            return super().head(resid)
        if self.body.final_layer_norm is not None:
            resid = self.body.final_layer_norm(resid)
        if self.body.project_out is not None:
            resid = self.body.project_out(resid)
        return self.hf.lm_head(resid)
