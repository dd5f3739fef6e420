"""What does corpus extraction cost? ``probe.extract`` vs the bare forward on the same batches, and memory.

A GPT-2-small-shaped model with random weights (12 layers, d_model 768; ``--small`` for a 4-layer,
256-wide one) reads a corpus made from the Wikipedia sample in tests/data (sentences, shuffled and
numbered so texts differ). Two measurements, in one run:

- speed: the bare transformer body (no capture, no LM head, nothing written) over exactly the batches
  probe.extract makes (same length-sorted windows), vs ``probe.extract`` end to end (tokenizing, the
  capture, float16 conversion, Parquet writing, the manifest) of one hook, the *last* block's
  ``hook_resid_post`` (so the early exit saves nothing). Target: extract >= 0.85x the bare tokens/s.
- memory: peak RSS of a fresh process extracting 1x and 10x the corpus. Target: 10x within 15% of 1x.

    python benchmarks/extract.py [--texts 400] [--batch 32] [--reps 3] [--device cpu|cuda] [--small] [--no-speed]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def corpus(n: int, seed: int = 0) -> list[str]:
    import random

    text = (ROOT / "tests" / "data" / "heldout_sample.txt").read_text(encoding="utf-8")
    sents = [s for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 5]
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        k = rng.randint(1, 3)
        out.append(f"{len(out)}. " + " ".join(rng.choice(sents) for _ in range(k)))
    return out


def make_model(folder: str, small: bool) -> None:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    import probe

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=4, n_embd=256, n_head=8) if small else GPT2Config()
    tok = probe.load("tiny-gpt").tokenizer  # a real BPE tokenizer, so token counts are realistic
    cfg.vocab_size = len(tok)
    cfg.bos_token_id = cfg.eos_token_id = tok.eos_token_id
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)


def bare_batches(model, texts: list[str], batch_size: int, docs_per_shard: int):
    """The (ids, mask) batches probe.extract builds: windows of texts, sorted by length inside each."""
    import numpy as np

    from probe.core.tokens import pad

    batches = []
    for start in range(0, len(texts), docs_per_shard):
        window = texts[start : start + docs_per_shard]
        enc = [e[: model.n_ctx] for e in model.tokenizer(window, verbose=False)["input_ids"]]
        order = np.argsort([len(e) for e in enc], kind="stable")
        for b in range(0, len(order), batch_size):
            ids, mask = pad([enc[i] for i in order[b : b + batch_size]], model.tokenizer.pad_token_id)
            batches.append((ids.to(model.device), mask.to(model.device)))
    return batches


def speed(args, folder: str) -> list[tuple[str, float, float]]:
    import torch

    import probe

    model = probe.load(folder, device=args.device)
    texts = corpus(args.texts)
    hook = f"blocks.{model.n_layers - 1}.hook_resid_post"
    docs_per_shard = args.docs_per_shard
    batches = bare_batches(model, texts, args.batch, docs_per_shard)
    tokens = int(sum(int(m.sum()) for _, m in batches))
    padded = int(sum(m.numel() for _, m in batches))
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def bare():
        with torch.inference_mode():
            for ids, mask in batches:
                model.adapter.body(**model.adapter.body_inputs(ids, mask), use_cache=False)
        sync()

    def extract():
        with tempfile.TemporaryDirectory() as out:
            probe.extract(
                model, texts, hooks=[hook], out=Path(out) / "a", batch_size=args.batch, docs_per_shard=docs_per_shard,
                dtype="float16", quiet=True,
            )  # fmt: skip

    def extract_all():
        with tempfile.TemporaryDirectory() as out:
            probe.extract(
                model, texts, hooks=["blocks.*.hook_resid_post"], out=Path(out) / "a", batch_size=args.batch,
                docs_per_shard=docs_per_shard, dtype="float16", quiet=True,
            )  # fmt: skip

    cases = {"bare body (same batches)": bare, f"extract {hook} fp16": extract}
    cases[f"extract all {model.n_layers} resid_post fp16"] = extract_all
    bare(), extract()  # warm-up
    times = {name: [] for name in cases}
    for _ in range(args.reps):  # interleaved, so drift in machine load hits every case alike
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["bare body (same batches)"])
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append((name, tokens / med, base / med))
    return rows, tokens, padded


def peak_rss_child(folder: str, n_texts: int, device: str, docs_per_shard: int) -> tuple[float, float, float, int]:
    """(RSS once the model is loaded, peak RSS during the extraction (sampled every 5 ms), the process's
    ru_maxrss, tokens) in MB, from a fresh process."""
    code = f"""
import resource, sys, tempfile, json, threading, time, psutil
sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / "benchmarks")!r})
from extract import corpus
import probe
model = probe.load({folder!r}, device={device!r})
texts = corpus({n_texts})
proc = psutil.Process()
loaded = proc.memory_info().rss
peak, running = [loaded], [True]
def sample():
    while running[0]:
        peak[0] = max(peak[0], proc.memory_info().rss)
        time.sleep(0.005)
t = threading.Thread(target=sample, daemon=True); t.start()
with tempfile.TemporaryDirectory() as out:
    m = probe.extract(model, texts, hooks=["blocks.%d.hook_resid_post" % (model.n_layers - 1)], out=out + "/a",
                      docs_per_shard={docs_per_shard}, quiet=True)
running[0] = False; t.join()
mb = 2 ** 20
print(json.dumps([loaded / mb, peak[0] / mb, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  m["counts"]["tokens"]]))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


def print_speed(args, folder: str) -> None:
    import torch

    rows, tokens, padded = speed(args, folder)
    shape = "4 layers x 256" if args.small else "GPT-2 small (12 x 768)"
    print(f"\nspeed: {shape}, {args.texts} texts = {tokens:,} tokens, batch {args.batch}, {args.device}, ", end="")
    print(f"torch threads {torch.get_num_threads()}, median of {args.reps}; length-sorted batches are ", end="")
    print(f"{tokens / padded:.1%} real tokens ({padded - tokens:,} padding positions)")
    print(f"| {'case':<40} | {'tokens/s':>10} | {'x bare':>7} |")
    print(f"|{'-' * 42}|{'-' * 12}|{'-' * 9}|")
    for name, tps, ratio in rows:
        print(f"| {name:<40} | {tps:>10,.0f} | {ratio:>6.2f}x |", flush=True)


def print_memory(args, folder: str) -> None:
    print("\nmemory: a fresh process per corpus size extracting the last resid_post (fp16); MB")
    head = ["corpus", "texts", "tokens", "after load", "peak in extract", "x 1x", "maxrss", "x 1x"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("-" * (len(h) + 2) for h in head) + "|")
    first = None
    for scale in (1, 10):
        loaded, peak, maxrss, tok = peak_rss_child(folder, args.texts * scale, args.device, args.docs_per_shard)
        first = first or (peak, maxrss)
        cells = [f"{scale}x", f"{args.texts * scale:,}", f"{tok:,}", f"{loaded:,.0f}", f"{peak:,.0f}"]
        cells += [f"{peak / first[0]:.2f}x", f"{maxrss:,.0f}", f"{maxrss / first[1]:.2f}x"]
        print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--texts", type=int, default=400, help="corpus size (1x) in texts")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--small", action="store_true", help="a 4-layer, 256-wide model instead of GPT-2 small")
    ap.add_argument("--docs-per-shard", type=int, default=64, help="window (shard) size; 1x should fill several")
    ap.add_argument("--no-rss", action="store_true", help="skip the 1x / 10x memory runs")
    ap.add_argument("--no-speed", action="store_true", help="only the memory runs")
    args = ap.parse_args()
    folder = tempfile.mkdtemp()
    make_model(folder, args.small)
    if not args.no_speed:
        print_speed(args, folder)
    if not args.no_rss:
        print_memory(args, folder)


if __name__ == "__main__":
    main()
