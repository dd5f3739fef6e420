"""The live dashboard's update times: the work behind each page change, and HTTP round trips to its callbacks.

Target (issue #10): a figure update <= 1 s at 20 tokens for SmolLM2-135M + minilm-mlm on CPU, after
warm-up. Each row is the median over ``--reps`` texts (a new text every time, so nothing is cached
unless the row says so); all rows measured in one process.

    python benchmarks/dashboard.py                       # probe.default_models()
    python benchmarks/dashboard.py -m tiny-gpt -m tiny-bert --reps 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import probe
from probe.app import Workbench, start

# About 20 tokens read by each model (a GPT the words before [MASK]); every i < 100 gives a new text.
TEMPLATE = "The {adj} robot that lived in the {place} by the river knew that it must never [MASK] hurt the human."
ADJ = ("old", "new", "small", "tired", "red", "quiet", "clever", "broken", "kind", "strange")
PLACE = ("town", "city", "lab", "house", "garden", "school", "factory", "village", "street", "museum")


def text(i: int) -> str:
    return TEMPLATE.format(adj=ADJ[i % 10], place=PLACE[i // 10 % 10])


def timed(fn, reps: int) -> float:
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def post(url: str, output: str, values: dict, deps: list[dict]) -> dict:
    """One Dash callback request, as the page sends it."""
    dep = next(d for d in deps if output in d["output"])
    ids = [{"id": x["id"], "property": x["property"]} for x in dep["inputs"]]
    outs = [{"id": i, "property": p} for i, p in (o.split(".") for o in dep["output"].strip(".").split("..."))]
    payload = {
        "output": dep["output"],
        "outputs": outs if len(outs) > 1 else outs[0],
        "inputs": [{**x, "value": values.get(f"{x['id']}.{x['property']}")} for x in ids],
        "state": [{**x, "value": values.get(f"{x['id']}.{x['property']}")} for x in dep["state"]],
        "changedPropIds": [f"{ids[0]['id']}.{ids[0]['property']}"],
    }
    request = urllib.request.Request(
        url + "_dash-update-component", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as r:
        return json.loads(r.read())


def cpu_gflops() -> float:
    """fp32 matmul throughput now (a logit lens-sized product), to read the timings against: on a shared or
    busy machine everything above scales with it."""
    import torch

    a, b = torch.randn(512, 576), torch.randn(576, 16384)
    a @ b
    t0 = time.perf_counter()
    for _ in range(3):
        a @ b
    return 3 * 2 * 512 * 576 * 16384 / (time.perf_counter() - t0) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", action="append", help="model name (repeat); default probe.default_models()")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    if not 1 <= args.reps <= 15:
        ap.error("--reps must be 1..15 (each measurement needs a new text; there are 100)")
    names = args.model
    if not names:
        names, notice = probe.default_models()
        if notice:
            print(f"note: {notice}\n")
    gflops_before = cpu_gflops()
    bench = Workbench(names)
    t0 = time.perf_counter()
    bench.warm()
    load_s = time.perf_counter() - t0
    first, second = bench.selected[0], bench.selected[-1]
    bench.update(names, text(0), 0, 0)  # warm-up: imports, kernels, plotly
    # tokens each model reads (a causal model: the words before [MASK]; a masked one: all, with specials)
    lengths = {n: bench.run(n, text(0)).lengths[0] for n in bench.selected}
    reps = args.reps
    rows: list[tuple[str, float, str]] = [("load the models (once per server)", load_s, "")]
    k = [1]  # a fresh text per measurement (text(0) is the warm-up)

    def fresh() -> str:
        k[0] += 1
        return text(k[0])

    rows.append(
        (
            "new text: every figure (runs, comparison, views)",
            timed(lambda i: bench.update(names, fresh()), reps),
            "target",
        )
    )
    rows.append(
        (
            "new text, comparison rescored too (a page option)",
            timed(lambda i: bench.update(names, fresh(), rescore=True), reps),
            "",
        )
    )
    rows.append(
        ("  of which: forward passes of every model", timed(lambda i: [bench.run(n, fresh()) for n in names], reps), "")
    )
    rows.append(
        (
            "  of which: comparison (probe.compare)",
            timed(lambda i: bench.compare_views(names, fresh()), reps),
            "",
        )
    )
    same = fresh()
    bench.update(names, same)
    rows.append(
        (
            "head change (same text)",
            timed(lambda i: bench.attention(first, same, 0, i % bench.model(first).n_heads), reps),
            "target",
        )
    )
    rows.append(
        (
            "click a token (predictions, lens, attention there)",
            timed(lambda i: bench.update(names, same, 0, 0, focus=1 + i % 3), reps),
            "target",
        )
    )
    rows.append(
        (
            "switch the model in detail (same text)",
            timed(lambda i: bench.update(names, same, detail=second), 1),
            "target",
        )
    )
    rows.append(("same state again (all cached)", timed(lambda i: bench.update(names, same), reps), ""))

    server = start(bench)
    try:
        deps = json.loads(urllib.request.urlopen(server.url + "_dash-dependencies", timeout=60).read())

        first_figures: list[float] = []

        def page(i: int) -> None:
            """What the browser sends after Enter: comparison, quick model views and attention at once, then
            the logit lens once the quick views are back."""
            t, start_s = fresh(), time.perf_counter()

            def views_then_lens() -> None:
                post(server.url, "model-message.children", {"text.value": t, "detail.value": first}, deps)
                first_figures.append(time.perf_counter() - start_s)
                post(server.url, "fig-logit_lens.figure", {"text.value": t, "detail.value": first}, deps)

            calls = [
                lambda: post(server.url, "compare-message.children", {"text.value": t, "models.value": names}, deps),
                views_then_lens,
                lambda: post(
                    server.url,
                    "fig-attention.figure",
                    {"text.value": t, "detail.value": first, "layer.value": 0, "head.value": 0},
                    deps,
                ),
            ]
            with ThreadPoolExecutor(len(calls)) as pool:
                list(pool.map(lambda call: call(), calls))

        rows.append(("HTTP: new text, every figure (the page's 4 requests)", timed(page, reps), "target"))
        rows.append(("  of which: until the quick model views arrive", statistics.median(first_figures), "target"))
        rows.append(
            (
                "HTTP: model views, cached (JSON + transfer only)",
                timed(
                    lambda i: post(server.url, "model-message", {"text.value": same, "detail.value": first}, deps), reps
                ),
                "",
            )
        )
        rows.append(
            (
                "HTTP: head change",
                timed(
                    lambda i: post(
                        server.url,
                        "fig-attention.figure",
                        {"text.value": same, "detail.value": second, "layer.value": 0, "head.value": i},
                        deps,
                    ),
                    reps,
                ),
                "target",
            )
        )
    finally:
        server.stop()

    import torch

    print(
        f"CPU: {torch.get_num_threads()} torch thread(s), fp32 matmul {gflops_before:.0f} -> {cpu_gflops():.0f} GFLOP/s"
    )
    print(
        f"models: {', '.join(names)}; tokens read: {', '.join(f'{n} {v}' for n, v in lengths.items())}; median of {reps}"
    )
    print(f"| {'what':<52} | {'seconds':>8} | {'<= 1 s':>6} |")
    print(f"|{'-' * 54}|{'-' * 10}|{'-' * 8}|")
    for what, seconds, target in rows:
        verdict = ("OK" if seconds <= 1.0 else "MISSED") if target else ""
        print(f"| {what:<52} | {seconds:8.3f} | {verdict:>6} |")
    print(f"\ncache: {bench.stats()}")


if __name__ == "__main__":
    main()
