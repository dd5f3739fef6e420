"""Start-up, load times and capture cost on the real models (SmolLM2-135M, minilm-mlm), in one run.

- start-up: ``probe --help``, ``probe models`` and ``import probe`` in fresh processes (targets: 0.5 s,
  1 s; ``import probe`` must not import torch);
- load: each model in a fresh process, from the converted-checkpoint cache (target: SmolLM2 <= 3 s), and
  with ``--first`` SmolLM2's first load into an empty cache (GGUF conversion);
- report: ``probe.report`` in a fresh process, loading included (target: 10 s on the bundled pair);
- forward and capture on SmolLM2 at 128 tokens: the bare body vs probe capturing every resid_post, only
  layer 2, and HF ``output_hidden_states``; ratios to the body.

    python benchmarks/real_models.py [--reps 5] [--first] [--threads 1]

On a 2-core machine with another busy process, torch's default of 2 threads ran SmolLM2's forward 20x
slower (5.2 s instead of 0.26 s: its OpenMP threads wait on each other); pass ``--threads 1`` there.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def fresh(argv: list[str], reps: int) -> float:
    """Median wall time of ``python *argv`` in a fresh process (interpreter start included)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *argv], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def inner(code: str, reps: int, env: dict | None = None) -> float:
    """Median of the time ``code`` reports (its own ``t`` variable) in fresh processes."""
    times = []
    for _ in range(reps):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import time; t0 = time.perf_counter()\n" + code + "\nprint(time.perf_counter() - t0)",
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def timed(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--first", action="store_true", help="also time SmolLM2's first load into an empty cache")
    ap.add_argument(
        "--threads", type=int, default=None, help="torch threads (default torch's); use 1 on a shared machine"
    )
    args = ap.parse_args()

    rows = []
    rows.append(("start-up", "probe --help", fresh(["-m", "probe.cli", "--help"], args.reps), 0.5))
    rows.append(("start-up", "probe models", fresh(["-m", "probe.cli", "models"], args.reps), 1.0))
    rows.append(("start-up", "import probe", fresh(["-c", "import probe"], args.reps), None))
    leaked = subprocess.run(
        [sys.executable, "-c", "import sys, probe; print('torch' in sys.modules)"], capture_output=True, text=True
    ).stdout.strip()

    if args.first:
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "PROBE_CACHE": cache}
            rows.append(
                (
                    "load",
                    "smollm2-135m, first (GGUF conversion)",
                    inner("import probe; probe.load('smollm2-135m')", 1, env),
                    None,
                )
            )
    load = "import probe; probe.load('{}')"
    rows.append(("load", "smollm2-135m, cached, fresh process", inner(load.format("smollm2-135m"), args.reps), 3.0))
    imports = "import torch, transformers; from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer"
    rows.append(("load", "  of which: import torch + transformers", inner(imports, args.reps), None))
    rows.append(("load", "minilm-mlm, fresh process", inner(load.format("minilm-mlm"), args.reps), None))
    rows.append(("load", "tiny-gpt, fresh process", inner(load.format("tiny-gpt"), args.reps), None))
    report = "import probe, tempfile, os; probe.report(models={}, path=os.path.join(tempfile.mkdtemp(), 'r.html'))"
    rows.append(
        ("report", "tiny-gpt + tiny-bert, loading included", inner(report.format("['tiny-gpt', 'tiny-bert']"), 1), 10.0)
    )
    rows.append(("report", "smollm2-135m + minilm-mlm, loading included", inner(report.format("None"), 1), None))

    import torch

    import probe

    if args.threads:
        torch.set_num_threads(args.threads)
    model = probe.load("smollm2-135m")
    ids = torch.randint(100, model.vocab_size, (1, args.seq))
    mask = torch.ones_like(ids)
    n = model.n_layers
    resid = [f"blocks.{i}.hook_resid_post" for i in range(n)]

    def body():
        with torch.inference_mode():
            model.adapter.body(input_ids=ids, attention_mask=mask, use_cache=False)

    def hf_hidden():
        with torch.inference_mode():
            model.hf(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)

    cases = [
        ("body (bare transformer)", body),
        (f"probe: all {n} resid_post", lambda: model.run(ids, hooks=resid)),
        ("probe: layer 2 only", lambda: model.run(ids, hooks=["blocks.2.hook_resid_post"])),
        ("probe: resid + logits", lambda: model.run(ids, hooks=[*resid, "logits"])),
        ("HF output_hidden_states (+ logits)", hf_hidden),
    ]
    forward = [(name, timed(fn, args.reps)) for name, fn in cases]

    print(f"\nstart-up and load (fresh processes, median of {args.reps}; torch after `import probe`: {leaked})")
    print("| what | case | seconds | target |")
    print("|---|---|---|---|")
    for what, case, sec, target in rows:
        verdict = "" if target is None else f"<= {target} {'OK' if sec <= target else 'MISSED'}"
        print(f"| {what} | {case} | {sec:.2f} | {verdict} |")
    floor = forward[0][1]
    print(
        f"\nSmolLM2-135M forward, 1 x {args.seq} tokens, CPU, {torch.get_num_threads()} threads, median of {args.reps}"
    )
    print("| case | median ms | x body |")
    print("|---|---|---|")
    for name, sec in forward:
        print(f"| {name} | {sec * 1e3:.1f} | {sec / floor:.2f} |")


if __name__ == "__main__":
    main()
