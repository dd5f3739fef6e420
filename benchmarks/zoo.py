"""Bundled demo models: size on disk, load time, and the held-out quality recorded in their cards.

Targets (issue #3): both models and the tokenizer <= 30 MB; each loads in < 2 s on 2 CPU cores.

    python benchmarks/zoo.py [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import probe
from probe.core.loading import BUNDLED, bundled_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    probe.load(BUNDLED[0])  # warm-up: imports and file cache, which a user pays once per process
    total = 0
    print(f"| {'model':<10} | {'MB':>5} | {'load s (median)':>15} | held-out quality (card) |")
    print(f"|{'-' * 12}|{'-' * 7}|{'-' * 17}|{'-' * 25}|")
    for name in BUNDLED:
        folder = bundled_path(name)
        size = sum(f.stat().st_size for f in folder.iterdir())
        total += size
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            probe.load(name)
            times.append(time.perf_counter() - t0)
        e = json.loads((folder / "probe_card.json").read_text())["eval"]
        if name == "tiny-gpt":
            quality = f"ppl {e['gpt_ppl']:.1f} (unigram {e['unigram_ppl']:.0f}, bigram {e['bigram_ppl']:.0f})"
        else:
            quality = f"top-1 {e['bert_masked_top1']:.1%}, top-5 {e['bert_masked_top5']:.1%} (unigram {e['unigram_masked_top1']:.1%}/{e['unigram_masked_top5']:.1%})"
        print(f"| {name:<10} | {size / 2**20:5.1f} | {statistics.median(times):15.2f} | {quality} |")
    print(f"\ntotal {total / 2**20:.1f} MB (target <= 30 MB): {'OK' if total <= 30 * 2**20 else 'MISSED'}")


if __name__ == "__main__":
    main()
