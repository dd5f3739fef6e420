"""How much does capturing cost? probe vs the bare transformer, TransformerLens and HF, in one process.

A GPT-2-small-shaped model with random weights (same FLOPs as the real one: 12 layers, d_model 768,
12 heads, vocab 50257) runs the same token batch through:

- body:         the bare transformer (``GPT2Model``; no LM head, no capture) — the floor;
- body, eager:  the same with the eager attention kernel, which patterns need (sdpa returns none): the
                floor for "probe every", so every / eager body is the part that is probe's own;
- probe all:    probe capturing all 12 ``hook_resid_post``;
- probe L2:     probe capturing ``blocks.2.hook_resid_post`` only (the forward stops after block 2);
- probe every:  probe capturing every hook of the body (resid, attn/mlp out, q/k/v/z, patterns, neurons);
- TL cache:     TransformerLens 4 bridge ``run_with_cache(names_filter=<the 12 resid_post>)``;
- TL full:      the bridge's ``run_with_cache()`` with no filter (every hook it has);
- nnsight all:  nnsight 0.8 ``trace`` on the same body saving all 12 block outputs;
- nnsight L2:   the same saving block 2's output, then ``tracer.stop()``;
- HF hidden:    ``GPT2LMHeadModel(..., output_hidden_states=True)``.

Prints medians and ratios. Targets (issue #2): probe all <= 1.10x body and <= 0.80x TL cache;
probe L2 <= 0.35x body. Issue #12: probe every <= 0.75x TL full cache, probe all <= 1.03x body.
Issue #15: probe every <= 1.35x body (8x128) and <= 1.3x (1x16); probe all and L2 at or below
nnsight's in the same run. TL and nnsight rows need the benchmark extras (``pip install -e .[bench]``).
On CUDA it also prints peak GPU memory for every hook kept on the GPU vs ``offload="cpu"``.

    python benchmarks/capture.py [--batch 4] [--seq 128] [--reps 7] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time

import torch


def interleaved(cases: dict, reps: int, sync, clock=time.perf_counter) -> dict[str, float]:
    """Median seconds per case, the cases taking turns rep by rep: on a shared machine a slow spell then
    lands on every case alike instead of on whichever ran during it."""
    for fn in cases.values():
        fn()  # warm-up (allocator, kernels, hooks)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            sync()
            t0 = clock()
            fn()
            sync()
            times[name].append(clock() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--width",
        type=int,
        default=768,
        help="d_model (12 heads): 96 makes the forward cheap, so what remains is per-call overhead, as on a GPU",
    )
    ap.add_argument("--no-tl", action="store_true", help="skip TransformerLens (if not installed)")
    ap.add_argument("--no-nnsight", action="store_true", help="skip nnsight (if not installed)")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        help="wall: elapsed time (default on CUDA); cpu: this process's CPU time (default on CPU: on a shared "
        "machine other jobs stretch elapsed time but not the CPU time the work itself takes)",
    )
    args = ap.parse_args()
    clock = args.clock or ("wall" if args.device.startswith("cuda") else "cpu")

    from tokenizers import Tokenizer, models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    import probe

    torch.manual_seed(0)
    cfg = GPT2Config(n_embd=args.width)  # GPT-2 small: 12 layers, 768 wide, 12 heads, 50257 vocab
    folder = tempfile.mkdtemp()
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    vocab = {f"t{i}": i for i in range(cfg.vocab_size)}
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")), eos_token="t0")
    tok.save_pretrained(folder)
    model = probe.load(folder, device=args.device)
    hf = model.hf
    ids = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=args.device)
    mask = torch.ones_like(ids)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    all_resid = [f"blocks.{i}.hook_resid_post" for i in range(cfg.n_layer)]

    def body():
        with torch.inference_mode():
            hf.transformer(input_ids=ids, attention_mask=mask, use_cache=False)

    def body_eager():  # the floor for every hook: patterns need the eager attention kernel, not sdpa
        current = hf.config._attn_implementation
        hf.config._attn_implementation_internal = "eager"
        try:
            body()
        finally:
            hf.config._attn_implementation_internal = current

    def hf_hidden():
        with torch.inference_mode():
            hf(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)

    every = [n for n in model.hook_names if n != "logits"]  # every body hook: patterns, q/k/v/z, neurons...
    cases = {
        "body (bare transformer)": body,
        "body, eager attention": body_eager,
        "probe: all 12 resid_post": lambda: model.run(ids, hooks=all_resid),
        "probe: layer 2 only": lambda: model.run(ids, hooks=["blocks.2.hook_resid_post"]),
        "probe: every hook": lambda: model.run(ids, hooks=every),
        "HF output_hidden_states": hf_hidden,
    }
    if not args.no_tl and not _installed("transformer_lens"):
        print("transformer_lens is not installed: the TL rows are skipped")
        args.no_tl = True
    if not args.no_tl:
        from transformer_lens.model_bridge import TransformerBridge

        bridge = TransformerBridge.boot_transformers(
            folder, hf_model=GPT2LMHeadModel.from_pretrained(folder).to(args.device), tokenizer=tok
        )
        names = set(all_resid)

        def tl_cache():
            with torch.inference_mode():
                bridge.run_with_cache(ids, names_filter=lambda n: n in names)

        def tl_full():
            with torch.inference_mode():
                bridge.run_with_cache(ids)

        cases["TL bridge run_with_cache"] = tl_cache
        cases["TL bridge full cache"] = tl_full

    if not args.no_nnsight and not _installed("nnsight"):
        print("nnsight is not installed: the nnsight rows are skipped")
        args.no_nnsight = True
    if not args.no_nnsight:
        cases.update(_nnsight_cases(hf.transformer, ids, mask, cfg.n_layer))

    timer = time.perf_counter if clock == "wall" else time.process_time
    results = interleaved(cases, args.reps, sync, timer)
    full_tl = results.get("TL bridge full cache")
    base = results["body (bare transformer)"]
    tl = results.get("TL bridge run_with_cache")
    print(
        f"GPT-2-small shape (d_model {args.width}), random weights, batch {args.batch} x {args.seq} tokens, {args.device}, "
        f"{torch.get_num_threads()} threads, median of {args.reps}, {clock} clock"
    )
    print("x TL: against TL's resid_post-only cache; for 'every hook' rows, against TL's full cache")
    print(f"| {'case':<28} | {'median ms':>9} | {'x body':>7} | {'x TL':>6} |")
    print(f"|{'-' * 30}|{'-' * 11}|{'-' * 9}|{'-' * 8}|")
    for name, t in results.items():
        ref = full_tl if ("every" in name or "full" in name) else tl
        vs_tl = f"{t / ref:6.2f}" if ref else "   n/a"
        print(f"| {name:<28} | {t * 1e3:9.1f} | {t / base:7.2f} | {vs_tl} |")
    all_ratio = results["probe: all 12 resid_post"] / base
    l2_ratio = results["probe: layer 2 only"] / base
    print(
        f"\ntargets: all-layer <= 1.10x body: {all_ratio:.2f} {'OK' if all_ratio <= 1.10 else 'MISSED'}; "
        f"layer-2-only <= 0.35x body: {l2_ratio:.2f} {'OK' if l2_ratio <= 0.35 else 'MISSED'}",
        end="",
    )
    if tl:
        r = results["probe: all 12 resid_post"] / tl
        print(f"; all-layer <= 0.80x TL: {r:.2f} {'OK' if r <= 0.80 else 'MISSED'}", end="")
    if full_tl:
        r = results["probe: every hook"] / full_tl
        print(f"; every hook <= 0.75x TL full cache: {r:.2f} {'OK' if r <= 0.75 else 'MISSED'}", end="")
    every = results["probe: every hook"] / base
    goal = 1.35 if args.batch * args.seq >= 512 else 1.3
    print(f"; every hook <= {goal}x body: {every:.2f} {'OK' if every <= goal else 'MISSED'}", end="")
    own = results["probe: every hook"] / results["body, eager attention"]
    print(f" (probe's own part, against the eager body: {own:.2f}x)", end="")
    for probe_row, peer_row in (
        ("probe: all 12 resid_post", "nnsight: all 12 resid_post"),
        ("probe: layer 2 only", "nnsight: layer 2 only"),
    ):
        if peer_row in results:
            r = results[probe_row] / results[peer_row]
            print(f"; {probe_row[7:]} <= nnsight: {r:.2f}x {'OK' if r <= 1.0 else 'MISSED'}", end="")
    print()
    if args.device.startswith("cuda"):
        peak_memory(model, ids, every)


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except ImportError:
        return False


def _nnsight_cases(body, ids, mask, n_layers: int) -> dict:
    """nnsight's trace on the same body: save every block's output, or block 2's and stop there."""
    from nnsight import NNsight

    traced = NNsight(body)

    def all_blocks():
        saved = []
        with torch.inference_mode(), traced.trace(input_ids=ids, attention_mask=mask, use_cache=False):
            for i in range(n_layers):
                saved.append(traced.h[i].output.save())
        return saved

    def layer_2():
        with torch.inference_mode(), traced.trace(input_ids=ids, attention_mask=mask, use_cache=False) as tracer:
            saved = traced.h[2].output.save()
            tracer.stop()
        return saved

    return {"nnsight: all 12 resid_post": all_blocks, "nnsight: layer 2 only": layer_2}


def peak_memory(model, ids, every) -> None:
    """Peak GPU memory while capturing every hook, kept on the GPU vs offloaded to CPU inside the hooks."""
    rows = []
    for offload in (None, "cpu"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        run = model.run(ids, hooks=every, offload=offload)
        torch.cuda.synchronize()
        rows.append((offload, (torch.cuda.max_memory_allocated() - start) / 2**20))
        del run
    print("\n| capture every hook, offload | peak extra GPU MiB |\n|---|---|")
    for offload, mib in rows:
        print(f"| {offload} | {mib:.0f} |")


if __name__ == "__main__":
    main()
