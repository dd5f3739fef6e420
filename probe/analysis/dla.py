"""Direct logit attribution: how much each component writes the target's logit (or target − contrast) itself.

The residual stream at the predicted position is a sum of what the embeddings, every attention layer
(every head) and every MLP (every neuron) wrote into it. What the model reads off it is linear once the
norms' scales are frozen at their values in this run (TransformerLens's convention; its folded norm
weight), so each write has an exact share of the logit difference:

    attribution(write) = write · e,   e = the target − contrast unembedding direction, carried back
                                      through every frozen norm between the write and the output.

``constant`` is what no component writes: the unembedding bias and the norms' biases (carried the same
way). ``attribution.sum() + constant`` equals the model's own logit difference up to float error; probe
checks it on every call and refuses an architecture where it does not hold.

- **Pre-LN models** (GPT-2, GPT-Neo, GPT-NeoX, LLaMA/SmolLM2, OPT-pre-LN): the writes reach the final norm
  unchanged; ``e`` is ``w ⊙ (W_U[target] − W_U[contrast]) / scale``, centred for LayerNorm (not for RMSNorm).
- **Post-LN masked models** (BERT, RoBERTa, DistilBERT) normalise after every sublayer: ``e`` is carried
  back through each frozen LayerNorm (the transpose of ``v ↦ centre(v) ⊙ w / scale``), so a write of
  layer 0 is read through every later norm. The MLM head's transform (dense → GELU → LayerNorm) is
  linearised at this run's own pre-activation ``z`` by the ratio ``gelu(z) / z``: each component keeps its
  share of ``z`` in ``gelu(z)``, which keeps the sum exact (a first-order Taylor step at ``z`` would not);
  ``.attrs["error"]`` reports what remains, float error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from probe import _validate as check
from probe.core import readout
from probe.core.names import LOGITS, act_name
from probe.errors import InputError, NoHeadError, ProbeError

if TYPE_CHECKING:
    import pandas as pd

    from probe.analysis.reading import Reading
    from probe.core.model import Model
    from probe.core.run import Run

UNITS = ("component", "layer", "head", "neuron")
COLUMNS = ["component", "layer", "head", "neuron", "attribution"]
TOLERANCE = 1e-3  # |sum + constant - logit_diff| allowed, relative to max(1, |logit_diff|)


def dla(
    model: Model,
    text: str | Reading,
    target: str | int,
    contrast: str | int | None = None,
    unit: str = "component",
    position: int | None = None,
    k: int = 10,
) -> pd.DataFrame:
    """Direct logit attribution of ``target`` (minus ``contrast``) at one position (see the module docstring).

    Args:
        model: a causal or masked LM (an encoder has no logits to attribute).
        text: the text, read as everywhere (a masked model's [MASK] slot, a causal model's text left of
            [MASK] or the whole text); or a ``Reading``.
        target, contrast: one token each (a word such as " not", or an id); contrast None attributes the
            target's logit alone.
        unit: "component" (embed, pos_embed, {l}_attn_out, {l}_mlp_out), "layer" (embeddings, then each
            block's attention + MLP as L{l}), "head" (each head L{l}H{h}, the attention output bias as
            {l}_attn_bias, the MLPs and embeddings as in "component"), "neuron" (the ``k`` neurons of every
            layer with the largest |attribution|: post · W_out · e, as L{l}N{n}).
        position: where to attribute (default: the slot: a masked model's mask token, a causal model's
            last token); negative counts from the end.

    Returns:
        DataFrame [component, layer, head, neuron, attribution]; labels as TransformerLens's ("embed",
        "pos_embed", "0_attn_out", "0_mlp_out", "L0H3"); layer/head/neuron are <NA> where they do not apply.
        ``.attrs``: logit_diff (the model's own logit difference there), constant (see above), error
        (|sum + constant − logit_diff|; not for unit="neuron", which keeps the top neurons only), target,
        contrast, token ids, position, the token there, unit, model and reading.

    Example:
        >>> frame = probe.dla(gpt, "The robot must [MASK] hurt", " not", contrast=" also", unit="head")
        >>> frame.sort_values("attribution").tail()
    """
    import pandas as pd

    from probe.analysis.lens import target_id
    from probe.analysis.reading import Reading, read_text

    if unit not in UNITS:
        raise InputError(f"unit {unit!r} is not one of {', '.join(UNITS)}")
    if model.kind == "encoder":
        raise NoHeadError(f"{model.name} is an encoder without a language-model head: it has no logits to attribute")
    k = check.integer(k, "k", minimum=1)
    reading = text if isinstance(text, Reading) else read_text(model, text)
    n_pos = reading.ids.shape[1]
    pos = reading.position if position is None else check.index(position, "position", n_pos, what="positions are")
    if target is None:
        raise InputError("dla needs a target: the token whose logit to split, e.g. target=' not'")
    t = target_id(model, target)
    u = target_id(model, contrast, "contrast") if contrast is not None else None
    if u == t:
        raise InputError(f"contrast {contrast!r} is the same token as target {target!r}; pick another contrast")

    plan = _Plan(model)
    run = reading.run(plan.hooks(unit))
    at = _At(run, pos)
    logits = run[LOGITS][0, pos].double()
    logit_diff = float(logits[t] - (logits[u] if u is not None else 0))
    e, constant = plan.readout(at, t, u)
    rows, constant = plan.walk(at, e, constant, unit, k)
    if unit == "neuron":  # the neurons alone; the other writes are unit="component"'s rows
        rows = [r for r in rows if r["neuron"] is not None]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("layer", "head", "neuron"):
        frame[col] = frame[col].astype("Int64")
    total = float(frame["attribution"].sum()) + constant
    error = abs(total - logit_diff)
    if unit != "neuron" and error > TOLERANCE * max(1.0, abs(logit_diff)):
        raise ProbeError(
            f"direct logit attribution does not add up on {model.name} ({model.adapter.family}): the parts sum to "
            f"{total:.4f}, the model's logit difference is {logit_diff:.4f}; this architecture's read-out is not "
            "one dla can decompose"
        )
    frame.attrs.update(
        model=model.name,
        unit=unit,
        target=model.to_str_tokens([t])[0],
        target_id=t,
        contrast=model.to_str_tokens([u])[0] if u is not None else None,
        contrast_id=u,
        position=pos,
        token=reading.tokens[pos],
        logit_diff=logit_diff,
        constant=constant,
        error=error if unit != "neuron" else None,
        reading=reading.attrs(),
    )
    return frame


# -- the plan: which writes, which norms, in which order ---------------------------------------------
@dataclass
class _At:
    """A run's values at one position, as float64 vectors."""

    run: Run
    pos: int

    def __call__(self, name: str) -> torch.Tensor:
        return self.run[name][0, self.pos].double()


class _Plan:
    def __init__(self, model: Model):
        self.model = model
        self.adapter = model.adapter
        self.n = model.n_layers
        self.post_ln = self.adapter.block_form == "post_ln"
        names = set(model.hook_names)
        if model.kind == "causal" and (self.post_ln or "ln_final.hook_normalized" not in names):
            raise ProbeError(
                f"{model.name} ({self.adapter.family}, {self.adapter.block_form}) has no final norm before its "
                "unembedding, so no frozen read-out to split; dla reads pre-LN causal and post-LN masked models"
            )
        if self.post_ln:
            self.embed_parts = [
                p for p in ("embed.hook_out", "hook_pos_embed", "token_type_embed.hook_out") if p in names
            ]
        else:
            self.embed_parts = [p for p in ("hook_embed", "hook_pos_embed") if p in names]

    def hooks(self, unit: str) -> list[str]:
        n = self.n
        hooks = [*self.embed_parts, act_name("resid_pre", 0), act_name("resid_post", n - 1), LOGITS]
        for i in range(n):
            hooks.append(f"blocks.{i}.attn.o.hook_out" if self.post_ln else act_name("attn_out", i))
            hooks.append(act_name("mlp_out", i))
            if self.post_ln:
                hooks += [f"blocks.{i}.ln1.hook_in", act_name("resid_mid", i)]
            if unit == "head":
                hooks.append(act_name("z", i))
            if unit == "neuron":
                hooks.append(act_name("post", i))
        return hooks

    # -- the read-out: the direction in the last residual stream, and the head's constant -------------
    def readout(self, at: _At, t: int, u: int | None) -> tuple[torch.Tensor, float]:
        return readout.final_direction(self.adapter, at(act_name("resid_post", self.n - 1)), t, u)

    # -- the walk: from the last layer back to the embeddings, carrying e through post-LN norms --------
    def walk(self, at: _At, e: torch.Tensor, constant: float, unit: str, k: int) -> tuple[list[dict], float]:
        blocks: list[list[dict]] = []
        for i in reversed(range(self.n)):
            if self.post_ln:
                mid = act_name("resid_mid", i)
                e, from_bias = readout.back_through_norm(self.adapter, mid, at(mid), e)
                constant += from_bias
            mlp = self._mlp(at, e, i, unit, k)
            if self.post_ln:
                ln1 = f"blocks.{i}.ln1.hook_in"
                e, from_bias = readout.back_through_norm(self.adapter, ln1, at(ln1), e)
                constant += from_bias
            attn = self._attn(at, e, i, unit)
            if unit == "layer":
                blocks.append([_row(f"L{i}", i, value=sum(r["attribution"] for r in attn + mlp))])
            else:
                blocks.append(attn + mlp)
        embeds = self._embeds(at)
        if self.post_ln:  # the embeddings' LayerNorm, frozen at the sum of its parts
            e, from_bias = readout.back_through_norm(self.adapter, "hook_embed", sum(embeds.values()), e)
            constant += from_bias
        rows = [_row(label, value=float(v @ e)) for label, v in embeds.items()]
        return rows + [r for block in reversed(blocks) for r in block], constant

    def _embeds(self, at: _At) -> dict[str, torch.Tensor]:
        labels = {"hook_embed": "embed", "embed.hook_out": "embed", "hook_pos_embed": "pos_embed"}
        labels["token_type_embed.hook_out"] = "token_type_embed"
        parts = {labels[p]: at(p) for p in self.embed_parts}
        if not self.post_ln:  # pre-LN: the parts must make block 0's input, else it is taken whole
            whole = at(act_name("resid_pre", 0))
            if not parts or not torch.allclose(sum(parts.values()), whole, atol=1e-5, rtol=1e-4):
                parts = {"embed": whole}
        return parts

    def _attn(self, at: _At, e: torch.Tensor, i: int, unit: str) -> list[dict]:
        if unit != "head":
            name = f"blocks.{i}.attn.o.hook_out" if self.post_ln else act_name("attn_out", i)
            return [_row(f"{i}_attn_out", i, value=float(at(name) @ e))]
        z = at(act_name("z", i))  # [head, d_head]
        read, bias = readout.transpose(self.adapter, act_name("z", i), e, z.numel())
        read = read.view_as(z)
        # each head's value bias reaches z whatever the head attends to (a pattern sums to 1): like
        # TransformerLens (fold_value_biases) it counts with the output bias, not with the head
        b_v = readout.value_bias(self.adapter, i, z.shape)
        per_head = ((z - b_v) * read).sum(-1)
        bias += float((b_v * read).sum())
        rows = [_row(f"L{i}H{h}", i, head=h, value=float(v)) for h, v in enumerate(per_head)]
        return rows + [_row(f"{i}_attn_bias", i, value=bias)]

    def _mlp(self, at: _At, e: torch.Tensor, i: int, unit: str, k: int) -> list[dict]:
        if unit != "neuron":
            return [_row(f"{i}_mlp_out", i, value=float(at(act_name("mlp_out", i)) @ e))]
        post = at(act_name("post", i))
        read, _ = readout.transpose(self.adapter, act_name("post", i), e, post.numel())
        per_neuron = post * read
        top = per_neuron.abs().topk(min(k, per_neuron.numel())).indices
        return [_row(f"L{i}N{int(n)}", i, neuron=int(n), value=float(per_neuron[n])) for n in top]


def _row(component: str, layer: int | None = None, head: int | None = None, neuron: int | None = None, *, value: Any):
    return {"component": component, "layer": layer, "head": head, "neuron": neuron, "attribution": float(value)}
