"""How much better does the tuned lens read each layer than the logit lens? And how the shipped lenses are made.

For each model with a shipped lens (``probe/zoo/lenses``), KL(final || logit lens) and KL(final || tuned
lens) per layer on held-out text (causal: every position but the start token; masked: 15% [MASK] slots),
in nats, and their ratio. Target (issue #18): tuned < logit at every layer but the last.

The corpus is text SmolLM2-135M writes itself from varied openings (sampled, temperature 0.9, top-p 0.95;
nothing can be downloaded here): fluent English on many topics. Held-out text comes from other openings
and another seed.

    python benchmarks/lens.py                      # the table, for every shipped lens
    python benchmarks/lens.py --train minilm-mlm   # (re)build one shipped lens (--corpus caches the text)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

# name -> train_lens arguments; budget <= 12 MB together in fp16 (MiniLM full: 1.8 MB; SmolLM2 rank 64: 4.5 MB)
RECIPES = {
    "minilm-mlm": {"rank": None, "steps": 400, "lr": 2e-3},
    "smollm2-135m": {"rank": 64, "steps": 400, "lr": 2e-3, "layers_per_step": 6, "batch_size": 4, "max_length": 64},
}
OPENINGS = (
    "The history of the city begins", "In the kitchen, my grandmother", "Scientists have found that",
    "The best way to learn a language is", "When the war ended,", "Our company was founded in",
    "The river flows through", "He opened the letter and", "A good night's sleep", "The football match",
    "In mathematics, a prime number", "The museum's new exhibition", "She was born in a small village",
    "The recipe calls for", "Climate change affects", "The old man walked", "Computers work by",
    "The children ran to the", "According to the report,", "The king ordered his soldiers",
    "Music has always been", "The first step in planting a garden", "Doctors recommend",
    "The train was late, so", "On the island there were", "The law was passed in", "My favourite book",
    "The engine of a car", "During the summer holidays,", "The election results showed",
    "Birds migrate because", "The painting shows", "In the morning, the market", "The students asked the teacher",
    "The storm destroyed", "Ancient Rome was", "The new phone has", "Volcanoes form when",
    "The detective looked at", "Water boils at",
)  # fmt: skip
HELD_OUT_OPENINGS = (
    "The village school had", "Yesterday the council decided", "The robot must not hurt the human because",
    "Most people believe that", "The ship sailed across", "In the laboratory, the team",
    "The farmer planted", "Her brother told her that",
)  # fmt: skip


def corpus(openings=OPENINGS, per_opening: int = 12, new_tokens: int = 96, seed: int = 0) -> list[str]:
    """Texts SmolLM2-135M writes from ``openings`` (sampled; reproducible with ``seed``), one per line."""
    from probe.core.model import load

    model = load("smollm2-135m")
    tok = model.tokenizer
    torch.manual_seed(seed)
    texts = []
    for opening in openings:
        ids, mask = model.encode([opening] * per_opening)
        with torch.inference_mode():
            out = model.hf.generate(
                input_ids=ids.to(model.device),
                attention_mask=mask.to(model.device),
                do_sample=True,
                temperature=0.9,
                top_p=0.95,
                max_new_tokens=new_tokens,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            )
        texts += [" ".join(tok.decode(row, skip_special_tokens=True).split()) for row in out]
    return [t for t in texts if t]


def held_out(cache: Path | None) -> list[str]:
    if cache is not None and cache.is_file():
        return cache.read_text(encoding="utf-8").splitlines()
    texts = corpus(HELD_OUT_OPENINGS, per_opening=4, seed=1)
    if cache is not None:
        cache.write_text("\n".join(texts), encoding="utf-8")
    return texts


def train(name: str, corpus_file: Path | None, held_file: Path | None, steps: int | None) -> None:
    from probe.analysis.tuned_lens import lens_kl, train_lens
    from probe.core.model import load
    from probe.zoo import LENSES

    if corpus_file is not None and corpus_file.is_file():
        docs = corpus_file.read_text(encoding="utf-8").splitlines()
    else:
        docs = corpus()
        if corpus_file is not None:
            corpus_file.write_text("\n".join(docs), encoding="utf-8")
    recipe = dict(RECIPES[name]) | ({"steps": steps} if steps else {})
    model = load(name)
    out = LENSES / name
    lens = train_lens(model, docs, out=out, **recipe)
    frame = lens_kl(model, held_out(held_file), lens)
    meta = json.loads((out / "lens.json").read_text(encoding="utf-8"))
    meta.update(corpus=f"{len(docs)} texts SmolLM2-135M wrote (benchmarks/lens.py)", held_out_kl=frame.to_dict("list"))
    (out / "lens.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    (out / "training.pt").unlink(missing_ok=True)  # the optimizer state is not shipped
    print(frame.to_string(index=False))


def table(held_file: Path | None) -> None:
    from probe.analysis.tuned_lens import lens_kl, load_lens, shipped
    from probe.core.model import load
    from probe.zoo import LENSES

    texts = held_out(held_file)
    print(f"threads: {torch.get_num_threads()}; held-out texts: {len(texts)}")
    for name in shipped():
        model = load(name)
        lens = load_lens(name, model)
        frame = lens_kl(model, texts, lens)
        frame["ratio"] = frame["tuned_lens"] / frame["logit_lens"]
        size = sum(p.stat().st_size for p in (LENSES / name).glob("*") if p.is_file())
        print(f"\n{name} ({lens}; {size / 1e6:.2f} MB on disk; {frame.attrs['positions']} held-out positions)")
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        better = (frame["tuned_lens"] < frame["logit_lens"]).all()
        print(f"tuned < logit at every layer: {'yes' if better else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", choices=sorted(RECIPES), default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--corpus", type=Path, default=None, help="the training corpus, cached here")
    parser.add_argument("--held-out", type=Path, default=None, help="the held-out texts, cached here")
    args = parser.parse_args()
    if args.train:
        train(args.train, args.corpus, args.held_out, args.steps)
    else:
        table(args.held_out)


if __name__ == "__main__":
    main()
