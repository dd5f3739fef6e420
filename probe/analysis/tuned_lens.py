"""Tuned lens (Belrose et al. 2023): one learned affine translator per layer, for causal AND masked models.

The logit lens reads layer l as ``head(h_l)``; early layers read badly because their basis drifts. The
tuned lens reads ``head(h_l + A_l h_l + b_l)``, with A_l and b_l trained so that this matches the model's
own final distribution (KL(final || lens), averaged over positions), starting from the identity (A = 0,
b = 0: the logit lens). ``rank`` makes A_l low-rank (U_l V_l, V_l zero at the start) to keep files small.

Causal models are trained at every position but the start token (the next-token distribution). Masked models are trained at
[MASK] slots: each text gets 15% of its words masked (at least one), and the lens learns to read the
model's filler distribution there; other positions of an MLM carry no prediction worth matching.

A lens is tied to its model's weights: it records the model's name, shape and a fingerprint of its
embeddings, and reading another model with it is an error.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from probe.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from probe.core.model import Model
    from probe.core.run import Run

CONFIG = "lens.json"
WEIGHTS = "lens.safetensors"
STATE = "training.pt"  # optimizer, step and corpus position: a training run that stops resumes from here
MASK_SHARE = 0.15


def fingerprint(model: Model) -> str:
    """A short digest of the input embeddings: tells two checkpoints with the same name and shape apart."""
    import hashlib

    weight = model.hf.get_input_embeddings().weight
    sample = weight[: min(64, len(weight))].detach().double().cpu()
    return hashlib.sha256(sample.numpy().round(4).tobytes()).hexdigest()[:16]


class TunedLens(torch.nn.Module):
    """Per-layer translators ``h -> h + A_l h + b_l`` into the last layer's basis, read by the model's head.

    ``lens(resid, layer)`` -> logits [..., vocab]; ``lens.translate(resid, layer)`` -> [..., d_model].
    Layers 0 .. n_layers - 1 (the residual stream entering each block, as ``run.resid``); layer n_layers is
    the model's own output and needs no lens.
    """

    def __init__(self, model: Model, rank: int | None = None, meta: dict | None = None):
        super().__init__()
        d, n = model.d_model, model.n_layers
        if rank is not None and not 0 < rank < d:
            raise InputError(f"rank={rank} must be between 1 and d_model - 1 ({d - 1}), or None for full")
        self.model = model
        self.rank = rank
        self.bias = torch.nn.Parameter(torch.zeros(n, d))
        if rank is None:
            self.weight = torch.nn.Parameter(torch.zeros(n, d, d))
        else:
            self.down = torch.nn.Parameter(torch.randn(n, d, rank) / d**0.5)
            self.up = torch.nn.Parameter(torch.zeros(n, rank, d))
        self.meta = {
            "model": model.name,
            "kind": model.kind,
            "d_model": d,
            "n_layers": n,
            "vocab": model.vocab_size,
            "fingerprint": fingerprint(model),
            "rank": rank,
            "steps": 0,
            **(meta or {}),
        }
        self.to(model.device)

    def check(self, model: Model) -> None:
        """ProbeError unless this lens was trained for ``model``'s weights."""
        if model is not self.model:
            _check(self.meta, model)

    def _layer(self, layer: int) -> int:
        n = self.meta["n_layers"]
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n:
            raise InputError(
                f"layer {layer!r} is out of range for the tuned lens of {self.meta['model']}: 0 to {n - 1} "
                f"(layer {n} is the model's own output)"
            )
        return layer

    def translate(self, resid: torch.Tensor, layer: int) -> torch.Tensor:
        """The residual stream at ``layer`` carried into the last layer's basis: [..., d_model]."""
        layer = self._layer(layer)
        with _reading(resid):
            h = resid.to(self.bias.device, self.bias.dtype)
            if self.rank is None:
                delta = h @ self.weight[layer]
            else:
                delta = (h @ self.down[layer]) @ self.up[layer]
            return h + delta + self.bias[layer]

    def forward(self, resid: torch.Tensor, layer: int) -> torch.Tensor:
        """Logits [..., vocab]: the model's own head on the translated residual stream."""
        with _reading(resid):
            return self.model.adapter.head(self.translate(resid, layer).to(self.model.hf.dtype))

    def save(self, folder: str | Path) -> Path:
        """Write lens.json and lens.safetensors (fp16) into ``folder``; returns the folder."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(folder / WEIGHTS))
        (folder / CONFIG).write_text(json.dumps(self.meta, indent=1), encoding="utf-8")
        return folder

    def __repr__(self) -> str:
        m = self.meta
        rank = "full" if self.rank is None else f"rank {self.rank}"
        return f"TunedLens({m['model']}, {m['n_layers']} layers, {rank}, {m['steps']} steps)"


def _reading(resid: torch.Tensor):
    """No autograd for a run's stored (inference-mode) tensors: reading them needs no gradient."""
    return torch.no_grad() if resid.is_inference() else contextlib.nullcontext()


def _check(meta: dict, model: Model) -> None:
    shape = (model.d_model, model.n_layers, model.vocab_size)
    if shape != (meta["d_model"], meta["n_layers"], meta["vocab"]) or fingerprint(model) != meta["fingerprint"]:
        raise InputError(
            f"this tuned lens was trained for {meta['model']} ({meta['n_layers']} layers, d_model "
            f"{meta['d_model']}), not for {model.name}; load or train a lens for {model.name}"
        )


def shipped() -> list[str]:
    """The models probe ships a trained tuned lens for (``probe.load_lens(name)``)."""
    from probe.zoo import LENSES

    return sorted(p.parent.name for p in LENSES.glob(f"*/{CONFIG}"))


def shipped_lens(model: Model) -> TunedLens | None:
    """The shipped lens for ``model`` when there is one and it was trained on these very weights, else None."""
    from probe.zoo import LENSES

    folder = LENSES / model.name
    if model.kind == "encoder" or not (folder / CONFIG).is_file():
        return None
    try:
        return load_lens(folder, model)
    except InputError:  # same name, other weights (a fine-tuned copy, say)
        return None


def load_lens(name_or_folder: str | Path, model: Model | None = None) -> TunedLens:
    """A tuned lens: one probe ships ("smollm2-135m", "minilm-mlm"; ``shipped()`` lists them) or one saved
    by ``train_lens(out=...)`` / ``TunedLens.save``.

    Args:
        name_or_folder: a shipped lens's model name, or a lens's folder (lens.json and lens.safetensors).
        model: the model it reads; default: ``probe.load`` of the name the lens records. A model with other
            weights is an error.
    """
    from safetensors.torch import load_file

    from probe.zoo import LENSES

    folder = Path(name_or_folder)
    if not folder.is_dir() and (LENSES / str(name_or_folder) / CONFIG).is_file():
        folder = LENSES / str(name_or_folder)
    if not (folder / CONFIG).is_file() or not (folder / WEIGHTS).is_file():
        names = ", ".join(shipped()) or "none"
        raise InputError(
            f"{folder} holds no tuned lens ({CONFIG} and {WEIGHTS}) and is not a shipped one ({names}); "
            "train one with probe.train_lens"
        )
    meta = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    if model is None:
        from probe.core.model import load

        model = load(meta["model"])
    _check(meta, model)  # the stored shape and fingerprint against this model
    lens = TunedLens(model, rank=meta.get("rank"), meta={**meta, "model": model.name})
    state = load_file(str(folder / WEIGHTS))
    lens.load_state_dict({k: v.float() for k, v in state.items()})
    return lens


def _texts(corpus) -> list[str]:
    """A list of texts, any iterable of them, or a text file (one document per line) -> the non-blank texts."""
    if isinstance(corpus, (str, Path)):
        path = Path(corpus)
        if not path.is_file():
            raise InputError(f"corpus {str(corpus)!r} is not a file; pass a list of texts or a text file's path")
        docs = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        docs = [t for t in corpus if isinstance(t, str) and t.strip()]
    if not docs:
        raise InputError("the corpus has no text; pass a list of sentences or a text file")
    return docs


def _mask(model: Model, ids: torch.Tensor, mask: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Masked models: [MASK] 15% of each text's ordinary tokens (at least one); -> where to train [B, T]."""
    ordinary = _ordinary(model, ids, mask)
    pick = (torch.rand(ids.shape, generator=gen) < MASK_SHARE) & ordinary
    for row in range(len(ids)):  # at least one slot per text
        if not pick[row].any() and ordinary[row].any():
            choices = ordinary[row].nonzero()[:, 0]
            pick[row, choices[torch.randint(len(choices), (1,), generator=gen)]] = True
    ids[pick] = model.tokenizer.mask_token_id
    return pick


def _ordinary(model: Model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Causal models: every real position but special tokens (the start token is an attention sink whose
    residual stream is orders of magnitude larger; it predicts the first word from nothing)."""
    special = torch.tensor(model.tokenizer.all_special_ids)
    return mask.bool() & ~torch.isin(ids, special)


@contextlib.contextmanager
def _frozen(model: Model):
    """The model's trainable weights frozen inside, restored after (the user's model is not changed)."""
    trainable = [p for p in model.hf.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


def _batches(model: Model, docs: list[str], batch_size: int, max_length: int, start: int):
    """(position in the corpus, ids, mask) batches from ``start`` on, cycling; long texts are cut."""
    i = start
    while True:
        texts = [docs[(i + j) % len(docs)] for j in range(batch_size)]
        i += batch_size
        ids, mask = model.encode(texts, truncate=True)
        yield i, ids[:, :max_length], mask[:, :max_length]


def _read(model: Model, ids, mask):
    """(every layer's residual stream [n_layers, B, T, d], final log-probs [B, T, vocab]) of one batch."""
    from probe.core.forward import forward_capture
    from probe.core.names import LOGITS, act_name

    names = [act_name("resid_pre", layer) for layer in range(model.n_layers)] + [LOGITS]
    with torch.inference_mode():
        out = forward_capture(model.adapter, ids.to(model.device), mask.to(model.device), names)
        resid = torch.stack([out[n] for n in names[:-1]]).float()
        final = out[LOGITS].float().log_softmax(-1)
    return resid.clone(), final.clone()


def train_lens(
    model: Model,
    corpus,
    steps: int = 250,
    out: str | Path | None = None,
    rank: int | None = None,
    lr: float = 1e-3,
    batch_size: int = 8,
    max_length: int = 128,
    seed: int = 0,
    save_every: int = 50,
    layers_per_step: int | None = None,
) -> TunedLens:
    """Train a tuned lens on ``corpus``: KL(final || lens) at every layer, Adam, from the identity.

    Args:
        corpus: a list of texts, any iterable of them, or a text file (one document per line); it is
            cycled through ``batch_size`` texts a step, each cut to ``max_length`` tokens.
        steps: optimisation steps in all (a resumed run continues up to this count).
        out: a folder: the lens is saved there (and every ``save_every`` steps, with the optimizer state,
            so that calling again with the same ``out`` resumes where it stopped).
        rank: None for full d_model x d_model translators, or a low rank (smaller files).
        lr, seed: Adam's learning rate; the seed of the masked models' [MASK] choice (and layer choice).
        layers_per_step: train this many layers a step, drawn at random (each step's cost is one
            vocab-sized head per layer trained: deep models on a CPU); None: every layer every step.

    Returns:
        The trained ``TunedLens``; ``lens.meta`` has steps, the corpus position, and the last loss.
        Runs on the model's device (a GPU when the model is on one); a progress bar on a terminal.

    Example:
        >>> lens = probe.train_lens(gpt, ["The robot must not hurt the human.", ...], steps=100)
        >>> run.logit_lens(lens=lens)
    """
    from tqdm.auto import tqdm

    from probe import _validate as check

    steps = check.integer(steps, "steps", minimum=1)
    batch_size = check.integer(batch_size, "batch_size", minimum=1)
    max_length = check.integer(max_length, "max_length", minimum=2)
    if model.kind == "encoder":
        raise InputError(f"{model.name} has no language-model head, so there is no distribution to match")
    docs = _texts(corpus)
    lens = TunedLens(model, rank=rank)
    optimizer = torch.optim.Adam(lens.parameters(), lr=lr)
    done, position = 0, 0
    out = Path(out) if out is not None else None
    if out is not None and (out / STATE).is_file():
        state = torch.load(out / STATE, map_location=model.device, weights_only=True)
        if state["meta"]["fingerprint"] != lens.meta["fingerprint"] or state["meta"].get("rank") != rank:
            raise InputError(f"{out} holds a lens training run for another model or rank; pass another out folder")
        lens.load_state_dict(state["lens"])
        optimizer.load_state_dict(state["optimizer"])
        done, position = state["step"], state["position"]
    gen = torch.Generator().manual_seed(seed + done)
    with _frozen(model):  # no gradient into the model's own weights; as they were afterwards
        batches = _batches(model, docs, batch_size, max_length, position)
        bar = tqdm(total=steps, initial=done, desc="tuned lens", disable=not sys.stderr.isatty(), leave=False)
        loss_value = None
        while done < steps:
            position, ids, mask = next(batches)
            where = _mask(model, ids, mask, gen) if model.kind == "masked" else _ordinary(model, ids, mask)
            resid, final = _read(model, ids, mask)
            where = where.to(model.device)
            target = final[where]  # [rows, vocab] log-probs
            optimizer.zero_grad()
            total = 0.0
            layers = range(model.n_layers)
            if layers_per_step is not None and layers_per_step < model.n_layers:
                layers = torch.randperm(model.n_layers, generator=gen)[:layers_per_step].tolist()
            for layer in layers:  # one layer's graph at a time: the head is vocab-sized
                logp = lens(resid[layer][where], layer).float().log_softmax(-1)
                loss = torch.nn.functional.kl_div(logp, target, log_target=True, reduction="batchmean")
                (loss / len(layers)).backward()
                total += float(loss.detach()) / len(layers)
            optimizer.step()
            done += 1
            loss_value = total
            bar.update(1)
            bar.set_postfix(kl=f"{total:.3f}")
            if out is not None and (done % save_every == 0 or done == steps):
                lens.meta.update(steps=done, position=position, loss=loss_value)
                lens.save(out)
                state = {"lens": lens.state_dict(), "optimizer": optimizer.state_dict(), "step": done}
                torch.save(state | {"position": position, "meta": lens.meta}, out / STATE)
        bar.close()
    lens.meta.update(steps=done, position=position, loss=loss_value)
    return lens


def lens_kl(model: Model, texts: list[str], lens: TunedLens | None = None) -> pd.DataFrame:
    """Held-out check: KL(final || logit lens) and KL(final || tuned lens) per layer, averaged over the
    positions a lens is trained at (causal: every token; masked: 15% [MASK] slots, seed 0).

    Returns:
        DataFrame [layer, logit_lens, tuned_lens] (nats); tuned_lens is NaN without ``lens``.
    """
    import pandas as pd

    docs = _texts(texts)
    if lens is not None:
        lens.check(model)
    ids, mask = model.encode(docs, truncate=True)
    gen = torch.Generator().manual_seed(0)
    where = _mask(model, ids, mask, gen) if model.kind == "masked" else _ordinary(model, ids, mask)
    resid, final = _read(model, ids, mask)
    where = where.to(model.device)
    target = final[where]
    frame = pd.DataFrame(_layer_kls(model, lambda layer: resid[layer][where], target, lens))
    frame.attrs.update(model=model.name, texts=len(docs), positions=int(where.sum()))
    return frame


def lens_kl_at(run: Run, lens: TunedLens | None = None, position: int | None = None, index: int = 0) -> pd.DataFrame:
    """KL(final || logit lens) and KL(final || tuned lens) per layer at one position of ``run`` (default its
    slot: the last token, or the [MASK]): how far each layer's reading of that token is from the output.

    Returns:
        DataFrame [layer, logit_lens, tuned_lens] (nats; tuned_lens NaN without ``lens``). ``.attrs``: model,
        position, token, lens ("tuned" or None).
    """
    import pandas as pd

    model = run.model
    if model.kind == "encoder":
        raise InputError(f"{model.name} has no language-model head, so its layers have no reading to compare")
    if lens is not None:
        lens.check(model)
    pos = run.position_of(position, index)
    final = run.logits_at(pos, index).float().log_softmax(-1)[None].to(model.device)
    frame = pd.DataFrame(
        _layer_kls(model, lambda layer: run.resid(layer)[index, pos][None].to(model.device), final, lens)
    )
    token = run.token_strs(index)[pos]
    frame.attrs.update(model=model.name, position=pos, token=token, lens="tuned" if lens is not None else None)
    return frame


def _layer_kls(model: Model, rows, target: torch.Tensor, lens: TunedLens | None) -> list[dict]:
    """Per layer, KL(target || logit lens) and KL(target || tuned lens; NaN without ``lens``) over the
    residual rows ``rows(layer)`` [rows, d_model] read against ``target`` [rows, vocab] log-probabilities."""
    out = []
    with torch.inference_mode():
        for layer in range(model.n_layers):
            h = rows(layer)
            row = {"layer": layer, "logit_lens": float(_kl(target, model.adapter.head(h).float().log_softmax(-1)))}
            tuned = _kl(target, lens(h, layer).float().log_softmax(-1)) if lens is not None else float("nan")
            out.append({**row, "tuned_lens": float(tuned)})
    return out


def _kl(target: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """Mean over rows of KL(target || logp), both log-probabilities [rows, vocab]."""
    return torch.nn.functional.kl_div(logp, target, log_target=True, reduction="batchmean")
