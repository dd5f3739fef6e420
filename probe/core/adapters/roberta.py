"""RoBERTa (``RobertaForMaskedLM``, ``RobertaModel``): BERT's blocks; positions offset by the padding index.

Hook names and meanings are BERT's (see ``probe.core.adapters.bert``). RoBERTa differs only outside the
blocks: position ids start at ``padding_idx + 1`` and padding tokens get ``padding_idx`` (HF derives
them from ``input_ids``, so right padding never shifts a real token's position), and the MLM head is
``lm_head`` (dense, GELU, ``layer_norm`` = ``ln_final.hook_normalized``, decoder).
"""

from __future__ import annotations

import torch

from probe.core.adapters.bert import BertAdapter


class RobertaAdapter(BertAdapter):
    family = "roberta"
    body_attr = "roberta"

    def __init__(self, hf, kind):
        super().__init__(hf, kind)
        # positions 0..padding_idx are never used by real tokens: 514 embeddings give 512 usable positions
        self.n_ctx = self.config.max_position_embeddings - (self.config.pad_token_id or 0) - 1

    def head_norm(self):
        return self.hf.lm_head.layer_norm if self.kind != "encoder" else None

    def mlm_transform(self):
        from transformers.activations import gelu  # what RobertaLMHead calls

        return self.hf.lm_head.dense, gelu, self.hf.lm_head.layer_norm

    def head(self, resid: torch.Tensor) -> torch.Tensor:
        if self.kind == "encoder":
            return super(BertAdapter, self).head(resid)
        return self.hf.lm_head(resid)  # masked, or RobertaForCausalLM (same head)
