"""A GGUF file converted once into a safetensors model directory that transformers (and llama_weights.py)
read in seconds; the conversion de-quantises the weights to float32 and is cached by the file's content."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging

from bot.core.errors import ModelLoadError

__all__ = ["converted", "converted_dir", "first_line"]

Progress = Callable[[str], None]


def converted_dir(gguf: Path, cache_dir: Path) -> Path:
    """Where the conversion of `gguf` is (or will be) in `cache_dir`."""
    return cache_dir / f"{gguf.stem}-{_fingerprint(gguf)}"


def converted(gguf: Path, cache_dir: Path, progress: Progress | None) -> Path:
    """The safetensors directory for `gguf`, converting it if the cache does not have it yet."""
    target = converted_dir(gguf, cache_dir)
    if (target / "config.json").is_file():
        return target
    say = progress or (lambda _message: None)
    if progress is not None:  # transformers' own bar shows the de-quantisation, tensor by tensor
        hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    else:
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    say(f"converting {gguf.name} to safetensors in {cache_dir} (once; about half a minute)")
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=cache_dir))
    try:
        _convert_gguf(gguf, work, say)
        try:
            os.replace(work, target)
        except OSError:  # another process finished first: theirs is as good as ours
            if not (target / "config.json").is_file():
                raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"MODEL_NAME: cannot convert {gguf}: {first_line(exc)}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _fingerprint(gguf: Path) -> str:
    """Identifies the file by its content, not its path: every virtualenv with the same package reuses one
    conversion. Size plus the first MiB (header and tensor index) tell GGUF files apart."""
    digest = hashlib.sha256(f"{gguf.name}:{gguf.stat().st_size}:".encode())
    with gguf.open("rb") as file:
        digest.update(file.read(1 << 20))
    return digest.hexdigest()[:16]


def _convert_gguf(gguf: Path, out: Path, say: Progress) -> None:
    # transformers 5 refuses save_pretrained on a GGUF-loaded model: rebuild a plain model from its config
    # (without quantization_config) and copy the de-quantised weights into it.
    say("reading the tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    say("de-quantising the weights")
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    plain.load_state_dict(quantised.state_dict())
    plain.generation_config = quantised.generation_config
    say("writing safetensors")
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
