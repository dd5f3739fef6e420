"""DistilBERT (``DistilBertForMaskedLM``, ``DistilBertModel``): BERT's post-LN block under other names.

Hook names and meanings follow the BERT adapter (TransformerLens's bridge has no DistilBERT, so BERT's
bridge names are the reference): ``hook_embed`` is the embedding LayerNorm's output (word + position;
DistilBERT has no token types, so no ``token_type_embed.hook_out``), ``hook_attn_out`` is
``sa_layer_norm(resid_pre + W_O z)``, ``hook_resid_mid`` is the input of ``output_layer_norm``
(``hook_attn_out + hook_mlp_out``), and the unnormalised parts are ``attn.o.hook_out`` / ``ln1.hook_in``.
The MLM head is ``vocab_transform`` -> activation -> ``vocab_layer_norm`` (``ln_final.hook_normalized``)
-> ``vocab_projector``.
"""

from __future__ import annotations

import torch

from probe.core.adapters.base import Adapter, Point


class DistilBertAdapter(Adapter):
    family = "distilbert"
    block_form = "post_ln"
    head_points = frozenset({"ln_final.hook_normalized"})

    def __init__(self, hf, kind):
        super().__init__(hf, kind)
        c = self.config
        self.body = getattr(hf, "distilbert", hf)
        self.blocks = self.body.transformer.layer
        self.n_layers, self.n_heads, self.d_model = c.n_layers, c.n_heads, c.dim
        self.d_mlp, self.vocab_size, self.n_ctx = c.hidden_dim, c.vocab_size, c.max_position_embeddings

    def points(self) -> list[Point]:
        h, emb = self.n_heads, self.body.embeddings
        pts = [
            Point("embed.hook_out", emb.word_embeddings),
            Point("hook_pos_embed", emb.position_embeddings),
            Point("hook_embed", emb.LayerNorm),
        ]
        for i, b in enumerate(self.blocks):
            p, att = f"blocks.{i}.", b.attention
            pts += [
                Point(p + "hook_resid_pre", b, side="in"),
                Point(p + "attn.hook_q", att.q_lin, heads=h),
                Point(p + "attn.hook_k", att.k_lin, heads=h),
                Point(p + "attn.hook_v", att.v_lin, heads=h),
                Point(p + "attn.hook_pattern", att, item=1),
                Point(p + "attn.hook_z", att.out_lin, side="in", heads=h),
                Point(p + "attn.o.hook_out", att.out_lin),
                Point(p + "ln1.hook_in", b.sa_layer_norm, side="in"),
                Point(p + "hook_attn_out", b.sa_layer_norm),
                Point(p + "mlp.hook_pre", b.ffn.lin1),
                Point(p + "mlp.hook_post", b.ffn.lin2, side="in"),
                Point(p + "hook_mlp_out", b.ffn),
                Point(p + "hook_resid_mid", b.output_layer_norm, side="in"),
                Point(p + "hook_resid_post", b, tuple_item=-1),  # transformers 4: (weights, hidden)
            ]
        if self.kind == "masked":
            pts.append(Point("ln_final.hook_normalized", self.hf.vocab_layer_norm))
        return pts

    def mlm_transform(self):
        """The MLM head before its decoder: (dense, activation, LayerNorm)."""
        return self.hf.vocab_transform, self.hf.activation, self.hf.vocab_layer_norm

    def mlp_call(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        return self.blocks[layer].ffn.forward(resid)  # post-LN: reads hook_attn_out, no norm of its own

    def body_inputs(self, ids: torch.Tensor, mask: torch.Tensor) -> dict:
        return {"input_ids": ids, "attention_mask": mask}

    def head(self, resid: torch.Tensor) -> torch.Tensor:
        if self.kind != "masked":
            return super().head(resid)
        hf = self.hf
        return hf.vocab_projector(hf.vocab_layer_norm(hf.activation(hf.vocab_transform(resid))))
