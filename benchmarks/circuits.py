"""What do the circuit tools cost? probe vs TransformerLens 4.3 on the same weights, in one process.

A GPT-2-small-shaped model with random weights (12 layers, d_model 768, 12 heads, vocab 50257) and a
clean/corrupted pair of ``--seq`` tokens differing in one token; metric: a logit difference at the end.

- forward:        ``model.run(ids, hooks=["logits"])``, one text: the unit of the ratios;
- probe AtP:      ``probe.attribution_patching(over="heads")``: two forwards and one backward;
- TL AtP:         ``transformer_lens.tools.analysis.attribution_patch`` (node scores) on the bridge;
- probe exact:    ``probe.patching(over="heads")``: every head patched, one batched run per layer;
- TL exact:       ``transformer_lens.patching.get_act_patch_attn_head_out_all_pos``: one run per head;
- probe DLA:      ``probe.dla(unit="head")``: one forward plus the read-out algebra;
- probe EAP:      ``probe.attribution_patching(over="edges")``: every sender -> receiver edge (not a target);
- TL EAP:         ``attribution_patch`` with ``EdgeAttributionConfig(granularity="edge")``.

Targets (issue #16): AtP <= 3.5x forward and <= TL AtP; exact <= 0.6x TL exact; DLA <= 1.5x forward.
Prints medians (the cases take turns in every repetition) and says its thread count.

    python benchmarks/circuits.py [--seq 32] [--reps 3] [--no-tl]
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capture import interleaved  # noqa: E402  (the benchmarks share their timing loop)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-tl", action="store_true", help="skip TransformerLens (if not installed)")
    args = ap.parse_args()

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    import probe
    from probe.analysis.reading import read_text

    torch.manual_seed(0)
    cfg = GPT2Config()
    folder = tempfile.mkdtemp()
    GPT2LMHeadModel(cfg).eval().save_pretrained(folder)
    vocab = {f"t{i}": i for i in range(cfg.vocab_size)}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="t0", bos_token="t0").save_pretrained(folder)
    model = probe.load(folder)
    words = [f"t{i}" for i in torch.randint(1, cfg.vocab_size, (args.seq,)).tolist()]
    clean = " ".join(words)
    bad = " ".join(words[:3] + ["t7"] + words[4:])
    metric = ("logit_diff", "t1", "t2")
    clean_ids, bad_ids = read_text(model, clean).ids, read_text(model, bad).ids

    cases = {
        "forward": lambda: model.run(clean_ids, hooks=["logits"]),
        "probe AtP (heads)": lambda: probe.attribution_patching(model, clean, bad, metric, over="heads"),
        "probe exact (heads)": lambda: probe.patching(model, clean, bad, metric, over="heads"),
        "probe DLA (heads)": lambda: probe.dla(model, clean, "t1", contrast="t2", unit="head"),
        "probe EAP (edges)": lambda: probe.attribution_patching(model, clean, bad, metric, over="edges"),
    }
    if not args.no_tl:
        from transformer_lens import patching as tl_patching
        from transformer_lens.model_bridge import TransformerBridge
        from transformer_lens.tools.analysis import attribution_patching as tl_atp

        bridge = TransformerBridge.boot_transformers(
            folder, hf_model=copy.deepcopy(model.hf), tokenizer=model.tokenizer
        )

        def tl_metric(logits):
            last = logits.reshape(-1, logits.shape[-1])[-1]
            return last[1] - last[2]

        def tl_exact():
            with torch.no_grad():
                _, cache = bridge.run_with_cache(clean_ids)
                return tl_patching.get_act_patch_attn_head_out_all_pos(bridge, bad_ids, cache, tl_metric)

        cases["TL AtP (heads)"] = lambda: tl_atp.attribution_patch(bridge, clean_ids, bad_ids, tl_metric)
        cases["TL exact (heads)"] = tl_exact
        edges = tl_atp.EdgeAttributionConfig(granularity="edge")
        cases["TL EAP (edges)"] = lambda: tl_atp.attribution_patch(bridge, clean_ids, bad_ids, tl_metric, edges)
    times = interleaved(cases, args.reps, lambda: None, clock=time.process_time)
    base = times["forward"]
    print(
        f"GPT-2-small shape, random weights, one pair of {clean_ids.shape[1]} tokens, cpu, "
        f"{torch.get_num_threads()} threads, median of {args.reps}, cpu clock"
    )
    print(f"| {'case':<22} | {'median s':>9} | {'x forward':>9} |")
    print(f"|{'-' * 24}|{'-' * 11}|{'-' * 11}|")
    for name, t in times.items():
        print(f"| {name:<22} | {t:>9.3f} | {t / base:>9.2f} |")
    atp, dla = times["probe AtP (heads)"] / base, times["probe DLA (heads)"] / base
    line = f"\ntargets: AtP <= 3.5x forward: {atp:.2f} {'OK' if atp <= 3.5 else 'MISSED'}"
    line += f"; DLA <= 1.5x forward: {dla:.2f} {'OK' if dla <= 1.5 else 'MISSED'}"
    if not args.no_tl:
        r = times["probe AtP (heads)"] / times["TL AtP (heads)"]
        line += f"; AtP <= TL AtP: {r:.2f}x {'OK' if r <= 1 else 'MISSED'}"
        r = times["probe exact (heads)"] / times["TL exact (heads)"]
        line += f"; exact <= 0.6x TL exact: {r:.2f} {'OK' if r <= 0.6 else 'MISSED'}"
        line += f"\n(no target) EAP edges, probe / TL: {times['probe EAP (edges)'] / times['TL EAP (edges)']:.2f}x"
    print(line)


if __name__ == "__main__":
    main()
