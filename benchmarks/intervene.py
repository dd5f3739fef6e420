"""What does patching cost? A run without a patch, with an identity patch, and the unpatched HF model.

A GPT-2-small-shaped model with random weights (12 layers, d_model 768, vocab 50257) runs one token
batch, always returning logits:

- HF forward:          ``GPT2LMHeadModel`` itself, no hooks — the unpatched baseline;
- probe, no patch:     ``model.run(ids, hooks=["logits"])`` — the capture path as before;
- probe, identity fn:  + ``patch={"blocks.6.hook_resid_pre": lambda v, ctx: v}`` (clone + call + write back);
- probe, tensor patch: + ``patch={"blocks.6.hook_resid_pre": cached}`` (a stored activation);
- probe, 12 head fns:  + an identity edit of every layer's ``attn.hook_z`` (the head split: unflatten,
  clone, flatten back);
- TL run_with_hooks:   TransformerLens 4 bridge with the same identity hook on ``blocks.6.hook_resid_pre``.

Prints medians and ratios measured in this one process (the cases take turns in every repetition). Target: no patch <= 1.05x HF (the fast path
pays nothing for the write machinery).

    python benchmarks/intervene.py [--batch 4] [--seq 128] [--reps 7] [--device cpu|cuda] [--no-tl]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def timed_all(cases: dict, reps: int, sync) -> dict[str, float]:
    """Median seconds per case; cases take turns within each repetition, so a busy machine slows all alike."""
    for fn in cases.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-tl", action="store_true", help="skip TransformerLens")
    args = ap.parse_args()

    from tokenizers import Tokenizer, models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    import probe

    torch.manual_seed(0)
    cfg = GPT2Config()
    folder = tempfile.mkdtemp()
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    vocab = {f"t{i}": i for i in range(cfg.vocab_size)}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")), eos_token="t0")
    tok.save_pretrained(folder)
    model = probe.load(folder, device=args.device)
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=args.device)
    mask = torch.ones_like(ids)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    hook = "blocks.6.hook_resid_pre"
    cached = model.run(ids, hooks=[hook])[hook]
    heads = {f"blocks.{i}.attn.hook_z": (lambda v, ctx: v) for i in range(cfg.n_layer)}

    def hf():
        with torch.inference_mode():
            model.hf(input_ids=ids, attention_mask=mask, use_cache=False)

    cases = {
        "HF forward (unpatched)": hf,
        "probe run, no patch": lambda: model.run(ids, hooks=["logits"]),
        "probe run, identity fn": lambda: model.run(ids, hooks=["logits"], patch={hook: lambda v, ctx: v}),
        "probe run, tensor patch": lambda: model.run(ids, hooks=["logits"], patch={hook: cached}),
        "probe run, 12 head fns": lambda: model.run(ids, hooks=["logits"], patch=heads),
    }
    if not args.no_tl:
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(
            folder, hf_model=GPT2LMHeadModel.from_pretrained(folder).to(args.device), tokenizer=tok
        )

        def tl():
            with torch.inference_mode():
                bridge.run_with_hooks(ids, fwd_hooks=[(hook, lambda v, hook: v)])

        cases["TL bridge run_with_hooks"] = tl

    results = timed_all(cases, args.reps, sync)
    base = results["HF forward (unpatched)"]
    plain = results["probe run, no patch"]
    print(
        f"GPT-2-small shape, random weights, batch {args.batch} x {args.seq} tokens, {args.device}, "
        f"{torch.get_num_threads()} threads, median of {args.reps}"
    )
    print(f"| {'case':<26} | {'median ms':>9} | {'x HF':>6} | {'x no patch':>10} |")
    print(f"|{'-' * 28}|{'-' * 11}|{'-' * 8}|{'-' * 12}|")
    for name, t in results.items():
        print(f"| {name:<26} | {t * 1e3:9.1f} | {t / base:6.2f} | {t / plain:10.2f} |")
    ratio = plain / base
    print(f"\ntarget: no patch <= 1.05x HF forward: {ratio:.2f} {'OK' if ratio <= 1.05 else 'MISSED'}")


if __name__ == "__main__":
    main()
