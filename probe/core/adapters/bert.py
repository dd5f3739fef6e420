"""BERT (``BertForMaskedLM``, ``BertModel``): post-LN blocks, separate q/k/v, MLM head transform+decoder.

BERT normalises *after* each sublayer (post-LN). Names and values follow TransformerLens 4's bridge,
which maps them onto HF's module boundaries:
- ``hook_embed``: the embedding output (word + position + token type, then LayerNorm) = block 0's input;
- ``hook_attn_out``: the attention sublayer's output, LayerNorm(resid_pre + W_O z), as HF's BertAttention
  returns it; ``hook_resid_mid``: the input of the second LayerNorm, hook_attn_out + hook_mlp_out.
The parts that add up are exposed under the bridge's lower-level names: ``embed.hook_out`` (word
embeddings alone), ``blocks.{i}.attn.o.hook_out`` (W_O z + b_O) and ``blocks.{i}.ln1.hook_in``
(resid_pre + attn.o.hook_out, the sum the first LayerNorm sees).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from probe.core.adapters.base import Adapter, Point


class BertAdapter(Adapter):
    family = "bert"
    block_form = "post_ln"
    head_points = frozenset({"ln_final.hook_normalized"})  # the MLM head's transform LayerNorm
    body_attr = "bert"  # where the task models keep the encoder (RoBERTa reuses this adapter)

    def __init__(self, hf, kind):
        super().__init__(hf, kind)
        c = self.config
        self.body = getattr(hf, self.body_attr, hf)
        self.blocks = self.body.encoder.layer
        self.n_layers, self.n_heads, self.d_model = c.num_hidden_layers, c.num_attention_heads, c.hidden_size
        self.d_mlp, self.vocab_size, self.n_ctx = c.intermediate_size, c.vocab_size, c.max_position_embeddings

    def points(self) -> list[Point]:
        h = self.n_heads
        emb = self.body.embeddings
        pts = [
            Point("embed.hook_out", emb.word_embeddings),
            Point("hook_pos_embed", emb.position_embeddings),
            Point("token_type_embed.hook_out", emb.token_type_embeddings),
            Point("hook_embed", emb.LayerNorm),
        ]
        for i, b in enumerate(self.blocks):
            p, att = f"blocks.{i}.", b.attention
            pts += [
                Point(p + "hook_resid_pre", b, side="in"),
                Point(p + "attn.hook_q", att.self.query, heads=h),
                Point(p + "attn.hook_k", att.self.key, heads=h),
                Point(p + "attn.hook_v", att.self.value, heads=h),
                Point(p + "attn.hook_pattern", att.self, item=1),
                Point(p + "attn.hook_z", att.output.dense, side="in", heads=h),
                Point(p + "attn.o.hook_out", att.output.dense),
                Point(p + "ln1.hook_in", att.output.LayerNorm, side="in"),
                Point(p + "hook_attn_out", att, item=0),
                Point(p + "mlp.hook_pre", b.intermediate.dense),
                Point(p + "mlp.hook_post", b.output.dense, side="in"),
                Point(p + "hook_mlp_out", b.output.dense),
                Point(p + "hook_resid_mid", b.output.LayerNorm, side="in"),
                Point(p + "hook_resid_post", b),
            ]
        if self.head_norm() is not None:
            pts.append(Point("ln_final.hook_normalized", self.head_norm()))
        return pts

    def head_norm(self):
        """The LM head's LayerNorm (``ln_final.hook_normalized``), or None without a head."""
        return self.hf.cls.predictions.transform.LayerNorm if self.kind == "masked" else None

    def mlm_transform(self) -> tuple[torch.nn.Module, Callable, torch.nn.Module]:
        """The MLM head before its decoder: (dense, activation, LayerNorm)."""
        t = self.hf.cls.predictions.transform
        return t.dense, t.transform_act_fn, t.LayerNorm

    def mlp_call(self, layer: int, resid: torch.Tensor) -> torch.Tensor:
        b = self.blocks[layer]  # post-LN: the MLP reads hook_attn_out as it is (no norm of its own)
        return b.output.dense.forward(b.intermediate.forward(resid))

    def body_inputs(self, ids: torch.Tensor, mask: torch.Tensor) -> dict:
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}

    def head(self, resid: torch.Tensor) -> torch.Tensor:
        if self.kind != "masked":
            return super().head(resid)
        return self.hf.cls(resid)
